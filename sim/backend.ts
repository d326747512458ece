/**
 * One simulated backend: a plain Bun.serve HTTP server whose latency, failure rate and health
 * can be changed while it runs (from code, or over HTTP at /_control), and which can be stopped
 * abruptly and started again on the same port.
 *
 * Endpoints (any method unless noted):
 *   /                      the backend's name ("backend-1\n"), or JSON {name, port, path, method}
 *                          when Accept includes application/json or ?format=json
 *   /health                200 "ok" | 503 "unhealthy" | never answers ("hang") until stop()
 *   /stats                 JSON {name, uptime, uptimeSeconds, memory_usage, memoryUsage, requests}
 *   /echo, /echo/...       JSON {method, path, query, headers, bodyLength, bodySha256}
 *   /delay/:ms             "delayed <ms>ms" after ms milliseconds
 *   /status/:code          that status (200..599), body "status <code>" (none for 204, 205, 304)
 *   /bytes/:n              n bytes (up to 1 GiB), byte i = i % 256
 *   /stream                "chunk i\n" every interval ms, chunked (?chunks=5&interval=100)
 *   /sse                   text/event-stream, an event every interval ms (?count=5&interval=100)
 *   /gzip                  a gzip-compressed text body with Content-Encoding: gzip
 *   /redirect?to=/x        302 to `to`
 *   /cookies?n=3           n Set-Cookie headers
 *   /response-headers?A=1  each query pair appended as a response header
 *   /_control              GET: state as JSON; POST/PUT {latency?, failRate?, failStatus?, health?}: change it
 *   /ws                    a WebSocket echo server (sim/websocket.ts: !headers, !close CODE, ?send=N)
 *   anything else          404
 *
 * Latency and failRate apply to every endpoint except /health, /stats and /_control, which also
 * do not count in `requests`.
 */

import type { Server } from "bun";
import type { ServerWebSocket } from "bun";
import { checkLatency, latencyFrom, MAX_LATENCY_MS, NO_LATENCY, pickLatency, type Latency } from "./latency.ts";
import { echoHandlers, upgradeToEcho, type SimSocketData } from "./websocket.ts";

export type HealthMode = "up" | "down" | "hang";

export interface SimBackendOptions {
  name: string;
  /** 0 or undefined: an ephemeral port, kept across stop()/start(). */
  port?: number;
  /** Default "127.0.0.1". */
  host?: string;
  /** Applied to every endpoint except /health, /stats and /_control. Default: none. */
  latency?: Latency;
  /** 0..1: the fraction of those requests answered `failStatus` "simulated failure". Default 0. */
  failRate?: number;
  /**
   * The status those failures carry, 500..599; default 500. 503 with failRate 1 is a backend
   * that refuses all work while its /health still answers 200 (an overloaded service).
   */
  failStatus?: number;
  /** Default "up". */
  health?: HealthMode;
  /**
   * Seconds a connection may sit idle before Bun closes it, 0..255 (0: never); default 30.
   * Waiting on purpose (latency, /delay, /stream, /sse, hanging /health) does not count.
   */
  idleTimeout?: number;
}

export interface SimBackend {
  readonly name: string;
  readonly port: number;
  /** "http://127.0.0.1:PORT" */
  readonly url: string;
  readonly running: boolean;
  /** Requests received, excluding /health, /stats and /_control; counted on arrival. */
  requests: number;
  /**
   * Requests (other than /stats and /_control) whose handler is still running: waiting out
   * latency or a /delay, hanging on /health, reading an /echo body. A streamed body (/stream,
   * /sse, large /bytes) stops counting once its headers are sent. Drops to 0 when clients give up,
   * so a test can check that a proxy cancelled its upstream request.
   */
  readonly active: number;
  /** WebSockets open now on /ws. */
  readonly openSockets: number;
  /** The close code and reason of the last WebSocket on /ws that closed. */
  readonly lastSocketClose: { code: number; reason: string } | undefined;
  resetCount(): void;
  /** Throws on an invalid range (see checkLatency). */
  setLatency(l: Latency): void;
  /** Throws unless 0 <= r <= 1. */
  setFailRate(r: number): void;
  /** Throws unless 500 <= s <= 599. */
  setFailStatus(s: number): void;
  setHealth(h: HealthMode): void;
  /**
   * Abrupt stop: closes the listener and resets open connections, so the port refuses
   * connections and in-flight requests (including hanging /health) end at once.
   */
  stop(): Promise<void>;
  /** Listens again on the same port after stop(). Rejects if the port has been taken. */
  start(): Promise<void>;
}

