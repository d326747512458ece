/**
 * The hello-first TLS listener (src/tls/hello-first.ts) with stored TLS-ALPN-01 challenges
 * (src/acme/tls-alpn01.ts), driven directly: handlers that answer one fixed HTTP/1.1 response,
 * certificates from a throwaway PKI, a temporary store holding challenge certificates, and real
 * TLS clients (node:tls, openssl s_client, curl) on loopback. What RFC 8737 §3 asks: a hello
 * offering only `acme-tls/1` for a pending name gets that name's challenge certificate and
 * nothing more; every other client is served as Bun's own TLS listener would serve it.
 * Last, the socket engine's listener in this mode against a normal TLS listener: the same
 * requests, HTTP/1.1 and HTTP/2, reach the backend the same. (The full round trip against a CA
 * is test/acme/pebble.test.ts.)
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import tls from "node:tls";
import { createHash, X509Certificate } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Socket, SocketHandler } from "bun";
import * as x509 from "@peculiar/x509";
import acme from "acme-client";
import { alpnWire, listenHelloFirst, NO_CHALLENGES, type HelloFirstListener, type HelloLimits, type PreTls } from "../../src/tls/hello-first.ts";
import { encodeProxyHeader, proxyAccept } from "../../src/net/proxy-protocol.ts";
import net from "node:net";
import { StoredAlpnChallenges, challengeCertificatePem } from "../../src/acme/tls-alpn01.ts";
import { tlsAlpn01File } from "../../src/acme/paths.ts";
import { readTlsMaterial, type TlsMaterial } from "../../src/tls/certificates.ts";
import { curl, makePki, type Issued, type Pki } from "../helpers/pki.ts";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { PLACEHOLDER_ORG } from "../../src/acme/placeholder.ts";

const ACME_IDENTIFIER_OID = "1.3.6.1.5.5.7.1.31";
const ANSWER = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

let pki: Pki;
let certs: Record<"def" | "other" | "a" | "wild" | "alice", Issued>;
let store: string;
beforeAll(async () => {
  pki = await makePki();
  certs = {
    def: await pki.issue("default", ["default.test"]),
    other: await pki.issue("other", ["default.test"], { cn: "renewed.test" }),
    a: await pki.issue("a", ["a.test"]),
    wild: await pki.issue("wild", ["*.w.test"]),
    alice: await pki.issue("alice", ["alice.test"], { cn: "alice" }),
  };
  store = await mkdtemp(join(tmpdir(), "switchyard-alpn-store-"));
}, 30_000);
afterAll(async () => {
  await pki.remove();
  await rm(store, { recursive: true, force: true });
});

function material(opts: { def?: Issued; clientAuth?: "required" | "optional" } = {}): TlsMaterial {
  const def = opts.def ?? certs.def;
  return readTlsMaterial({
    cert: def.cert,
    key: def.key,
    sni: [
      { cert: certs.a.cert, key: certs.a.key },
      { cert: certs.wild.cert, key: certs.wild.key },
    ],
    minVersion: "TLSv1.2",
    ...(opts.clientAuth !== undefined ? { clientAuth: { ca: pki.ca, mode: opts.clientAuth } } : {}),
  });
}

/** Write a pending challenge for `name` into the store as order.ts does: whole, renamed into place. */
async function writeChallenge(name: string, keyAuthorization: string): Promise<void> {
  const path = tlsAlpn01File(store, name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(`${path}.tmp`, await challengeCertificatePem(name, keyAuthorization));
  renameSync(`${path}.tmp`, path);
}

/** What the normal handlers saw: every open, and every request answered. */
interface Calls {
  opens: number;
  requests: number;
}

interface Started {
  readonly port: number;
  readonly calls: Calls;
  readonly hf: HelloFirstListener;
  readonly challenges: StoredAlpnChallenges;
}

const listeners: HelloFirstListener[] = [];
afterEach(() => {
  for (const l of listeners.splice(0)) l.listener.stop(true);
});

function start(opts: { material?: TlsMaterial; alpn?: string; names?: string[]; limits?: Partial<HelloLimits> } = {}): Started {
  const calls: Calls = { opens: 0, requests: 0 };
  const handlers: SocketHandler<undefined> = {
    open() {
      calls.opens++;
    },
    data(s) {
      calls.requests++;
      s.write(ANSWER);
      s.end();
    },
  };
  const challenges = new StoredAlpnChallenges(store, { tls: { acme: { challenge: "tls-alpn-01", domains: opts.names ?? ["a.test", "c.test"] } } });
  const hf = listenHelloFirst<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    exclusive: false,
    reusePort: false,
    allowHalfOpen: false,
    material: opts.material ?? material(),
    alpn: opts.alpn,
    handlers,
    challenges,
    limits: { helloTimeoutMs: 1000, maxPending: 1000, ...opts.limits },
  });
  listeners.push(hf);
  return { port: hf.listener.port, calls, hf, challenges };
}

