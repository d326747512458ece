/**
 * TLS termination (`listen.tls`) on both HTTP engines and in TCP mode, with a CA and
 * certificates made at test time by openssl (test/helpers/pki.ts): curl over HTTPS, the
 * certificate chosen by SNI (on Bun.listen, by src/tls/hello-first.ts from the ClientHello it
 * reads before TLS), minVersion, X-Forwarded-Proto, certificates
 * re-read on reload, the plain-HTTP redirect, and config errors for bad files.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { copyFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import tls from "node:tls";
import { startSummaryServer } from "../tcp/helpers.ts";
import { waitFor } from "../helpers/wait.ts";
import { startRig, type RigConfig, type TestRig } from "../helpers/balancer.ts";
import { curl, makePki, type Issued, type Pki } from "../helpers/pki.ts";
import { ConfigError, validateConfig } from "../../src/config/load.ts";

let pki: Pki;
let a: Issued;
let b: Issued;
beforeAll(async () => {
  pki = await makePki();
  a = await pki.issue("a", ["a.test", "IP:127.0.0.1"]);
  b = await pki.issue("b", ["b.test"]);
});
afterAll(() => pki.remove());

const rigs: TestRig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.stop();
});

/** One sim backend behind a balancer; `reload()` applies the running config again (its files re-read). */
async function rig(config: RigConfig): Promise<TestRig> {
  let self: TestRig | undefined;
  const r = await startRig(1, config, undefined, { load: async () => self!.balancer.config });
  self = r;
  rigs.push(r);
  return r;
}

const port = (r: TestRig) => r.balancer.port;
/** curl to NAME on the balancer's port (resolved to 127.0.0.1), trusting the test CA. */
const curlAs = (name: string, r: TestRig, path = "/", extra: string[] = []) =>
  curl(["--cacert", pki.ca, "--resolve", `${name}:${port(r)}:127.0.0.1`, ...extra, `https://${name}:${port(r)}${path}`]);
const subject = (verbose: string) => /subject: CN ?= ?(\S+)/.exec(verbose)?.[1];

for (const engine of ["fetch", "socket"]) {
  describe(`${engine} engine`, () => {
    test("curl over HTTPS; the certificate chosen by SNI; X-Forwarded-Proto https", async () => {
      const r = await rig({ engine, listen: { host: "127.0.0.1", port: 0, tls: { cert: a.cert, key: a.key, sni: [{ cert: b.cert, key: b.key }] } } });
      expect(r.balancer.url.startsWith("https://")).toBe(true);
      const plain = await curl(["--cacert", pki.ca, `${r.balancer.url}/echo`]);
      expect(plain.code).toBe(0);
      expect(subject(plain.verbose)).toBe("a.test");
      const seen = JSON.parse(plain.body) as { headers: [string, string][] };
      expect(seen.headers).toContainEqual(["x-forwarded-proto", "https"]);
      const viaB = await curlAs("b.test", r);
      expect(viaB.code).toBe(0);
      expect(subject(viaB.verbose)).toBe("b.test");
      expect(viaB.body.trim()).toBe(r.cluster.backends[0]!.name);
      const viaA = await curlAs("a.test", r);
      expect(subject(viaA.verbose)).toBe("a.test");
      // A name no certificate has gets the default, which the client then refuses.
      const other = await curlAs("c.test", r);
      expect(other.code).not.toBe(0);
      expect(subject(other.verbose)).toBe("a.test");
    });

    test('minVersion "TLSv1.3" refuses a TLS 1.2 client', async () => {
      const r = await rig({ engine, listen: { host: "127.0.0.1", port: 0, tls: { cert: a.cert, key: a.key, minVersion: "TLSv1.3" } } });
      const old = await curlAs("a.test", r, "/", ["--tls-max", "1.2"]);
      expect(old.code).not.toBe(0);
      expect(old.verbose).toMatch(/protocol version|alert/i);
      const ok = await curlAs("a.test", r, "/", ["--tlsv1.3"]);
      expect(ok.code).toBe(0);
    });

    test("a reload re-reads the certificate files", async () => {
      const first = await pki.issue(`${engine}-live`, ["a.test", "IP:127.0.0.1"], { cn: "first.a.test" });
      const r = await rig({ engine, listen: { host: "127.0.0.1", port: 0, tls: { cert: first.cert, key: first.key } } });
      expect(subject((await curlAs("a.test", r)).verbose)).toBe("first.a.test");
      const renewed = await pki.issue(`${engine}-renewed`, ["a.test", "IP:127.0.0.1"], { cn: "renewed.a.test" });
      await copyFile(renewed.cert, first.cert);
      await copyFile(renewed.key, first.key);
      const report = await r.balancer.reload();
      expect(report.lines.join("\n")).toContain("listen.tls: certificates re-read");
      const after = await curlAs("a.test", r);
      expect(after.code).toBe(0);
      expect(subject(after.verbose)).toBe("renewed.a.test");
      expect(r.balancer.config.listen.tls).toBeDefined();
    });

    test("WebSocket over wss://", async () => {
      const r = await rig({ engine, listen: { host: "127.0.0.1", port: 0, tls: { cert: a.cert, key: a.key } } });
      const ws = new WebSocket(`wss://127.0.0.1:${port(r)}/ws`, { tls: { ca: await Bun.file(pki.ca).text() } } as unknown as string[]);
      const got = await new Promise<string>((resolve, reject) => {
        ws.onopen = () => ws.send("over tls");
        ws.onmessage = (e) => resolve(String(e.data));
        ws.onerror = (e) => reject(new Error((e as ErrorEvent).message));
      });
      expect(got).toBe("over tls");
      ws.close();
    });
  });
}

