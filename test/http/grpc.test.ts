/**
 * gRPC calls as the proxy sees them (src/http/grpc.ts): which requests are calls, their
 * deadline, and the proxy's own answers in gRPC's terms (errors.ts, the `grpc` form): HTTP 200
 * with grpc-status and grpc-message and no body, on both engines. The calls here go over
 * HTTP/1.1, which carries the same head; gRPC clients over HTTP/2 are in test/engine/h2/.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { errorAnswer, grpcMessage, grpcStatusFor, GRPC_STATUS } from "../../src/errors.ts";
import { grpcTimeoutMs, isGrpcCall } from "../../src/http/grpc.ts";
import { startRig, type TestRig } from "../helpers/balancer.ts";

const fields = (h: Record<string, string>) => {
  const m = new Map(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
  return { get: (n: string) => m.get(n) ?? null } as Parameters<typeof isGrpcCall>[0];
};

describe("what a gRPC call is", () => {
  test("application/grpc, with +format or parameters; not gRPC-Web, not others", () => {
    for (const ct of ["application/grpc", "application/grpc+proto", "application/grpc+json", "application/grpc;charset=utf-8", "Application/GRPC"]) {
      expect(isGrpcCall(fields({ "content-type": ct }))).toBe(true);
    }
    for (const ct of ["application/grpc-web", "application/grpc-web+proto", "application/json", "application/grpcx", "text/plain"]) {
      expect(isGrpcCall(fields({ "content-type": ct }))).toBe(false);
    }
    expect(isGrpcCall(fields({}))).toBe(false);
  });

  test("grpc-timeout: up to 8 digits and a unit; anything else is no deadline", () => {
    expect(grpcTimeoutMs(fields({ "grpc-timeout": "100m" }))).toBe(100);
    expect(grpcTimeoutMs(fields({ "grpc-timeout": "2S" }))).toBe(2000);
    expect(grpcTimeoutMs(fields({ "grpc-timeout": "1M" }))).toBe(60_000);
    expect(grpcTimeoutMs(fields({ "grpc-timeout": "1H" }))).toBe(3_600_000);
    expect(grpcTimeoutMs(fields({ "grpc-timeout": "5000u" }))).toBe(5);
    expect(grpcTimeoutMs(fields({ "grpc-timeout": "7000000n" }))).toBeCloseTo(7, 9);
    for (const bad of ["", "100", "m", "123456789S", "1.5S", "10s ", "-1S", "10x"]) expect(grpcTimeoutMs(fields({ "grpc-timeout": bad }))).toBeUndefined();
    expect(grpcTimeoutMs(fields({}))).toBeUndefined();
  });
});

describe("the proxy's own answers in gRPC's terms", () => {
  test("HTTP 200, grpc-status by what happened, grpc-message percent-encoded, no body", () => {
    const a = errorAnswer("SY_NO_BACKEND", "no backend: 100% down", { format: "grpc", requestId: "r1", headers: { connection: "close", "content-type": "text/plain" } });
    expect(a).toEqual({
      status: 200,
      headers: { connection: "close", "content-type": "application/grpc", "grpc-status": "14", "grpc-message": "SY_NO_BACKEND: no backend: 100%25 down", "x-request-id": "r1" },
      body: "",
    });
    expect(grpcStatusFor(504)).toBe(GRPC_STATUS.DEADLINE_EXCEEDED);
    expect(grpcStatusFor(429)).toBe(GRPC_STATUS.RESOURCE_EXHAUSTED);
    expect(grpcStatusFor(401)).toBe(GRPC_STATUS.UNAUTHENTICATED);
    expect(grpcStatusFor(403)).toBe(GRPC_STATUS.PERMISSION_DENIED);
    expect(grpcStatusFor(404)).toBe(GRPC_STATUS.UNIMPLEMENTED);
    expect(grpcStatusFor(418)).toBe(GRPC_STATUS.UNKNOWN);
    expect(grpcMessage("é\n%")).toBe("%C3%A9%0A%25");
  });
});

let rig: TestRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

/** A gRPC-looking POST over HTTP/1.1: status, the grpc fields, the body. */
async function call(path: string, headers: Record<string, string> = {}): Promise<{ status: number; grpcStatus: string | null; grpcMessage: string | null; body: string; ms: number }> {
  const t = performance.now();
  const r = await fetch(`${rig!.balancer.url}${path}`, { method: "POST", headers: { "content-type": "application/grpc", te: "trailers", ...headers }, body: new Uint8Array([0, 0, 0, 0, 0]) });
  const body = await r.text();
  return { status: r.status, grpcStatus: r.headers.get("grpc-status"), grpcMessage: r.headers.get("grpc-message"), body, ms: performance.now() - t };
}

