/**
 * The `grpc` health check (src/health/grpc-probe.ts) against real gRPC servers: @grpc/grpc-js
 * serving grpc.health.v1.Health, cleartext and over TLS, and a balancer whose monitor takes a
 * backend down when its service stops SERVING and back up when it serves again.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { Backend } from "../../src/pool/backend.ts";
import type { ResolvedCheck } from "../../src/health/check.ts";
import { GrpcProbe, grpcFrame, healthRequest, servingStatus } from "../../src/health/grpc-probe.ts";
import { validateConfig } from "../../src/config/load.ts";
import { makePki, type Pki } from "../helpers/pki.ts";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { waitFor } from "../helpers/wait.ts";

/** A gRPC server with the health service, each service's status settable ("" is the server's). */
class HealthServer {
  readonly statuses = new Map<string, number>([["", 1]]);
  private server = new grpc.Server();
  port = 0;

  async start(credentials = grpc.ServerCredentials.createInsecure()): Promise<this> {
    this.server.addService(
      {
        Check: {
          path: "/grpc.health.v1.Health/Check",
          requestStream: false,
          responseStream: false,
          requestSerialize: (b: Buffer) => b,
          requestDeserialize: (b: Buffer) => b,
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        },
      },
      {
        Check: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
          // HealthCheckRequest: field 1, the service name.
          const req = call.request;
          const service = req.length > 2 ? req.subarray(2, 2 + req[1]!).toString() : "";
          const status = this.statuses.get(service);
          if (status === undefined) return done({ code: grpc.status.NOT_FOUND, details: `unknown service ${service}` });
          done(null, Buffer.from([0x08, status]));
        },
      },
    );
    this.port = await new Promise<number>((resolve, reject) => this.server.bindAsync("127.0.0.1:0", credentials, (e, port) => (e ? reject(e) : resolve(port))));
    return this;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.tryShutdown(() => resolve()));
  }
}

const check = (over: Partial<ResolvedCheck> = {}): ResolvedCheck => ({
  type: "grpc", service: "", path: "/health", method: "GET", headers: {}, host: undefined, port: undefined,
  interval: 100, timeout: 1000, rise: 1, fall: 1, expectStatus: ["2xx"], expectBody: undefined, ...over,
});
const probe = async (p: GrpcProbe, timeout = 2000) => {
  const c = new AbortController();
  const t = setTimeout(() => c.abort(), timeout);
  try {
    return await p.run(c.signal);
  } finally {
    clearTimeout(t);
  }
};

describe("the messages, by hand", () => {
  test("HealthCheckRequest and the frame around it; ServingStatus read from an answer", () => {
    expect([...healthRequest("")]).toEqual([]);
    expect([...healthRequest("a.B")]).toEqual([0x0a, 3, 0x61, 0x2e, 0x42]);
    expect([...grpcFrame(new Uint8Array([1, 2]))]).toEqual([0, 0, 0, 0, 2, 1, 2]);
    expect(servingStatus(new Uint8Array([0x08, 1]))).toBe(1);
    expect(servingStatus(new Uint8Array([]))).toBe(0);
    // An unknown length-delimited field before it is skipped.
    expect(servingStatus(new Uint8Array([0x12, 1, 0x41, 0x08, 2]))).toBe(2);
    expect(servingStatus(new Uint8Array([0x08]))).toBeUndefined();
    expect(servingStatus(new Uint8Array([0x0d, 0, 0, 0, 0]))).toBeUndefined();
  });
});

