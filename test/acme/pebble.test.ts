/**
 * Certificates from a real ACME CA (src/acme/): Debian's pebble on loopback, validating HTTP-01
 * by connecting back to the httpRedirect listener, names resolved by pebble-challtestsrv.
 * Issuance for two names (placeholders first), the issued certificates served and stored at
 * 0600, a restart that serves what is stored without a new order, renewal of short-lived
 * certificates under load with no failed request, and two balancers sharing one store that
 * order each name once. Both engines.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { connect } from "node:tls";
import { rigDefaults, startRig, type TestRig } from "../helpers/balancer.ts";
import { validateConfig } from "../../src/config/load.ts";
import { curl } from "../helpers/pki.ts";
import { freePort, startPebble, type Pebble } from "../helpers/pebble.ts";
import { requirePrograms } from "../helpers/system.ts";
import { waitFor } from "../helpers/wait.ts";
import { wrk } from "../helpers/wrk.ts";
import { certFile } from "../../src/acme/paths.ts";
import { runCtl } from "../../src/commands/ctl.ts";

const programs = requirePrograms("the ACME tests against pebble", { pebble: "pebble", "pebble-challtestsrv": "pebble", curl: "curl", openssl: "openssl", wrk: "wrk" });

let dir: string;
beforeAll(() => {
  if (!programs.skip) programs.assertPresent();
  dir = mkdtempSync(join(tmpdir(), "switchyard-acme-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function pebble(opts: { httpPort: number; tlsPort?: number; validity?: number; eab?: Record<string, string>; alternateRoots?: number }): Promise<Pebble> {
  const p = await startPebble(opts);
  cleanups.push(() => p.stop());
  return p;
}

/**
 * A pebble validating on free ports (HTTP-01 where the test puts its plain-HTTP listener,
 * TLS-ALPN-01 where it puts its TLS listener), and a fresh store.
 */
async function setup(label: string, validity?: number): Promise<{ httpPort: number; tlsPort: number; ca: Pebble; storage: string }> {
  const httpPort = freePort();
  const tlsPort = freePort();
  const ca = await pebble({ httpPort, tlsPort, ...(validity !== undefined ? { validity } : {}) });
  return { httpPort, tlsPort, ca, storage: join(dir, label) };
}

/** How a rig's names are validated: HTTP-01 on an httpRedirect listener, or TLS-ALPN-01 on the TLS listener's own port. */
type Challenge = { type: "http-01"; redirectPort: number | undefined } | { type: "tls-alpn-01"; port: number };

async function rig(engine: string, ca: Pebble, storage: string, redirectPort: number | undefined | Challenge, names = ["a.test", "b.test"]): Promise<TestRig> {
  const c: Challenge = typeof redirectPort === "object" ? redirectPort : { type: "http-01", redirectPort };
  const r = await startRig(1, {
    engine,
    acme: { storage, directoryCa: ca.apiCa },
    listen: {
      host: "127.0.0.1", port: c.type === "tls-alpn-01" ? c.port : 0,
      tls: { acme: { directory: ca.directory, email: "ops@example.com", domains: names, challenge: c.type } },
      ...(c.type === "http-01" && c.redirectPort !== undefined ? { httpRedirect: { host: "127.0.0.1", port: c.redirectPort } } : {}),
    },
  });
  cleanups.push(() => r.stop());
  return r;
}

/** What a new handshake for `name` gets: whether curl trusts it with `ca`, and the certificate's subject and serial. */
async function served(r: TestRig, name: string, ca: string): Promise<{ ok: boolean; subject: string | undefined; verbose: string }> {
  const port = r.balancer.port;
  const res = await curl(["--cacert", ca, "--resolve", `${name}:${port}:127.0.0.1`, `https://${name}:${port}/`]);
  return { ok: res.code === 0, subject: /subject: (.*)/.exec(res.verbose)?.[1], verbose: res.verbose };
}

/** The serial of the certificate a new handshake for `name` gets (node:tls, trusting `ca`). */
function handshakeSerial(r: TestRig, name: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port: r.balancer.port, servername: name, ca: readFileSync(ca, "utf8") }, () => {
      resolve(s.getPeerCertificate().serialNumber.toLowerCase());
      s.destroy();
    });
    s.on("error", reject);
  });
}

function storedSerial(storage: string, name: string): string {
  return new X509Certificate(readFileSync(certFile(storage, name), "utf8")).serialNumber;
}

describe.skipIf(programs.skip)("workers", () => {
  test("with workers: 2 the main process orders, and every worker serves the issued certificate", async () => {
    const { httpPort, ca, storage } = await setup("workers");
    const r = await startRig(1, {
      workers: 2,
      acme: { storage, directoryCa: ca.apiCa },
      listen: { host: "127.0.0.1", port: 0, tls: { acme: { directory: ca.directory, domains: ["a.test"] } }, httpRedirect: { host: "127.0.0.1", port: httpPort } },
    });
    cleanups.push(() => r.stop());
    // Ten new handshakes in a row, spread over the workers by the kernel, all get pebble's.
    await waitFor(async () => {
      for (let i = 0; i < 10; i++) if (!(await served(r, "a.test", ca.roots)).ok) return false;
      return true;
    }, "every worker serving a.test's issued certificate", 30_000, 100);
    expect(ca.orders()).toBe(1);
    expect(r.balancer.acme.issued.get("a.test")).toBe(1);
    expect(r.logLines.filter((l) => l.includes("SY_ACME_ORDER_FAILED"))).toEqual([]);
    // Each worker put it in service itself, from the store's file.
    expect(r.logLines.filter((l) => /worker \d: listen\.tls: certificate files changed/.test(l)).length).toBe(2);
  }, 60_000);
});