describe("through the proxy", () => {
  test("no route: UNIMPLEMENTED; a rate limit: RESOURCE_EXHAUSTED; a JSON client still gets JSON", async () => {
    rig = await startRig(1, { routes: [{ name: "svc", match: { path: "/svc.Echo" }, pool: "default", rateLimit: { rate: "1/m", burst: 1, key: "route" } }] });
    const none = await call("/other.Service/Method");
    expect(none).toMatchObject({ status: 200, grpcStatus: String(GRPC_STATUS.UNIMPLEMENTED), body: "" });
    expect(none.grpcMessage).toStartWith("SY_NO_ROUTE");
    // The first goes through to the backend (which has no such method: its own 404).
    expect((await call("/svc.Echo/Say")).grpcStatus).toBeNull();
    const limited = await call("/svc.Echo/Say");
    expect(limited).toMatchObject({ status: 200, grpcStatus: String(GRPC_STATUS.RESOURCE_EXHAUSTED), body: "" });
    const json = await fetch(`${rig.balancer.url}/svc.Echo/Say`, { method: "POST", body: "x" });
    expect(json.status).toBe(429);
    expect(((await json.json()) as { error: string }).error).toBe("SY_RATE_LIMITED");
  });

  test("every backend down: UNAVAILABLE", async () => {
    rig = await startRig(1, { retry: { attempts: 1 } });
    await rig.cluster.backends[0]!.stop();
    const r = await call("/svc.Echo/Say");
    expect(r).toMatchObject({ status: 200, grpcStatus: String(GRPC_STATUS.UNAVAILABLE), body: "" });
  });

  test("grpc-timeout shorter than retry.timeout is the call's deadline: DEADLINE_EXCEEDED when it passes", async () => {
    rig = await startRig(1, { retry: { attempts: 1, timeout: "10s", perTryTimeout: "10s" } });
    const r = await call("/delay/3000", { "grpc-timeout": "200m" });
    expect(r).toMatchObject({ status: 200, grpcStatus: String(GRPC_STATUS.DEADLINE_EXCEEDED), body: "" });
    expect(r.grpcMessage).toContain("200ms");
    // Answered at the deadline, not at the backend's 3 s.
    expect(r.ms).toBeLessThan(2500);
    // A longer grpc-timeout leaves retry.timeout in force; a call within it is answered by the backend.
    const ok = await call("/delay/50", { "grpc-timeout": "1H" });
    expect(ok.status).toBe(200);
    expect(ok.grpcStatus).toBeNull();
  });
});