test("httpRedirect answers plain HTTP with a 308 to the same target over HTTPS", async () => {
  const r = await rig({ listen: { host: "127.0.0.1", port: 0, tls: { cert: a.cert, key: a.key }, httpRedirect: { port: 0 } } });
  const line = r.logLines.find((l) => l.includes("redirecting http://"))!;
  const redirectPort = Number(/:(\d+) to HTTPS/.exec(line)![1]);
  const res = await fetch(`http://127.0.0.1:${redirectPort}/some/path?x=1&x=2`, { redirect: "manual", headers: { host: `a.test:${redirectPort}` } });
  expect(res.status).toBe(308);
  expect(res.headers.get("location")).toBe(`https://a.test:${port(r)}/some/path?x=1&x=2`);
  // Followed, it reaches the backend over HTTPS.
  const followed = await curl(["--cacert", pki.ca, "-L", "--resolve", `a.test:${port(r)}:127.0.0.1`, "--resolve", `a.test:${redirectPort}:127.0.0.1`, `http://a.test:${redirectPort}/`]);
  expect(followed.body.trim()).toBe(r.cluster.backends[0]!.name);
});

test("a reload that adds httpRedirect starts the redirecting listener; one that drops it stops it", async () => {
  const base = { listen: { host: "127.0.0.1", port: 0, tls: { cert: a.cert, key: a.key } } };
  const r = await startRig(1, base, undefined, { load: async () => next });
  rigs.push(r);
  let next = r.balancer.config;
  const { listeners, ...rest } = r.balancer.config;
  next = { ...rest, listeners: [{ ...listeners[0]!, httpRedirect: { port: 0 } }] };
  const report = await r.balancer.reload();
  const line = report.lines.find((l) => l.includes("redirecting http://"))!;
  const redirectPort = Number(/:(\d+) to HTTPS/.exec(line)![1]);
  const res = await fetch(`http://127.0.0.1:${redirectPort}/p`, { redirect: "manual", headers: { host: `a.test:${redirectPort}` } });
  expect(res.status).toBe(308);
  expect(res.headers.get("location")).toBe(`https://a.test:${port(r)}/p`);
  next = { ...rest, listeners };
  expect((await r.balancer.reload()).lines).toContain("listener default: no longer redirecting plain HTTP");
  await waitFor(async () => fetch(`http://127.0.0.1:${redirectPort}/p`, { redirect: "manual" }).then(() => false, () => true), "the redirecting listener to close");
});

