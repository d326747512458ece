/**
 * TLS to backends (`https://` URLs and their `tls` option): whom to trust, which name to send
 * in SNI and check the certificate against (RFC 6125), or, for tests only, no check at all.
 * Read once per backend spec (at start and on every reload, so a replaced CA file is read
 * again), then given as it is to fetch, Bun.connect, Bun's WebSocket client and the probes.
 */
import { readFileSync } from "node:fs";
import type { SecureClientSessionOptions } from "node:http2";

/** A backend's `tls` as the config writes it. */
export interface UpstreamTlsConfig {
  /** Path of a PEM file of CA certificates to trust instead of the system's. */
  ca?: string;
  /** Paths of a client certificate and its key, for backends that require mutual TLS. */
  cert?: string;
  key?: string;
  servername?: string;
  insecureSkipVerify?: boolean;
}

/** What Bun's TLS clients take (the TLSOptions subset used). */
export interface UpstreamTls {
  readonly ca?: string;
  /** A client certificate (PEM) and its key, presented to the backend. */
  readonly cert?: string;
  readonly key?: string;
  /** SNI, and the name the certificate must carry; the URL's host when absent. */
  readonly serverName?: string;
  readonly rejectUnauthorized: boolean;
}

/** The TLS options for a backend URL: undefined for http://, Bun's defaults (system CAs, verify) for a bare https://. */
export function upstreamTls(url: URL, cfg: UpstreamTlsConfig | undefined): UpstreamTls | undefined {
  if (url.protocol !== "https:") return undefined;
  return {
    ...(cfg?.ca !== undefined ? { ca: readFileSync(cfg.ca, "utf8") } : {}),
    ...(cfg?.cert !== undefined && cfg.key !== undefined ? { cert: readFileSync(cfg.cert, "utf8"), key: readFileSync(cfg.key, "utf8") } : {}),
    ...(cfg?.servername !== undefined ? { serverName: cfg.servername } : {}),
    rejectUnauthorized: !(cfg?.insecureSkipVerify ?? false),
  };
}

/**
 * node:http2's TLS options for an HTTP/2 backend, the same for its requests (engine/h2/) and its
 * probes (health/): ALPN h2 alone (RFC 9113 §3.2: h2 over TLS is agreed in the handshake), the
 * backend's CAs, client certificate and verification, and SNI as the configured name or else
 * the URL's host, sent only when it is a host name (RFC 6066 §3). None for h2c.
 */
export function h2TlsOptions(tls: UpstreamTls | undefined, url: URL): SecureClientSessionOptions {
  if (tls === undefined) return {};
  const options: SecureClientSessionOptions = { ALPNProtocols: ["h2"], rejectUnauthorized: tls.rejectUnauthorized };
  if (tls.ca !== undefined) options.ca = tls.ca;
  if (tls.cert !== undefined) Object.assign(options, { cert: tls.cert, key: tls.key });
  const name = tls.serverName ?? url.hostname.replace(/^\[|\]$/g, "");
  if (!/^[\d.]+$|:/.test(name)) options.servername = name;
  return options;
}

/** The config's words for a backend's TLS, for the reload's list of changes. */
export function describeTls(cfg: UpstreamTlsConfig | undefined): string {
  if (cfg === undefined) return "system CAs";
  const parts = [cfg.ca !== undefined ? `ca ${cfg.ca}` : "system CAs"];
  if (cfg.servername !== undefined) parts.push(`servername ${cfg.servername}`);
  if (cfg.cert !== undefined) parts.push(`client certificate ${cfg.cert}`);
  if (cfg.insecureSkipVerify) parts.push("insecureSkipVerify");
  return parts.join(", ");
}
