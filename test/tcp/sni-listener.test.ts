/**
 * A TCP listener that routes by TLS server name, configured as the balancer runs it
 * (`listeners[].mode: tcp` and routes with `match.sni`), in front of two real TLS backends:
 * the handshake is the backend's own (its certificate reaches the client), exact and wildcard
 * names choose the pool, a name no route takes goes to the listener's `pool`, and a reload
 * changes the routes for new connections.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import tls from "node:tls";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TCPSocketListener } from "bun";
import { startBalancer, type Balancer } from "../../src/balancer.ts";
import { loadConfigFile, validateConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { makePki, type Issued, type Pki } from "../helpers/pki.ts";

let pki: Pki;
let ca: string;
const servers: TCPSocketListener<undefined>[] = [];
let lb: Balancer;
const dir = mkdtempSync(join(tmpdir(), "sy-sni-"));

/** A TLS echo that prefixes every answer with its label: "A:hello". */
function tlsBackend(label: string, cert: Issued): number {
  const server: TCPSocketListener<undefined> = Bun.listen({
    hostname: "127.0.0.1", port: 0,
    tls: { cert: Bun.file(cert.cert), key: Bun.file(cert.key) },
    socket: { data: (s, chunk) => void s.write(`${label}:${Buffer.from(chunk).toString("latin1")}`) },
  });
  servers.push(server);
  return server.port;
}

/** One TLS exchange through the proxy: the backend's answer and the certificate's CN. */
function exchange(port: number, servername: string, text: string): Promise<{ answer: string; cn: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername, ca, rejectUnauthorized: false }, () => s.write(text));
    s.setTimeout(5000, () => s.destroy(new Error("timed out")));
    s.once("data", (d) => {
      const cn = String(s.getPeerCertificate().subject?.CN ?? "");
      resolve({ answer: d.toString("latin1"), cn });
      s.destroy();
    });
    s.once("error", reject);
    s.once("close", () => reject(new Error("closed without an answer")));
  });
}

let file: string;
let config: Record<string, unknown>;

beforeAll(async () => {
  pki = await makePki();
  ca = readFileSync(pki.ca, "utf8");
  const [a, b, d] = await Promise.all([pki.issue("a", ["a.example.com"]), pki.issue("b", ["x.b.example.com"]), pki.issue("d", ["default.example.com"])]);
  const [pa, pb, pd] = [tlsBackend("A", a), tlsBackend("B", b), tlsBackend("D", d)];
  config = {
    admin: false, healthCheck: false, log: { access: false }, timeouts: { header: "2s" },
    listeners: [{ name: "edge", mode: "tcp", host: "127.0.0.1", port: 0, pool: "fallback" }],
    pools: {
      a: { backends: [{ url: `tcp://127.0.0.1:${pa}` }] },
      b: { backends: [{ url: `tcp://127.0.0.1:${pb}` }] },
      fallback: { backends: [{ url: `tcp://127.0.0.1:${pd}` }] },
    },
    routes: [
      { name: "sni-a", match: { sni: "a.example.com" }, pool: "a" },
      { name: "sni-b", match: { sni: "*.b.example.com" }, pool: "b" },
    ],
  };
  file = join(dir, "sni.json");
  writeFileSync(file, JSON.stringify(config));
  lb = await startBalancer(validateConfig(config), { env: {}, logger: memoryLogger(), load: () => loadConfigFile(file), file });
}, 30_000);

afterAll(async () => {
  await lb?.stop(false);
  for (const s of servers) s.stop(true);
  pki?.remove();
  rmSync(dir, { recursive: true, force: true });
});

describe("TCP listener routing by SNI", () => {
  test("exact and wildcard names reach their pools; the TLS handshake is the backend's", async () => {
    expect(lb.url).toStartWith("tcp://127.0.0.1:");
    expect(await exchange(lb.port, "a.example.com", "hi")).toEqual({ answer: "A:hi", cn: "a.example.com" });
    expect(await exchange(lb.port, "x.b.example.com", "yo")).toEqual({ answer: "B:yo", cn: "x.b.example.com" });
  });

  test("a name no route takes goes to the listener's pool", async () => {
    expect((await exchange(lb.port, "other.example.org", "z")).answer).toBe("D:z");
  });

  test("a reload changes the SNI routes for new connections", async () => {
    writeFileSync(file, JSON.stringify({ ...config, routes: [{ name: "sni-a", match: { sni: "a.example.com" }, pool: "b" }, (config.routes as unknown[])[1]] }));
    const report = await lb.reload();
    expect(report.restartNeeded).toEqual([]);
    expect((await exchange(lb.port, "a.example.com", "again")).answer).toBe("B:again");
  });
});

test("a reload that points the TCP listener at another pool takes effect for new connections", async () => {
  const routes = [{ name: "sni-b", match: { sni: "*.b.example.com" }, pool: "b" }];
  const listeners = [{ ...(config.listeners as Record<string, unknown>[])[0]!, pool: "a" }];
  writeFileSync(file, JSON.stringify({ ...config, listeners, routes, pools: { ...(config.pools as object) } }));
  const report = await lb.reload();
  expect(report.restartNeeded).toEqual([]);
  expect((await exchange(lb.port, "other.example.org", "now")).answer).toBe("A:now");
  expect((await exchange(lb.port, "x.b.example.com", "still")).answer).toBe("B:still");
});
