/**
 * https:// backends on both HTTP engines and in HTTPS health checks, against TLS backends made
 * with an openssl CA at test time: a good certificate is trusted through `tls.ca`; an expired
 * one, or one for another host, is refused unless `insecureSkipVerify` (or, for another host,
 * `servername` naming it) says otherwise; WebSockets go over wss:// the same way.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { Server } from "bun";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { makePki, type Issued, type Pki } from "../helpers/pki.ts";

let pki: Pki;
const servers: Record<"good" | "expired" | "wrongHost", { server: Server<unknown>; url: string }> = {} as never;

/** An HTTPS backend: `/` answers its name, `/health` 200, `/ws` echoes WebSocket messages. */
function httpsBackend(name: string, cert: Issued): { server: Server<unknown>; url: string } {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: Bun.file(cert.cert), key: Bun.file(cert.key) },
    fetch(req, srv) {
      const path = new URL(req.url).pathname;
      if (path === "/ws") return srv.upgrade(req, { data: undefined }) ? undefined : new Response("no", { status: 400 });
      return new Response(path === "/health" ? "ok" : name);
    },
    websocket: { message: (ws, m) => void ws.send(m) },
  });
  return { server, url: `https://127.0.0.1:${server.port}` };
}

beforeAll(async () => {
  pki = await makePki();
  servers.good = httpsBackend("good", await pki.issue("good", ["backend.test", "IP:127.0.0.1"]));
  servers.expired = httpsBackend("expired", await pki.issue("expired", ["backend.test", "IP:127.0.0.1"], { days: -1 }));
  servers.wrongHost = httpsBackend("wrong-host", await pki.issue("other", ["other.test"]));
});
afterAll(async () => {
  for (const s of Object.values(servers)) s.server.stop(true);
  await pki.remove();
});

const rigs: TestRig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.stop();
});

