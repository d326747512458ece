/**
 * The one table of error codes (src/errors.ts): every SY_ code in the sources is declared
 * there, every declared code is used, docs/errors.md is its rendering, and the answer builder
 * keeps the JSON shape every engine and the admin listener send.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ClientFault, ERRORS, FRAMING_CODES, ProxyError, errorAnswer, errorResponse, statusFor, type ErrorCode } from "../src/errors.ts";
import { errorsMarkdown } from "../docs/generators/errors.ts";
import { startRig, testEngine, type TestRig } from "./helpers/balancer.ts";
import { rawRequest, type RawResponse } from "./helpers/raw.ts";

const ROOT = join(import.meta.dir, "..");
const SRC = join(ROOT, "src");

/** Every file under src/ (sources, and the dashboard's HTML), with its text. */
function sources(dir = SRC): { path: string; text: string }[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return /\.(ts|html|js)$/.test(e.name) ? [{ path: path.slice(ROOT.length + 1), text: readFileSync(path, "utf8") }] : [];
  });
}

/** SY_ words: `BUSY_BODY` holds no code, hence the word boundary. */
const CODE = /\bSY_[A-Z0-9_]*[A-Z0-9]\b/g;

describe("the table of codes", () => {
  const files = sources();

  test("every SY_ code that appears under src/ is declared in src/errors.ts", () => {
    const undeclared: string[] = [];
    for (const f of files) {
      for (const m of f.text.matchAll(CODE)) if (!(m[0] in ERRORS)) undeclared.push(`${f.path}: ${m[0]}`);
    }
    expect(undeclared).toEqual([]);
  });

  test("every declared code is used somewhere under src/ besides its declaration", () => {
    // The table itself is left out of src/errors.ts (what follows it, FRAMING_CODES, counts).
    const strip = (f: { path: string; text: string }) =>
      f.path === "src/errors.ts" ? f.text.replace(/export const ERRORS = \{[^]*?\} as const satisfies/, "") : f.text;
    const elsewhere = files.map(strip).join("\n");
    const used = new Set([...elsewhere.matchAll(CODE)].map((m) => m[0]));
    expect((Object.keys(ERRORS) as ErrorCode[]).filter((c) => !used.has(c))).toEqual([]);
  });

  test("statuses are error statuses, and the socket engine's framing statuses map to codes of that status", () => {
    for (const [code, spec] of Object.entries(ERRORS)) {
      const status: number | null = spec.status;
      if (status !== null) expect({ code, ok: status >= 400 && status <= 599 }).toEqual({ code, ok: true });
      else expect({ code, otherwise: "otherwise" in spec }).toEqual({ code, otherwise: true });
    }
    for (const [status, code] of Object.entries(FRAMING_CODES)) expect({ code, status: statusFor(code) }).toEqual({ code, status: Number(status) });
  });

  test("docs/errors.md is the rendering of the table", () => {
    const onDisk = readFileSync(join(ROOT, "docs/errors.md"), "utf8");
    if (onDisk !== errorsMarkdown()) throw new Error("docs/errors.md is stale: run bun run docs");
    for (const code of Object.keys(ERRORS)) expect(onDisk).toContain(`| \`${code}\` |`);
  });
});

describe("the answer builder (JSON form)", () => {
  test("a proxy answer: its status, the stable code, the request's id, Retry-After on a 503", () => {
    const a = errorAnswer("SY_NO_BACKEND", new ProxyError("SY_NO_BACKEND").message, { requestId: "r-1" });
    expect(a.status).toBe(503);
    expect(a.headers).toEqual({ "content-type": "application/json", "cache-control": "no-store", "x-request-id": "r-1", "retry-after": "1" });
    expect(JSON.parse(a.body)).toEqual({ error: "SY_NO_BACKEND", status: 503, message: "no backend is available to serve this request", requestId: "r-1" });
  });

  test("a detail follows the code's own message; a client's fault keeps its detail as the message", () => {
    expect(new ProxyError("SY_UPSTREAM_TIMEOUT", "no response head within 5000ms").message).toBe("the backend did not answer in time: no response head within 5000ms");
    expect(new ClientFault("SY_BODY_TOO_LARGE", "body over 10 bytes").message).toBe("body over 10 bytes");
    expect(new ClientFault("SY_CLIENT_TIMEOUT").message).toBe("the request body stopped arriving");
  });

  test("a refusal: no request id, the fields it needs, extra members after the usual ones", () => {
    const a = errorAnswer("SY_METHOD_NOT_ALLOWED", "TRACE is refused", { headers: { allow: "GET, HEAD", connection: "close" } });
    expect(a.status).toBe(405);
    expect(a.headers).toEqual({ "content-type": "application/json", "cache-control": "no-store", allow: "GET, HEAD", connection: "close" });
    expect(a.body).toBe('{"error":"SY_METHOD_NOT_ALLOWED","status":405,"message":"TRACE is refused"}');
    const b = errorAnswer("SY_TOO_MANY_STREAMS", "too many", { retryAfter: 5, extra: { max: 64 } });
    expect(b.headers["retry-after"]).toBe("5");
    expect(b.body).toBe('{"error":"SY_TOO_MANY_STREAMS","status":503,"message":"too many","max":64}');
  });

  test("as a Response, for Bun.serve and Hono handlers", async () => {
    const res = errorResponse("SY_CONFIG_INVALID", "config: 1 problem", { extra: { problems: ["weight: got 0"] } });
    expect(res.status).toBe(422);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual({ error: "SY_CONFIG_INVALID", status: 422, message: "config: 1 problem", problems: ["weight: got 0"] });
  });
});