describe.skipIf(programs.skip)("key types", () => {
  test('keyType "rsa2048": an RSA 2048 certificate key; ECDSA P-256 by default', async () => {
    const { httpPort, ca, storage } = await setup("rsa");
    const r = await startRig(1, {
      acme: { storage, directoryCa: ca.apiCa },
      listen: undefined,
      listeners: [
        { name: "rsa", host: "127.0.0.1", port: 0, tls: { acme: { directory: ca.directory, domains: ["rsa.test"], keyType: "rsa2048" } }, httpRedirect: { host: "127.0.0.1", port: httpPort } },
        { name: "ec", host: "127.0.0.1", port: 0, tls: { acme: { directory: ca.directory, domains: ["ec.test"] } } },
      ],
    });
    cleanups.push(() => r.stop());
    await waitFor(() => existsIssued(storage, "rsa.test") && existsIssued(storage, "ec.test"), "both issued", 20_000, 50);
    const key = (name: string) => createPrivateKey(readFileSync(certFile(storage, name), "utf8"));
    expect([key("rsa.test").asymmetricKeyType, key("rsa.test").asymmetricKeyDetails?.modulusLength]).toEqual(["rsa", 2048]);
    expect([key("ec.test").asymmetricKeyType, key("ec.test").asymmetricKeyDetails?.namedCurve]).toEqual(["ec", "prime256v1"]);
    const cert = new X509Certificate(readFileSync(certFile(storage, "rsa.test"), "utf8"));
    expect(cert.publicKey.asymmetricKeyType).toBe("rsa");
  }, 60_000);
});

/** Whether the store holds a certificate from the CA (not a placeholder) for `name`. */
function existsIssued(storage: string, name: string): boolean {
  try {
    return !new X509Certificate(readFileSync(certFile(storage, name), "utf8")).subject.includes("placeholder");
  } catch {
    return false;
  }
}

/** Replicas sharing a store, both serving a.test and b.test from pebble, each name ordered once between them. */
async function orderedOnce(ca: Pebble, replicas: TestRig[]): Promise<void> {
  for (const r of replicas) {
    await waitFor(async () => (await served(r, "a.test", ca.roots)).ok && (await served(r, "b.test", ca.roots)).ok, "both replicas serving both names", 20_000, 100);
  }
  expect(ca.orders()).toBe(2);
  const issued = (name: string) => replicas.reduce((n, r) => n + (r.balancer.acme.issued.get(name) ?? 0), 0);
  expect([issued("a.test"), issued("b.test")]).toEqual([1, 1]);
}

/**
 * 12-second certificates renewed (about every 8 s) while wrk keeps 64 connections busy: no
 * failed request on the socket engine, and new handshakes get the renewed certificate.
 */
async function renewsUnderLoad(engine: string, challengeOf: (ports: { httpPort: number; tlsPort: number }) => Challenge): Promise<void> {
  // 12 s certificates: renewed about every 8 s.
  const s = await setup(`renew-${engine}-${challengeOf({ httpPort: 0, tlsPort: 0 }).type}`, 12);
  const { ca, storage } = s;
  const r = await rig(engine, ca, storage, challengeOf(s), ["a.test"]);
  // Issued, and in service for every new handshake (the fetch engine's old server listens
  // on for DRAIN_NOTICE_MS after a renewal).
  const stored = () => storedSerial(storage, "a.test").toLowerCase();
  const inService = async () => {
    try {
      return (await handshakeSerial(r, "a.test", ca.roots)) === stored();
    } catch {
      return false;
    }
  };
  /** Five handshakes in a row get the stored certificate. */
  const everyHandshake = async () => {
    for (let i = 0; i < 5; i++) if (!(await inService())) return false;
    return true;
  };
  await waitFor(everyHandshake, "a.test issued and in service", 20_000, 50);
  const first = stored();
  // wrk sends no SNI to an address: it gets the default, which is a.test's certificate too.
  const load = wrk(programs.path("wrk"), `https://127.0.0.1:${r.balancer.port}/`, 14);
  await waitFor(() => r.logLines.some((l) => l.includes("a.test: certificate renewed")), "a renewal", 20_000, 50);
  await waitFor(async () => stored() !== first && (await everyHandshake()), "new handshakes to get the renewed certificate", 5_000, 50);
  const w = await load;
  expect(w.requests).toBeGreaterThan(0);
  expect(w.non2xx).toBe(0);
  if (engine === "socket") {
    expect({ errors: w.errors, out: w.errors > 0 ? w.out : "" }).toEqual({ errors: 0, out: "" });
  } else {
    // Bun.serve cannot change its certificates (reload() keeps them) nor stop accepting
    // without closing the connections idle at that instant: the old server gets 250 ms of
    // Connection: close first (listener/http.ts), but a connection it accepted in that
    // window and that has not sent its request yet is still closed. Measured: 0, 0, 1 and
    // 32 socket errors in ~90k requests over two renewals. Each connection at most once per
    // renewal; all-at-once (130 over two renewals before the notice) fails this.
    const renewals = r.logLines.filter((l) => l.includes("a.test: certificate renewed")).length;
    expect(w.errors).toBeLessThanOrEqual(32 * renewals);
  }
  expect(r.logLines.filter((l) => l.includes("SY_ACME_ORDER_FAILED"))).toEqual([]);
}

