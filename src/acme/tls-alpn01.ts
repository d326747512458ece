/**
 * TLS-ALPN-01 answers (RFC 8737): the CA opens a TLS connection to port 443 of the name, asks
 * for it by SNI and offers the single ALPN protocol `acme-tls/1`; it expects a self-signed
 * certificate for that name carrying the SHA-256 of the key authorization (§3), and then closes.
 *
 * The process that ordered writes that certificate into the store (order.ts); the one the CA
 * reaches (another worker, another replica) reads it from there: a stat per challenge handshake,
 * and the file read and its TLS context built again only when it changed. Only the names the
 * listener orders are looked up, so a client cannot make us read any other path.
 */
import { readFileSync, statSync } from "node:fs";
import { createHash } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { selfSignedPem } from "./placeholder.ts";
import { createSecureContext } from "node:tls";
import { pemBlocks } from "../tls/certificates.ts";
import { tlsAlpn01File } from "./paths.ts";
import type { AlpnChallenges } from "../tls/hello-first.ts";

/** RFC 8737 §3 / §6.1: id-pe-acmeIdentifier. */
const ACME_IDENTIFIER_OID = "1.3.6.1.5.5.7.1.31";

/**
 * The challenge certificate (key then certificate, PEM) for `name` (RFC 8737 §3): self-signed,
 * `name` its only subjectAltName, and a critical acmeIdentifier extension holding the SHA-256
 * digest of the key authorization, DER-encoded as an OCTET STRING (Authorization ::= OCTET
 * STRING (SIZE (32))). Not acme-client's createAlpnCertificate: its certificate has key usage
 * keyCertSign and cRLSign only, which BoringSSL (Bun's TLS) refuses to serve (measured,
 * Bun 1.4.5: KEY_USAGE_BIT_INCORRECT).
 */
export function challengeCertificatePem(name: string, keyAuthorization: string): Promise<string> {
  const digest = createHash("sha256").update(keyAuthorization).digest();
  const octetString = Buffer.concat([Buffer.from([0x04, digest.length]), digest]);
  // Valid for a day: long enough for any validation, and never served to anyone else.
  return selfSignedPem(`CN=${name}`, name, 86_400_000, [new x509.Extension(ACME_IDENTIFIER_OID, true, octetString)]);
}

interface Cached {
  /** The file as stat saw it when the context was built. */
  readonly id: string;
  readonly context: unknown;
}

/**
 * The challenges of one listener, read from the store: the names it orders over TLS-ALPN-01
 * (none when it has no `tls.acme`, or orders over HTTP-01). A reload updates both.
 */
export class StoredAlpnChallenges implements AlpnChallenges {
  private names: ReadonlySet<string> = new Set();
  private storage: string | undefined;
  private readonly cache = new Map<string, Cached>();

  constructor(storage: string | undefined, listener: AcmeListener) {
    this.update(storage, listener);
  }

  update(storage: string | undefined, listener: AcmeListener): void {
    if (storage !== this.storage) this.cache.clear();
    this.storage = storage;
    const acme = listener.tls?.acme;
    this.names = new Set(acme?.challenge === "tls-alpn-01" ? (acme.domains ?? []).map((n) => n.toLowerCase()) : []);
  }

  contextFor(serverName: string | undefined): unknown {
    if (this.storage === undefined || serverName === undefined || !this.names.has(serverName)) return undefined;
    const path = tlsAlpn01File(this.storage, serverName);
    let id: string;
    try {
      const st = statSync(path);
      id = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      // None pending (or the store unreadable): the handshake is refused.
      this.cache.delete(serverName);
      return undefined;
    }
    const known = this.cache.get(serverName);
    if (known?.id === id) return known.context;
    try {
      // One file, key then certificate, renamed into place whole (store.ts): both read at once.
      const pem = readFileSync(path, "utf8");
      const context = (createSecureContext({ key: pemBlocks(pem, /PRIVATE KEY/), cert: pemBlocks(pem, /CERTIFICATE/) }) as unknown as { context: unknown }).context;
      this.cache.set(serverName, { id, context });
      return context;
    } catch {
      // Removed or replaced between the stat and the read: the CA tries again.
      return undefined;
    }
  }
}

/** What a listener's `tls.acme` asks of its TLS side, as far as TLS-ALPN-01 goes. */
interface AcmeListener {
  readonly tls?: { readonly acme?: { readonly challenge: string; readonly domains?: readonly string[] } };
}