describe("retry.onGrpcStatus", () => {
  /** Two backends: one that answers every call UNAVAILABLE (Trailers-Only), one that serves it. */
  async function pair() {
    const seen = { unavailable: 0, serving: 0 };
    const down = Bun.serve({
      hostname: "127.0.0.1", port: 0,
      fetch: async (req) => {
        await req.arrayBuffer();
        seen.unavailable++;
        return new Response(null, { status: 200, headers: { "content-type": "application/grpc", "grpc-status": "14", "grpc-message": "shutting down" } });
      },
    });
    const up = Bun.serve({
      hostname: "127.0.0.1", port: 0,
      fetch: async (req) => {
        await req.arrayBuffer();
        seen.serving++;
        return new Response(new Uint8Array([0, 0, 0, 0, 0]), { status: 200, headers: { "content-type": "application/grpc" } });
      },
    });
    return { seen, down, up, stop: () => (down.stop(true), up.stop(true)) };
  }

  for (const onGrpcStatus of [["UNAVAILABLE"], []]) {
    test(onGrpcStatus.length ? "named: an UNAVAILABLE answer is tried again on the other backend, POST or not" : "not named (the default): the UNAVAILABLE answer reaches the client", async () => {
      const p = await pair();
      try {
        rig = await startRig(0, {
          strategy: "round-robin",
          backends: [{ name: "down", url: `http://127.0.0.1:${p.down.port}` }, { name: "up", url: `http://127.0.0.1:${p.up.port}` }],
          ...(onGrpcStatus.length ? { retry: { onGrpcStatus } } : {}),
        });
        const got = await Promise.all([0, 1, 2, 3].map(() => call("/svc.Echo/Say")));
        if (onGrpcStatus.length) {
          expect(got.map((g) => g.grpcStatus)).toEqual([null, null, null, null]);
          expect(p.seen.serving).toBe(4);
        } else {
          expect(got.filter((g) => g.grpcStatus === "14").length).toBe(2);
          expect(p.seen.serving).toBe(2);
        }
      } finally {
        p.stop();
      }
    });
  }

  test("a plain HTTP request with a grpc-status field is not a gRPC call: not retried for it", async () => {
    const p = await pair();
    try {
      rig = await startRig(0, { strategy: "round-robin", backends: [{ name: "down", url: `http://127.0.0.1:${p.down.port}` }], retry: { onGrpcStatus: ["UNAVAILABLE"] } });
      const r = await fetch(`${rig.balancer.url}/x`, { method: "POST", body: "x", headers: { "content-type": "text/plain" } });
      expect(r.headers.get("grpc-status")).toBe("14");
      expect(p.seen.unavailable).toBe(1);
    } finally {
      p.stop();
    }
  });

  test("config: names are checked; a route may set its own", async () => {
    const { validateConfig } = await import("../../src/config/load.ts");
    expect(() => validateConfig({ backends: [{ url: "http://127.0.0.1:9" }], retry: { onGrpcStatus: ["UNAVAIL"] } })).toThrow("retry.onGrpcStatus[0]: got \"UNAVAIL\", expected a gRPC status name");
    const c = validateConfig({ backends: [{ url: "http://127.0.0.1:9" }], routes: [{ name: "r", pool: "default", retry: { onGrpcStatus: ["UNAVAILABLE", "RESOURCE_EXHAUSTED"] } }] });
    expect(c.routes[0]!.retry?.onGrpcStatus).toEqual(["UNAVAILABLE", "RESOURCE_EXHAUSTED"]);
  });
});

describe("what a gRPC call's own deadline and answers count for", () => {
  test("a client's short grpc-timeout never counts against the backend (else clients could get it ejected)", async () => {
    rig = await startRig(1, { admin: { host: "127.0.0.1", port: 0 }, retry: { attempts: 1, timeout: "10s", perTryTimeout: "10s" }, passive: { consecutiveFailures: 2 } });
    for (let i = 0; i < 5; i++) {
      const r = await call("/delay/500", { "grpc-timeout": "20m" });
      expect(r.grpcStatus).toBe(String(GRPC_STATUS.DEADLINE_EXCEEDED));
    }
    const b = rig.balancer.pool.backends[0]!;
    expect(b.state()).toBe("up");
    expect(b.stats.proxyErrors).toBe(0);
  });

  test("the proxy's gRPC answers are counted, logged and listed as the failures they are, not as their HTTP 200", async () => {
    rig = await startRig(1, { admin: { host: "127.0.0.1", port: 0 }, retry: { attempts: 1 } });
    await rig.cluster.backends[0]!.stop();
    expect((await call("/svc.Echo/Say")).grpcStatus).toBe(String(GRPC_STATUS.UNAVAILABLE));
    const stats = (await (await fetch(`${rig.balancer.adminUrl}/stats`)).json()) as { totals: { responses: Record<string, number> }; recentFailures: { status: number }[] };
    expect(stats.totals.responses["2xx"]).toBe(0);
    expect(stats.totals.responses["5xx"]).toBe(1);
    expect(stats.recentFailures).toHaveLength(1);
    expect(stats.recentFailures[0]!.status).toBeGreaterThanOrEqual(502);
    expect(rig.access.at(-1)).toMatch(/" 50[23] /);
  });
});