interface Outcome {
  /** The certificate the server sent, when the handshake got that far. */
  cert?: X509Certificate;
  /** The negotiated protocol: a name, or false for none. */
  alpn?: string | false | null;
  secure: boolean;
  /** What came back after the request, if one was sent. */
  body: string;
  error?: string;
}

/**
 * One node:tls client: connect and, once secure, send a request (`request`), wait for the server
 * to close (`serverCloses`), or else close itself; resolves at the close.
 */
function connect(port: number, o: { servername?: string; ALPNProtocols?: string[]; request?: boolean; serverCloses?: boolean } = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const out: Outcome = { secure: false, body: "" };
    const s = tls.connect({
      host: "127.0.0.1",
      port,
      rejectUnauthorized: false,
      ...(o.servername !== undefined ? { servername: o.servername } : {}),
      ...(o.ALPNProtocols !== undefined ? { ALPNProtocols: o.ALPNProtocols } : {}),
    });
    const timer = setTimeout(() => {
      out.error ??= "the connection was not closed within 10 s";
      s.destroy();
    }, 10_000);
    s.on("secureConnect", () => {
      out.secure = true;
      out.alpn = s.alpnProtocol;
      const raw = s.getPeerCertificate(true)?.raw;
      if (raw !== undefined) out.cert = new X509Certificate(raw);
      if (o.request === true) s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      else if (o.serverCloses !== true) s.end();
    });
    s.on("data", (d: Buffer) => (out.body += d.toString("latin1")));
    s.on("error", (e: Error) => (out.error ??= e.message));
    s.on("close", () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

const fingerprint = (i: Issued) => new X509Certificate(readFileSync(i.cert)).fingerprint256;

/** The acmeIdentifier extension of a challenge certificate: critical, OCTET STRING of SHA-256(keyAuthorization). */
function expectChallengeCertificate(cert: X509Certificate, name: string, keyAuthorization: string): void {
  expect(cert.subject).toBe(`CN=${name}`);
  expect(cert.subjectAltName).toBe(`DNS:${name}`);
  const parsed = new x509.X509Certificate(cert.raw);
  const ext = parsed.getExtension(ACME_IDENTIFIER_OID);
  expect(ext).not.toBeNull();
  expect(ext!.critical).toBe(true);
  const digest = createHash("sha256").update(keyAuthorization).digest();
  expect(Buffer.from(ext!.value)).toEqual(Buffer.concat([Buffer.from([0x04, 0x20]), digest]));
  // And as the CA's side of acme-client reads it.
  expect(acme.crypto.isAlpnCertificateAuthorizationValid(cert.toString(), keyAuthorization)).toBe(true);
  expect(acme.crypto.isAlpnCertificateAuthorizationValid(cert.toString(), `${keyAuthorization}x`)).toBe(false);
}

/** A raw TCP client: what it received, and when it saw the close. */
function raw(port: number, send?: Uint8Array | string): { closed: Promise<{ received: number; at: number }>; socket: Promise<Socket<undefined>> } {
  let received = 0;
  let done!: (r: { received: number; at: number }) => void;
  const closed = new Promise<{ received: number; at: number }>((r) => (done = r));
  const socket = Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      open(s) {
        if (send !== undefined) s.write(send);
      },
      data(_s, d) {
        received += d.length;
      },
      close() {
        done({ received, at: performance.now() });
      },
      end(s) {
        s.end();
      },
      error() {},
    },
  });
  return { closed, socket };
}

