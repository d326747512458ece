/**
 * gRPC calls from HTTP/2 clients through the socket engine's h2 front: the proxy's own answers
 * in gRPC's terms (HTTP 200 with grpc-status, no body: a Trailers-Only response, one HEADERS
 * frame with END_STREAM) and grpc-timeout as the call's deadline. The same rules over HTTP/1.1
 * are in test/http/grpc.test.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import { GRPC_STATUS } from "../../../src/errors.ts";
import { startRig, type RigConfig, type TestRig } from "../../helpers/balancer.ts";

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
