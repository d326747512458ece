/**
 * gRPC calls from HTTP/2 clients through the socket engine's h2 front: the proxy's own answers
 * in gRPC's terms (HTTP 200 with grpc-status, no body: a Trailers-Only response, one HEADERS
 * frame with END_STREAM) and grpc-timeout as the call's deadline. The same rules over HTTP/1.1
 * are in test/http/grpc.test.ts. Trailers from an HTTP/2 backend reach the HTTP/2 client.
 */
import { afterEach, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import { GRPC_STATUS } from "../../../src/errors.ts";
import { startRig, type RigConfig, type TestRig } from "../../helpers/balancer.ts";
import { waitFor } from "../../helpers/wait.ts";
import { startH2c, type H2Backend } from "./backends.ts";

let rig: TestRig | undefined;
let session: http2.ClientHttp2Session | undefined;
afterEach(async () => {
  session?.destroy();
  session = undefined;
  await rig?.stop();
  rig = undefined;
});

async function start(count: number, config: RigConfig): Promise<void> {
  rig = await startRig(count, { engine: "socket", ...config });
  session = http2.connect(rig.balancer.url);
  session.on("error", () => {});
}

/** A unary-looking call: the response head's status and grpc fields, the body's length, whether the head ended the stream. */
function call(path: string, headers: Record<string, string> = {}): Promise<{ status: number; grpcStatus?: string; grpcMessage?: string; bodyLength: number; trailersOnly: boolean }> {
  return new Promise((resolve, reject) => {
    const req = session!.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
    let head: http2.IncomingHttpHeaders = {};
    let trailersOnly = false;
    let bodyLength = 0;
    req.on("response", (h, flags) => {
      head = h;
      trailersOnly = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    });
    req.on("data", (c: Buffer) => (bodyLength += c.length));
    req.on("end", () => resolve({ status: Number(head[":status"]), grpcStatus: head["grpc-status"] as string | undefined, grpcMessage: head["grpc-message"] as string | undefined, bodyLength, trailersOnly }));
    req.on("error", reject);
    req.end(new Uint8Array([0, 0, 0, 0, 0]));
  });
}

describe("gRPC calls over HTTP/2 (socket engine)", () => {
  test("no route: UNIMPLEMENTED; a rate limit: RESOURCE_EXHAUSTED; each a Trailers-Only answer", async () => {
    await start(1, { routes: [{ name: "svc", match: { path: "/svc.Echo" }, pool: "default", rateLimit: { rate: "1/m", burst: 1, key: "route" } }] });
    const none = await call("/other.Service/Method");
    expect(none).toMatchObject({ status: 200, grpcStatus: String(GRPC_STATUS.UNIMPLEMENTED), bodyLength: 0, trailersOnly: true });
    expect(none.grpcMessage).toStartWith("SY_NO_ROUTE");
    await call("/svc.Echo/Say");
    expect(await call("/svc.Echo/Say")).toMatchObject({ status: 200, grpcStatus: String(GRPC_STATUS.RESOURCE_EXHAUSTED), trailersOnly: true });
  });

  test("every backend down: UNAVAILABLE", async () => {
    await start(1, { retry: { attempts: 1 } });
    await rig!.cluster.backends[0]!.stop();
    expect(await call("/svc.Echo/Say")).toMatchObject({ status: 200, grpcStatus: String(GRPC_STATUS.UNAVAILABLE), trailersOnly: true });
  });

  test("grpc-timeout is the call's deadline: DEADLINE_EXCEEDED when it passes", async () => {
    await start(1, { retry: { attempts: 1, timeout: "10s", perTryTimeout: "10s" } });
    const r = await call("/delay/3000", { "grpc-timeout": "200m" });
    expect(r).toMatchObject({ status: 200, grpcStatus: String(GRPC_STATUS.DEADLINE_EXCEEDED), trailersOnly: true });
    expect(r.grpcMessage).toContain("200ms");
  });
});

describe("trailers from an HTTP/2 backend to an HTTP/2 client", () => {
  let backend: H2Backend | undefined;
  afterEach(async () => {
    await backend?.stop();
    backend = undefined;
  });

  test("a gRPC-style answer: body, then grpc-status and grpc-message as trailers; a plain answer ends as before", async () => {
    backend = await startH2c("g", (stream, headers) => {
      stream.on("data", () => {});
      stream.on("end", () => {
        if (headers[":path"] === "/plain") {
          stream.respond({ ":status": 200, "content-type": "text/plain" });
          return void stream.end("plain body");
        }
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0", "grpc-message": "fine", "content-length": "99" }));
        stream.end(new Uint8Array([0, 0, 0, 0, 2, 8, 1]));
      });
    });
    await start(0, { protocol: "h2c", backends: [{ name: "g", url: backend.url }] });
    const got = await new Promise<{ status: number; body: number; trailers: http2.IncomingHttpHeaders }>((resolve, reject) => {
      const req = session!.request({ ":method": "POST", ":path": "/svc.Echo/Say", "content-type": "application/grpc", te: "trailers" });
      let status = 0;
      let body = 0;
      let trailers: http2.IncomingHttpHeaders = {};
      req.on("response", (h) => (status = Number(h[":status"])));
      req.on("data", (c: Buffer) => (body += c.length));
      req.on("trailers", (t) => (trailers = t));
      req.on("end", () => resolve({ status, body, trailers }));
      req.on("error", reject);
      req.end(new Uint8Array([0, 0, 0, 0, 0]));
    });
    expect(got.status).toBe(200);
    expect(got.body).toBe(7);
    expect(got.trailers["grpc-status"]).toBe("0");
    expect(got.trailers["grpc-message"]).toBe("fine");
    // A field no trailer may carry is not passed on.
    expect(got.trailers["content-length"]).toBeUndefined();
    const plain = await new Promise<string>((resolve, reject) => {
      const req = session!.request({ ":path": "/plain" });
      let text = "";
      req.on("data", (c: Buffer) => (text += c.toString()));
      req.on("end", () => resolve(text));
      req.on("error", reject);
    });
    expect(plain).toBe("plain body");
    await waitFor(() => rig!.balancer.pool.backends.every((b) => b.inFlight === 0), "nothing left in flight");
  });
});