describe("the CA's handshake (acme-tls/1 alone)", () => {
  test("a pending name gets its challenge certificate, acme-tls/1 is negotiated, and the server closes; the normal handlers never see it", async () => {
    await writeChallenge("a.test", "token-1.thumbprint-1");
    const { port, calls } = start({ alpn: alpnWire(true) });
    const got = await connect(port, { servername: "a.test", ALPNProtocols: ["acme-tls/1"], serverCloses: true });
    expect(got.secure).toBe(true);
    expect(got.alpn).toBe("acme-tls/1");
    expectChallengeCertificate(got.cert!, "a.test", "token-1.thumbprint-1");
    // The close came from the server: the client sent nothing and waited.
    expect(got.error).toBeUndefined();
    expect(got.body).toBe("");
    expect(calls).toEqual({ opens: 0, requests: 0 });
  });

  test("the name's letter case does not matter (server names are read lower-cased)", async () => {
    await writeChallenge("a.test", "token-case.thumbprint");
    const { port } = start();
    const got = await connect(port, { servername: "A.Test", ALPNProtocols: ["acme-tls/1"], serverCloses: true });
    expectChallengeCertificate(got.cert!, "a.test", "token-case.thumbprint");
  });

  test("no challenge pending for a listener name, a name not the listener's, or no server name: closed without a certificate", async () => {
    await writeChallenge("b.test", "token-b.thumbprint");
    rmSync(tlsAlpn01File(store, "c.test"), { force: true });
    const { port, calls } = start({ names: ["a.test", "c.test"] });
    for (const servername of ["c.test", "b.test", undefined]) {
      const got = await connect(port, { ...(servername !== undefined ? { servername } : {}), ALPNProtocols: ["acme-tls/1"], serverCloses: true });
      expect(got.secure).toBe(false);
      expect(got.cert).toBeUndefined();
      expect(got.error).toBeDefined();
    }
    expect(calls).toEqual({ opens: 0, requests: 0 });
  });

  test("a reload that changes the challenge or the names: answered from then on as the new config says", async () => {
    await writeChallenge("a.test", "token-reload.thumbprint");
    const { port, challenges } = start({ names: ["a.test"] });
    const acmeOnly = { servername: "a.test", ALPNProtocols: ["acme-tls/1"], serverCloses: true };
    expectChallengeCertificate((await connect(port, acmeOnly)).cert!, "a.test", "token-reload.thumbprint");
    // http-01 now: a.test's pending file is no longer this listener's to answer.
    challenges.update(store, { tls: { acme: { challenge: "http-01", domains: ["a.test"] } } });
    expect((await connect(port, acmeOnly)).cert).toBeUndefined();
    // Back to tls-alpn-01; then a.test dropped from the names; then no acme at all.
    challenges.update(store, { tls: { acme: { challenge: "tls-alpn-01", domains: ["a.test"] } } });
    expectChallengeCertificate((await connect(port, acmeOnly)).cert!, "a.test", "token-reload.thumbprint");
    challenges.update(store, { tls: { acme: { challenge: "tls-alpn-01", domains: ["c.test"] } } });
    expect((await connect(port, acmeOnly)).cert).toBeUndefined();
    challenges.update(undefined, {});
    expect((await connect(port, acmeOnly)).cert).toBeUndefined();
  });

  test("a client offering acme-tls/1 with http/1.1 is not the CA: it gets the real certificate and its answer", async () => {
    await writeChallenge("a.test", "token-2.thumbprint");
    const { port, calls } = start();
    const got = await connect(port, { servername: "a.test", ALPNProtocols: ["acme-tls/1", "http/1.1"], request: true });
    expect(got.secure).toBe(true);
    expect(got.cert!.fingerprint256).toBe(fingerprint(certs.a));
    expect(new x509.X509Certificate(got.cert!.raw).getExtension(ACME_IDENTIFIER_OID)).toBeNull();
    expect(got.body).toBe(ANSWER);
    expect(calls).toEqual({ opens: 1, requests: 1 });
  });

  test("a challenge replaced in the store is served anew; one removed is no longer served", async () => {
    await writeChallenge("a.test", "token-old.thumbprint");
    const { port } = start();
    expectChallengeCertificate((await connect(port, { servername: "a.test", ALPNProtocols: ["acme-tls/1"], serverCloses: true })).cert!, "a.test", "token-old.thumbprint");
    await writeChallenge("a.test", "token-new.thumbprint");
    expectChallengeCertificate((await connect(port, { servername: "a.test", ALPNProtocols: ["acme-tls/1"], serverCloses: true })).cert!, "a.test", "token-new.thumbprint");
    rmSync(tlsAlpn01File(store, "a.test"));
    const gone = await connect(port, { servername: "a.test", ALPNProtocols: ["acme-tls/1"], serverCloses: true });
    expect(gone.cert).toBeUndefined();
    expect(gone.secure).toBe(false);
  });
});

