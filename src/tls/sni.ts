/**
 * Certificates by server name (SNI) on a Bun.listen listener: the socket engine and TCP mode.
 *
 * Bun.listen takes one certificate (its `tls` is one object; Bun.serve's may be a list), and its
 * way to add more, the native `addServerName` behind node:tls's `Server.addContext`, is not
 * exported. node:tls's addContext calls it on `this._handle`, which for a node:tls server is a
 * Bun.listen listener like ours; so a node:tls Server lends us its addContext, pointed at our
 * listener. Adding a name again replaces its certificate: that is how a reload renews them.
 * This is an internal interface of Bun 1.4.5: test/tls/sni.test.ts pins it (re-run on upgrade).
 */
import { createServer } from "node:tls";
import type { TlsMaterial } from "./certificates.ts";

interface ContextAdder {
  _handle: unknown;
  addContext(hostname: string, context: { cert: string; key: string; secureOptions?: number; ca?: string; requestCert?: boolean; rejectUnauthorized?: boolean }): void;
}

/**
 * Mutual TLS (tls.clientAuth): ask for a client certificate, verify it against the configured
 * CAs, and refuse the handshake without a valid one when it is required. Every context needs
 * them, the ones added per server name included: a context switched to by SNI verifies with its
 * own CAs (measured, Bun 1.4.5: without them a valid client certificate failed over SNI).
 */
function clientAuthOf(m: TlsMaterial): { ca?: string; requestCert?: boolean; rejectUnauthorized?: boolean } {
  const c = m.clientAuth;
  return c === undefined ? {} : { ca: c.ca, requestCert: true, rejectUnauthorized: c.required };
}

/** Give `listener` a certificate per server name; the default's own names too, so a reload can renew it for them. */
export function addServerNames(listener: object, m: TlsMaterial): void {
  const lender = createServer({}) as unknown as ContextAdder;
  lender._handle = listener;
  try {
    const named = new Set<string>();
    for (const { serverName, pair } of m.sni) {
      named.add(serverName);
      lender.addContext(serverName, { cert: pair.cert, key: pair.key, secureOptions: m.secureOptions, ...clientAuthOf(m) });
    }
    for (const name of m.default.names) {
      if (!named.has(name)) lender.addContext(name, { cert: m.default.cert, key: m.default.key, secureOptions: m.secureOptions, ...clientAuthOf(m) });
    }
  } finally {
    lender._handle = null;
  }
}

/**
 * ALPN's protocol list in its wire form (RFC 7301 §3.1: each name after its length byte), as
 * Bun's TLSOptions.ALPNProtocols takes it (it refuses an array). The server picks the first of
 * these the client also offers; names added by addServerNames share it (measured, Bun 1.4.5).
 */
const ALPN_H2_HTTP11 = "\x02h2\x08http/1.1";

/** The ALPN list a TLS listener offers, wire form: h2 then http/1.1, or none (HTTP/1.1 only, or TCP). */
export function alpnWire(h2: boolean): string | undefined {
  return h2 ? ALPN_H2_HTTP11 : undefined;
}

/**
 * Bun.listen's `tls`: the default certificate (for clients that send no name, or one not
 * listed); `h2`: offer HTTP/2 before HTTP/1.1 by ALPN.
 */
export function listenTls(m: TlsMaterial, h2 = false): import("bun").TLSOptions {
  return { cert: m.default.cert, key: m.default.key, secureOptions: m.secureOptions, ...clientAuthOf(m), ...(h2 ? { ALPNProtocols: ALPN_H2_HTTP11 } : {}) };
}
