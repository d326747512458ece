/**
 * The admin API: JSON under /api/ on the admin listener. Reads are open to whoever reaches the
 * listener; every change needs `Authorization: Bearer <token>` (see auth.ts) and goes through
 * Control, which records it once (log, /events, dashboard) with the token's name and the
 * client's address.
 *
 *   GET    /api                              this list
 *   GET    /api/backends                     every backend: state, weight, in flight...
 *   GET    /api/backends/:name               one backend
 *   POST   /api/backends                     add one: a backends[] entry of the config, name required
 *   DELETE /api/backends/:name?deadline=30s  drain, wait for in-flight work (up to the deadline), remove
 *   POST   /api/backends/:name/drain?wait=0  no new requests; optionally wait for in-flight work to end
 *   POST   /api/backends/:name/enable        take new requests again
 *   PUT    /api/backends/:name/weight        {"weight": N}
 *   POST   /api/backends/:name/health        {"health": "down" | "up" | "auto"}: maintenance override
 *   POST   /api/reload                       read the config file again and apply it
 *   POST   /api/upgrade                      replace the process by a new one of the binary on disk (src/control/upgrade.ts)
 *   GET    /api/config                       the config in force (tokens hidden) and its version
 *   GET    /api/changes                      the last changes made
 *
 * A browser request whose Origin is not this listener's own is refused (cross-site request
 * forgery; Caddy's admin endpoint does the same), whatever its method.
 */
import type { Server } from "bun";
import { Hono, type Context } from "hono";
import type { Config } from "../config/schema.ts";
import { parseDuration } from "../config/units.ts";
import type { AdminAuth } from "./auth.ts";
import type { ChangeLog } from "../control/changes.ts";
import type { UpgradeReport } from "../control/upgrade.ts";
import { ControlError, DEFAULT_REMOVE_DEADLINE_MS, MAX_WAIT_MS, type Actor, type Control } from "../control/control.ts";
import { errorResponse } from "../errors.ts";

export interface ApiContext {
  readonly control: Control;
  readonly changes: ChangeLog;
  readonly auth: AdminAuth;
  readonly config: Config;
  /** Present when this process can be replaced (started by `switchyard serve`). */
  readonly upgrade?: (actor: Actor) => Promise<UpgradeReport>;
}

type Env = { Bindings: { server?: Server<unknown> }; Variables: { actor: Actor } };

/** Request bodies are small JSON documents; anything larger is refused unread. */
const MAX_BODY_BYTES = 64 * 1024;

export const API_ENDPOINTS = [
  "GET /api/backends",
  "GET /api/backends/:name",
  "POST /api/backends",
  "DELETE /api/backends/:name?deadline=30s",
  "POST /api/backends/:name/drain?wait=0",
  "POST /api/backends/:name/enable",
  "PUT /api/backends/:name/weight",
  "POST /api/backends/:name/health",
  "POST /api/reload",
  "POST /api/upgrade",
  "GET /api/config",
  "GET /api/changes",
];