/**
 * A loopback relay in front of `port` that passes the client's first bytes (its ClientHello) on
 * in pieces of `piece` bytes, a few milliseconds apart, so that the listener reads the hello
 * in several chunks; everything after goes through as it comes.
 */
function slicingRelay(port: number, piece: number): { port: number; stop(): void } {
  type Pair = { up?: Socket<undefined>; chain: Promise<void>; first: boolean; closed: boolean };
  const relay = Bun.listen<Pair>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(client) {
        const pair: Pair = { chain: Promise.resolve(), first: true, closed: false };
        client.data = pair;
        pair.chain = Bun.connect({
          hostname: "127.0.0.1",
          port,
          socket: {
            data(_u, d) {
              client.write(d);
            },
            close() {
              client.end();
            },
            error() {},
          },
        }).then((up) => {
          pair.up = up;
          if (pair.closed) up.end();
        });
      },
      data(client, d) {
        const pair = client.data;
        const bytes = new Uint8Array(d);
        const first = pair.first;
        pair.first = false;
        pair.chain = pair.chain.then(async () => {
          if (!first) return void pair.up?.write(bytes);
          for (let at = 0; at < bytes.length; at += piece) {
            pair.up?.write(bytes.subarray(at, at + piece));
            await Bun.sleep(5);
          }
        });
      },
      close(client) {
        client.data.closed = true;
        void client.data.chain.then(() => client.data.up?.end());
      },
      error() {},
    },
  });
  return { port: relay.port, stop: () => relay.stop(true) };
}

describe("a ClientHello read in several chunks", () => {
  test("is handed to TLS whole: the CA's handshake and a normal request both work", async () => {
    await writeChallenge("a.test", "token-sliced.thumbprint");
    const { port, calls } = start();
    const relay = slicingRelay(port, 40);
    try {
      const ca = await connect(relay.port, { servername: "a.test", ALPNProtocols: ["acme-tls/1"], serverCloses: true });
      expect(ca.alpn).toBe("acme-tls/1");
      expectChallengeCertificate(ca.cert!, "a.test", "token-sliced.thumbprint");
      const got = await connect(relay.port, { servername: "x.w.test", request: true });
      expect(got.cert!.fingerprint256).toBe(fingerprint(certs.wild));
      expect(got.body).toBe(ANSWER);
      expect(calls.requests).toBe(1);
    } finally {
      relay.stop();
    }
  });
});

/** openssl s_client with `args`: one request, then everything it printed (certificate, protocol, answer). */
async function sClient(port: number, ...args: string[]): Promise<string> {
  const p = Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-ign_eof", ...args], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  p.stdin.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  await p.stdin.end();
  const timer = setTimeout(() => p.kill(), 10_000);
  const out = await new Response(p.stdout).text();
  clearTimeout(timer);
  await p.exited;
  return out;
}

