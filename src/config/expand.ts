/**
 * From the config as written to the one the program runs: named pools with every option filled
 * in, listeners, routes. The single-pool form (top-level `listen`, `mode` and `backends`, and the
 * seed format) becomes one listener `default`, one pool `default` and one route `default` to it,
 * so that nothing past this file knows there ever was another form.
 *
 * A pool's options fall back to the top-level ones field by field: `pools.api.retry.attempts`
 * replaces `retry.attempts` for that pool and leaves the other retry fields as the top level
 * has them. That merge is done on the options as written (raw), and then the option's own
 * schema fills in its defaults, so that "not given in the pool" and "given as the default" stay
 * apart.
 */
import * as v from "valibot";
import { ConfigSchema, POOL_OPTIONS, type Config, type ListenerConfig, type PoolConfig } from "./schema.ts";
import { poolsOf, routeWarnings, type RouteConfig } from "../route/schema.ts";
import { acmeTls, routeHostNames } from "../acme/paths.ts";

type Raw = Record<string, unknown>;

/** The name of the pool, listener and route the single-pool form becomes. */
export const DEFAULT_NAME = "default";

/**
 * Which kind of traffic each pool serves, from the config as written: "tcp" when a TCP
 * listener sends to it (its `pool`, or an SNI route it chooses among), else "http". A pool both
 * kinds use is reported by poolModeProblems. Read before validation, so that backend addresses
 * are checked for the right kind together with every other problem.
 */
