/**
 * The admin listener's app, on its own port and never reachable through the proxy port:
 *
 *   GET /         the dashboard: one page embedded in the binary, live from /events
 *   GET /events   server-sent events: figures and chart points once a second
 *   GET /stats    the same figures as JSON, with what each backend reports at its statsPath
 *   GET /metrics  Prometheus text exposition format
 *   GET /healthz  the balancer is alive
 *   GET /readyz   a pool that takes traffic has an available backend (503 otherwise; readiness.ts);
 *                 ?pool=NAME (repeatable): each pool named has one
 *   /api/...      the admin API (api.ts): reads open, changes with the bearer token
 *
 * Requests whose Host is not one of the listener's own names get 403 (hosts.ts: against DNS
 * rebinding). createAdminApp owns the loops behind these (the sampler, the backend-stats
 * poller, the event streams); stop() ends them all.
 */
import type { Server } from "bun";
import { Hono } from "hono";
import type { Logger } from "../log/logger.ts";
import dashboardHtml from "./dashboard.html" with { type: "text" };
import { Sampler, type SamplerOptions } from "./sampler.ts";
import { BackendStatsPoller, type PollerOptions } from "./poller.ts";
import { buildSnapshot, type SnapshotSource, type StatsDocument } from "./snapshot.ts";
import { METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";
import { EventHub, type EventHubOptions } from "./events.ts";
import { errorResponse } from "../errors.ts";
import { adminHostChecker } from "./hosts.ts";
import { createApi, type ApiContext } from "./api.ts";
import { poolsOf } from "./topology.ts";
import { readiness } from "./readiness.ts";

/**
 * What the admin app reads: a BalancerContext fits, plus, in TCP mode, the listener's totals
 * (`tcpStats`, the same object passed to startTcpProxy as `stats`).
 */
export type AdminContext = SnapshotSource & { readonly logger?: Logger } & (ApiContext | { readonly control?: undefined });

export interface AdminOptions {
  sampler?: SamplerOptions;
  poller?: PollerOptions;
  events?: EventHubOptions;
  /** Poll backends' statsPath every this many samples. Default 2 (every 2 s). */
  pollEverySamples?: number;
  /** Host names accepted besides the listener's own (config `admin.allowedHosts`, see hosts.ts). */
  allowedHosts?: readonly string[];
}

type Env = { Bindings: { server?: Server<unknown> } };

export interface AdminApp {
  readonly app: Hono<Env>;
  /**
   * Serve one request: `Bun.serve({ fetch: (req, server) => admin.fetch(req, { server }) })`.
   * The server is required: its address decides which Host values are accepted.
   */
  readonly fetch: (req: Request, env?: { server?: Server<unknown> }) => Response | Promise<Response>;
  readonly sampler: Sampler;
  readonly poller: BackendStatsPoller;
  readonly events: EventHub;
  /** End the event streams, the sampler and any running polls. Idempotent. */
  stop(): Promise<void>;
}

const NO_STORE = { "cache-control": "no-store" };

/**
 * The page's text, embedded at build time. bun-types declares every *.html import as an
 * HTMLBundle; with `type: "text"` Bun gives the file's text, which this checks.
 */
const page: string = (() => {
  const text: unknown = dashboardHtml;
  if (typeof text !== "string") throw new Error("admin: dashboard.html was not imported as text");
  return text;
})();

export function createAdminApp(ctx: AdminContext, opts: AdminOptions = {}): AdminApp {
  const sampler = new Sampler(ctx, opts.sampler);
  const poller = new BackendStatsPoller(opts.poller);
  const snapshot = (): StatsDocument => buildSnapshot(ctx, sampler, poller);
  const events = new EventHub(sampler, snapshot, opts.events);
  const pollEvery = opts.pollEverySamples ?? 2;
  const polled = () => poolsOf(ctx).flatMap((p) => p.pool.backends.filter((b) => b.statsPath !== undefined));

  let samples = 0;
  const unlisten = sampler.onSample(() => {
    if (samples++ % pollEvery === 0) void poller.pollAll(polled());
  });

  const dashboard = dashboardResponseInit(page);
  const app = new Hono<Env>();

  // One Host checker per listener, built on its first request (the port may be ephemeral).
  const checkers = new WeakMap<Server<unknown>, (host: string | null) => boolean>();
  app.use(async (c, next) => {
    const server = c.env?.server;
    let allowed = server && checkers.get(server);
    if (server && !allowed) {
      allowed = adminHostChecker(server.hostname ?? "127.0.0.1", server.port ?? 80, opts.allowedHosts);
      checkers.set(server, allowed);
    }
    const host = c.req.header("host") ?? null;
    // Without the server there is no address to check against: refuse rather than guess.
    if (!allowed || !allowed(host)) {
      return errorResponse("SY_ADMIN_HOST_FORBIDDEN", `Host ${JSON.stringify(host)} is not a name of this admin listener; add it to admin.allowedHosts to allow it`);
    }
    await next();
  });

  app.get("/", () => new Response(page, dashboard));

  app.get("/events", (c) => {
    // Hono answers HEAD with the GET handler's headers: open no stream that nobody will read.
    if (c.req.method === "HEAD") return new Response(null, { headers: { "content-type": "text/event-stream; charset=utf-8", ...NO_STORE } });
    // The stream outlives Bun.serve's idleTimeout by design, and that timer counts while a
    // response is open (Bun 1.4.5: it reset a 12 s response at the default 10 s): none for it.
    c.env?.server?.timeout(c.req.raw, 0);
    return events.open(c.req.raw.signal);
  });

  app.get("/stats", async (c) => {
    sampler.touch();
    // The first call after start-up waits (bounded by the poll timeout) for the backends'
    // own figures, so a single `curl /stats` shows them; later calls answer at once.
    const never = polled().filter((b) => poller.get(b) === undefined);
    // With workers, their figures are asked for now, so that totals include every request answered.
    await Promise.all([never.length > 0 ? poller.pollAll(never) : undefined, ctx.refresh?.()]);
    const body = JSON.stringify(snapshot(), null, c.req.query("pretty") !== undefined ? 2 : undefined);
    return new Response(body, { headers: { "content-type": "application/json; charset=utf-8", ...NO_STORE } });
  });

  app.get("/metrics", async () => {
    await ctx.refresh?.();
    return new Response(renderMetrics(ctx, poller), { headers: { "content-type": METRICS_CONTENT_TYPE, ...NO_STORE } });
  });

  app.get("/healthz", (c) => c.json({ status: "ok", uptimeSeconds: Math.floor((Date.now() - ctx.startedAt) / 1000) }, 200, NO_STORE));

  app.get("/readyz", (c) => {
    const r = readiness(ctx, c.req.queries("pool") ?? []);
    if (!r.ok) {
      return errorResponse("SY_UNKNOWN_POOL", `no pool named ${r.unknown.map((n) => JSON.stringify(n)).join(", ")} (pools: ${r.known.join(", ") || "none"})`, { extra: { pools: r.known } });
    }
    return c.json(r.report, r.report.ready ? 200 : 503, NO_STORE);
  });

  // Changes made while running reach open dashboards at once, not at the next tick.
  let unlistenChanges = () => {};
  if (ctx.control !== undefined) {
    const api = ctx as ApiContext;
    app.route("/api", createApi(api));
    unlistenChanges = api.changes.onChange((change) => events.publish("change", change));
  }

  app.notFound((c) =>
    errorResponse("SY_NOT_FOUND", `no such endpoint: ${c.req.method} ${new URL(c.req.url).pathname}`, {
      extra: { endpoints: ["/", "/events", "/stats", "/metrics", "/healthz", "/readyz", ...(ctx.control ? ["/api"] : [])] },
    }),
  );
  app.onError((err) => {
    ctx.logger?.error(`admin: ${err.stack ?? err}`);
    return errorResponse("SY_INTERNAL", "internal error");
  });

  let stopped = false;
  return {
    app,
    fetch: (req, env) => app.fetch(req, env ?? {}),
    sampler,
    poller,
    events,
    async stop() {
      if (stopped) return;
      stopped = true;
      unlisten();
      unlistenChanges();
      events.close();
      sampler.stop();
      poller.stop();
    },
  };
}

/**
 * Headers for the page. The Content-Security-Policy allows only this origin and the page's own
 * inline script (by hash) and styles: the page cannot load anything from elsewhere.
 */
function dashboardResponseInit(html: string): ResponseInit {
  const script = /<script>([\s\S]*?)<\/script>/.exec(html)?.[1] ?? "";
  const hash = new Bun.CryptoHasher("sha256").update(script).digest("base64");
  return {
    headers: {
      "content-type": "text/html; charset=utf-8",
      ...NO_STORE,
      "content-security-policy": `default-src 'none'; script-src 'sha256-${hash}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
    },
  };
}