/** What GET /_control answers (and POST/PUT after applying a change). */
export interface ControlState {
  name: string;
  port: number;
  latency: Latency;
  failRate: number;
  failStatus: number;
  health: HealthMode;
  requests: number;
  active: number;
}

/** What /echo answers. */
export interface EchoResponse {
  method: string;
  /** The request target, path and query; see requestTarget() for what Bun normalizes. */
  path: string;
  /** Each query name with its value, or all its values in order when it is repeated. */
  query: Record<string, string | string[]>;
  /** [name, value] pairs as Bun exposes them: lower-case, sorted, repeats joined (see echo()). */
  headers: [string, string][];
  bodyLength: number;
  /** sha256 of the received body bytes, hex. */
  bodySha256: string;
}

export const DEFAULT_HOST = "127.0.0.1";

/**
 * Closes keep-alive connections idle this long and clients that stall mid-request. Handlers
 * that wait on purpose (latency, /delay, /stream, /sse, hanging /health) switch it off for
 * their request, because Bun counts the time a handler spends waiting as idle.
 */
const DEFAULT_IDLE_TIMEOUT_SECONDS = 30;

/** Largest /bytes body, and largest request body accepted (Bun's own default is 128 MiB). */
const MAX_BODY_BYTES = 1024 ** 3;

/**
 * /bytes bodies up to this size are sent from one buffer, with Content-Length. Larger ones are
 * streamed in PATTERN-sized chunks so memory stays flat, and therefore go out chunked: Bun 1.4.5
 * drops a handler's Content-Length whenever the body is a ReadableStream (oven-sh/bun#10507).
 */
const BUFFERED_BYTES_MAX = 8 * 1024 ** 2;

/** 64 KiB of i % 256. Its length is a multiple of 256, so repeating it continues the pattern. */
const PATTERN = Uint8Array.from({ length: 64 * 1024 }, (_, i) => i % 256);

/** Upper bounds on query numbers, to turn typos into a 400 rather than a runaway response. */
const MAX_CHUNKS = 10_000;
const MAX_INTERVAL_MS = 60_000;
const MAX_COOKIES = 100;

/** Statuses that must not carry a body (RFC 9110 §15.3.5, §15.3.6, §15.4.5). */
const NO_BODY_STATUSES = new Set([204, 205, 304]);

/**
 * Starts a backend and resolves once it is listening. Async so that a failure to bind (port in
 * use) is a rejection, the same as from start() after stop().
 */
export async function startSimBackend(opts: SimBackendOptions): Promise<SimBackend> {
  const backend = new Backend(opts);
  await backend.start();
  return backend;
}

function isHealthMode(value: unknown): value is HealthMode {
  return value === "up" || value === "down" || value === "hang";
}

/** Returns a valid failure rate (a number 0..1) or throws an Error saying what was expected. */
export function checkFailRate(value: unknown): number {
  if (typeof value !== "number" || !(value >= 0 && value <= 1)) {
    throw new Error(`invalid failRate ${shown(value)}: expected a number from 0 to 1`);
  }
  return value;
}

/** Returns a valid failure status (a whole number 500..599) or throws an Error saying what was expected. */
export function checkFailStatus(value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 500 || value > 599) {
    throw new Error(`invalid failStatus ${shown(value)}: expected a status from 500 to 599`);
  }
  return value;
}

/** A client error; answered 400 with its message. */
class BadRequest extends Error {}

class Backend implements SimBackend {
  readonly name: string;
  requests = 0;
  readonly #host: string;
  readonly #idleTimeout: number;
  #port: number;
  #latency: Latency;
  #failRate: number;
  #failStatus: number;
  #health: HealthMode;
  #server: Server<undefined> | undefined;
  #startedAt = 0;
  #active = 0;
  readonly #sockets = new Set<ServerWebSocket<SimSocketData>>();

