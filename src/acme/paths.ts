/**
 * Where ACME's files live in `acme.storage`, and what a listener with `tls.acme` serves: pure
 * functions of the config, so that every process (the owner that orders, each worker that only
 * serves) computes the same paths without talking to the others.
 *
 * Layout (every file mode 0600, directories 0700):
 *   accounts/<host of the directory>.key   the account key (PEM, PKCS#8)
 *   accounts/<host of the directory>.json  the account URL (RFC 8555 §7.3, the `kid` of later requests)
 *   certs/<name>.pem                       the name's private key, then its certificate chain, in
 *                                          (a wildcard's name with "wildcard_" for its "*")
 *                                          one file so that a renewal replaces both at once (rename)
 *   locks/<name>.lock                      held by the replica ordering the name (store.ts)
 *   http-01/<token>                        a pending HTTP-01 key authorization (any replica answers it)
 *   tls-alpn-01/<name>.pem                 a pending TLS-ALPN-01 challenge certificate and its key
 *                                          (RFC 8737 §3; any replica answers it)
 */
import { join } from "node:path";

/** A name as its files are named: lower case, a wildcard's `*` spelled out (as Caddy does) so that no shell globs it. */
function stem(name: string): string {
  return name.toLowerCase().replace(/^\*\./, "wildcard_.");
}

/** The one file that holds a name's key and certificate chain. */
export function certFile(storage: string, name: string): string {
  return join(storage, "certs", `${stem(name)}.pem`);
}

export function lockFile(storage: string, name: string): string {
  return join(storage, "locks", `${stem(name)}.lock`);
}

/** RFC 8555 §8.3: a token is base64url, so it names a file safely; anything else is refused. */
export const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

export function http01File(storage: string, token: string): string {
  return join(storage, "http-01", token);
}

/** The challenge certificate (key, then certificate) served to acme-tls/1 handshakes for `name`. */
export function tlsAlpn01File(storage: string, name: string): string {
  return join(storage, "tls-alpn-01", `${name.toLowerCase()}.pem`);
}

/** Files per CA: an account belongs to one directory. */
export function accountFiles(storage: string, directory: string): { key: string; url: string } {
  const id = new URL(directory).host.replace(/[^A-Za-z0-9.-]/g, "_");
  return { key: join(storage, "accounts", `${id}.key`), url: join(storage, "accounts", `${id}.json`) };
}

/** A route as far as its names go. */
interface HostMatch {
  readonly name: string;
  readonly match: { readonly host?: string | readonly string[]; readonly sni?: unknown };
}

/**
 * A listener's names when `acme.domains` is not given: the exact `match.host` names of the
 * routes that serve it (its `routes`, or every HTTP route). A wildcard cannot be had over HTTP-01
 * (RFC 8555 §7.1.3: only DNS-01 proves a wildcard), and an IP address is not a DNS name.
 */
export function routeHostNames(routes: readonly HostMatch[], only: readonly string[] | undefined): string[] {
  const chosen = only === undefined ? routes.filter((r) => r.match.sni === undefined) : only.map((n) => routes.find((r) => r.name === n)).filter((r) => r !== undefined);
  const names: string[] = [];
  for (const r of chosen) {
    const hosts = r.match.host === undefined ? [] : typeof r.match.host === "string" ? [r.match.host] : r.match.host;
    for (const h of hosts) {
      const n = h.toLowerCase().replace(/\.$/, "");
      if (n.startsWith("*.") || n.startsWith("[") || /^\d+(\.\d+){3}$/.test(n) || !n.includes(".") && n !== "localhost") continue;
      if (!names.includes(n)) names.push(n);
    }
  }
  return names;
}

/**
 * The `tls` a listener with `acme` serves: its names' files in the store, each by its name
 * (SNI), the first also as the default; `sni` entries of its own come first and win.
 */
export function acmeTls<T extends { readonly cert?: string; readonly key?: string; readonly sni: readonly { serverName?: string; cert: string; key: string }[] }>(
  tls: T,
  storage: string,
  names: readonly string[],
): Omit<T, "cert" | "key"> & { cert: string; key: string } {
  const first = certFile(storage, names[0]!);
  return {
    ...tls,
    cert: tls.cert ?? first,
    key: tls.key ?? first,
    sni: [...tls.sni, ...names.map((n) => ({ serverName: n, cert: certFile(storage, n), key: certFile(storage, n) }))],
  };
}