export function createApi(ctx: ApiContext): Hono<Env> {
  const api = new Hono<Env>();

  api.use("*", async (c, next) => {
    // RFC 6454 §7.3: browsers send Origin on cross-origin requests and on every POST/PUT/DELETE.
    // A page elsewhere has no business here, and a token typed into our own page is ours alone.
    const origin = c.req.header("origin");
    if (origin !== undefined && origin !== `http://${c.req.header("host") ?? ""}`) {
      return errorResponse("SY_BAD_ORIGIN", `requests from ${origin} are refused: the admin API answers pages of its own origin only`);
    }
    const safe = c.req.method === "GET" || c.req.method === "HEAD";
    const client = clientAddress(c);
    if (safe) {
      c.set("actor", { by: "anonymous", from: client });
      return next();
    }
    const auth = ctx.auth.verify(c.req.header("authorization"));
    if (!auth.ok) {
      // RFC 6750 §3: a 401 says which scheme would do.
      if (auth.status === 401) return errorResponse("SY_UNAUTHORIZED", auth.message, { headers: { "www-authenticate": 'Bearer realm="switchyard admin"' } });
      return errorResponse("SY_API_READ_ONLY", auth.message);
    }
    c.set("actor", { by: auth.name, from: client });
    return next();
  });

  api.get("/", (c) => c.json({ endpoints: API_ENDPOINTS, changesAllowed: ctx.auth.configured }));

  api.get("/backends", (c) => c.json({ backends: ctx.control.backends() }));

  api.get("/backends/:name", (c) => c.json(ctx.control.backend(c.req.param("name"))));

  api.post("/backends", async (c) => {
    const body = await jsonBody(c);
    return c.json(await ctx.control.add(body, c.get("actor")), 201);
  });

  api.delete("/backends/:name", async (c) => {
    const deadline = durationParam(c, "deadline", DEFAULT_REMOVE_DEADLINE_MS);
    // The wait may outlast the listener's idle timeout, and Bun.serve's idle timer runs while a
    // handler awaits (Bun 1.4.5: a 12 s wait reset the client at the default 10 s): lift it here.
    c.env?.server?.timeout(c.req.raw, 0);
    return c.json(await ctx.control.remove(c.req.param("name"), c.get("actor"), deadline));
  });

  api.post("/backends/:name/drain", async (c) => {
    const wait = durationParam(c, "wait", 0);
    if (wait > 0) c.env?.server?.timeout(c.req.raw, 0);
    return c.json(await ctx.control.drain(c.req.param("name"), c.get("actor"), wait));
  });

  api.post("/backends/:name/enable", async (c) => c.json(await ctx.control.enable(c.req.param("name"), c.get("actor"))));

  api.put("/backends/:name/weight", async (c) => {
    const body = await jsonBody(c);
    const weight = typeof body === "object" && body !== null ? (body as { weight?: unknown }).weight : undefined;
    if (weight === undefined) throw new ControlError("SY_INVALID_REQUEST", 'weight: missing; send {"weight": N} with N from 1 to 1000');
    return c.json(await ctx.control.setWeight(c.req.param("name"), weight, c.get("actor")));
  });

  api.post("/backends/:name/health", async (c) => {
    const body = await jsonBody(c);
    const health = typeof body === "object" && body !== null ? (body as { health?: unknown }).health : undefined;
    if (health !== "up" && health !== "down" && health !== "auto") {
      throw new ControlError("SY_INVALID_REQUEST", `health: got ${JSON.stringify(health) ?? "nothing"}, expected "down", "up" or "auto" (checks decide)`);
    }
    return c.json(await ctx.control.force(c.req.param("name"), health, c.get("actor")));
  });

  api.post("/reload", async (c) => c.json(await ctx.control.reload(c.get("actor"))));

  // Answers once the new process serves (this one then drains and exits), or with why it failed.
  api.post("/upgrade", async (c) => {
    if (ctx.upgrade === undefined) throw new ControlError("SY_UPGRADE_UNAVAILABLE", "this balancer cannot be upgraded in place: it was not started by `switchyard serve`");
    // The new process may take up to its start timeout (30 s), the admin listener's idle
    // timeout too: lift it, as for the other waits, so the answer says why rather than a reset.
    c.env?.server?.timeout(c.req.raw, 0);
    return c.json(await ctx.upgrade(c.get("actor")));
  });

  api.get("/config", (c) => c.json({ status: ctx.control.status(), config: redact(ctx.config) }));

  api.get("/changes", (c) => c.json({ changes: ctx.changes.recent() }));

  api.notFound((c) => errorResponse("SY_NOT_FOUND", `no such endpoint: ${c.req.method} ${new URL(c.req.url).pathname}`, { extra: { endpoints: API_ENDPOINTS } }));

  api.onError((err) => {
    if (err instanceof ControlError) return errorResponse(err.code, err.message, err.problems.length ? { extra: { problems: err.problems } } : undefined);
    throw err;
  });

  return api;
}

async function jsonBody(c: Context<Env>): Promise<unknown> {
  const length = Number(c.req.header("content-length") ?? 0);
  if (length > MAX_BODY_BYTES) throw new ControlError("SY_INVALID_REQUEST", `the body is ${length} bytes, expected a JSON document of at most ${MAX_BODY_BYTES}`);
  const text = await c.req.text();
  if (text.length > MAX_BODY_BYTES) throw new ControlError("SY_INVALID_REQUEST", `the body is over ${MAX_BODY_BYTES} bytes`);
  try {
    return JSON.parse(text);
  } catch {
    throw new ControlError("SY_INVALID_REQUEST", `expected a JSON body, got ${JSON.stringify(text.slice(0, 40))}`);
  }
}

function durationParam(c: Context<Env>, name: string, fallback: number): number {
  const raw = c.req.query(name);
  if (raw === undefined) return fallback;
  const ms = parseDuration(raw);
  if (ms === undefined || ms > MAX_WAIT_MS) {
    throw new ControlError("SY_INVALID_REQUEST", `${name}: got ${JSON.stringify(raw)}, expected a duration like "500ms", "30s" or "2m", at most 10m`);
  }
  return ms;
}

function clientAddress(c: Context<Env>): string {
  const ip = c.env?.server?.requestIP(c.req.raw)?.address ?? "unknown";
  return ip.startsWith("::ffff:") && ip.includes(".") ? ip.slice(7) : ip;
}

/** The config without secrets: token values never leave the process. */
function redact(config: Config): unknown {
  if (config.admin === false) return config;
  const { token, ...admin } = config.admin;
  return { ...config, admin: token === undefined ? admin : { ...admin, token: "(set)" } };
}