export function poolModes(raw: Raw): Map<string, "http" | "tcp"> {
  const modes = new Map<string, "http" | "tcp">();
  // A pool nothing sends to (yet) is of the kind its addresses say: tcp:// or http(s)://.
  for (const [name] of rawPools(raw)) modes.set(name, "http");
  const used = new Set(routesOfRaw(raw).flatMap(routePools));
  for (const [name, pool, at] of rawPools(raw)) {
    // The single-pool form's pool is of the kind `mode` says, as it always was.
    if (at === "backends") continue;
    const urls = Array.isArray(pool.backends) ? pool.backends.map((b) => (isObject(b) ? b.url : undefined)) : [];
    if (!used.has(name) && urls.length > 0 && urls.every((u) => typeof u === "string" && /^tcp:\/\//i.test(u))) modes.set(name, "tcp");
  }
  for (const l of rawListeners(raw)) {
    if (l.mode !== "tcp") continue;
    if (typeof l.pool === "string") modes.set(l.pool, "tcp");
    for (const r of sniRoutesOf(raw, l)) if (typeof r.pool === "string") modes.set(r.pool, "tcp");
  }
  return modes;
}

/** The pools as written: top-level `backends` is the pool `default`. */
export function rawPools(raw: Raw): [name: string, pool: Raw, at: string][] {
  const out: [string, Raw, string][] = [];
  if (raw.backends !== undefined) out.push([DEFAULT_NAME, { backends: raw.backends }, "backends"]);
  if (isObject(raw.pools)) for (const [name, p] of Object.entries(raw.pools)) if (isObject(p)) out.push([name, p, `pools.${name}`]);
  return out;
}

function rawPoolNames(raw: Raw): string[] {
  return rawPools(raw).map(([n]) => n);
}

/** The listeners as written: `listen` and `mode` are the listener `default`. */
export function rawListeners(raw: Raw): Raw[] {
  if (Array.isArray(raw.listeners)) return raw.listeners.filter(isObject);
  const listen = isObject(raw.listen) ? raw.listen : {};
  const mode = raw.mode === "tcp" ? "tcp" : "http";
  return [{ ...listen, name: DEFAULT_NAME, mode, ...(mode === "tcp" && raw.routes === undefined ? { pool: onlyPool(raw) } : {}) }];
}

function onlyPool(raw: Raw): string | undefined {
  const names = rawPoolNames(raw);
  return names.length === 1 ? names[0] : undefined;
}

function isSniRoute(r: Raw): boolean {
  return isObject(r.match) && r.match.sni !== undefined;
}

/** The SNI routes a TCP listener chooses among: those it names, else every SNI route. */
function sniRoutesOf(raw: Raw, l: Raw): Raw[] {
  const routes = Array.isArray(raw.routes) ? raw.routes.filter(isObject) : [];
  const named = Array.isArray(l.routes) ? new Set(l.routes) : undefined;
  return routes.filter((r) => isSniRoute(r) && (named === undefined || named.has(r.name)));
}

/**
 * Problems of the whole shape, found on the raw input so that they are reported with the
 * schema's: a pool, a listener or a route named twice or not at all, the two forms mixed, a
 * pool that both a TCP listener and HTTP routes use.
 */
export function shapeProblems(raw: Raw): string[] {
  const problems: string[] = [];
  const hasPools = isObject(raw.pools);
  if (raw.backends === undefined && !hasPools) problems.push(`backends: missing; give the backends (one pool), or pools`);
  if (hasPools && raw.backends === undefined && Object.keys(raw.pools as Raw).length === 0) problems.push(`pools: got {}, expected at least one pool`);
  if (raw.backends !== undefined && hasPools && DEFAULT_NAME in (raw.pools as Raw)) {
    problems.push(`pools.${DEFAULT_NAME}: the top-level backends are the pool "${DEFAULT_NAME}" already; give its backends in one place`);
  }
  if (raw.listeners !== undefined) {
    if (raw.listen !== undefined) problems.push(`listen: set beside listeners; expected one of them: give this listener in listeners`);
    if (raw.mode !== undefined) problems.push(`mode: set beside listeners; expected the mode of each listener (listeners[].mode)`);
  }
  const pools = new Set(rawPoolNames(raw));
  const listeners = rawListeners(raw);
  const routes = Array.isArray(raw.routes) ? raw.routes.filter(isObject) : [];
  const routeNames = new Set(routes.map((r) => r.name));
  const seen = new Map<unknown, number>();
  listeners.forEach((l, i) => {
    const at = listenerPath(raw, i);
    if (seen.has(l.name)) problems.push(`${at}.name: got ${show(l.name)}, expected a unique name (listeners[${seen.get(l.name)}] has it)`);
    else seen.set(l.name, i);
    if (typeof l.pool === "string" && !pools.has(l.pool)) problems.push(`${at}.pool: got ${show(l.pool)}, expected the name of a pool (${[...pools].join(", ") || "none defined"})`);
    if (l.mode !== "tcp" && l.pool !== undefined) problems.push(`${at}.pool: set on an HTTP listener; expected it only with mode "tcp" (HTTP listeners send by routes)`);
    if (Array.isArray(l.routes)) {
      l.routes.forEach((n, j) => {
        if (typeof n === "string" && !routeNames.has(n)) problems.push(`${at}.routes[${j}]: got ${show(n)}, expected the name of a route`);
        const r = routes.find((x) => x.name === n);
        if (r && (l.mode === "tcp") !== isSniRoute(r)) {
          problems.push(`${at}.routes[${j}]: ${show(n)} ${isSniRoute(r) ? "matches on sni and serves TCP listeners only" : "serves HTTP listeners only (it has no match.sni)"}`);
        }
      });
    }
    if (l.mode === "tcp" && l.pool === undefined && sniRoutesOf(raw, l).length === 0) {
      problems.push(`${at}: a TCP listener needs a pool, or routes with match.sni to choose one`);
    }
    // A terminated connection has no ClientHello left to pass on (src/tcp/relay.ts).
    if (l.mode === "tcp" && l.tls !== undefined && sniRoutesOf(raw, l).length > 0) {
      problems.push(`${at}.tls: set on a TCP listener that routes by SNI; expected one of them: it either terminates TLS or passes the client's TLS through to the backend chosen by server name`);
    }
    if (l.mode === "tcp" && l.httpRedirect !== undefined) problems.push(`${at}.httpRedirect: set in TCP mode; expected it only on HTTP listeners (it answers HTTP requests)`);
  });
  problems.push(...proxyProtocolProblems(raw, listeners));
  problems.push(...protocolProblems(raw));
  problems.push(...clientConnectionProblems(raw, listeners));
  const http = listeners.some((l) => l.mode !== "tcp");
  if (raw.routes === undefined && http && pools.size > 1) {
    problems.push(`routes: missing; with ${pools.size} pools (${[...pools].join(", ")}), routes say which requests go to which`);
  }
  // A pool is one kind: TCP backends are tcp:// addresses, HTTP ones http(s):// URLs.
  const tcpPools = new Set([...poolModes(raw)].filter(([, m]) => m === "tcp").map(([n]) => n));
  routes.forEach((r, i) => {
    if (isSniRoute(r)) return;
    for (const p of routePools(r)) if (tcpPools.has(p)) problems.push(`routes[${i}]: sends HTTP requests to pool ${show(p)}, which a TCP listener uses; expected a pool of one kind`);
  });
  return problems;
}

/**
 * PROXY protocol (src/net/proxy-protocol.ts) where it cannot work: the fetch engine's Bun.serve
 * hands over parsed requests, never a connection's first bytes, and Bun's fetch opens upstream
 * connections whose first bytes it writes itself; a listener that accepts the header from no
 * trusted peer would close every connection.
 */
function proxyProtocolProblems(raw: Raw, listeners: Raw[]): string[] {
  const problems: string[] = [];
  const fetchEngine = raw.engine === "fetch";
  listeners.forEach((l, i) => {
    if (l.proxyProtocol !== true) return;
    const at = `${listenerPath(raw, i)}.proxyProtocol`;
    if (fetchEngine && l.mode !== "tcp") {
      problems.push(`${at}: true on an HTTP listener with engine "fetch"; expected engine "socket" (Bun.serve gives no access to the bytes before the HTTP request, where the PROXY header is)`);
    }
    if (!Array.isArray(raw.trustedProxies) || raw.trustedProxies.length === 0) {
      problems.push(`${at}: true, but trustedProxies is empty; expected trustedProxies to name the proxies that send the header (a connection from any other peer is closed)`);
    }
  });
  // The header goes on the connection before the TLS handshake (HAProxy: send-proxy with ssl),
  // and Bun's TLS client starts its handshake as it connects: no bytes can go before it.
  for (const [, pool, at] of rawPools(raw)) {
    if (pool.proxyProtocol === undefined || !Array.isArray(pool.backends)) continue;
    // The grpc check speaks HTTP/2 through node:http2, which writes a connection's first bytes itself.
    const check = isObject(pool.healthCheck) ? pool.healthCheck : isObject(raw.healthCheck) ? raw.healthCheck : undefined;
    if (check?.type === "grpc") problems.push(`${at}.proxyProtocol: ${show(pool.proxyProtocol)} with a healthCheck of type "grpc"; expected an "http" or "tcp" check (the gRPC probe cannot send a PROXY header before its HTTP/2 preface)`);
    pool.backends.forEach((b, j) => {
      if (!isObject(b)) return;
      const https = (typeof b.url === "string" && /^https:\/\//i.test(b.url)) || b.scheme === "https";
      if (https) problems.push(`${at}.backends[${j}]: an https:// backend in a pool with proxyProtocol; expected http:// backends (the PROXY header goes before the TLS handshake, which Bun's TLS client starts as it connects)`);
    });
  }
  // Mirror copies go out through Bun's fetch on either engine (forward/mirror.ts).
  const withHeader = new Map(rawPools(raw).filter(([, p]) => p.proxyProtocol !== undefined).map(([n, , at]) => [n, at]));
  routesOfRaw(raw).forEach((r, i) => {
    const mirror = isObject(r.mirror) ? r.mirror.pool : undefined;
    if (typeof mirror === "string" && withHeader.has(mirror)) {
      problems.push(`routes[${i}].mirror.pool: ${show(mirror)} sends a PROXY header (${withHeader.get(mirror)}.proxyProtocol); expected a pool without one (mirror copies go through Bun's fetch, which writes a connection's first bytes itself)`);
    }
  });
  if (fetchEngine) {
    const httpUsed = new Set(routesOfRaw(raw).filter((r) => !isSniRoute(r)).flatMap(routePools));
    const single = raw.routes === undefined && listeners.some((l) => l.mode !== "tcp");
    for (const [name, pool, at] of rawPools(raw)) {
      if (pool.proxyProtocol === undefined || !(httpUsed.has(name) || single)) continue;
      problems.push(`${at}.proxyProtocol: ${show(pool.proxyProtocol)} on a pool HTTP routes use with engine "fetch"; expected engine "socket" (Bun's fetch opens its upstream connections and writes their first bytes itself, so no PROXY header can go before them)`);
    }
  }
  return problems;
}

/**
 * `protocol` (http1 | h2 | h2c) where it cannot work: h2 is negotiated in the TLS handshake by
 * ALPN (RFC 9113 §3.2), so it needs an https:// backend; h2c starts with the connection
 * preface in the clear (prior knowledge, RFC 9113 §3.3), so it needs http://. Bun's fetch
 * speaks no h2c and the fetch engine has no HTTP/2 wire yet; mirror copies go through fetch on
 * either engine; a PROXY header names one client, and an HTTP/2 connection carries many.
 * Each backend's own `protocol` wins over its pool's, which wins over the top-level one.
 */
function protocolProblems(raw: Raw): string[] {
  const problems: string[] = [];
  const top = typeof raw.protocol === "string" ? raw.protocol : "http1";
  const http2Pools = new Map<string, string>();
  for (const [name, pool, at] of rawPools(raw)) {
    const poolProtocol = at === "backends" ? top : typeof pool.protocol === "string" ? pool.protocol : top;
    if (!Array.isArray(pool.backends)) continue;
    pool.backends.forEach((b, j) => {
      if (!isObject(b)) return;
      const own = typeof b.protocol === "string";
      const protocol = own ? (b.protocol as string) : poolProtocol;
      if (protocol !== "h2" && protocol !== "h2c") return;
      const field = own ? `${at === "backends" ? "" : `${at}.`}backends[${j}].protocol` : at === "backends" || pool.protocol === undefined ? "protocol" : `${at}.protocol`;
      http2Pools.set(name, field);
      const scheme = typeof b.url === "string" ? /^([a-z][a-z0-9+.-]*):\/\//i.exec(b.url)?.[1]?.toLowerCase() : typeof b.scheme === "string" ? b.scheme : b.dns !== undefined ? "http" : undefined;
      const entry = at === "backends" ? `backends[${j}]` : `${at}.backends[${j}]`;
      const where = typeof b.url === "string" ? `${entry} (${show(b.url)})` : entry;
      if (protocol === "h2" && scheme !== "https") {
        problems.push(`${field}: "h2" for ${where}; expected an https:// backend (h2 is agreed in the TLS handshake by ALPN), or "h2c" for cleartext HTTP/2 to an http:// backend`);
      }
      if (protocol === "h2c" && scheme !== "http") {
        problems.push(`${field}: "h2c" for ${where}; expected an http:// backend (h2c is cleartext HTTP/2 by prior knowledge), or "h2" for HTTP/2 over TLS to an https:// backend`);
      }
      if (raw.engine === "fetch") {
        problems.push(`${field}: ${show(protocol)} with engine "fetch"; expected "http1", or engine "socket" (Bun's fetch cannot speak cleartext HTTP/2, and the fetch engine has no HTTP/2 wire to backends yet)`);
      }
    });
    if (pool.proxyProtocol !== undefined && http2Pools.has(name)) {
      problems.push(`${at}.proxyProtocol: ${show(pool.proxyProtocol)} on a pool with HTTP/2 backends (${http2Pools.get(name)}); expected "http1" backends (a PROXY header names one client, and an HTTP/2 connection carries the requests of many)`);
    }
  }
  routesOfRaw(raw).forEach((r, i) => {
    const mirror = isObject(r.mirror) ? r.mirror.pool : undefined;
    if (typeof mirror === "string" && http2Pools.has(mirror)) {
      problems.push(`routes[${i}].mirror.pool: ${show(mirror)} has HTTP/2 backends (${http2Pools.get(mirror)}); expected a pool of "http1" backends (mirror copies go through Bun's fetch, which speaks no cleartext HTTP/2)`);
    }
  });
  return problems;
}

/**
 * limits.maxConnectionsPerClient where it cannot work: the fetch engine's Bun.serve says nothing
 * when a connection opens or closes (it hands over requests), so its connections cannot be
 * counted per client. TCP listeners count theirs on either engine.
 */
function clientConnectionProblems(raw: Raw, listeners: Raw[]): string[] {
  const max = isObject(raw.limits) ? raw.limits.maxConnectionsPerClient : undefined;
  if (max === undefined || raw.engine !== "fetch" || !listeners.some((l) => l.mode !== "tcp")) return [];
  return [`limits.maxConnectionsPerClient: ${show(max)} with engine "fetch" and an HTTP listener; expected engine "socket" (Bun.serve tells the proxy nothing when a connection opens or closes, so it cannot count a client's connections)`];
}

/** How a listener is named in messages: `listen` in the single-pool form, else `listeners[i]`. */
export function listenerPath(raw: Raw, i: number): string {
  return raw.listeners === undefined ? "listen" : `listeners[${i}]`;
}

function routesOfRaw(raw: Raw): Raw[] {
  return Array.isArray(raw.routes) ? raw.routes.filter(isObject) : [];
}

/** Every pool a route sends to: its pool, its split's, its mirror's. */
export function routePools(r: Raw): string[] {
  const out: string[] = [];
  if (typeof r.pool === "string") out.push(r.pool);
  if (Array.isArray(r.split)) for (const s of r.split) if (isObject(s) && typeof s.pool === "string") out.push(s.pool);
  if (isObject(r.mirror) && typeof r.mirror.pool === "string") out.push(r.mirror.pool);
  return out;
}

type Parsed = v.InferOutput<typeof ConfigSchema>;

/** The config as the program runs it. Call only once the schema and shapeProblems passed. */
export function expandConfig(parsed: Parsed, raw: Raw): Config {
  const modes = poolModes(raw);
  const pools: Record<string, PoolConfig> = {};
  for (const [name, rawPool] of rawPools(raw)) {
    const own = name === DEFAULT_NAME && raw.backends !== undefined ? { backends: parsed.backends!, tls: undefined } : parsed.pools![name]!;
    // The pool's tls is the default of its https:// backends that give none of their own.
    const backends = own.tls === undefined ? own.backends : own.backends.map((b) => (b.tls === undefined && /^https:\/\//i.test(b.url ?? "") ? { ...b, tls: own.tls } : b));
    const proxyProtocol = "proxyProtocol" in own ? own.proxyProtocol : undefined;
    pools[name] = {
      ...resolvePool(name, modes.get(name) ?? "http", backends, raw, rawPool),
      ...(own.tls !== undefined ? { tls: own.tls } : {}),
      ...(proxyProtocol !== undefined ? { proxyProtocol } : {}),
    };
  }
  const given =
    parsed.listeners ??
    [{
      name: DEFAULT_NAME,
      host: parsed.listen.host,
      port: parsed.listen.port,
      mode: parsed.mode,
      proxyProtocol: false,
      ...(parsed.listen.tls !== undefined ? { tls: parsed.listen.tls } : {}),
      ...(parsed.listen.httpRedirect !== undefined ? { httpRedirect: parsed.listen.httpRedirect } : {}),
      ...(parsed.mode === "tcp" && parsed.routes === undefined ? { pool: Object.keys(pools)[0]! } : {}),
    }];
  const httpPools = Object.values(pools).filter((p) => p.mode === "http");
  const routes: RouteConfig[] =
    parsed.routes ?? (given.some((l) => l.mode === "http") && httpPools.length === 1 ? [{ name: DEFAULT_NAME, match: {}, pool: httpPools[0]!.name } as RouteConfig] : []);
  // tls.acme: the names, and the files in acme.storage that serve them (src/acme/paths.ts).
  const listeners: ListenerConfig[] = given.map((l) => {
    const { tls, ...rest } = l;
    if (tls === undefined) return rest;
    // load.ts refused a tls with neither cert and key nor acme.
    if (tls.acme === undefined) return { ...rest, tls: { ...tls, cert: tls.cert!, key: tls.key! } };
    const domains = tls.acme.domains ?? routeHostNames(routes, "routes" in l ? l.routes : undefined);
    return { ...rest, tls: acmeTls({ ...tls, acme: { ...tls.acme, domains } }, parsed.acme!.storage, domains) };
  });
  const { backends: _b, pools: _p, listeners: _l, routes: _r, ...rest } = parsed;
  return { ...rest, pools, listeners, routes };
}

/** Options written as objects merge field by field; the others are replaced whole. */
const MERGED = new Set<string>(["peakEwma", "retry", "healthCheck", "passive"]);

function resolvePool(name: string, mode: "http" | "tcp", backends: PoolConfig["backends"], raw: Raw, own: Raw): PoolConfig {
  const entries = ConfigSchema.entries;
  const opt = <K extends (typeof POOL_OPTIONS)[number]>(key: K): Parsed[K] => {
    const top = raw[key];
    const mine = own[key];
    let value = mine === undefined ? top : mine;
    if (MERGED.has(key) && isObject(top) && isObject(mine)) value = { ...top, ...mine };
    return v.parse(entries[key] as v.GenericSchema, value) as Parsed[K];
  };
  const topTimeouts = v.parse(entries.timeouts, raw.timeouts);
  const topLimits = v.parse(entries.limits, raw.limits);
  const t = isObject(own.timeouts) ? v.parse(entries.timeouts, { ...(isObject(raw.timeouts) ? raw.timeouts : {}), ...own.timeouts }) : topTimeouts;
  const l = isObject(own.limits) ? v.parse(entries.limits, { ...(isObject(raw.limits) ? raw.limits : {}), ...own.limits }) : topLimits;
  return {
    name, mode, backends,
    strategy: opt("strategy"), hash: opt("hash"), sticky: opt("sticky"), peakEwma: opt("peakEwma"), retry: opt("retry"),
    healthCheck: opt("healthCheck"), passive: opt("passive"), panicThreshold: opt("panicThreshold"), slowStart: opt("slowStart"),
    protocol: opt("protocol"),
    timeouts: { connect: t.connect, upstreamIdle: t.upstreamIdle, send: t.send },
    limits: { upstreamKeepalive: l.upstreamKeepalive },
  };
}


function isObject(x: unknown): x is Raw {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function show(x: unknown): string {
  const s = JSON.stringify(x);
  return s === undefined ? String(x) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * The config as `switchyard check` prints it: the expanded form (listeners, pools, routes and
 * the global options), without the single-pool form's `listen` and `mode`, which the listener
 * `default` now says.
 */
export function expandedView(config: Config): Record<string, unknown> {
  const { listen: _listen, mode: _mode, ...rest } = config;
  return rest;
}

/** What `check` warns about: routes an earlier one hides entirely, pools nothing uses. */
export function configWarnings(config: Config): string[] {
  // Shadowing is per listener: a route hides another only among the routes one listener serves.
  const out = new Set<string>();
  for (const l of config.listeners) {
    for (const w of routeWarnings(routesServed(config, l), [], [], (r) => config.routes.indexOf(r))) out.add(w);
  }
  const used = [...config.listeners.flatMap((l) => (l.pool !== undefined ? [l.pool] : []))];
  for (const w of routeWarnings([], Object.keys(config.pools), [...used, ...config.routes.flatMap(poolsOf)])) out.add(w);
  return [...out];
}

/**
 * The routes a listener serves, in config order: those it names, else every route of its kind
 * (an HTTP listener: every route without match.sni; a TCP one: every route with it).
 */
export function routesServed(config: Pick<Config, "routes">, listener: ListenerConfig): RouteConfig[] {
  const sni = listener.mode === "tcp";
  const named = listener.routes === undefined ? undefined : new Set(listener.routes);
  return config.routes.filter((r) => (r.match?.sni !== undefined) === sni && (named === undefined || named.has(r.name)));
}