describe("against @grpc/grpc-js", () => {
  let plain: HealthServer;
  let secure: HealthServer;
  let pki: Pki;
  beforeAll(async () => {
    plain = await new HealthServer().start();
    pki = await makePki();
    const issued = await pki.issue("grpc", ["localhost", "IP:127.0.0.1"]);
    secure = await new HealthServer().start(
      grpc.ServerCredentials.createSsl(null, [{ cert_chain: readFileSync(issued.cert), private_key: readFileSync(issued.key) }], false),
    );
  });
  afterAll(async () => {
    await plain.stop();
    await secure.stop();
    await pki.remove();
  });

  test("cleartext: SERVING is up; NOT_SERVING, an unknown service and a closed port are down, saying why", async () => {
    const at = `http://127.0.0.1:${plain.port}`;
    expect(await probe(new GrpcProbe(new Backend({ name: "g", url: at }), check()))).toEqual({ ok: true, detail: "SERVING" });
    plain.statuses.set("svc.A", 2);
    expect(await probe(new GrpcProbe(new Backend({ name: "g", url: at }), check({ service: "svc.A" })))).toEqual({ ok: false, detail: "NOT_SERVING" });
    const unknown = await probe(new GrpcProbe(new Backend({ name: "g", url: at }), check({ service: "svc.Nope" })));
    expect(unknown).toEqual({ ok: false, detail: "grpc-status 5 (unknown service svc.Nope)" });
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = closed.port;
    closed.stop(true);
    const refused = await probe(new GrpcProbe(new Backend({ name: "g", url: `http://127.0.0.1:${port}` }), check()));
    expect(refused.ok).toBe(false);
    expect(refused.detail).toContain("refused");
  });

  test("an HTTP/1.1 server is down, not a crash", async () => {
    const h1 = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
    try {
      const r = await probe(new GrpcProbe(new Backend({ name: "h", url: `http://127.0.0.1:${h1.port}` }), check()), 1000);
      expect(r.ok).toBe(false);
    } finally {
      h1.stop(true);
    }
  });

  test("TLS: ALPN h2 with the backend's CA; a CA it does not trust is down", async () => {
    const url = `https://127.0.0.1:${secure.port}`;
    const trusted = new Backend({ name: "s", url, tls: { ca: pki.ca } });
    expect(await probe(new GrpcProbe(trusted, check()))).toEqual({ ok: true, detail: "SERVING" });
    const untrusted = await probe(new GrpcProbe(new Backend({ name: "s", url }), check()));
    expect(untrusted.ok).toBe(false);
  });
});

describe("in a balancer", () => {
  let rig: TestRig | undefined;
  let server: HealthServer | undefined;
  afterEach(async () => {
    await rig?.stop();
    await server?.stop();
    rig = undefined;
  });

  test("a backend whose service stops SERVING goes down, and comes back when it serves again", async () => {
    server = await new HealthServer().start();
    server.statuses.set("svc.Echo", 1);
    const port = server.port;
    rig = await startRig(0, {
      backends: [{ name: "g", url: `http://127.0.0.1:${port}` }],
      healthCheck: { type: "grpc", service: "svc.Echo", interval: "100ms", timeout: "1s", rise: 1, fall: 1 },
    });
    const b = rig.balancer.pool.backends[0]!;
    await waitFor(() => b.state() === "up", "the backend up by its gRPC check");
    server.statuses.set("svc.Echo", 2);
    await waitFor(() => b.state() === "down", "the backend down once its service is NOT_SERVING");
    server.statuses.set("svc.Echo", 1);
    await waitFor(() => b.state() === "up", "the backend up again");
  });

  test("config: grpc and service are taken; a PROXY-protocol pool refuses the grpc check", () => {
    const c = validateConfig({ backends: [{ url: "http://127.0.0.1:9" }], healthCheck: { type: "grpc", service: "a.B" } });
    expect(c.healthCheck).toMatchObject({ type: "grpc", service: "a.B" });
    expect(() => validateConfig({ backends: [{ url: "http://127.0.0.1:9" }], healthCheck: { type: "udp" } })).toThrow('healthCheck.type: got "udp", expected "http", "tcp" or "grpc"');
    expect(() =>
      validateConfig({ pools: { p: { proxyProtocol: "v2", healthCheck: { type: "grpc" }, backends: [{ url: "http://127.0.0.1:9" }] } }, routes: [{ name: "r", pool: "p" }] }),
    ).toThrow('pools.p.proxyProtocol: "v2" with a healthCheck of type "grpc"');
  });
});