describe("on the wire", () => {
  let rig: TestRig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });
  const field = (res: RawResponse, name: string) => res.headers.find(([k]) => k === name)?.[1];
  const engine = testEngine().engine ?? "socket";

  test(`${engine} engine: the proxy's answer carries the code, the status and the request's id`, async () => {
    rig = await startRig(1);
    for (const b of rig.balancer.pool.backends) b.setEnabled(false);
    const res = await rawRequest(rig.balancer.port, "GET /x HTTP/1.1\r\nHost: a", { lowerCase: true });
    expect(res.status).toBe(503);
    const body = JSON.parse(res.body);
    expect(body).toEqual({ error: "SY_NO_BACKEND", status: 503, message: "no backend is available to serve this request", requestId: field(res, "x-request-id") });
    expect([field(res, "content-type"), field(res, "cache-control"), field(res, "retry-after")]).toEqual(["application/json", "no-store", "1"]);
  });

  test(`${engine} engine: a refused method gets 405 with Allow and the same body shape`, async () => {
    rig = await startRig(1);
    const res = await rawRequest(rig.balancer.port, "TRACE / HTTP/1.1\r\nHost: a", { lowerCase: true });
    expect(res.status).toBe(405);
    expect(JSON.parse(res.body)).toMatchObject({ error: "SY_METHOD_NOT_ALLOWED", status: 405 });
    expect(field(res, "allow")).toBe("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH");
  });

  test("socket engine: each framing status has its own code, the code's status", async () => {
    rig = await startRig(1, { engine: "socket", limits: { maxUriLength: 100 } });
    const port = rig.balancer.port;
    const long = await rawRequest(port, `GET /${"a".repeat(200)} HTTP/1.1\r\nHost: a`);
    expect([long.status, JSON.parse(long.body).error]).toEqual([414, "SY_URI_TOO_LONG"]);
    const version = await rawRequest(port, "GET / HTTP/2.0\r\nHost: a");
    expect([version.status, JSON.parse(version.body).error]).toEqual([505, "SY_VERSION_NOT_SUPPORTED"]);
    const coding = await rawRequest(port, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked");
    expect([coding.status, JSON.parse(coding.body).error]).toEqual([501, "SY_NOT_IMPLEMENTED"]);
  });

  test("socket engine: a connection over limits.maxConnections gets SY_TOO_MANY_CONNECTIONS", async () => {
    rig = await startRig(1, { engine: "socket", limits: { maxConnections: 1 } });
    const port = rig.balancer.port;
    const held = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
    try {
      const res = await rawRequest(port, "GET / HTTP/1.1\r\nHost: a", { lowerCase: true });
      expect(res.status).toBe(503);
      expect(JSON.parse(res.body)).toEqual({ error: "SY_TOO_MANY_CONNECTIONS", status: 503, message: "too many connections; try again" });
      expect([field(res, "retry-after"), field(res, "connection")]).toEqual(["1", "close"]);
    } finally {
      held.end();
    }
  });

  test("the admin listener and its API: the same body shape, statuses from the table", async () => {
    rig = await startRig(1, { admin: { host: "127.0.0.1", port: 0 } });
    const admin = rig.balancer.adminUrl!;
    const page = await fetch(`${admin}/nope`);
    expect(page.headers.get("cache-control")).toBe("no-store");
    expect(await page.json()).toMatchObject({ error: "SY_NOT_FOUND", status: 404, message: "no such endpoint: GET /nope" });
    const api = await fetch(`${admin}/api/backends/nobody`);
    expect(await api.json()).toMatchObject({ error: "SY_UNKNOWN_BACKEND", status: 404 });
    const change = await fetch(`${admin}/api/reload`, { method: "POST" });
    expect([change.status, ((await change.json()) as { error: string }).error]).toEqual([403, "SY_API_READ_ONLY"]);
  });
});