for (const engine of ["socket", "fetch"]) {
  describe.skipIf(programs.skip)(`${engine} engine`, () => {
    test("two names issued over HTTP-01, served, stored at 0600, and served from the store at restart without a new order", async () => {
      const { httpPort, ca, storage } = await setup(`issue-${engine}`);
      const r = await rig(engine, ca, storage, httpPort);
      // Until its order completes a name is served a placeholder, and the log says so.
      expect(r.logLines.filter((l) => l.includes("self-signed placeholder")).length).toBe(2);
      // Checked in the wait, not again after it: on the fetch engine a handshake that reaches the
      // retiring server as it stops fails (docs/acme.md).
      const issued = async (name: string) => {
        const s = await served(r, name, ca.roots);
        return s.ok && s.subject?.includes(`CN=${name}`) === true;
      };
      await waitFor(async () => (await issued("a.test")) && (await issued("b.test")), "both names served with pebble's certificates", 20_000, 100);
      expect(ca.orders()).toBe(2);
      for (const f of [certFile(storage, "a.test"), certFile(storage, "b.test")]) expect(statSync(f).mode & 0o777).toBe(0o600);
      expect(statSync(storage).mode & 0o777).toBe(0o700);
      expect(r.logLines.some((l) => l.includes("a.test: certificate issued"))).toBe(true);
      expect(r.logLines.filter((l) => l.includes("SY_ACME_ORDER_FAILED"))).toEqual([]);
      // A request for a token with nothing pending goes on to the redirect as before.
      const other = await fetch(`http://127.0.0.1:${httpPort}/.well-known/acme-challenge/none`, { redirect: "manual" });
      expect(other.status).toBe(308);
      const serial = storedSerial(storage, "a.test");
      // The restart: r's cleanup is the last pushed.
      await cleanups.pop()!();

      const again = await rig(engine, ca, storage, httpPort);
      // Served at once, with no placeholder and no order.
      const first = await served(again, "a.test", ca.roots);
      expect(first.ok).toBe(true);
      expect(again.logLines.some((l) => l.includes("placeholder"))).toBe(false);
      expect(again.logLines.some((l) => l.includes("stored certificate served"))).toBe(true);
      expect(storedSerial(storage, "a.test")).toBe(serial);
      expect(ca.orders()).toBe(2);
      expect(again.balancer.acme.issued.size).toBe(0);
    }, 60_000);

    test("short-lived certificates renewed at two thirds of their lifetime under wrk -c64: no failed request (socket engine), new handshakes get the new one", async () => {
      await renewsUnderLoad(engine, (s) => ({ type: "http-01", redirectPort: s.httpPort }));
    }, 60_000);

    test("HTTP-01 answered by a plain-HTTP proxy listener before routing; its other requests are proxied as before", async () => {
      const { httpPort, ca, storage } = await setup(`plain-${engine}`);
      const r = await startRig(1, {
        engine,
        acme: { storage, directoryCa: ca.apiCa },
        listen: undefined,
        listeners: [
          { name: "web", host: "127.0.0.1", port: 0, tls: { acme: { directory: ca.directory, domains: ["a.test", "b.test"] } } },
          { name: "plain", host: "127.0.0.1", port: httpPort },
        ],
      });
      cleanups.push(() => r.stop());
      await waitFor(async () => (await served(r, "a.test", ca.roots)).ok && (await served(r, "b.test", ca.roots)).ok, "both names issued through the plain listener", 20_000, 100);
      // No email, two names at once: one account registered, no order failed on the way.
      expect(r.logLines.filter((l) => l.includes("SY_ACME_ORDER_FAILED"))).toEqual([]);
      expect(ca.orders()).toBe(2);
      // No token pending: the request goes to the backend, which answers as it would directly.
      const path = "/.well-known/acme-challenge/none";
      const [proxied, direct] = await Promise.all([fetch(`http://127.0.0.1:${httpPort}${path}`), fetch(`${r.cluster.backends[0]!.url}${path}`)]);
      expect([proxied.status, await proxied.text()]).toEqual([direct.status, await direct.text()]);
      expect(await (await fetch(`http://127.0.0.1:${httpPort}/`)).text()).toContain(r.cluster.backends[0]!.name);
    }, 60_000);

    test("a reload that adds a name: a placeholder at once, then its certificate; the other name untouched", async () => {
      const { httpPort, ca, storage } = await setup(`reload-${engine}`);
      const r = await rig(engine, ca, storage, httpPort, ["a.test"]);
      await waitFor(async () => (await served(r, "a.test", ca.roots)).ok, "a.test issued", 20_000, 100);
      const aSerial = storedSerial(storage, "a.test");
      const report = await r.balancer.apply(validateConfig({
        ...rigDefaults(), engine, log: { access: true },
        backends: r.cluster.backends.map((b) => ({ name: b.name, url: b.url })),
        acme: { storage, directoryCa: ca.apiCa },
        listen: { host: "127.0.0.1", port: 0, tls: { acme: { directory: ca.directory, domains: ["a.test", "b.test"] } }, httpRedirect: { host: "127.0.0.1", port: httpPort } },
      }));
      expect(report.lines).toContain("acme: b.test managed");
      expect(r.logLines.some((l) => l.includes("b.test has no certificate yet: serving a self-signed placeholder"))).toBe(true);
      await waitFor(async () => (await served(r, "b.test", ca.roots)).ok, "b.test issued after the reload", 20_000, 100);
      expect(ca.orders()).toBe(2);
      // a.test kept its certificate (a handshake is retried: on the fetch engine one that
      // reaches the server retiring for b.test's certificate as it stops fails).
      expect(storedSerial(storage, "a.test")).toBe(aSerial);
      await waitFor(async () => (await served(r, "a.test", ca.roots)).ok, "a.test still served", 5_000, 50);
    }, 60_000);

    test("two balancers sharing one store order each name once", async () => {
      const { httpPort, ca, storage } = await setup(`shared-${engine}`);
      // Started together, racing for the names; only the first has the port pebble validates
      // on, and it answers from the shared store whichever replica ordered.
      await orderedOnce(ca, await Promise.all([rig(engine, ca, storage, httpPort), rig(engine, ca, storage, undefined)]));
    }, 60_000);
  });
}

