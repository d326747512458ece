/**
 * One certificate from an ACME CA (RFC 8555 §7.4): account, order, authorizations answered by
 * HTTP-01, finalize with a CSR, download. The protocol is acme-client's (npm, 5.x: kept up by its
 * author since 2017, RFC 8555 complete, JWS with ECDSA and RSA account keys, badNonce retries,
 * and the CSR and key generation this needs); it runs under Bun as it does under Node (its HTTP
 * is axios on node:https), and `bun build --compile` bundles it. Writing the same on jose and
 * WebCrypto would have meant an ASN.1 encoder for CSRs of our own.
 */
import * as acme from "acme-client";
import { Agent } from "node:https";
import type { AcmeStore } from "./store.ts";
import { challengeCertificatePem } from "./tls-alpn01.ts";
import { challengeRecordName, runDns01Hook, type Dns01Settings } from "./dns01.ts";

export interface OrderSettings {
  readonly directory: string;
  readonly email?: string;
  readonly keyType: "ecdsa-p256" | "rsa2048";
  /** How the CA checks the name: HTTP-01 (RFC 8555 §8.3), TLS-ALPN-01 (RFC 8737) or DNS-01 (RFC 8555 §8.4). */
  readonly challenge: "http-01" | "tls-alpn-01" | "dns-01";
  /** With DNS-01: the command that sets the TXT records. */
  readonly dns01?: Dns01Settings;
  /** The issuer's common name of the chain to take when the CA offers several (§7.4.2). */
  readonly preferredChain?: string;
  /** External Account Binding (RFC 8555 §7.3.4), sent when the account is registered. */
  readonly eab?: { readonly kid: string; readonly hmacKey: string };
}

/** The key (PKCS#8 PEM) and certificate chain of an issued certificate. */
export interface Issued {
  readonly key: string;
  readonly chain: string;
}

function newKey(type: OrderSettings["keyType"]): Promise<string> {
  return (type === "rsa2048" ? acme.crypto.createPrivateRsaKey(2048) : acme.crypto.createPrivateEcdsaKey("P-256")).then((b) => b.toString());
}

/**
 * Whom acme-client trusts for the directory: its axios instance is one per process, so this is
 * set once, from `acme.directoryCa` (a private CA such as step-ca or pebble), or left to the
 * system's CAs.
 */
export function trustDirectoryCa(ca: string | undefined): void {
  directoryCa = ca;
  acme.axios.defaults.httpsAgent = ca === undefined ? undefined : new Agent({ ca });
  // acme-client's axios waits for ever by default: a CA that hangs would hold the name in
  // "ordering" past its lock's lease and beyond stop(). Each request is bounded instead.
  acme.axios.defaults.timeout = ACME_REQUEST_TIMEOUT_MS;
}

/** The longest one request to the ACME server may take. */
export const ACME_REQUEST_TIMEOUT_MS = 30_000;

let directoryCa: string | undefined;

/**
 * A GET to the CA outside acme-client (renewal-info.ts), trusting what acme-client trusts and
 * bounded as its requests are; without acme-client's retries of 5xx answers (up to 75 s), which
 * an unauthenticated poll does not need: its next poll is the retry.
 */
export function getFromCa(url: string): Promise<Response> {
  return fetch(url, { ...(directoryCa !== undefined ? { tls: { ca: directoryCa } } : {}), signal: AbortSignal.timeout(ACME_REQUEST_TIMEOUT_MS), redirect: "error" });
}

/** Registrations under way, by store and directory: names ordered at once share one. */
const registering = new Map<string, Promise<string>>();

/**
 * The account's URL (RFC 8555 §7.3): stored, or registered once. Registering a key that is
 * registered already (a replica sharing the store did it first) answers 200, and acme-client
 * then sends an update the CA may refuse; looking it up with onlyReturnExisting (§7.3.1) finds it.
 */
function accountUrlFor(store: AcmeStore, s: OrderSettings, accountKey: string): Promise<string> {
  const known = store.accountUrl(s.directory);
  if (known !== undefined) return Promise.resolve(known);
  const id = `${store.dir}\0${s.directory}`;
  let p = registering.get(id);
  if (p === undefined) {
    p = (async () => {
      // The binding goes only with the registration itself (acme-client leaves it out of the onlyReturnExisting lookup).
      const client = new acme.Client({ directoryUrl: s.directory, accountKey, ...(s.eab !== undefined ? { externalAccountBinding: { kid: s.eab.kid, hmacKey: s.eab.hmacKey } } : {}) });
      try {
        await client.createAccount({ onlyReturnExisting: true });
      } catch {
        await client.createAccount({ termsOfServiceAgreed: true, ...(s.email !== undefined ? { contact: [`mailto:${s.email}`] } : {}) });
      }
      const url = client.getAccountUrl();
      store.saveAccountUrl(s.directory, url);
      return url;
    })().finally(() => registering.delete(id));
    registering.set(id, p);
  }
  return p;
}