  constructor(opts: SimBackendOptions) {
    if (!opts.name) throw new Error("a simulated backend needs a name");
    this.name = opts.name;
    this.#host = opts.host ?? DEFAULT_HOST;
    this.#port = opts.port ?? 0;
    this.#latency = opts.latency ? checkLatency(opts.latency.min, opts.latency.max) : NO_LATENCY;
    this.#failRate = checkFailRate(opts.failRate ?? 0);
    this.#failStatus = checkFailStatus(opts.failStatus ?? 500);
    this.#health = checkHealth(opts.health ?? "up");
    this.#idleTimeout = opts.idleTimeout ?? DEFAULT_IDLE_TIMEOUT_SECONDS;
    if (!Number.isInteger(this.#idleTimeout) || this.#idleTimeout < 0 || this.#idleTimeout > 255) {
      throw new Error(`invalid idleTimeout ${this.#idleTimeout}: expected whole seconds from 0 to 255`);
    }
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    const host = this.#host.includes(":") ? `[${this.#host}]` : this.#host;
    return `http://${host}:${this.#port}`;
  }

  get running(): boolean {
    return this.#server !== undefined;
  }

  get active(): number {
    return this.#active;
  }

  get openSockets(): number {
    return this.#sockets.size;
  }

  lastSocketClose: { code: number; reason: string } | undefined;

  resetCount(): void {
    this.requests = 0;
  }

  setLatency(l: Latency): void {
    this.#latency = checkLatency(l.min, l.max);
  }

  setFailRate(r: number): void {
    this.#failRate = checkFailRate(r);
  }

  setFailStatus(s: number): void {
    this.#failStatus = checkFailStatus(s);
  }

  setHealth(h: HealthMode): void {
    this.#health = checkHealth(h);
  }

  async start(): Promise<void> {
    if (this.#server) return;
    const server = Bun.serve({
      hostname: this.#host,
      port: this.#port,
      idleTimeout: this.#idleTimeout,
      maxRequestBodySize: MAX_BODY_BYTES,
      // Explicitly off: Bun 1.4.5 turns SO_REUSEPORT on with `development: false`, and then a
      // second server binds a busy port without error and the kernel splits connections.
      reusePort: false,
      fetch: (req, srv) => this.#handle(req, srv as unknown as Server<undefined>),
      websocket: echoHandlers,
      error: (err) => {
        console.error(`${this.name}: ${err.stack ?? err.message}`);
        return text(`internal error: ${err.message}`, 500);
      },
    });
    this.#server = server as unknown as Server<undefined>;
    // With port 0 the kernel picked one; remember it so start() after stop() rebinds it.
    this.#port = server.port ?? this.#port;
    this.#startedAt = performance.now();
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    // stop(true) resets open connections too, and that aborts every in-flight req.signal,
    // which ends the waits below (latency, /delay, hanging /health) and cancels streams.
    // WebSockets are cut without a Close frame, as a backend that dies would leave them.
    for (const ws of this.#sockets) ws.terminate();
    this.#sockets.clear();
    await server.stop(true);
  }

  async #handle(req: Request, server: Server<undefined>): Promise<Response> {
    try {
      return await this.#route(req, server);
    } catch (err) {
      if (err instanceof BadRequest) return text(err.message, 400);
      // Reading the body of a request whose client went away throws; nobody is left to tell.
      if (req.signal.aborted) return gone();
      throw err;
    }
  }

  async #route(req: Request, server: Server<undefined>): Promise<Response> {
    // req.url is normally absolute, but Bun passes just the target when the request has no
    // usable Host (HTTP/1.0 without one), hence the base.
    const url = new URL(req.url, "http://sim.invalid");
    if (url.pathname === "/stats") return Response.json(this.#stats());
    if (url.pathname === "/_control") return this.#control(req);
    this.#active += 1;
    try {
      return url.pathname === "/health" ? await this.#healthCheck(req, server) : await this.#serve(req, url, server);
    } finally {
      this.#active -= 1;
    }
  }

  async #serve(req: Request, url: URL, server: Server<undefined>): Promise<Response> {
    this.requests += 1;
    const wait = pickLatency(this.#latency);
    if (wait > 0) {
      server.timeout(req, 0);
      if (!(await sleep(wait, req.signal))) return gone();
    }
    if (this.#failRate > 0 && Math.random() < this.#failRate) return text("simulated failure", this.#failStatus);

    // "/delay/100" → ["delay", "100"]; "/" → [""]; "//x" → ["", "x"] (not found)
    const segments = url.pathname.split("/").slice(1);
    const [route, param] = segments;
    if (route === "echo") return echo(req, url);
    if (route === "ws" && segments.length === 1) {
      // Switched: Bun ignores what the handler returns after a successful upgrade.
      return upgradeToEcho(req, url, server as unknown as Server<SimSocketData>, this.name, this.#sockets, (code, reason) => {
        this.lastSocketClose = { code, reason };
      }) ?? new Response(null);
    }
    if (segments.length === 1) {
      switch (route) {
        case "":
          return this.#root(req, url);
        case "stream":
          server.timeout(req, 0);
          return new Response(paced(countParam(url, "chunks", 5), intervalParam(url), (i) => `chunk ${i}\n`), {
            headers: { "Content-Type": "text/plain; charset=utf-8" },
          });
        case "sse":
          server.timeout(req, 0);
          return new Response(
            paced(countParam(url, "count", 5), intervalParam(url), (i) => `id: ${i}\ndata: ${JSON.stringify({ i, name: this.name })}\n\n`),
            { headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" } },
          );
        case "gzip":
          return this.#gzip();
        case "redirect":
          return redirect(url);
        case "cookies":
          return cookies(url);
        case "response-headers":
          return responseHeaders(url);
      }
    }
    if (segments.length === 2 && param !== undefined) {
      switch (route) {
        case "delay": {
          const ms = wholeNumber(param, "delay", 0, MAX_LATENCY_MS);
          server.timeout(req, 0);
          return (await sleep(ms, req.signal)) ? text(`delayed ${ms}ms`) : gone();
        }
        case "status":
          return status(param);
        case "bytes":
          return bytes(wholeNumber(param, "byte count", 0, MAX_BODY_BYTES));
      }
    }
    return text("not found", 404);
  }

  #root(req: Request, url: URL): Response {
    const wantsJson =
      url.searchParams.get("format") === "json" || (req.headers.get("accept") ?? "").includes("application/json");
    if (!wantsJson) return text(`${this.name}\n`);
    return Response.json({ name: this.name, port: this.#port, path: requestTarget(req.url), method: req.method });
  }

  async #healthCheck(req: Request, server: Server<undefined>): Promise<Response> {
    switch (this.#health) {
      case "up":
        return text("ok");
      case "down":
        return text("unhealthy", 503);
      case "hang":
        // Never answer: hold the request until the client gives up or stop() resets it.
        server.timeout(req, 0);
        await untilAborted(req.signal);
        return gone();
    }
  }

  #stats() {
    const uptimeSeconds = Math.floor((performance.now() - this.#startedAt) / 1000);
    // Resident set size of the whole process: backends started together share one number.
    const rss = process.memoryUsage().rss;
    return {
      name: this.name,
      uptime: formatUptime(uptimeSeconds),
      uptimeSeconds,
      memory_usage: `${(rss / 1024 ** 2).toFixed(1)} MB`,
      memoryUsage: rss,
      requests: this.requests,
    };
  }

  #state(): ControlState {
    return {
      name: this.name,
      port: this.#port,
      latency: { ...this.#latency },
      failRate: this.#failRate,
      failStatus: this.#failStatus,
      health: this.#health,
      requests: this.requests,
      active: this.#active,
    };
  }

  async #control(req: Request): Promise<Response> {
    if (req.method === "GET" || req.method === "HEAD") return Response.json(this.#state());
    if (req.method !== "POST" && req.method !== "PUT") {
      return text("method not allowed: use GET, POST or PUT", 405, { Allow: "GET, HEAD, POST, PUT" });
    }
    let body: unknown;
    try {
      body = JSON.parse(await req.text());
    } catch {
      throw new BadRequest(`control body must be JSON, like ${CONTROL_EXAMPLE}`);
    }
    // Validate everything before changing anything, so a bad request changes nothing.
    const change = parseControl(body);
    if (change.latency) this.#latency = change.latency;
    if (change.failRate !== undefined) this.#failRate = change.failRate;
    if (change.failStatus !== undefined) this.#failStatus = change.failStatus;
    if (change.health) this.#health = change.health;
    return Response.json(this.#state());
  }

  #gzip(): Response {
    const lines = Array.from({ length: 50 }, (_, i) => `line ${i + 1} of a gzip-compressed body from ${this.name}\n`);
    const body = Bun.gzipSync(lines.join(""));
    return new Response(body, {
      headers: { "Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip" },
    });
  }
}

const CONTROL_EXAMPLE = '{"latency": "10-100", "failRate": 0.1, "health": "down"}';

interface ControlChange {
  latency?: Latency;
  failRate?: number;
  failStatus?: number;
  health?: HealthMode;
}

function parseControl(body: unknown): ControlChange {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new BadRequest(`control body must be a JSON object, like ${CONTROL_EXAMPLE}`);
  }
  const change: ControlChange = {};
  for (const [key, value] of Object.entries(body)) {
    switch (key) {
      case "latency":
        change.latency = asBadRequest(() => latencyFrom(value));
        break;
      case "failRate":
        change.failRate = asBadRequest(() => checkFailRate(value));
        break;
      case "failStatus":
        change.failStatus = asBadRequest(() => checkFailStatus(value));
        break;
      case "health":
        change.health = asBadRequest(() => checkHealth(value));
        break;
      default:
        throw new BadRequest(`unknown control field ${JSON.stringify(key)}: expected latency, failRate, failStatus or health`);
    }
  }
  return change;
}

function checkHealth(value: unknown): HealthMode {
  if (!isHealthMode(value)) throw new Error(`invalid health ${shown(value)}: expected "up", "down" or "hang"`);
  return value;
}

function asBadRequest<T>(validate: () => T): T {
  try {
    return validate();
  } catch (err) {
    throw new BadRequest(err instanceof Error ? err.message : String(err));
  }
}

/**
 * The request target (path and query) as close to what was received as Bun lets a handler see.
 * Bun hands over an absolute URL built from Host and the target; checked on Bun 1.4.5:
 * - kept as sent: percent-encoding and its case (%2F, %2f, %7e), repeated slashes ("//"), the
 *   query, and even a "#fragment";
 * - normalized: dot segments are resolved ("/a/../b" and "/a/%2e%2e/b" both become "/b"), "\" becomes
 *   "/", an absolute-form target ("GET http://other/x") is reduced to its path, and non-ASCII bytes
 *   are read as Latin-1 and percent-encoded as UTF-8.
 * There is no raw-target API in Bun.serve, so this is as exact as it gets.
 */
function requestTarget(url: string): string {
  if (url.startsWith("/")) return url;
  const slash = url.indexOf("/", url.indexOf("://") + 3);
  return slash === -1 ? "/" : url.slice(slash);
}

async function echo(req: Request, url: URL): Promise<Response> {
  // Hash the body as it streams in, so a large upload never sits in memory.
  const hasher = new Bun.CryptoHasher("sha256");
  let bodyLength = 0;
  if (req.body) {
    for await (const chunk of req.body) {
      hasher.update(chunk);
      bodyLength += chunk.byteLength;
    }
  }
  const grouped = new Map<string, string[]>();
  for (const [name, value] of url.searchParams) grouped.set(name, [...(grouped.get(name) ?? []), value]);
  const result: EchoResponse = {
    method: req.method,
    path: requestTarget(req.url),
    // fromEntries, not assignment, so a parameter named "__proto__" stays an ordinary key.
    query: Object.fromEntries([...grouped].map(([name, values]) => [name, values.length === 1 ? values[0]! : values])),
    // Bun.serve exposes request headers only through the Fetch Headers object, which lower-cases
    // names, sorts them, and joins repeated headers into one value (", ", or "; " for Cookie).
    // The raw header list is not available, so repeats show up joined here.
    headers: [...req.headers],
    bodyLength,
    bodySha256: hasher.digest("hex"),
  };
  return Response.json(result);
}

function status(param: string): Response {
  const code = wholeNumber(param, "status code", 100, 599);
  if (code < 200) {
    // The Response constructor rejects 1xx (except 101, which would announce a protocol switch
    // that never happens): an informational status cannot be a final response.
    throw new BadRequest(`status ${code} is informational and cannot be a final response: expected 200 to 599`);
  }
  return new Response(NO_BODY_STATUSES.has(code) ? null : `status ${code}`, { status: code });
}

function bytes(n: number): Response {
  const headers = { "Content-Type": "application/octet-stream" };
  if (n <= BUFFERED_BYTES_MAX) {
    const body = new Uint8Array(n);
    for (let at = 0; at < n; at += PATTERN.length) body.set(PATTERN.subarray(0, Math.min(PATTERN.length, n - at)), at);
    return new Response(body, { headers });
  }
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    // Called only when the client has taken what was queued: memory stays at one chunk.
    pull(controller) {
      const size = Math.min(PATTERN.length, n - sent);
      controller.enqueue(PATTERN.subarray(0, size));
      sent += size;
      if (sent === n) controller.close();
    },
  });
  return new Response(stream, { headers });
}

function redirect(url: URL): Response {
  const to = url.searchParams.get("to") ?? "/";
  return new Response(null, { status: 302, headers: headersFrom([["Location", to]]) });
}

function cookies(url: URL): Response {
  const n = countParam(url, "n", 3, MAX_COOKIES);
  const headers = new Headers();
  // append, not set: each cookie needs its own Set-Cookie line.
  for (let i = 1; i <= n; i++) headers.append("Set-Cookie", `c${i}=${i}; Path=/`);
  return text(`set ${n} cookies`, 200, headers);
}

/**
 * Appends every query pair as a response header, for testing what a proxy passes on. What
 * Bun.serve 1.4.5 itself does with them (checked on the wire):
 * - Transfer-Encoding is dropped and Content-Length is replaced by the real length: Bun frames
 *   the body itself;
 * - a repeated name is sent as one line with the values joined by ", " (the Headers object joins
 *   them); only Set-Cookie stays one line per value;
 * - Connection, Keep-Alive, Upgrade, TE, Trailer, Proxy-Connection, Date and Server are sent as
 *   given, and Connection: close also makes Bun close the connection after the response;
 * - a name or value Headers rejects (CR/LF, a space in a name, a character above U+00FF) → 400.
 */
function responseHeaders(url: URL): Response {
  const pairs = [...url.searchParams];
  const headers = headersFrom(pairs);
  if (!headers.has("Content-Type")) headers.set("Content-Type", "application/json");
  return new Response(JSON.stringify(pairs), { headers });
}

function headersFrom(pairs: [string, string][]): Headers {
  const headers = new Headers();
  for (const [name, value] of pairs) {
    try {
      headers.append(name, value);
    } catch {
      throw new BadRequest(`cannot send header ${JSON.stringify(name)}: ${JSON.stringify(value)}: invalid name or value`);
    }
  }
  return headers;
}

/**
 * A body of `total` pieces, render(1) at once and each next one `intervalMs` later. Stops early
 * when the client goes away (or stop() resets the connection): Bun then cancels the stream.
 */
function paced(total: number, intervalMs: number, render: (i: number) => string): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  const cancelled = new AbortController();
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (total === 0) controller.close();
    },
    async pull(controller) {
      if (sent > 0 && !(await sleep(intervalMs, cancelled.signal))) return;
      sent += 1;
      controller.enqueue(encoder.encode(render(sent)));
      if (sent === total) controller.close();
    },
    cancel() {
      cancelled.abort();
    },
  });
}

