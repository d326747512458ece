/**
 * End-to-end hardening against hostile clients and leaky backends: the real proxy in
 * front of real sim backends on ephemeral ports, requests sent as raw bytes where fetch would
 * normalize them.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startRig, type TestRig } from "../helpers/balancer.ts";
import { rawRequest } from "../helpers/raw.ts";
import type { EchoResponse } from "../../sim/backend.ts";

let rig: TestRig | undefined;
afterEach(async () => {
  await rig?.stop();
  rig = undefined;
});

const header = (e: EchoResponse, name: string) => e.headers.find(([k]) => k === name)?.[1];
const responseHeader = (headers: [string, string][], name: string) => headers.filter(([k]) => k === name).map(([, v]) => v);

describe("request headers a client cannot forge", () => {
  test("X-Real-IP from an untrusted client is replaced by its address", async () => {
    rig = await startRig(1);
    const res = await rawRequest(rig.balancer.port, "GET /echo HTTP/1.1\r\nHost: a.example\r\nX-Real-IP: 10.9.9.9", { lowerCase: true });
    expect(res.status).toBe(200);
    const e = JSON.parse(res.body) as EchoResponse;
    expect(header(e, "x-real-ip")).toBe("127.0.0.1");
    expect(header(e, "x-forwarded-for")).toBe("127.0.0.1");
  });

  test("X-Real-IP from a trusted proxy is kept", async () => {
    rig = await startRig(1, { trustedProxies: ["127.0.0.0/8", "::1"] });
    const res = await rawRequest(rig.balancer.port, "GET /echo HTTP/1.1\r\nHost: a.example\r\nX-Real-IP: 203.0.113.7", { lowerCase: true });
    const e = JSON.parse(res.body) as EchoResponse;
    expect(header(e, "x-real-ip")).toBe("203.0.113.7");
  });

  test("a Host named in Connection still reaches the backend", async () => {
    rig = await startRig(1);
    const res = await rawRequest(rig.balancer.port, "GET /echo HTTP/1.1\r\nHost: a.example\r\nConnection: host", { lowerCase: true });
    expect(res.status).toBe(200);
    const e = JSON.parse(res.body) as EchoResponse;
    expect(header(e, "host")).toBe("a.example");
  });
});

describe("responseHeaders", () => {
  test("removes and replaces the backend's headers before the client sees them", async () => {
    rig = await startRig(1, {
      responseHeaders: { remove: ["X-Powered-By"], set: { Server: "switchyard", "X-Content-Type-Options": "nosniff" } },
    });
    const res = await rawRequest(
      rig.balancer.port,
      "GET /response-headers?Server=Apache%2F2.4&X-Powered-By=PHP%2F8&X-Kept=1 HTTP/1.1\r\nHost: a.example",
      { lowerCase: true },
    );
    expect(res.status).toBe(200);
    expect(responseHeader(res.headers, "server")).toEqual(["switchyard"]);
    expect(responseHeader(res.headers, "x-powered-by")).toEqual([]);
    expect(responseHeader(res.headers, "x-content-type-options")).toEqual(["nosniff"]);
    expect(responseHeader(res.headers, "x-kept")).toEqual(["1"]);
  });

  test("without the option the backend's headers pass through", async () => {
    rig = await startRig(1);
    const res = await rawRequest(rig.balancer.port, "GET /response-headers?Server=Apache HTTP/1.1\r\nHost: a.example", { lowerCase: true });
    expect(responseHeader(res.headers, "server")).toEqual(["Apache"]);
  });
});