/**
 * The TXT record to set for an authorization of `name`: the CA names the base name of a
 * wildcard (RFC 8555 §7.1.4), and one name per order means it must be ours.
 */
function dnsRecordFor(identifier: string, name: string): string {
  if (challengeRecordName(identifier) !== challengeRecordName(name)) throw new Error(`the CA sent an authorization for ${JSON.stringify(identifier)}, not ${name}`);
  return challengeRecordName(name);
}

/**
 * Order a certificate for `name`; the challenge answers go through the store, where every
 * listener reads them. `replaces`: the CertID of the certificate this one renews (RFC 9773 §5).
 */
export async function orderCertificate(store: AcmeStore, name: string, s: OrderSettings, replaces?: string): Promise<Issued> {
  const accountKey = await store.accountKey(s.directory, () => newKey(s.keyType));
  const accountUrl = await accountUrlFor(store, s, accountKey);
  const client = new acme.Client({ directoryUrl: s.directory, accountKey, accountUrl });
  if (replaces !== undefined) {
    // RFC 9773 §5: the order names the certificate it renews, which lets the CA tie the two
    // together (Let's Encrypt exempts such renewals from its rate limits). acme-client's auto()
    // places the order through this method and has no option for the field.
    const place = client.createOrder.bind(client);
    client.createOrder = (data) => place({ ...data, replaces } as typeof data);
  }
  const key = await newKey(s.keyType);
  const [, csr] = await acme.crypto.createCsr({ commonName: name, altNames: [name] }, key);
  const chain = await client.auto({
    csr,
    ...(s.email !== undefined ? { email: s.email } : {}),
    termsOfServiceAgreed: true,
    challengePriority: [s.challenge],
    ...(s.preferredChain !== undefined ? { preferredChain: s.preferredChain } : {}),
    // acme-client would fetch the answer itself first, through the public DNS; the CA's own
    // validation is what counts, and a name may not resolve to us from here (NAT, split DNS).
    skipChallengeVerification: true,
    challengeCreateFn: async (authz, challenge, keyAuthorization) => {
      // acme-client runs TLS-ALPN-01 (its types name only http-01 and dns-01).
      const type: string = challenge.type;
      if (type === "http-01") return store.setHttp01(challenge.token, keyAuthorization);
      if (type === "dns-01" && s.dns01 !== undefined) {
        // For DNS-01 acme-client hands over the TXT value itself: base64url(SHA-256(key authorization)), §8.4.
        await runDns01Hook(s.dns01, "present", dnsRecordFor(authz.identifier.value, name), keyAuthorization);
        if (s.dns01.propagationDelayMs > 0) await Bun.sleep(s.dns01.propagationDelayMs);
        return;
      }
      if (type !== "tls-alpn-01") throw new Error(`the CA offered challenge ${challenge.type}, not ${s.challenge}`);
      // One name per order: the file is named by ours, never by what the CA sent.
      if (authz.identifier.value.toLowerCase() !== name.toLowerCase()) throw new Error(`the CA sent an authorization for ${JSON.stringify(authz.identifier.value)}, not ${name}`);
      store.setTlsAlpn01(name, await challengeCertificatePem(name, keyAuthorization));
    },
    challengeRemoveFn: async (authz, challenge, keyAuthorization) => {
      const type: string = challenge.type;
      // acme-client swallows a failure here: a record left behind is harmless, and the next order sets its own.
      if (type === "dns-01" && s.dns01 !== undefined) await runDns01Hook(s.dns01, "cleanup", dnsRecordFor(authz.identifier.value, name), keyAuthorization);
      else if (type === "http-01") store.removeHttp01(challenge.token);
      else if (type === "tls-alpn-01") store.removeTlsAlpn01(name);
    },
  });
  return { key, chain };
}

/**
 * Revoke the certificate in `pem` (its first certificate; the file may hold its key first) with
 * RFC 5280 reason `reason` (RFC 8555 §7.6), as the account that ordered it.
 */
export async function revokeCertificate(store: AcmeStore, s: OrderSettings, pem: string, reason: number): Promise<void> {
  const leaf = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(pem)?.[0];
  if (leaf === undefined) throw new Error("no certificate in the stored file");
  const accountKey = await store.accountKey(s.directory, () => newKey(s.keyType));
  const accountUrl = await accountUrlFor(store, s, accountKey);
  const client = new acme.Client({ directoryUrl: s.directory, accountKey, accountUrl });
  await client.revokeCertificate(leaf, { reason });
}