async function through(engine: string, backend: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<TestRig> {
  const r = await startRig(0, { engine, retry: { attempts: 1 }, backends: [backend], ...extra });
  rigs.push(r);
  return r;
}

for (const engine of ["fetch", "socket"]) {
  describe(`${engine} engine`, () => {
    test("a pool's tls is the default of its https:// backends; a backend's own replaces it", async () => {
      const r = await startRig(0, {
        engine, retry: { attempts: 1 }, backends: undefined,
        pools: {
          trusted: { tls: { ca: pki.ca }, backends: [{ url: servers.good.url }] },
          own: { tls: { ca: pki.ca }, backends: [{ url: servers.expired.url, tls: { insecureSkipVerify: true } }] },
          untrusted: { backends: [{ url: servers.good.url }] },
        },
        routes: [
          { name: "own", match: { path: "/own" }, pool: "own" },
          { name: "untrusted", match: { path: "/untrusted" }, pool: "untrusted" },
          { name: "trusted", pool: "trusted" },
        ],
      });
      rigs.push(r);
      expect(r.balancer.config.pools.trusted!.backends[0]!.tls).toMatchObject({ ca: pki.ca });
      expect(await (await fetch(r.balancer.url + "/")).text()).toBe("good");
      expect(await (await fetch(r.balancer.url + "/own")).text()).toBe("expired");
      expect((await fetch(r.balancer.url + "/untrusted")).status).toBe(502);
    });

    test("a certificate from the configured CA is trusted", async () => {
      const r = await through(engine, { url: servers.good.url, tls: { ca: pki.ca } });
      const res = await fetch(r.balancer.url + "/");
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("good");
      // And without that CA, the system's do not know it.
      const untrusted = await through(engine, { url: servers.good.url });
      expect((await fetch(untrusted.balancer.url + "/")).status).toBe(502);
    });

    test("an expired certificate is refused unless insecureSkipVerify", async () => {
      const r = await through(engine, { url: servers.expired.url, tls: { ca: pki.ca } });
      const res = await fetch(r.balancer.url + "/");
      expect(res.status).toBe(502);
      expect(((await res.json()) as { error: string }).error).toBe("SY_UPSTREAM_FAILED");
      await Bun.sleep(0);
      expect(r.access.join("\n")).toMatch(/SY_UPSTREAM_FAILED/);
      const skip = await through(engine, { url: servers.expired.url, tls: { ca: pki.ca, insecureSkipVerify: true } });
      const ok = await fetch(skip.balancer.url + "/");
      expect(ok.status).toBe(200);
      expect(await ok.text()).toBe("expired");
    });

    test("a certificate for another host is refused unless servername names it, or insecureSkipVerify", async () => {
      const r = await through(engine, { url: servers.wrongHost.url, tls: { ca: pki.ca } });
      expect((await fetch(r.balancer.url + "/")).status).toBe(502);
      const named = await through(engine, { url: servers.wrongHost.url, tls: { ca: pki.ca, servername: "other.test" } });
      const ok = await fetch(named.balancer.url + "/");
      expect(ok.status).toBe(200);
      expect(await ok.text()).toBe("wrong-host");
      const skip = await through(engine, { url: servers.wrongHost.url, tls: { insecureSkipVerify: true } });
      expect((await fetch(skip.balancer.url + "/")).status).toBe(200);
    });

    test("WebSocket to a wss:// backend, verified the same way", async () => {
      const r = await through(engine, { url: servers.good.url, tls: { ca: pki.ca } });
      const ws = new WebSocket(r.balancer.url.replace("http", "ws") + "/ws");
      const got = await new Promise<string>((resolve, reject) => {
        ws.onopen = () => ws.send("tls upstream");
        ws.onmessage = (e) => resolve(String(e.data));
        ws.onerror = (e) => reject(new Error((e as ErrorEvent).message));
      });
      expect(got).toBe("tls upstream");
      ws.close();
      const refused = await through(engine, { url: servers.expired.url, tls: { ca: pki.ca } });
      const bad = new WebSocket(refused.balancer.url.replace("http", "ws") + "/ws");
      const error = await new Promise<string>((resolve) => {
        bad.onopen = () => resolve("opened");
        bad.onerror = (e) => resolve((e as ErrorEvent).message);
      });
      expect(error).toContain("502");
    });
  });
}

test("HTTPS health checks verify as requests do", async () => {
  const check = { path: "/health", interval: "100ms", timeout: "1s", rise: 1, fall: 1 };
  const r = await startRig(0, {
    healthCheck: check,
    backends: [
      { name: "good", url: servers.good.url, tls: { ca: pki.ca } },
      { name: "expired", url: servers.expired.url, tls: { ca: pki.ca } },
      { name: "expired-skip", url: servers.expired.url, tls: { ca: pki.ca, insecureSkipVerify: true } },
    ],
  });
  rigs.push(r);
  const state = (name: string) => r.balancer.pool.get(name)!;
  expect(state("good").isHealthy).toBe(true);
  expect(state("expired").isHealthy).toBe(false);
  expect(state("expired").lastCheck!.detail).toMatch(/certificate|CERT/i);
  expect(state("expired-skip").isHealthy).toBe(true);
});

describe("a client certificate to backends that require mutual TLS (tls.cert, tls.key)", () => {
  let mtls: Server<unknown>;
  let client: Issued;
  let stranger: Issued;
  let otherPki: Pki;
  beforeAll(async () => {
    const serverCert = await pki.issue("mtls-server", ["backend.test", "IP:127.0.0.1"]);
    client = await pki.issue("mtls-client", ["client.test"], { cn: "switchyard-client" });
    // The same subject from a CA the backend does not trust.
    otherPki = await makePki();
    stranger = await otherPki.issue("stranger", ["client.test"], { cn: "switchyard-client" });
    mtls = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: Bun.file(serverCert.cert), key: Bun.file(serverCert.key), ca: Bun.file(pki.ca), requestCert: true, rejectUnauthorized: true },
      fetch: (req) => new Response(new URL(req.url).pathname === "/health" ? "ok" : "mutual"),
    });
  });
  afterAll(async () => {
    mtls.stop(true);
    await otherPki.remove();
  });

  for (const engine of ["socket", "fetch"]) {
    test(`${engine} engine: with the pool's client certificate the backend answers; without one, or one from another CA, it does not`, async () => {
      const url = `https://127.0.0.1:${mtls.port}`;
      const withCert = await startRig(0, { engine, retry: { attempts: 1 }, backends: undefined, pools: { m: { tls: { ca: pki.ca, cert: client.cert, key: client.key }, backends: [{ url }] } }, routes: [{ name: "r", pool: "m" }] });
      rigs.push(withCert);
      const good = await fetch(`${withCert.balancer.url}/`);
      expect(good.status).toBe(200);
      expect(await good.text()).toBe("mutual");
      const without = await startRig(0, { engine, retry: { attempts: 1 }, backends: [{ url, tls: { ca: pki.ca } }] });
      rigs.push(without);
      expect((await fetch(`${without.balancer.url}/`)).status).toBe(502);
      const wrongCa = await startRig(0, { engine, retry: { attempts: 1 }, backends: [{ url, tls: { ca: pki.ca, cert: stranger.cert, key: stranger.key } }] });
      rigs.push(wrongCa);
      expect((await fetch(`${wrongCa.balancer.url}/`)).status).toBe(502);
    });
  }

  test("HTTPS health checks present it too; a cert without its key, or a key that is not its, is refused naming the field", async () => {
    const { validateConfig } = await import("../../src/config/load.ts");
    const url = `https://127.0.0.1:${mtls.port}`;
    const r = await startRig(0, { backends: [{ name: "m", url, tls: { ca: pki.ca, cert: client.cert, key: client.key } }], healthCheck: { path: "/health", interval: "100ms", rise: 1, fall: 1 } });
    rigs.push(r);
    const b = r.balancer.pool.backends[0]!;
    const { waitFor } = await import("../helpers/wait.ts");
    await waitFor(() => b.lastCheck?.ok === true, "a passing health check over mutual TLS");
    expect(() => validateConfig({ backends: [{ url, tls: { cert: client.cert } }] })).toThrow("backends[0].tls: cert set alone; expected cert and key together");
    expect(() => validateConfig({ backends: [{ url, tls: { cert: client.cert, key: stranger.key } }] })).toThrow("is not the key of the certificate");
  });
});