/** What a handshake offering only acme-tls/1 for `name` gets (RFC 8737 §3): the certificate's subject and the ALPN chosen, or none. */
async function acmeHandshake(port: number, name: string): Promise<{ subject: string | undefined; alpn: string | undefined; out: string }> {
  const p = Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-servername", name, "-alpn", "acme-tls/1"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  await p.exited;
  return { subject: /^subject=(.*)$/m.exec(out)?.[1], alpn: /^ALPN protocol: (.*)$/m.exec(out)?.[1], out: out + err };
}

describe.skipIf(programs.skip)("TLS-ALPN-01 (RFC 8737)", () => {
  test("two names issued on the TLS listener itself, with nothing on port 80; a stray acme-tls/1 handshake is refused", async () => {
    const { tlsPort, ca, storage } = await setup("alpn-issue");
    const r = await rig("socket", ca, storage, { type: "tls-alpn-01", port: tlsPort });
    const issued = async (name: string) => {
      const s = await served(r, name, ca.roots);
      return s.ok && s.subject?.includes(`CN=${name}`) === true;
    };
    await waitFor(async () => (await issued("a.test")) && (await issued("b.test")), "both names served with pebble's certificates", 20_000, 100);
    expect(ca.orders()).toBe(2);
    expect(r.logLines.filter((l) => l.includes("SY_ACME_ORDER_FAILED"))).toEqual([]);
    // pebble validated them by TLS-ALPN-01: nothing listens on its HTTP-01 port.
    // The challenge certificates are gone from the store once used.
    expect(readdirSync(join(storage, "tls-alpn-01"))).toEqual([]);
    // With nothing pending, a handshake offering acme-tls/1 gets no certificate at all.
    const stray = await acmeHandshake(tlsPort, "a.test");
    expect({ subject: stray.subject, alpn: stray.alpn }).toEqual({ subject: undefined, alpn: undefined });
    // The listener serves requests as any TLS listener does.
    const res = await curl(["--cacert", ca.roots, "--resolve", `a.test:${tlsPort}:127.0.0.1`, `https://a.test:${tlsPort}/`]);
    expect(res.code).toBe(0);
    expect(res.body).toContain(r.cluster.backends[0]!.name);
  }, 60_000);

  test("short-lived certificates renewed over TLS-ALPN-01 under wrk -c64: no failed request, new handshakes get the new one", async () => {
    await renewsUnderLoad("socket", (s) => ({ type: "tls-alpn-01", port: s.tlsPort }));
  }, 60_000);

  test("two balancers sharing one store: each name ordered once, and the one pebble reaches answers whichever ordered", async () => {
    const { tlsPort, ca, storage } = await setup("alpn-shared");
    // The one on pebble's port binds first: started together, the other's port 0 could be
    // handed that very port before the first had bound it (EADDRINUSE once in CI). They still
    // race for the names: ordering starts after start-up, on a timer.
    const first = await rig("socket", ca, storage, { type: "tls-alpn-01", port: tlsPort });
    await orderedOnce(ca, [first, await rig("socket", ca, storage, { type: "tls-alpn-01", port: 0 })]);
  }, 60_000);

  test("a TCP listener terminating TLS answers TLS-ALPN-01 too, and relays the plain bytes", async () => {
    const { tlsPort, ca, storage } = await setup("alpn-tcp");
    const r = await startRig(1, (cluster) => ({
      mode: "tcp",
      backends: cluster.backends.map((b) => ({ name: b.name, url: new URL(b.url).host })),
      acme: { storage, directoryCa: ca.apiCa },
      listen: { host: "127.0.0.1", port: tlsPort, tls: { acme: { directory: ca.directory, domains: ["t.test"], challenge: "tls-alpn-01" } } },
    }));
    cleanups.push(() => r.stop());
    await waitFor(async () => (await curl(["--cacert", ca.roots, "--resolve", `t.test:${tlsPort}:127.0.0.1`, `https://t.test:${tlsPort}/`])).code === 0, "t.test issued and relayed", 20_000, 100);
    expect(ca.orders()).toBe(1);
    const res = await curl(["--cacert", ca.roots, "--resolve", `t.test:${tlsPort}:127.0.0.1`, `https://t.test:${tlsPort}/`]);
    expect(res.body).toContain(r.cluster.backends[0]!.name);
  }, 60_000);
});