test("TCP mode terminates TLS and relays the plain bytes", async () => {
  const r = await rig((c) => ({
    mode: "tcp", listen: { host: "127.0.0.1", port: 0, tls: { cert: a.cert, key: a.key, sni: [{ cert: b.cert, key: b.key }] } },
    backends: c.backends.map((x) => ({ url: x.url.replace("http://", "") })),
  }));
  expect(r.balancer.url.startsWith("tls://")).toBe(true);
  const res = await curlAs("b.test", r, "/echo");
  expect(res.code).toBe(0);
  expect(subject(res.verbose)).toBe("b.test");
  expect(JSON.parse(res.body).path).toBe("/echo");
});

test("TCP mode over TLS: a client's half-close reaches the backend, and the backend's answer still comes back", async () => {
  // Reads to the client's FIN, then answers: only a relay that passed the FIN on and kept the
  // other direction open gets the answer through (TLS close_notify, then FIN, on the client side).
  const summary = startSummaryServer();
  const r = await rig({ mode: "tcp", listen: { host: "127.0.0.1", port: 0, tls: { cert: a.cert, key: a.key } }, backends: [{ url: `127.0.0.1:${summary.port}` }] });
  try {
    const out = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: "127.0.0.1", port: port(r), servername: "a.test", ca: readFileSync(pki.ca), allowHalfOpen: true } as tls.ConnectionOptions, () => {
        s.write("hello world");
        s.end();
      });
      let got = "";
      s.on("data", (d) => (got += d));
      s.on("close", () => resolve(got));
      s.on("error", (e) => resolve(`error ${e.message}`));
    });
    expect(out).toBe(`11 ${createHash("sha256").update("hello world").digest("hex")}\n`);
  } finally {
    summary.stop();
  }
});

test("config errors name the field and the file", () => {
  const base = { backends: [{ url: "http://127.0.0.1:1" }] };
  const problems = (c: Record<string, unknown>) => {
    try {
      validateConfig({ ...base, ...c });
      return [];
    } catch (e) {
      if (e instanceof ConfigError) return e.problems;
      throw e;
    }
  };
  expect(problems({ listen: { tls: { cert: "/nonexistent.pem", key: a.key } } })).toEqual([
    'listen.tls.cert: cannot read "/nonexistent.pem": file not found',
  ]);
  expect(problems({ listen: { tls: { cert: a.cert, key: b.key } } })[0]).toContain(`listen.tls.key: "${b.key}" is not the key of the certificate in "${a.cert}"`);
  expect(problems({ listen: { tls: { cert: a.key, key: a.key } } })[0]).toContain("is not a PEM certificate");
  expect(problems({ listen: { tls: { cert: a.cert, key: a.key, minVersion: "TLSv1.1" } } })[0]).toContain('expected "TLSv1.2" or "TLSv1.3"');
  expect(problems({ listen: { httpRedirect: { port: 8080 } } })).toEqual([
    "listen.httpRedirect: set without listen.tls; expected it only when the proxy listens over HTTPS",
  ]);
  expect(problems({ backends: [{ url: "http://127.0.0.1:1", tls: { insecureSkipVerify: true } }] })).toEqual([
    'backends[0].tls: set for "http://127.0.0.1:1"; expected an https:// URL (tls applies to HTTPS backends)',
  ]);
  expect(problems({ backends: [{ url: "https://127.0.0.1:1", tls: { ca: "/nonexistent-ca.pem" } }] })).toEqual([
    'backends[0].tls.ca: cannot read "/nonexistent-ca.pem": file not found',
  ]);
});

test("with workers, each worker terminates TLS with the configured certificates", async () => {
  const r = await rig({ workers: 2, listen: { host: "127.0.0.1", port: 0, tls: { cert: a.cert, key: a.key, sni: [{ cert: b.cert, key: b.key }] } } });
  expect(r.balancer.url.startsWith("https://")).toBe(true);
  for (const name of ["a.test", "b.test"]) {
    const res = await curlAs(name, r, "/echo");
    expect(res.code).toBe(0);
    expect(subject(res.verbose)).toBe(name);
    expect((JSON.parse(res.body) as { headers: [string, string][] }).headers).toContainEqual(["x-forwarded-proto", "https"]);
  }
}, 30_000);