describe("normal clients", () => {
  test("exact server name, a *. wildcard one, an unknown name and none: each its certificate, each answered", async () => {
    const { port, calls } = start();
    const cases: [string | undefined, Issued][] = [
      ["a.test", certs.a],
      ["x.w.test", certs.wild],
      ["unknown.test", certs.def],
      // A wildcard covers one label only (RFC 6125 §6.4.3).
      ["y.x.w.test", certs.def],
      [undefined, certs.def],
    ];
    for (const [servername, expected] of cases) {
      const got = await connect(port, { ...(servername !== undefined ? { servername } : {}), request: true });
      expect(got.cert?.fingerprint256).toBe(fingerprint(expected));
      expect(got.body).toBe(ANSWER);
    }
    expect(calls).toEqual({ opens: cases.length, requests: cases.length });
  });

  test("an IP address as server name (what wrk sends; the strict reader refuses it) gets the default certificate and its answer", async () => {
    const { port, calls } = start();
    const out = await sClient(port, "-servername", "127.0.0.1");
    expect(out).toMatch(/subject=\s*CN\s*=\s*default\.test/);
    expect(out).toContain(ANSWER.split("\r\n")[0]!);
    expect(out).toContain("\r\n\r\nok");
    expect(calls.requests).toBe(1);
  });

  test("TLS 1.2 clients are served; minVersion TLSv1.3 refuses them", async () => {
    const { port } = start();
    const out = await sClient(port, "-servername", "a.test", "-tls1_2");
    expect(out).toMatch(/Protocol\s*:\s*TLSv1\.2/);
    expect(out).toMatch(/subject=\s*CN\s*=\s*a\.test/);
    expect(out).toContain("\r\n\r\nok");
    const strict = start({ material: readTlsMaterial({ cert: certs.def.cert, key: certs.def.key, sni: [], minVersion: "TLSv1.3" }) });
    const refused = await sClient(strict.port, "-servername", "a.test", "-tls1_2");
    expect(refused).not.toContain("\r\n\r\nok");
    expect(refused).not.toMatch(/subject=/);
    expect(await sClient(strict.port, "-servername", "a.test", "-tls1_3")).toContain("\r\n\r\nok");
  });

  test("ALPN: h2 chosen when the listener offers h2 and http/1.1; none when it offers none", async () => {
    const h2 = start({ alpn: alpnWire(true) });
    expect((await connect(h2.port, { servername: "a.test", ALPNProtocols: ["h2", "http/1.1"] })).alpn).toBe("h2");
    expect((await connect(h2.port, { servername: "a.test", ALPNProtocols: ["http/1.1"] })).alpn).toBe("http/1.1");
    const plain = start({ alpn: alpnWire(false) });
    const got = await connect(plain.port, { servername: "a.test", ALPNProtocols: ["h2", "http/1.1"], request: true });
    expect(got.secure).toBe(true);
    expect(got.alpn).toBe(false);
    expect(got.body).toBe(ANSWER);
  });

  test("renew: new handshakes get the new certificates", async () => {
    const { port, hf } = start();
    expect((await connect(port)).cert!.fingerprint256).toBe(fingerprint(certs.def));
    hf.renew(material({ def: certs.other }));
    const got = await connect(port, { request: true });
    expect(got.cert!.fingerprint256).toBe(fingerprint(certs.other));
    expect(got.body).toBe(ANSWER);
    // The SNI entries came along.
    expect((await connect(port, { servername: "a.test" })).cert!.fingerprint256).toBe(fingerprint(certs.a));
  });

  test("mutual TLS: with a client certificate required, one without fails and one the CA signed is answered", async () => {
    const { port, calls } = start({ material: material({ clientAuth: "required" }) });
    const base = ["--cacert", pki.ca, "--resolve", `a.test:${port}:127.0.0.1`, `https://a.test:${port}/`];
    expect((await curl(base)).code).not.toBe(0);
    const ok = await curl(["--cert", certs.alice.cert, "--key", certs.alice.key, ...base]);
    expect(ok.code).toBe(0);
    expect(ok.body).toBe("ok");
    expect(calls.requests).toBe(1);
    // Optional: a client without one is answered too.
    const optional = start({ material: material({ clientAuth: "optional" }) });
    const none = await curl(["--cacert", pki.ca, "--resolve", `a.test:${optional.port}:127.0.0.1`, `https://a.test:${optional.port}/`]);
    expect(none.code).toBe(0);
    expect(none.body).toBe("ok");
  });
});