/**
 * pebble 2.4 (Debian's) has no ARI (RFC 9773): a server in front of pebble, under its API
 * certificate, adds a `renewalInfo` to pebble's directory and answers the windows the test sets.
 * Everything else it passes to pebble with its own Host, from which pebble builds every URL it
 * gives: the client stays on this server, its signed URLs match, and the new orders it places
 * are seen here (`orders`: their payloads).
 */
async function ariBeside(ca: Pebble): Promise<{ directory: string; asked: string[]; orders: Record<string, unknown>[]; refuseReplaces: boolean; delayMs: number; pending: number; answer: (id: string) => "far" | "now" | "error" }> {
  const tls = { cert: readFileSync(ca.apiCa, "utf8"), key: readFileSync(ca.apiKey, "utf8") };
  const pebbleOrigin = new URL(ca.directory).origin;
  const ari = { directory: "", asked: [] as string[], orders: [] as Record<string, unknown>[], refuseReplaces: false, delayMs: 0, pending: 0, answer: (_id: string): "far" | "now" | "error" => "far" };
  const server = Bun.serve({
    hostname: "127.0.0.1", port: 0, tls,
    async fetch(req): Promise<Response> {
      const url = new URL(req.url);
      if (url.pathname.startsWith("/ari/")) {
        const id = url.pathname.slice("/ari/".length);
        ari.asked.push(id);
        // A slow CA: the balancer's turn for the name is still asking while this waits.
        if (ari.delayMs > 0) {
          ari.pending++;
          await Bun.sleep(ari.delayMs);
          ari.pending--;
        }
        const how = ari.answer(id);
        if (how === "error") return new Response("no", { status: 500 });
        const now = Date.now();
        const window = how === "now" ? { start: now - 7_200_000, end: now - 3_600_000 } : { start: now + 30 * 86_400_000, end: now + 31 * 86_400_000 };
        return Response.json(
          { suggestedWindow: { start: new Date(window.start).toISOString(), end: new Date(window.end).toISOString() }, explanationURL: "https://ca.example/incident" },
          { headers: { "retry-after": "1" } },
        );
      }
      const body = req.method === "POST" ? await req.text() : undefined;
      if (url.pathname === "/order-plz" && body !== undefined) {
        const order = JSON.parse(Buffer.from((JSON.parse(body) as { payload: string }).payload, "base64url").toString()) as Record<string, unknown>;
        ari.orders.push(order);
        // As a CA that has an order replacing that certificate already (RFC 9773 §5).
        if (ari.refuseReplaces && order.replaces !== undefined) {
          return Response.json({ type: "urn:ietf:params:acme:error:alreadyReplaced", detail: "this certificate is replaced by another order already", status: 409 }, { status: 409, headers: { "content-type": "application/problem+json" } });
        }
      }
      const upstream = await fetch(pebbleOrigin + url.pathname + url.search, {
        method: req.method, headers: req.headers, ...(body !== undefined ? { body } : {}), tls: { ca: tls.cert }, redirect: "manual",
      });
      const headers = new Headers(upstream.headers);
      headers.delete("content-length");
      if (url.pathname === "/dir") {
        const dir = (await upstream.json()) as Record<string, unknown>;
        return Response.json({ ...dir, renewalInfo: `https://127.0.0.1:${url.port}/ari` }, { status: upstream.status, headers });
      }
      return new Response(await upstream.arrayBuffer(), { status: upstream.status, headers });
    },
  });
  cleanups.push(async () => void server.stop(true));
  ari.directory = `https://127.0.0.1:${server.port}/dir`;
  return ari;
}

/** RFC 9773 §4.1, worked out apart from src/acme/renewal-info.ts: the issuer's subjectKeyIdentifier, and the serial as DER content octets. */
function expectedCertId(storage: string, name: string): string {
  const pem = readFileSync(certFile(storage, name), "utf8");
  const [leaf, issuer] = [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]));
  const ski = /X509v3 Subject Key Identifier: *\n? *([0-9A-F:]+)/.exec(Bun.spawnSync(["openssl", "x509", "-noout", "-ext", "subjectKeyIdentifier"], { stdin: Buffer.from(issuer!.toString()) }).stdout.toString())?.[1];
  let serial = leaf!.serialNumber.length % 2 === 1 ? `0${leaf!.serialNumber}` : leaf!.serialNumber;
  if (parseInt(serial.slice(0, 2), 16) >= 0x80) serial = `00${serial}`;
  return `${Buffer.from(ski!.replace(/:/g, ""), "hex").toString("base64url")}.${Buffer.from(serial, "hex").toString("base64url")}`;
}

/** A balancer whose CA offers ARI (ariBeside), with a.test issued; `first`: that certificate's CertID. */
async function ariIssued(label: string) {
  const { httpPort, ca, storage } = await setup(label);
  const ari = await ariBeside(ca);
  const r = await startRig(1, {
    acme: { storage, directoryCa: ca.apiCa },
    listen: { host: "127.0.0.1", port: 0, tls: { acme: { directory: ari.directory, domains: ["a.test"] } }, httpRedirect: { host: "127.0.0.1", port: httpPort } },
  });
  cleanups.push(() => r.stop());
  await waitFor(() => existsIssued(storage, "a.test"), "a.test issued", 20_000, 50);
  return { ari, r, ca, storage, first: expectedCertId(storage, "a.test") };
}

