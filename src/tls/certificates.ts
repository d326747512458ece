/**
 * The certificates of `listen.tls` and the CAs of backends' `tls.ca`: read from their PEM files
 * (at start, by `check`, and again on every reload, so that a renewed certificate is picked up
 * without a restart), checked (a certificate, a key that belongs to it), and turned into what
 * Bun's listeners take.
 *
 * Errors name the field and the file, as config errors do; `TlsError` carries every problem.
 */
import { readFileSync } from "node:fs";
import { X509Certificate, createPrivateKey, constants } from "node:crypto";
import type { ErrorCode } from "../errors.ts";

/**
 * `listen.tls` as the schema (config/schema.ts) produces it, declared here by the code that uses
 * it so that TLS does not import the config layer; the balancer passes the parsed value, and the
 * type checker holds the two shapes together there.
 */
export interface ListenTlsConfig {
  readonly cert: string;
  readonly key: string;
  readonly sni: readonly { readonly serverName?: string; readonly cert: string; readonly key: string }[];
  readonly minVersion: "TLSv1.2" | "TLSv1.3";
  readonly clientAuth?: { readonly ca: string; readonly mode: "required" | "optional"; readonly subjectHeader?: string; readonly fingerprintHeader?: string };
}

export class TlsError extends Error {
  readonly code = "SY_TLS_INVALID" satisfies ErrorCode;
  constructor(readonly problems: string[]) {
    super(problems.join("; "));
  }
}

/** One certificate chain and its key, as PEM text, with the DNS names it is for. */
export interface CertificatePair {
  readonly cert: string;
  readonly key: string;
  /** Its subjectAltName DNS entries (RFC 6125 §6.4: the names a client checks). */
  readonly names: readonly string[];
  readonly fingerprint: string;
  readonly validTo: string;
}

/** What a TLS listener is made from. */
export interface TlsMaterial {
  readonly default: CertificatePair;
  /** Server names and their certificates, in config order (the first entry for a name wins). */
  readonly sni: readonly { readonly serverName: string; readonly pair: CertificatePair }[];
  /** OpenSSL options that refuse versions below minVersion. */
  readonly secureOptions: number;
  /** Mutual TLS: the CAs (PEM) a client certificate is verified against, and whether one is required. */
  readonly clientAuth?: { readonly ca: string; readonly required: boolean };
}

/**
 * TLS 1.0 and 1.1 are refused whatever minVersion says (RFC 8996; Bun's default too); "TLSv1.3"
 * refuses 1.2 as well. Bun's listeners take no minVersion option, so this is SSL_OP_NO_*.
 */
function secureOptionsFor(min: ListenTlsConfig["minVersion"]): number {
  let o = constants.SSL_OP_NO_SSLv3 | constants.SSL_OP_NO_TLSv1 | constants.SSL_OP_NO_TLSv1_1;
  if (min === "TLSv1.3") o |= constants.SSL_OP_NO_TLSv1_2;
  return o;
}

/** Read a PEM file, or say why not (the problem completes "<field>: "). */
export function readPem(path: string, what: "certificate" | "key" | "CA certificate", problems: string[], field: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why = code === "ENOENT" ? "file not found" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "is a directory" : (e as Error).message;
    problems.push(`${field}: cannot read ${JSON.stringify(path)}: ${why}`);
    return undefined;
  }
  const marker = what === "key" ? /-----BEGIN [A-Z ]*PRIVATE KEY-----/ : /-----BEGIN CERTIFICATE-----/;
  if (!marker.test(text)) {
    problems.push(`${field}: ${JSON.stringify(path)} is not a PEM ${what === "key" ? "private key" : what} (no "-----BEGIN ${what === "key" ? "PRIVATE KEY" : "CERTIFICATE"}-----")`);
    return undefined;
  }
  return text;
}

/** The PEM blocks of `text` whose label matches, in order. */
export function pemBlocks(text: string, label: RegExp): string {
  const out: string[] = [];
  for (const m of text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g)) if (label.test(m[1]!)) out.push(m[0]);
  return out.join("\n") + "\n";
}

