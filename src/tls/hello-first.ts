/**
 * Every TLS listener on Bun.listen (the socket engine, TCP mode): a plain TCP listener that reads
 * each ClientHello itself, then starts TLS on the same socket over the bytes it read (Bun's
 * native `upgradeTLS` with `initialData`, the path node:tls takes for a server-side upgrade),
 * with the certificate it chose. Three things Bun's own TLS listener cannot do:
 *   - answer ACME's TLS-ALPN-01 (RFC 8737) on the port that serves real traffic: Bun chooses a
 *     certificate by server name only, before ALPN is seen (measured, Bun 1.4.5: a certificate
 *     set from the ALPN callback is not the one sent), and the CA asks for the real name;
 *   - renew the default certificate (for clients that send no name) in place: Bun.listen takes
 *     it once;
 *   - add certificates per name without an internal interface (node:tls's addContext pointed at
 *     our listener, which this replaces).
 * What a ClientHello gets:
 *   - one offering exactly `acme-tls/1` (§3: the CA offers that one protocol) gets the name's
 *     pending challenge certificate, and the connection ends after the handshake (§3: no data
 *     follows); with none pending it is closed;
 *   - every other one gets the certificate for its server name (exact, then `*.` wildcard, then
 *     the default), with the listener's ALPN and client-certificate rules, and goes on to
 *     `handlers` exactly as a Bun.listen TLS socket would. One the reader cannot read goes to
 *     TLS with the default certificate, so that this listener takes what Bun's takes.
 * Cost, measured (Bun 1.4.5, wrk -c32, a 2-byte answer): the same CPU per handshake as Bun's TLS
 * listener (258 against 261 µs) and per keep-alive request (5.5 µs both); bench/tls.ts has the
 * engine's own figures beside nginx.
 */
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import { createSecureContext } from "node:tls";
import { ClientHelloReader, CLIENT_HELLO_MAX_BYTES, CLIENT_HELLO_TIMEOUT_MS } from "../tcp/client-hello.ts";
import { ProxyHeaderReader, type ProxyAccept, type ProxyEndpoint } from "../net/proxy-protocol.ts";
import type { TlsMaterial } from "./certificates.ts";

/** RFC 8737 §6.2: the ALPN protocol of ACME's TLS-ALPN-01 challenge. */
export const ACME_TLS_ALPN = "acme-tls/1";

/**
 * ALPN's protocol list in its wire form (RFC 7301 §3.1: each name after its length byte), as
 * Bun's TLS options take it: h2 then http/1.1 (RFC 9113 §3.2), or none (HTTP/1.1 only, or TCP).
 */
export function alpnWire(h2: boolean): string | undefined {
  return h2 ? "\x02h2\x08http/1.1" : undefined;
}

/** What the listener asks when a ClientHello offers acme-tls/1 for `serverName` (acme/tls-alpn01.ts answers from the store). */
export interface AlpnChallenges {
  /** Bun's native TLS context for the pending challenge of `serverName`, or undefined when there is none. */
  contextFor(serverName: string | undefined): unknown;
}

/** A listener that orders no certificate over TLS-ALPN-01: an acme-tls/1 handshake is closed. */
export const NO_CHALLENGES: AlpnChallenges = { contextFor: () => undefined };

export interface HelloFirstOptions<T> {
  readonly hostname: string;
  readonly port: number;
  readonly exclusive: boolean;
  readonly reusePort: boolean;
  readonly allowHalfOpen: boolean;
  readonly material: TlsMaterial;
  /** The ALPN list the TLS side offers, in its wire form (alpnWire), or none. */
  readonly alpn: string | undefined;
  /** The TLS sockets' handlers, called as Bun.listen with `tls` would call them. */
  readonly handlers: SocketHandler<T>;
  readonly challenges: AlpnChallenges;
  /** What may change on a reload: the time a client has for its whole ClientHello, how many may be reading one at once, PROXY headers. */
  readonly limits: HelloLimits;
  /** A connection closed for its PROXY header (or for a peer not trusted to send one): counted and logged by the owner. */
  readonly proxyRefused?: (peer: string, detail: string) => void;
}

export interface HelloLimits {
  helloTimeoutMs: number;
  maxPending: number;
  /**
   * listeners[].proxyProtocol: a PROXY header from a trusted peer comes first, before the
   * ClientHello (HAProxy's accept-proxy on an ssl bind); what it names reaches `handlers` as the
   * TLS socket's `data` (PreTls).
   */
  acceptProxy?: ProxyAccept;
}

/** What the TLS socket's `data` holds when `handlers.open` is called, where a PROXY header came first. */
export interface PreTls {
  /** The header's client and the address it connected to; undefined for a LOCAL header (the peer's own stand). */
  readonly proxied: { readonly named: { readonly source: ProxyEndpoint; readonly destination: ProxyEndpoint } | undefined };
}