describe.skipIf(programs.skip)("ARI (RFC 9773)", () => {
  test("the CA's window brings a renewal forward, once; a CA that cannot answer leaves the two-thirds rule in force", async () => {
    // pebble's default lifetime is 5 years: two thirds of it is years away.
    const { ari, r, ca, storage, first } = await ariIssued("ari");
    // Asked for the issued certificate's window, and again as Retry-After (1 s) says.
    await waitFor(() => ari.asked.filter((id) => id === first).length >= 2, "two polls for the first certificate's window", 20_000, 20);
    expect(r.balancer.acme.issued.get("a.test")).toBe(1);
    // The CA moves the window into the past: renewed at once.
    ari.answer = (id) => (id === first ? "now" : "far");
    await waitFor(() => r.logLines.some((l) => l.includes("a.test: certificate renewed")), "the renewal the CA asked for", 20_000, 20);
    expect(r.logLines.some((l) => l.includes("the CA's renewal window (ARI)") && l.includes("https://ca.example/incident"))).toBe(true);
    const second = expectedCertId(storage, "a.test");
    expect(second).not.toBe(first);
    // The new certificate's window is far off: asked for, and not renewed again.
    await waitFor(() => ari.asked.filter((id) => id === second).length >= 2, "two polls for the renewed certificate's window", 20_000, 20);
    expect(r.balancer.acme.issued.get("a.test")).toBe(2);
    expect(ca.orders()).toBe(2);
    // RFC 9773 §5: the renewal's order named the certificate it replaced; the first had none to name.
    expect(ari.orders.map((o) => o.replaces)).toEqual([undefined, first]);
    // A CA that fails to answer: said, and nothing renewed.
    ari.answer = () => "error";
    await waitFor(() => r.logLines.some((l) => l.includes("SY_ACME_RENEWAL_INFO")), "the failed poll logged", 20_000, 20);
    expect(r.balancer.acme.issued.get("a.test")).toBe(2);
    expect(r.logLines.filter((l) => l.includes("SY_ACME_ORDER_FAILED"))).toEqual([]);
  }, 60_000);
});

describe.skipIf(programs.skip)("External Account Binding (RFC 8555 §7.3.4)", () => {
  test("a CA that requires a binding refuses an account without one, and registers the one bound with the key from hmacKeyFile", async () => {
    const kid = "switchyard-test";
    const hmacKey = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
    const httpPort = freePort();
    const ca = await pebble({ httpPort, eab: { [kid]: hmacKey } });
    const rigWith = async (storage: string, eab: Record<string, string> | undefined) => {
      const r = await startRig(1, {
        acme: { storage, directoryCa: ca.apiCa },
        listen: {
          host: "127.0.0.1", port: 0,
          tls: { acme: { directory: ca.directory, domains: ["a.test"], ...(eab !== undefined ? { eab } : {}) } },
          httpRedirect: { host: "127.0.0.1", port: httpPort },
        },
      });
      cleanups.push(() => r.stop());
      return r;
    };
    // Without a binding: the CA refuses the account, and the log says why.
    const unbound = await rigWith(join(dir, "eab-none"), undefined);
    await waitFor(() => unbound.logLines.some((l) => l.includes("SY_ACME_ORDER_FAILED")), "the refused registration logged", 20_000, 20);
    expect(unbound.logLines.find((l) => l.includes("SY_ACME_ORDER_FAILED"))).toContain("externalAccountBinding");
    expect(ca.orders()).toBe(0);
    await unbound.stop();
    // With one, its key kept in a file: registered, ordered and served.
    const keyFile = join(dir, "eab.key");
    writeFileSync(keyFile, `${hmacKey}\n`, { mode: 0o600 });
    const storage = join(dir, "eab");
    const bound = await rigWith(storage, { kid, hmacKeyFile: keyFile });
    await waitFor(() => existsIssued(storage, "a.test"), "a.test issued", 20_000, 50);
    expect(ca.orders()).toBe(1);
    await waitFor(async () => (await served(bound, "a.test", ca.roots)).ok, "new handshakes to get the issued certificate", 10_000, 50);
    expect(bound.logLines.filter((l) => l.includes("SY_ACME_ORDER_FAILED"))).toEqual([]);
    // Never logged.
    expect([...unbound.logLines, ...bound.logLines].some((l) => l.includes(hmacKey))).toBe(false);
  }, 60_000);
});

describe.skipIf(programs.skip)("ARI: an order refused for its replaces field", () => {
  test("is tried again without it, and the renewal goes through", async () => {
    const { ari, r, ca, first } = await ariIssued("ari-refused");
    ari.refuseReplaces = true;
    ari.answer = (id) => (id === first ? "now" : "far");
    await waitFor(() => r.logLines.some((l) => l.includes("a.test: certificate renewed")), "the renewal, after one refusal and a back-off", 30_000, 50);
    const refusal = r.logLines.find((l) => l.includes("SY_ACME_ORDER_FAILED"));
    expect(refusal).toContain("this certificate is replaced by another order already");
    expect(refusal).toContain("without naming the certificate it replaces");
    expect(ari.orders.map((o) => o.replaces)).toEqual([undefined, first, undefined]);
    expect(ca.orders()).toBe(2);
  }, 60_000);
});