/** A certificate chain and its key from their files, checked to belong together; undefined with the problems said. */
export function readPair(certPath: string, keyPath: string, field: string, problems: string[]): CertificatePair | undefined {
  const certText = readPem(certPath, "certificate", problems, `${field}.cert`);
  const keyText = readPem(keyPath, "key", problems, `${field}.key`);
  if (certText === undefined || keyText === undefined) return undefined;
  // One file may hold both, key and chain (HAProxy's crt, and how acme.storage keeps a name so
  // that a renewal replaces both in one rename): each side takes only its own blocks.
  const cert = certText === keyText ? pemBlocks(certText, /CERTIFICATE/) : certText;
  const key = certText === keyText ? pemBlocks(keyText, /PRIVATE KEY/) : keyText;
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (e) {
    problems.push(`${field}.cert: ${JSON.stringify(certPath)} holds no readable certificate (${(e as Error).message})`);
    return undefined;
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(key))) {
      problems.push(`${field}.key: ${JSON.stringify(keyPath)} is not the key of the certificate in ${JSON.stringify(certPath)}`);
      return undefined;
    }
  } catch (e) {
    problems.push(`${field}.key: ${JSON.stringify(keyPath)} holds no readable private key (${(e as Error).message})`);
    return undefined;
  }
  const names = (x509.subjectAltName ?? "")
    .split(", ")
    .filter((n) => n.startsWith("DNS:"))
    .map((n) => n.slice(4).toLowerCase());
  return { cert, key, names, fingerprint: x509.fingerprint256, validTo: x509.validTo };
}

/** Read and check every file of a listen.tls config; throws TlsError with every problem. */
export function readTlsMaterial(cfg: ListenTlsConfig, field = "listen.tls"): TlsMaterial {
  const problems: string[] = [];
  const def = readPair(cfg.cert, cfg.key, field, problems);
  const sni: { serverName: string; pair: CertificatePair }[] = [];
  cfg.sni.forEach((entry, i) => {
    const pair = readPair(entry.cert, entry.key, `${field}.sni[${i}]`, problems);
    if (pair === undefined) return;
    const names = entry.serverName !== undefined ? [entry.serverName.toLowerCase()] : pair.names;
    if (names.length === 0) {
      problems.push(`${field}.sni[${i}]: the certificate in ${JSON.stringify(entry.cert)} names no DNS name (subjectAltName); give a serverName`);
    }
    for (const serverName of names) if (!sni.some((s) => s.serverName === serverName)) sni.push({ serverName, pair });
  });
  const ca = cfg.clientAuth !== undefined ? readPem(cfg.clientAuth.ca, "CA certificate", problems, `${field}.clientAuth.ca`) : undefined;
  if (problems.length > 0 || def === undefined) throw new TlsError(problems);
  return {
    default: def, sni, secureOptions: secureOptionsFor(cfg.minVersion),
    ...(ca !== undefined ? { clientAuth: { ca, required: cfg.clientAuth!.mode === "required" } } : {}),
  };
}

/** The problems readTlsMaterial would throw, for config validation (empty when fine). */
export function tlsProblems(cfg: ListenTlsConfig, field = "listen.tls"): string[] {
  try {
    readTlsMaterial(cfg, field);
    return [];
  } catch (e) {
    if (e instanceof TlsError) return e.problems;
    throw e;
  }
}

/**
 * Bun.serve's `tls`: the default first (for clients that send no name, or one not listed), then
 * one entry per server name; Bun picks by SNI.
 */
export function serveTls(m: TlsMaterial): import("bun").TLSOptions[] {
  return [
    { cert: m.default.cert, key: m.default.key, secureOptions: m.secureOptions },
    ...m.sni.map((s) => ({ serverName: s.serverName, cert: s.pair.cert, key: s.pair.key, secureOptions: m.secureOptions })),
  ];
}

/** Whether two readings hold the same certificates (a reload with nothing renewed changes nothing). */
export function sameMaterial(a: TlsMaterial, b: TlsMaterial): boolean {
  const id = (m: TlsMaterial) => JSON.stringify([m.default.fingerprint, m.secureOptions, m.sni.map((s) => [s.serverName, s.pair.fingerprint, s.pair.key.length]), m.clientAuth ?? null]);
  return id(a) === id(b);
}