export interface HelloFirstListener {
  readonly listener: TCPSocketListener<Hello>;
  /** New certificates for new handshakes. */
  renew(m: TlsMaterial): void;
}

/** A connection before TLS: its PROXY header being read (acceptProxy), then its ClientHello, then handed to TLS. */
interface Hello {
  readonly reader: ClientHelloReader;
  readonly chunks: Uint8Array[];
  state: "proxy" | "reading" | "handed";
  proxy: ProxyHeaderReader | undefined;
  pre: PreTls | undefined;
  /** The deadline of the current phase (the PROXY header's, then the ClientHello's). */
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** What `upgradeTLS` takes as `tls` for one certificate: built when the certificates change, never per connection. */
interface UpgradeTls {
  readonly secureContext: unknown;
  readonly ALPNProtocols?: Buffer;
  readonly requestCert?: boolean;
  readonly rejectUnauthorized?: boolean;
}

interface Contexts {
  readonly byName: ReadonlyMap<string, UpgradeTls>;
  readonly fallback: UpgradeTls;
}

/**
 * Native contexts for `m`: one per certificate, shared by its names. Each verifies client
 * certificates itself with tls.clientAuth (measured on Bun's SNI contexts: one without its own
 * CAs failed a valid client certificate).
 */
function contextsOf(m: TlsMaterial, alpn: string | undefined): Contexts {
  const auth = m.clientAuth;
  const make = (cert: string, key: string): UpgradeTls => ({
    secureContext: (createSecureContext({ cert, key, secureOptions: m.secureOptions, ...(auth !== undefined ? { ca: auth.ca } : {}) }) as unknown as { context: unknown }).context,
    ...(alpn !== undefined ? { ALPNProtocols: Buffer.from(alpn, "latin1") } : {}),
    ...(auth !== undefined ? { requestCert: true, rejectUnauthorized: auth.required } : {}),
  });
  const byName = new Map<string, UpgradeTls>();
  const made = new Map<string, UpgradeTls>();
  for (const { serverName, pair } of m.sni) {
    let c = made.get(pair.fingerprint);
    if (c === undefined) made.set(pair.fingerprint, (c = make(pair.cert, pair.key)));
    if (!byName.has(serverName)) byName.set(serverName, c);
  }
  return { byName, fallback: make(m.default.cert, m.default.key) };
}

/** The certificate for a server name: exact, then a `*.` wildcard one label up (RFC 6125 §6.4.3), then the default. */
function pick(c: Contexts, name: string | undefined): UpgradeTls {
  if (name === undefined) return c.fallback;
  const exact = c.byName.get(name);
  if (exact !== undefined) return exact;
  const dot = name.indexOf(".");
  return (dot > 0 ? c.byName.get(`*${name.slice(dot)}`) : undefined) ?? c.fallback;
}

const CHALLENGE_ALPN = Buffer.from(`\x0a${ACME_TLS_ALPN}`, "latin1");

/** The CA's connection: RFC 8737 §3, it closes once the handshake is done; we do too. */
const challengeHandlers: SocketHandler<undefined> = {
  open(s) {
    s.timeout(10);
  },
  handshake(s) {
    s.end();
  },
  data(s) {
    s.end();
  },
  timeout(s) {
    s.end();
  },
  error() {
    // A failed validation handshake: the CA says so to the ACME client; nothing here to keep.
  },
};

/**
 * TLS on the socket, over the bytes already read. Bun throws only for options it refuses, which
 * are ours and made ahead; should it ever, the connection is closed, never the process.
 */
function upgradeOrClose(socket: Socket<Hello>, options: object): void {
  try {
    (socket as unknown as { upgradeTLS(o: object): unknown }).upgradeTLS(options);
  } catch {
    socket.terminate();
  }
}

/**
 * A phase's time limit. 0 (the operator's "no limit of our own" for timeouts.header) is never
 * unbounded before TLS: a ClientHello gets CLIENT_HELLO_TIMEOUT_MS then. A timer of our own per
 * connection, not Bun's socket timeout: that one counts in uSockets' 4-second ticks, so a 1 s
 * limit fired anywhere from 0 to 4 s (measured: a connection closed after 68 ms).
 */
function limitMs(ms: number): number {
  return ms > 0 ? ms : CLIENT_HELLO_TIMEOUT_MS;
}

export function listenHelloFirst<T>(o: HelloFirstOptions<T>): HelloFirstListener {
  let contexts = contextsOf(o.material, o.alpn);
  let pending = 0;

  /** The end of the pre-TLS phase, however it ends: no longer counted as pending. */
  const settle = (_socket: Socket<Hello>, hello: Hello): void => {
    hello.state = "handed";
    hello.proxy = undefined;
    pending--;
    clearTimeout(hello.timer);
    hello.timer = undefined;
  };

  /** The phase's deadline passed: a PROXY header not whole is refused, a ClientHello not whole closed. */
  const expired = (socket: Socket<Hello>, hello: Hello): void => {
    hello.timer = undefined;
    if (hello.state === "proxy") return refuseProxy(socket, hello, "no complete PROXY header in time");
    if (hello.state === "reading") {
      settle(socket, hello);
      socket.end();
    }
  };

  const arm = (socket: Socket<Hello>, hello: Hello, ms: number): void => {
    clearTimeout(hello.timer);
    hello.timer = setTimeout(expired, limitMs(ms), socket, hello);
    hello.timer.unref?.();
  };

  const refuseProxy = (socket: Socket<Hello>, hello: Hello, detail: string): void => {
    settle(socket, hello);
    o.proxyRefused?.(socket.remoteAddress, detail);
    socket.terminate();
  };

  const hand = (socket: Socket<Hello>, hello: Hello, serverName: string | undefined, alpn: readonly string[] | undefined): void => {
    settle(socket, hello);
    const initialData = hello.chunks.length === 1 ? hello.chunks[0]! : Buffer.concat(hello.chunks);
    hello.chunks.length = 0;
    if (alpn !== undefined && alpn.length === 1 && alpn[0] === ACME_TLS_ALPN) {
      const secureContext = o.challenges.contextFor(serverName);
      if (secureContext === undefined) return void socket.end();
      upgradeOrClose(socket, { isServer: true, initialData, data: undefined, tls: { secureContext, ALPNProtocols: CHALLENGE_ALPN }, socket: challengeHandlers });
      return;
    }
    upgradeOrClose(socket, { isServer: true, initialData, data: hello.pre, tls: pick(contexts, serverName), socket: o.handlers });
  };

  /** ClientHello bytes (after the PROXY header, if any). */
  const readHello = (socket: Socket<Hello>, hello: Hello, chunk: Uint8Array): void => {
    hello.chunks.push(chunk);
    const r = hello.reader.push(chunk);
    if (r.state === "need-more") return;
    // Not TLS at all (plain HTTP to the TLS port): Bun's TLS would fail the handshake; we close.
    if (r.state === "not-tls") {
      settle(socket, hello);
      return void socket.end();
    }
    // One our strict reader refuses (an IP address as server name, which wrk and others send
    // though RFC 6066 §3 forbids it) goes to TLS as it would on Bun's own listener, with the
    // default certificate; BoringSSL judges the rest. It is not the CA's.
    if (r.state === "invalid") return hand(socket, hello, undefined, undefined);
    hand(socket, hello, r.serverName, r.alpn);
  };

  const listener = Bun.listen<Hello>({
    hostname: o.hostname,
    port: o.port,
    exclusive: o.exclusive,
    reusePort: o.reusePort,
    allowHalfOpen: o.allowHalfOpen,
    socket: {
      open(socket) {
        const accept = o.limits.acceptProxy;
        // HAProxy's accept-proxy: a peer not trusted to speak for a client is closed before a byte is read.
        if (accept !== undefined && !accept.trusted(socket.remoteAddress)) {
          o.proxyRefused?.(socket.remoteAddress, "the peer is not in trustedProxies");
          return void socket.terminate();
        }
        if (pending >= o.limits.maxPending) return void socket.end();
        pending++;
        const proxy = accept !== undefined ? new ProxyHeaderReader() : undefined;
        const hello: Hello = { reader: new ClientHelloReader(CLIENT_HELLO_MAX_BYTES), chunks: [], state: proxy !== undefined ? "proxy" : "reading", proxy, pre: undefined, timer: undefined };
        socket.data = hello;
        arm(socket, hello, accept !== undefined ? accept.timeoutMs : o.limits.helloTimeoutMs);
      },
      data(socket, chunk) {
        const hello = socket.data;
        // Handed to TLS: this socket sees the encrypted bytes too, which the TLS side has read.
        if (hello === undefined || hello.state === "handed") return;
        if (hello.state === "reading") return readHello(socket, hello, chunk);
        const r = hello.proxy!.push(chunk);
        if (r.state === "need-more") return;
        if (r.state === "invalid") return refuseProxy(socket, hello, r.reason);
        hello.pre = { proxied: { named: r.state === "done" ? { source: r.source, destination: r.destination } : undefined } };
        const rest = hello.proxy!.rest().slice();
        hello.proxy = undefined;
        hello.state = "reading";
        // The ClientHello has its own time, from the end of the header (as a request head does after it).
        arm(socket, hello, o.limits.helloTimeoutMs);
        if (rest.length > 0) readHello(socket, hello, rest);
      },
      close(socket) {
        const hello = socket.data;
        if (hello !== undefined && hello.state !== "handed") settle(socket, hello);
      },
      error() {
        // The close that follows settles it.
      },
    },
  });

  return {
    listener,
    renew(m) {
      contexts = contextsOf(m, o.alpn);
    },
  };
}
