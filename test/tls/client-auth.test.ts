/**
 * Mutual TLS from clients (listen.tls.clientAuth): the socket engine asks for a client
 * certificate and verifies it against the configured CA, on every context (server names added
 * by SNI included); backends learn the verified subject and fingerprint in the fields the config
 * names, which clients cannot forge; `optional` lets in clients without one. HTTP/1.1 and HTTP/2
 * clients, TCP listeners, and the fetch engine refused.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { curl, makePki, type Issued, type Pki } from "../helpers/pki.ts";
import { validateConfig } from "../../src/config/load.ts";

let pki: Pki;
let other: Pki;
let server: Issued;
let sniServer: Issued;
let alice: Issued;
let mallory: Issued;
beforeAll(async () => {
  pki = await makePki();
  other = await makePki();
  server = await pki.issue("server", ["a.test", "IP:127.0.0.1"]);
  sniServer = await pki.issue("sni", ["b.test"]);
  alice = await pki.issue("alice", ["alice.test"], { cn: "alice" });
  // A certificate from a CA the listener does not trust.
  mallory = await other.issue("mallory", ["alice.test"], { cn: "alice" });
});
afterAll(async () => {
  await pki.remove();
  await other.remove();
});

const rigs: TestRig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.stop();
});

const FIELDS = { subjectHeader: "X-Client-Subject", fingerprintHeader: "x-client-sha256" };
async function rig(mode: "required" | "optional", extra: Record<string, unknown> = {}): Promise<TestRig> {
  const r = await startRig(1, {
    engine: "socket",
    listen: { host: "127.0.0.1", port: 0, tls: { cert: server.cert, key: server.key, sni: [{ cert: sniServer.cert, key: sniServer.key }], clientAuth: { ca: pki.ca, mode, ...FIELDS } } },
    ...extra,
  });
  rigs.push(r);
  return r;
}

/** curl to `name` on the rig, with `who`'s certificate or none; the backend's echo of the request's fields. */
async function ask(r: TestRig, name: string, who?: Issued, extra: string[] = []): Promise<{ code: number; fields?: Map<string, string>; verbose: string }> {
  const port = r.balancer.port;
  const res = await curl([
    "--cacert", pki.ca, "--resolve", `${name}:${port}:127.0.0.1`,
    ...(who !== undefined ? ["--cert", who.cert, "--key", who.key] : []),
    "-H", "X-Client-Subject: CN=forged", "-H", "x-client-sha256: 00", "-H", "X_Client_Subject: CN=forged-too",
    ...extra, `https://${name}:${port}/echo`,
  ]);
  if (res.code !== 0) return { code: res.code, verbose: res.verbose };
  const echoed = JSON.parse(res.body) as { headers: [string, string][] };
  const fields = new Map<string, string>();
  for (const [k, v] of echoed.headers) if (k === "x-client-subject" || k === "x-client-sha256" || k === "x_client_subject") fields.set(k, fields.has(k) ? `${fields.get(k)}|${v}` : v);
  return { code: 0, fields, verbose: res.verbose };
}

const fingerprint = (i: Issued) => new X509Certificate(readFileSync(i.cert)).fingerprint256.replace(/:/g, "").toLowerCase();

describe("clientAuth required", () => {
  test("a verified client reaches the backend with its subject and fingerprint, whatever it sent in those fields; over SNI too", async () => {
    const r = await rig("required");
    for (const name of ["a.test", "b.test"]) {
      const got = await ask(r, name, alice);
      expect(got.code).toBe(0);
      expect(got.fields!.get("x-client-subject")).toBe("CN=alice");
      expect(got.fields!.get("x-client-sha256")).toBe(fingerprint(alice));
      expect(fingerprint(alice)).toBe(createHash("sha256").update(new X509Certificate(readFileSync(alice.cert)).raw).digest("hex"));
    }
  });

  test("no certificate, or one from another CA: the handshake fails (with SNI too)", async () => {
    const r = await rig("required");
    for (const name of ["a.test", "b.test"]) {
      expect((await ask(r, name)).code).not.toBe(0);
      expect((await ask(r, name, mallory)).code).not.toBe(0);
    }
  });

  test("HTTP/2 clients (ALPN h2) get the same fields", async () => {
    const r = await rig("required");
    const got = await ask(r, "a.test", alice, ["--http2"]);
    expect(got.code).toBe(0);
    expect(got.verbose).toContain("ALPN: server accepted h2");
    expect(got.fields!.get("x-client-subject")).toBe("CN=alice");
    expect(got.fields!.get("x-client-sha256")).toBe(fingerprint(alice));
  });
});

describe("clientAuth optional", () => {
  test("a client without a certificate, or with one that does not verify, is let in without the fields; forged ones are removed", async () => {
    const r = await rig("optional");
    const none = await ask(r, "a.test");
    expect(none.code).toBe(0);
    expect(none.fields!.size).toBe(0);
    const stranger = await ask(r, "a.test", mallory);
    expect(stranger.code).toBe(0);
    expect(stranger.fields!.size).toBe(0);
    const verified = await ask(r, "a.test", alice);
    expect(verified.fields!.get("x-client-subject")).toBe("CN=alice");
  });
});

test("a TCP listener with clientAuth required refuses a client without a certificate", async () => {
  const r = await startRig(1, (c) => ({
    mode: "tcp",
    listen: { host: "127.0.0.1", port: 0, tls: { cert: server.cert, key: server.key, clientAuth: { ca: pki.ca } } },
    backends: c.backends.map((b) => ({ name: b.name, url: `tcp://127.0.0.1:${b.port}` })),
  }));
  rigs.push(r);
  const port = r.balancer.port;
  const base = ["--cacert", pki.ca, "--resolve", `a.test:${port}:127.0.0.1`];
  expect((await curl([...base, `https://a.test:${port}/`])).code).not.toBe(0);
  const ok = await curl([...base, "--cert", alice.cert, "--key", alice.key, `https://a.test:${port}/`]);
  expect(ok.code).toBe(0);
});

test("config: the fetch engine is refused, saying why; a CA file that cannot be read is named", () => {
  const listen = { port: 0, tls: { cert: server.cert, key: server.key, clientAuth: { ca: pki.ca } } };
  expect(() => validateConfig({ engine: "fetch", listen, backends: [{ url: "http://127.0.0.1:9" }] })).toThrow('listen.tls.clientAuth: set with engine "fetch"; expected engine "socket"');
  expect(() => validateConfig({ listen: { port: 0, tls: { cert: server.cert, key: server.key, clientAuth: { ca: "/nonexistent/ca.pem" } } }, backends: [{ url: "http://127.0.0.1:9" }] })).toThrow(
    'listen.tls.clientAuth.ca: cannot read "/nonexistent/ca.pem": file not found',
  );
  expect(() => validateConfig({ listen: { port: 0, tls: { cert: server.cert, key: server.key, clientAuth: { ca: pki.ca, mode: "maybe" } } }, backends: [{ url: "http://127.0.0.1:9" }] })).toThrow(
    'listen.tls.clientAuth.mode: got "maybe", expected "required" or "optional"',
  );
});