/** Waits `ms`; resolves true, or false as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}

/** The answer to a client that has gone: nobody reads it (499 is nginx's "client closed request"). */
function gone(): Response {
  return new Response(null, { status: 499 });
}

function text(body: string, statusCode = 200, headers?: HeadersInit): Response {
  const response = new Response(body, { status: statusCode, headers });
  if (!response.headers.has("Content-Type")) response.headers.set("Content-Type", "text/plain; charset=utf-8");
  return response;
}

/** A whole number within [min, max] from a path segment or query value, else BadRequest. */
function wholeNumber(raw: string, what: string, min: number, max: number): number {
  const n = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(n >= min && n <= max)) {
    throw new BadRequest(`invalid ${what} ${JSON.stringify(raw)}: expected a whole number from ${min} to ${max}`);
  }
  return n;
}

function countParam(url: URL, name: string, fallback: number, max = MAX_CHUNKS): number {
  const raw = url.searchParams.get(name);
  return raw === null ? fallback : wholeNumber(raw, name, 0, max);
}

function intervalParam(url: URL): number {
  const raw = url.searchParams.get("interval");
  return raw === null ? 100 : wholeNumber(raw, "interval", 0, MAX_INTERVAL_MS);
}

/** 323 → "00h:05m:23s" (the format of the seed project's /stats). */
function formatUptime(totalSeconds: number): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  return `${pad(hours)}h:${pad(minutes)}m:${pad(totalSeconds % 60)}s`;
}

function shown(value: unknown): string {
  return typeof value === "number" || value === undefined ? String(value) : JSON.stringify(value);
}