describe("before TLS", () => {
  test("plain HTTP to the port: closed without an answer", async () => {
    const { port, calls } = start();
    const { closed } = raw(port, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
    expect((await closed).received).toBe(0);
    expect(calls).toEqual({ opens: 0, requests: 0 });
  });

  test("a client that sends nothing, or half a ClientHello, is closed after helloTimeoutMs", async () => {
    const { port, calls } = start({ limits: { helloTimeoutMs: 1000 } });
    const t0 = performance.now();
    const silent = raw(port);
    const half = raw(port, new Uint8Array([22, 3, 1, 0, 200, 1, 0, 0, 196]));
    const [a, b] = await Promise.all([silent.closed, half.closed]);
    // Not closed at once: it was the timeout (no upper bound asserted, the machine is shared).
    expect(a.at - t0).toBeGreaterThanOrEqual(900);
    expect(b.at - t0).toBeGreaterThanOrEqual(900);
    expect(a.received + b.received).toBe(0);
    expect(calls.opens).toBe(0);
  });

  test("maxPending reached: a further connection is closed at once, while the one pending is still open; room again once it goes", async () => {
    const { port } = start({ limits: { helloTimeoutMs: 30_000, maxPending: 1 } });
    const first = raw(port);
    const firstSocket = await first.socket;
    let firstClosed = false;
    void first.closed.then(() => (firstClosed = true));
    // Accepted in order: the first is pending when the second opens.
    const refused = await raw(port).closed;
    expect(refused.received).toBe(0);
    expect(firstClosed).toBe(false);
    // The pending one leaves: a real client gets through again.
    firstSocket.end();
    await first.closed;
    let got: Outcome | undefined;
    for (let i = 0; i < 50 && got?.body !== ANSWER; i++) got = await connect(port, { servername: "a.test", request: true });
    expect(got!.body).toBe(ANSWER);
  }, 20_000);
});

describe("in the socket engine (tls.acme.challenge: tls-alpn-01)", () => {
  const rigs: TestRig[] = [];
  afterEach(async () => {
    for (const r of rigs.splice(0)) await r.stop();
  });

  /** A rig on the socket engine: a normal TLS listener, or one whose certificates come by ACME with TLS-ALPN-01. */
  async function rig(kind: "plain-tls" | "tls-alpn-01"): Promise<TestRig> {
    const tlsCfg = kind === "plain-tls"
      ? { cert: certs.a.cert, key: certs.a.key }
      // Nobody answers there: only serving is tested, with the placeholder certificate.
      : { acme: { directory: "https://127.0.0.1:9/directory", domains: ["a.test"], challenge: "tls-alpn-01" } };
    const r = await startRig(1, {
      engine: "socket",
      ...(kind === "tls-alpn-01" ? { acme: { storage: await mkdtemp(join(store, "rig-")) } } : {}),
      listen: { host: "127.0.0.1", port: 0, tls: tlsCfg },
    });
    rigs.push(r);
    return r;
  }

  /** What the backend saw of one request over curl (HTTP/1.1 or HTTP/2), less what differs by port. */
  async function echo(r: TestRig, version: "--http1.1" | "--http2"): Promise<{ code: number; alpn: string | undefined; subject: string | undefined; seen: unknown }> {
    const port = r.balancer.port;
    const res = await curl([
      "-k", version, "--resolve", `a.test:${port}:127.0.0.1`, "-H", "X-Test: one", "-H", "User-Agent: hello-first-test",
      "--data-binary", "a body", `https://a.test:${port}/echo/x?q=1`,
    ]);
    const alpn = /ALPN: server accepted (\S+)/.exec(res.verbose)?.[1];
    const subject = /subject: (.*)/.exec(res.verbose)?.[1];
    if (res.code !== 0) return { code: res.code, alpn, subject, seen: res.verbose };
    const e = JSON.parse(res.body) as { method: string; path: string; query: string; headers: [string, string][]; bodyLength: number; bodySha256: string };
    const varies = new Set(["host", "x-forwarded-port", "x-forwarded-host", "forwarded", "x-request-id", "traceparent"]);
    return {
      code: 0, alpn, subject,
      seen: { method: e.method, path: e.path, query: e.query, bodyLength: e.bodyLength, bodySha256: e.bodySha256, headers: e.headers.filter(([k]) => !varies.has(k)).sort() },
    };
  }

  test("HTTP/1.1 and HTTP/2 (ALPN h2) are proxied as by the normal TLS listener, with the placeholder certificate", async () => {
    const normal = await rig("plain-tls");
    const alpn = await rig("tls-alpn-01");
    for (const version of ["--http1.1", "--http2"] as const) {
      const want = await echo(normal, version);
      const got = await echo(alpn, version);
      expect(want.code).toBe(0);
      expect(got.code).toBe(0);
      expect(got.alpn).toBe(version === "--http2" ? "h2" : "http/1.1");
      expect(got.alpn).toBe(want.alpn);
      expect(got.seen).toEqual(want.seen);
      expect(got.subject).toContain(`O=${PLACEHOLDER_ORG}`);
      expect(got.subject).toContain("CN=a.test");
    }
  }, 30_000);
});

/**
 * A PROXY header before the ClientHello (limits.acceptProxy): read first, what it names handed
 * to the TLS side as its socket's data; LOCAL names nothing; a slow or broken one is refused.
 */
describe("a PROXY header first", () => {
  function proxied(trusted: boolean): { port: number; seen: (PreTls | undefined)[]; refused: string[] } {
    const seen: (PreTls | undefined)[] = [];
    const refused: string[] = [];
    const hf = listenHelloFirst<unknown>({
      hostname: "127.0.0.1", port: 0, exclusive: false, reusePort: false, allowHalfOpen: false,
      material: material(), alpn: undefined, challenges: NO_CHALLENGES,
      handlers: {
        open(s) {
          seen.push(s.data as PreTls | undefined);
        },
        data(s) {
          s.write(ANSWER);
          s.end();
        },
      },
      limits: { helloTimeoutMs: 1000, maxPending: 100, acceptProxy: proxyAccept(true, () => trusted, 1000) },
      proxyRefused: (_peer, detail) => void refused.push(detail),
    });
    listeners.push(hf);
    return { port: hf.listener.port, seen, refused };
  }

  /** A TCP connection that sends `header`, then a TLS client over it; resolves with the answer, or the error. */
  function viaHeader(port: number, header: Uint8Array): Promise<string> {
    return new Promise((resolve) => {
      const raw = net.connect({ host: "127.0.0.1", port }, () => {
        raw.write(header);
        const t = tls.connect({ socket: raw, servername: "a.test", rejectUnauthorized: false }, () => t.write("GET / HTTP/1.1\r\nhost: a.test\r\n\r\n"));
        let body = "";
        t.on("data", (d) => (body += d.toString()));
        t.on("close", () => resolve(body));
        t.on("error", (e) => resolve(`error ${e.message}`));
      });
      raw.on("error", (e) => resolve(`error ${e.message}`));
    });
  }

  test("v1 and v2: the named client reaches the TLS side; LOCAL names none", async () => {
    const { port, seen } = proxied(true);
    const to = { address: "127.0.0.1", port };
    expect(await viaHeader(port, encodeProxyHeader(1, { address: "198.51.100.7", port: 4321 }, to))).toEndWith("ok");
    expect(await viaHeader(port, encodeProxyHeader(2, { address: "2001:db8::9", port: 1234 }, { address: "2001:db8::1", port: 443 }))).toEndWith("ok");
    // PROXY v2 LOCAL (§2.2: command 0, family UNSPEC): a balancer's own health check.
    const local = Buffer.concat([Buffer.from("0d0a0d0a000d0a515549540a", "hex"), Buffer.from([0x20, 0x00, 0x00, 0x00])]);
    expect(await viaHeader(port, local)).toEndWith("ok");
    expect(seen.map((p) => p?.proxied.named?.source)).toEqual([{ address: "198.51.100.7", port: 4321 }, { address: "2001:db8::9", port: 1234 }, undefined]);
    expect(seen[2]).toEqual({ proxied: { named: undefined } });
  });

  test("a header that is not one, a peer not trusted, and a header too slow: closed, never handed to TLS, each said", async () => {
    const { port, seen, refused } = proxied(true);
    expect(await viaHeader(port, Buffer.from("PROXY TCP9 nonsense\r\n"))).toStartWith("error");
    const slow = raw(port, "PROXY TCP4 198.51.100.7 ");
    const closed = await slow.closed;
    expect(closed.received).toBe(0);
    const untrusted = proxied(false);
    expect(await viaHeader(untrusted.port, encodeProxyHeader(1, { address: "198.51.100.7", port: 1 }, { address: "127.0.0.1", port }))).toStartWith("error");
    expect(seen).toEqual([]);
    expect(untrusted.seen).toEqual([]);
    expect(refused.length).toBe(2);
    expect(refused[1]).toBe("no complete PROXY header in time");
    expect(untrusted.refused).toEqual(["the peer is not in trustedProxies"]);
  });
});
