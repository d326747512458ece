/**
 * The access log of a running balancer (the rig's engine: SWITCHYARD_TEST_ENGINE), through the
 * forwarding loop: combined lines of real requests, the fields log.fields chooses with the
 * upstream timings the engine can tell, log.only, and the client's TLS.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startRig, testEngine, type TestRig } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";
import { makePki } from "../helpers/pki.ts";

const engine = testEngine().engine ?? "socket";
let rig: TestRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

describe(`the access log on the ${engine} engine`, () => {
  test("combined: each request's line as nginx writes it, with its status, body bytes, Referer and User-Agent", async () => {
    rig = await startRig(1, { log: { format: "combined" } });
    const url = rig.balancer.url;
    const r1 = await fetch(`${url}/bytes/1234?x=1`, { headers: { "user-agent": 'agent "quoted"', referer: "http://ref.example/a" } });
    expect((await r1.arrayBuffer()).byteLength).toBe(1234);
    const r2 = await fetch(`${url}/status/404`, { headers: { "user-agent": "two" } });
    await r2.text();
    await waitFor(() => rig!.access.length >= 2, "two access-log lines");
    const clf = /^127\.0\.0\.1 - - \[\d\d\/[A-Z][a-z]{2}\/\d{4}:\d\d:\d\d:\d\d \+0000\] "([^"]*)" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"\n$/;
    const [a, b] = rig.access.map((l) => clf.exec(l));
    expect(a?.slice(1)).toEqual(["GET /bytes/1234?x=1 HTTP/1.1", "200", "1234", "http://ref.example/a", "agent \\x22quoted\\x22"]);
    expect(b?.slice(1)).toEqual(["GET /status/404 HTTP/1.1", "404", "10", "-", "two"]);
  });

  test("fields: the chosen fields in order; upstream times as far as the engine can tell; connect 0 on a reused connection (socket)", async () => {
    rig = await startRig(1, {
      log: { format: "json", fields: ["method", "host", "target", "status", "bytes_in", "bytes_out", "backend", "tries", "upstream_connect_time", "upstream_first_byte_time", "upstream_time", "duration", "trace_id"] },
    });
    const url = rig.balancer.url;
    for (let i = 0; i < 2; i++) {
      const r = await fetch(`${url}/echo`, { method: "POST", body: "x".repeat(100) });
      await r.text();
    }
    await waitFor(() => rig!.access.length >= 2, "two access-log lines");
    const [first, second] = rig.access.map((l) => JSON.parse(l));
    for (const e of [first, second]) {
      expect(Object.keys(e)).toEqual(["time", "method", "host", "target", "status", "bytes_in", "bytes_out", "backend", "tries", "upstream_connect_time", "upstream_first_byte_time", "upstream_time", "duration", "trace_id"]);
      expect(e).toMatchObject({ method: "POST", host: new URL(url).host, target: "/echo", status: 200, bytes_in: 100, backend: "backend-1", tries: 1, trace_id: null });
      expect(e.bytes_out).toBeGreaterThan(0);
      expect(e.upstream_first_byte_time).toBeGreaterThanOrEqual(0);
      expect(e.upstream_time).toBeGreaterThanOrEqual(e.upstream_first_byte_time);
      expect(e.duration).toBeGreaterThanOrEqual(e.upstream_time);
    }
    if (engine === "socket") {
      // The first try dialled (no start-up probes in the rig); the second reused that connection.
      expect(first.upstream_connect_time).toBeGreaterThanOrEqual(0);
      expect(first.upstream_connect_time).toBeLessThanOrEqual(first.upstream_first_byte_time);
      expect(second.upstream_connect_time).toBe(0);
    } else {
      // fetch() cannot tell a connect from a reused connection.
      expect(first.upstream_connect_time).toBeNull();
      expect(second.upstream_connect_time).toBeNull();
    }
  });

  test("only errors: 5xx from a backend and the proxy's own answers, nothing else", async () => {
    rig = await startRig(1, (c) => ({
      log: { format: "text", fields: ["status", "error", "target"], only: "errors" },
      routes: [{ name: "dead", match: { path: "/dead" }, pool: "dead" }, { name: "rest", pool: "default" }],
      pools: { default: { backends: [{ name: "b1", url: c.backends[0]!.url }] }, dead: { backends: [{ name: "gone", url: "http://127.0.0.1:9" }] } },
      backends: undefined,
    }));
    const url = rig.balancer.url;
    for (const path of ["/", "/status/404", "/status/500", "/dead", "/"]) await (await fetch(url + path)).text();
    await waitFor(() => rig!.access.length >= 2, "two error lines");
    // The requests are sequential: by the time the last line is in, every earlier one is too.
    await (await fetch(url + "/status/503")).text();
    await waitFor(() => rig!.access.length >= 3, "three error lines");
    expect(rig.access.map((l) => l.replace(/^\S+ /, ""))).toEqual([
      "status=500 error=- target=/status/500\n",
      "status=502 error=SY_UPSTREAM_FAILED target=/dead\n",
      "status=503 error=- target=/status/503\n",
    ]);
  });

  test("TLS: the client connection's version and cipher where the engine can tell (socket), else -", async () => {
    const pki = await makePki();
    try {
      const cert = await pki.issue("proxy", ["localhost", "IP:127.0.0.1"]);
      rig = await startRig(1, { log: { format: "text", fields: ["tls_version", "tls_cipher", "status"] }, listen: { host: "127.0.0.1", port: 0, tls: cert } });
      const ca = await Bun.file(pki.ca).text();
      const r = await fetch(rig.balancer.url.replace("http:", "https:"), { tls: { ca } });
      await r.text();
      await waitFor(() => rig!.access.length >= 1, "the line");
      const line = rig.access[0]!.replace(/^\S+ /, "");
      if (engine === "socket") expect(line).toMatch(/^tls_version=TLSv1\.[23] tls_cipher=[A-Z0-9_-]+ status=200\n$/);
      else expect(line).toBe("tls_version=- tls_cipher=- status=200\n");
    } finally {
      await pki.remove();
    }
  });
});
