/**
 * The admin API: JSON under /api/ on the admin listener. Reads are open to whoever reaches the
 * listener; every change needs `Authorization: Bearer <token>` (see auth.ts) and goes through
 * Control, which records it once (log, /events, dashboard) with the token's name and the
 * client's address.
 *
 *   GET    /api                              this list
 *   GET    /api/pools                        every pool: strategy, panic mode, retry budget, who sends to it, its backends
 *   GET    /api/pools/:pool                  one pool
 *   GET    /api/pools/:pool/backends         its backends
 *   POST   /api/pools/:pool/backends         add one to it
 *   GET    /api/routes                       every route, in order: match, action, pools, listeners, figures
 *   GET    /api/routes/:route                one route
 *   GET    /api/backends                     every backend of every pool: pool, state, weight, in flight...
 *   GET    /api/backends/:name               one backend
 *   POST   /api/backends                     add one: a backends[] entry of the config, name required
 *   DELETE /api/backends/:name?deadline=30s  drain, wait for in-flight work (up to the deadline), remove
 *   POST   /api/backends/:name/drain?wait=0  no new requests; optionally wait for in-flight work to end
 *   POST   /api/backends/:name/enable        take new requests again
 *   PUT    /api/backends/:name/weight        {"weight": N}
 *   POST   /api/backends/:name/health        {"health": "down" | "up" | "auto"}: maintenance override
 *   POST   /api/reload                       read the config file again and apply it
 *   POST   /api/upgrade                      replace the process by a new one of the binary on disk (src/control/upgrade.ts)
 *   POST   /api/acme/:name/renew             renew that name's certificate from ACME now
 *   POST   /api/acme/:name/revoke            renew it, then revoke the one it replaced: {"reason": "keyCompromise"} (RFC 5280 §5.3.1)
 *   GET    /api/config                       the config in force (tokens hidden) and its version
 *   GET    /api/changes                      the last changes made
 *
 * A backend is named "pool/backend", or by its name alone where one backend of all has it (always
 * so with a single pool; Control resolves both). In a path, the name is one segment: encode it
 * (encodeURIComponent: "api/b1" is /api/backends/api%2Fb1/drain), or use the pool's own routes,
 * /api/pools/:pool/backends/:name[/drain|/enable|/weight|/health], which take the same methods
 * and bodies as /api/backends/:name... and name the pool apart (a backend name with "/" in it
 * is encoded there too). POST /api/pools/:pool/backends adds a backend to that pool; POST
 * /api/backends takes the pool in the body's `pool` (optional with a single pool).
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
import { ControlError, DEFAULT_REMOVE_DEADLINE_MS, MAX_WAIT_MS, type Actor, type BackendReport, type Control } from "../control/control.ts";
import { errorResponse } from "../errors.ts";
import { REVOCATION_REASONS, type RevocationReason } from "../acme/manager.ts";
import { poolFigures, routeFigures, type PoolFigures, type RouteFigures } from "./snapshot.ts";
import type { PoolList, RouteStatsSource } from "./topology.ts";

export interface ApiContext {
  readonly control: Control;
  readonly changes: ChangeLog;
  readonly auth: AdminAuth;
  readonly config: Config;
  /** The balancer's pools (a PoolSet). */
  readonly pools: PoolList;
  /** Each route's figures (a RouteTraffic); absent: routes are listed without figures. */
  readonly routes?: RouteStatsSource;
  /** Present when this process can be replaced (started by `switchyard serve`). */
  readonly upgrade?: (actor: Actor) => Promise<UpgradeReport>;
}

type Env = { Bindings: { server?: Server<unknown> }; Variables: { actor: Actor } };

/** Request bodies are small JSON documents; anything larger is refused unread. */
const MAX_BODY_BYTES = 64 * 1024;

/** A pool as GET /api/pools shows it: its figures (snapshot.ts PoolFigures), with each backend's report. */
export type PoolReport = Omit<PoolFigures, "backends" | "members"> & {
  /** Backends in each state, available and standby, and in all. */
  states: PoolFigures["backends"];
  backends: BackendReport[];
};

/** A route as GET /api/routes shows it: as configured, and its figures since start (rates and windows are in /stats). */
export type RouteReport = RouteFigures;