describe.skipIf(programs.skip)("DNS-01 (RFC 8555 §8.4)", () => {
  /** A hook as lego's exec provider is called: `present|cleanup FQDN VALUE`, setting the record in challtestsrv, each call logged. */
  function hook(ca: Pebble, failWith?: string): { command: string[]; calls: () => string[] } {
    const script = join(dir, `dns-hook-${Math.random().toString(36).slice(2)}.sh`);
    const log = `${script}.log`;
    writeFileSync(script, [
      "#!/bin/sh",
      `echo "$1 $2 $3" >> '${log}'`,
      ...(failWith !== undefined ? [`echo '${failWith}' >&2`, "exit 3"] : []),
      `if [ "$1" = present ]; then curl -sf -X POST -d "{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}" ${ca.dnsManagement}/set-txt; else curl -sf -X POST -d "{\\"host\\":\\"$2\\"}" ${ca.dnsManagement}/clear-txt; fi`,
      "",
    ].join("\n"));
    return { command: ["/bin/sh", script], calls: () => (existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : []) };
  }

  test("a wildcard and its base name, each through the hook: set, validated by the CA, cleaned up; served by name", async () => {
    // Nothing listens where pebble would validate HTTP-01 or TLS-ALPN-01: DNS is all it has.
    const { ca, storage } = await setup("dns-01");
    const h = hook(ca);
    const r = await startRig(1, {
      acme: { storage, directoryCa: ca.apiCa },
      listen: { host: "127.0.0.1", port: 0, tls: { acme: { directory: ca.directory, domains: ["*.a.test", "a.test"], challenge: "dns-01", dns01: { command: h.command } } } },
    });
    cleanups.push(() => r.stop());
    await waitFor(() => existsIssued(storage, "*.a.test") && existsIssued(storage, "a.test"), "both names issued", 30_000, 50);
    // The wildcard's file does not spell "*".
    expect(readdirSync(join(storage, "certs")).sort()).toEqual(["a.test.pem", "wildcard_.a.test.pem"]);
    for (const name of ["x.a.test", "www.a.test", "a.test"]) {
      await waitFor(async () => (await served(r, name, ca.roots)).ok, `${name} served by a certificate from the CA`, 10_000, 50);
    }
    expect((await served(r, "x.a.test", ca.roots)).subject).toContain("*.a.test");
    // Each order set its record and took it away again; a wildcard's record is its base name's.
    const calls = h.calls().map((l) => l.split(" ").slice(0, 2).join(" ")).sort();
    expect(calls).toEqual(["cleanup _acme-challenge.a.test.", "cleanup _acme-challenge.a.test.", "present _acme-challenge.a.test.", "present _acme-challenge.a.test."]);
    // The value is the TXT value itself (§8.4: 43 base64url characters of a SHA-256).
    for (const l of h.calls()) expect(l.split(" ")[2]).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(ca.orders()).toBe(2);
  }, 60_000);

  test("a hook that fails fails the order with what it printed; the placeholder stays", async () => {
    const { ca, storage } = await setup("dns-01-failing");
    const h = hook(ca, "no API token for the DNS provider");
    const r = await startRig(1, {
      acme: { storage, directoryCa: ca.apiCa },
      listen: { host: "127.0.0.1", port: 0, tls: { acme: { directory: ca.directory, domains: ["*.b.test"], challenge: "dns-01", dns01: { command: h.command } } } },
    });
    cleanups.push(() => r.stop());
    await waitFor(() => r.logLines.some((l) => l.includes("SY_ACME_ORDER_FAILED")), "the failed order logged", 20_000, 20);
    const failure = r.logLines.find((l) => l.includes("SY_ACME_ORDER_FAILED"))!;
    expect(failure).toContain("dns01.command present _acme-challenge.b.test. exited with 3: no API token for the DNS provider");
    expect(existsIssued(storage, "*.b.test")).toBe(false);
    expect(r.balancer.acme.figures()[0]!.serving).toBe("placeholder");
  }, 60_000);
});