export const API_ENDPOINTS = [
  "GET /api/pools",
  "GET /api/pools/:pool",
  "GET /api/routes",
  "GET /api/routes/:route",
  "GET /api/backends",
  "GET /api/backends/:name",
  "POST /api/backends",
  "DELETE /api/backends/:name?deadline=30s",
  "POST /api/backends/:name/drain?wait=0",
  "POST /api/backends/:name/enable",
  "PUT /api/backends/:name/weight",
  "POST /api/backends/:name/health",
  "POST /api/pools/:pool/backends",
  "GET /api/pools/:pool/backends/:name (and DELETE, POST .../drain, .../enable, .../health, PUT .../weight)",
  "POST /api/reload",
  "POST /api/upgrade",
  "POST /api/acme/:name/renew",
  "POST /api/acme/:name/revoke",
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

  // Pools and routes, read from the pools and the config in force.
  const pools = (): PoolReport[] => {
    const reports = ctx.control.backends();
    return poolFigures({ pools: ctx.pools, config: ctx.config }).map(({ backends: states, members: _, ...f }) => ({
      ...f, states, backends: reports.filter((b) => b.pool === f.name),
    }));
  };
  const poolNamed = (name: string): PoolReport => {
    const all = pools();
    const p = all.find((x) => x.name === name);
    if (p === undefined) throw new UnknownName("SY_UNKNOWN_POOL", `no pool named ${JSON.stringify(name)} (pools: ${all.map((x) => x.name).join(", ") || "none"})`);
    return p;
  };
  const routes = (): RouteReport[] => routeFigures({ config: ctx.config, routes: ctx.routes });

  api.get("/pools", (c) => c.json({ pools: pools() }));
  api.get("/pools/:pool", (c) => c.json(poolNamed(c.req.param("pool"))));
  api.get("/routes", (c) => c.json({ routes: routes() }));
  api.get("/routes/:route", (c) => {
    const name = c.req.param("route");
    const all = routes();
    const r = all.find((x) => x.name === name);
    if (r === undefined) throw new UnknownName("SY_UNKNOWN_ROUTE", `no route named ${JSON.stringify(name)} (routes: ${all.map((x) => x.name).join(", ") || "none"})`);
    return c.json(r);
  });

  /**
   * The backend a path names: /backends/:name ("pool/backend" encoded as one segment, or a bare
   * name), or /pools/:pool/backends/:name, which must be a backend of that pool.
   */
  const named = (c: Context<Env>): string => {
    const name = c.req.param("name")!;
    const pool = c.req.param("pool");
    if (pool === undefined) return name;
    const p = ctx.pools.all.find((x) => x.name === pool);
    if (p === undefined) throw new UnknownName("SY_UNKNOWN_POOL", `no pool named ${JSON.stringify(pool)} (pools: ${ctx.pools.all.map((x) => x.name).join(", ") || "none"})`);
    if (p.pool.backends.every((b) => b.name !== name)) {
      throw new ControlError("SY_UNKNOWN_BACKEND", `pool ${pool} has no backend named ${JSON.stringify(name)} (its backends: ${p.pool.backends.map((b) => b.name).join(", ") || "none"})`);
    }
    return `${pool}/${name}`;
  };

  api.get("/backends", (c) => c.json({ backends: ctx.control.backends() }));
  api.get("/pools/:pool/backends", (c) => c.json({ backends: poolNamed(c.req.param("pool")).backends }));

  for (const base of ["/backends/:name", "/pools/:pool/backends/:name"]) {
    api.get(base, (c) => c.json(ctx.control.backend(named(c))));

    api.delete(base, async (c) => {
      const name = named(c);
      const deadline = durationParam(c, "deadline", DEFAULT_REMOVE_DEADLINE_MS);
      // The wait may outlast the listener's idle timeout, and Bun.serve's idle timer runs while a
      // handler awaits (Bun 1.4.5: a 12 s wait reset the client at the default 10 s): lift it here.
      c.env?.server?.timeout(c.req.raw, 0);
      return c.json(await ctx.control.remove(name, c.get("actor"), deadline));
    });

    api.post(`${base}/drain`, async (c) => {
      const name = named(c);
      const wait = durationParam(c, "wait", 0);
      if (wait > 0) c.env?.server?.timeout(c.req.raw, 0);
      return c.json(await ctx.control.drain(name, c.get("actor"), wait));
    });

    api.post(`${base}/enable`, async (c) => c.json(await ctx.control.enable(named(c), c.get("actor"))));

    api.put(`${base}/weight`, async (c) => {
      const name = named(c);
      const body = await jsonBody(c);
      const weight = typeof body === "object" && body !== null ? (body as { weight?: unknown }).weight : undefined;
      if (weight === undefined) throw new ControlError("SY_INVALID_REQUEST", 'weight: missing; send {"weight": N} with N from 1 to 1000');
      return c.json(await ctx.control.setWeight(name, weight, c.get("actor")));
    });

    api.post(`${base}/health`, async (c) => {
      const name = named(c);
      const body = await jsonBody(c);
      const health = typeof body === "object" && body !== null ? (body as { health?: unknown }).health : undefined;
      if (health !== "up" && health !== "down" && health !== "auto") {
        throw new ControlError("SY_INVALID_REQUEST", `health: got ${JSON.stringify(health) ?? "nothing"}, expected "down", "up" or "auto" (checks decide)`);
      }
      return c.json(await ctx.control.force(name, health, c.get("actor")));
    });
  }

  api.post("/backends", async (c) => {
    const body = await jsonBody(c);
    return c.json(await ctx.control.add(body, c.get("actor")), 201);
  });

  api.post("/pools/:pool/backends", async (c) => {
    const pool = poolNamed(c.req.param("pool")).name;
    const body = await jsonBody(c);
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw new ControlError("SY_INVALID_REQUEST", 'expected a backends[] entry as a JSON object, e.g. {"name": "b4", "url": "http://10.0.0.4:8080"}');
    const given = (body as { pool?: unknown }).pool;
    if (given !== undefined && given !== pool) throw new ControlError("SY_INVALID_REQUEST", `pool: got ${JSON.stringify(given)} in the body and "${pool}" in the path; leave it out of the body`);
    return c.json(await ctx.control.add({ ...body, pool }, c.get("actor")), 201);
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

  // Certificates from ACME: an order may take a minute (as an upgrade's start may), so the
  // listener's idle timeout is lifted for the answer.
  api.post("/acme/:name/renew", async (c) => {
    c.env?.server?.timeout(c.req.raw, 0);
    return c.json(await ctx.control.renewCertificate(c.req.param("name"), undefined, c.get("actor")));
  });
  api.post("/acme/:name/revoke", async (c) => {
    const body = await jsonBody(c, {});
    const reason = (body as { reason?: unknown } | null)?.reason ?? "unspecified";
    if (typeof reason !== "string" || !Object.hasOwn(REVOCATION_REASONS, reason)) {
      throw new ControlError("SY_INVALID_REQUEST", `reason: got ${JSON.stringify(reason)}, expected one of ${Object.keys(REVOCATION_REASONS).join(", ")} (RFC 5280 §5.3.1)`);
    }
    c.env?.server?.timeout(c.req.raw, 0);
    return c.json(await ctx.control.renewCertificate(c.req.param("name"), reason as RevocationReason, c.get("actor")));
  });

  api.get("/config", (c) => c.json({ status: ctx.control.status(), config: redact(ctx.config) }));

  api.get("/changes", (c) => c.json({ changes: ctx.changes.recent() }));

  api.notFound((c) => errorResponse("SY_NOT_FOUND", `no such endpoint: ${c.req.method} ${new URL(c.req.url).pathname}`, { extra: { endpoints: API_ENDPOINTS } }));

  api.onError((err) => {
    if (err instanceof ControlError) return errorResponse(err.code, err.message, err.problems.length ? { extra: { problems: err.problems } } : undefined);
    if (err instanceof UnknownName) return errorResponse(err.code, err.message);
    throw err;
  });

  return api;
}

/** A pool or route the path names that does not exist. */
class UnknownName extends Error {
  constructor(
    readonly code: "SY_UNKNOWN_POOL" | "SY_UNKNOWN_ROUTE",
    message: string,
  ) {
    super(message);
  }
}

/** The request's JSON body; `empty`: what an empty body stands for (refused when not given). */
async function jsonBody(c: Context<Env>, empty?: unknown): Promise<unknown> {
  const length = Number(c.req.header("content-length") ?? 0);
  if (length > MAX_BODY_BYTES) throw new ControlError("SY_INVALID_REQUEST", `the body is ${length} bytes, expected a JSON document of at most ${MAX_BODY_BYTES}`);
  const text = await c.req.text();
  if (text.length > MAX_BODY_BYTES) throw new ControlError("SY_INVALID_REQUEST", `the body is over ${MAX_BODY_BYTES} bytes`);
  if (text === "" && empty !== undefined) return empty;
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

/** The config as /api/config shows it: secrets named, never shown (the admin token, a route's JWT secret, an ACME binding's HMAC key). */
function redact(config: Config): unknown {
  const routes = config.routes.map((r) => (r.jwt?.secret !== undefined ? { ...r, jwt: { ...r.jwt, secret: "(set)" } } : r));
  const listeners = config.listeners.map((l) => {
    const eab = l.tls?.acme?.eab;
    return eab?.hmacKey === undefined ? l : { ...l, tls: { ...l.tls!, acme: { ...l.tls!.acme!, eab: { ...eab, hmacKey: "(set)" } } } };
  });
  if (config.admin === false) return { ...config, routes, listeners };
  const { token, ...admin } = config.admin;
  return { ...config, routes, listeners, admin: token === undefined ? admin : { ...admin, token: "(set)" } };
}