describe.skipIf(programs.skip)("preferredChain (RFC 8555 §7.4.2)", () => {
  test("of the chains the CA offers, the one up to the named root is stored; the default without one", async () => {
    const httpPort = freePort();
    const ca = await pebble({ httpPort, alternateRoots: 1 });
    const ca0 = readFileSync(ca.apiCa, "utf8");
    const rootName = async (i: number) => {
      const pem = await (await fetch(`${ca.management}/roots/${i}`, { tls: { ca: ca0 } })).text();
      return /CN=([^,\n]+)/.exec(new X509Certificate(pem).subject.replace(/\n/g, ","))![1]!;
    };
    const [defaultRoot, alternateRoot] = [await rootName(0), await rootName(1)];
    expect(alternateRoot).not.toBe(defaultRoot);
    /** The issuer of the last certificate of the chain stored for `name`: the root the chain leads to. */
    const storedRoot = (storage: string, name: string) => {
      const certs = [...readFileSync(certFile(storage, name), "utf8").matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((m) => new X509Certificate(m[0]));
      return /CN=([^,\n]+)/.exec(certs.at(-1)!.issuer.replace(/\n/g, ","))![1]!;
    };
    for (const [label, preferred, expected] of [["chain-default", undefined, defaultRoot], ["chain-alternate", alternateRoot, alternateRoot]] as const) {
      const storage = join(dir, label);
      const r = await startRig(1, {
        acme: { storage, directoryCa: ca.apiCa },
        listen: {
          host: "127.0.0.1", port: 0,
          tls: { acme: { directory: ca.directory, domains: ["a.test"], ...(preferred !== undefined ? { preferredChain: preferred } : {}) } },
          httpRedirect: { host: "127.0.0.1", port: httpPort },
        },
      });
      // Stopped by the cleanups should an expectation fail; here at once otherwise, for the next rig takes its HTTP-01 port.
      cleanups.push(() => r.stop());
      await waitFor(() => existsIssued(storage, "a.test"), `a.test issued (${label})`, 20_000, 50);
      expect(storedRoot(storage, "a.test")).toBe(expected);
      await r.stop();
    }
  }, 60_000);
});

describe.skipIf(programs.skip)("renewal and revocation on request (admin API, switchyard ctl)", () => {
  test("renew now; revoke: renewed first, then the replaced certificate revoked with its reason; an unknown name is refused", async () => {
    const { httpPort, ca, storage } = await setup("revoke");
    const token = "renew-and-revoke-token";
    const r = await startRig(1, {
      admin: { host: "127.0.0.1", port: 0, token },
      acme: { storage, directoryCa: ca.apiCa },
      listen: { host: "127.0.0.1", port: 0, tls: { acme: { directory: ca.directory, domains: ["a.test"] } }, httpRedirect: { host: "127.0.0.1", port: httpPort } },
    });
    cleanups.push(() => r.stop());
    await waitFor(() => existsIssued(storage, "a.test"), "a.test issued", 20_000, 50);
    const ctl = async (...args: string[]) => {
      const out: string[] = [];
      const code = await runCtl(["--admin", r.balancer.adminUrl!, "--token", token, ...args], {}, { out: (s) => out.push(s), err: (s) => out.push(s) });
      return { code, out: out.join("\n") };
    };
    const first = storedSerial(storage, "a.test").toLowerCase();

    const renewed = await ctl("acme", "renew", "a.test");
    expect(renewed.code).toBe(0);
    const second = storedSerial(storage, "a.test").toLowerCase();
    expect(second).not.toBe(first);
    expect(renewed.out).toStartWith(`a.test: renewed, serial ${second}, valid to `);
    expect(renewed.out).toEndWith(`; replaced serial ${first}`);
    await waitFor(async () => (await handshakeSerial(r, "a.test", ca.roots).catch(() => "")) === second, "new handshakes to get the renewed certificate", 10_000, 50);

    const revoked = await ctl("acme", "revoke", "a.test", "--reason", "keyCompromise");
    expect(revoked.code).toBe(0);
    const third = storedSerial(storage, "a.test").toLowerCase();
    expect(revoked.out).toEndWith(`; replaced serial ${second}, revoked (keyCompromise)`);
    expect(third).not.toBe(second);
    // pebble's own record of the replaced certificate: revoked, reason 1 (RFC 5280 §5.3.1).
    const status = (await (await fetch(`${ca.management}/cert-status-by-serial/${second.replace(/^0+/, "")}`, { tls: { ca: readFileSync(ca.apiCa, "utf8") } })).json()) as { Status: string; Reason: number };
    expect(status.Status).toBe("Revoked");
    expect(status.Reason).toBe(1);
    expect(ca.orders()).toBe(3);

    // Refused: a name it does not manage, a reason RFC 5280 does not have.
    const unknown = await ctl("acme", "renew", "b.test");
    expect(unknown.code).toBe(2);
    expect(unknown.out).toContain('no certificate from ACME is named "b.test" (names: a.test) (SY_UNKNOWN_CERTIFICATE)');
    const badReason = await ctl("acme", "revoke", "a.test", "--reason", "because");
    expect(badReason.code).toBe(2);
    expect(badReason.out).toContain('reason: got "because", expected one of unspecified, keyCompromise');
    expect(storedSerial(storage, "a.test").toLowerCase()).toBe(third);
    // Recorded as changes, with the token's name.
    const changes = (await (await fetch(`${r.balancer.adminUrl}/api/changes`)).json()) as { changes: { what: string; ok: boolean; detail: string[] }[] };
    expect(changes.changes.filter((c) => c.what.includes("certificate a.test")).map((c) => [c.what, c.ok])).toEqual([["renew certificate a.test", true], ["revoke and replace certificate a.test", true]]);
  }, 60_000);
});

describe.skipIf(programs.skip)("a renewal asked for while the name's turn is still looking", () => {
  test("waits for that turn (here, asking a slow CA for its window), then renews", async () => {
    const { ari, r, storage, first } = await ariIssued("ari-renew-wait");
    ari.delayMs = 1500;
    await waitFor(() => ari.pending > 0, "a window poll held by the CA", 20_000, 10);
    const before = storedSerial(storage, "a.test").toLowerCase();
    const report = await r.balancer.acme.renew("a.test");
    expect(report.replaced?.serial).toBe(before);
    expect(expectedCertId(storage, "a.test")).not.toBe(first);
    expect(report.serial).toBe(storedSerial(storage, "a.test").toLowerCase());
  }, 60_000);
});
