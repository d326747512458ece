/**
 * The route table: compiled once per configuration, consulted once per request by both HTTP
 * engines (and by TCP listeners for SNI routes). Pure: it knows nothing of engines, sockets or
 * pools; `P` is whatever the caller's `pool(name)` resolver returns.
 *
 * Per-request cost does not grow with the number of host and path-prefix routes:
 *   host  → an exact-name Map, then one Map lookup per label suffix for "*." wildcards, then the
 *           routes with no host condition;
 *   path  → in each of those, a trie of path segments walked once along the request's path,
 *           collecting the prefix routes of every node passed and the exact routes of the last;
 * the few candidates found are checked in config order (the first that holds wins) for the rest
 * (method, pathRegex, headers, query, clientIp), which only candidates pay for.
 */
import { cookieValue } from "../http/cookie.ts";
import { cidrMatcher, type CidrMatcher } from "../net/cidr.ts";
import { hashKeyExtractor, type KeyExtractor } from "../policy/hash-key.ts";
import { HeaderRules, type HeaderVars } from "./header-rules.ts";
import { normalizePath, type PathRefusal } from "./normalize.ts";
import { compileRegex, type SafeRegex } from "./regex.ts";
import type { RouteConfig } from "./schema.ts";
import { parseTemplate, REDIRECT_PLACEHOLDERS, type RedirectPlaceholder, type Template } from "./template.ts";

/** What the table reads of a request; both engines build it from the head. */
export interface RouteRequest {
  readonly method: string;
  /** origin-form as received, query included ("*" for OPTIONS *). */
  readonly target: string;
  /** The Host field value as sent (may carry :port); undefined when absent. */
  readonly host: string | undefined;
  /** Lower-case names. */
  readonly headers: { get(name: string): string | null };
  readonly clientIp: string;
}

export type RouteAction<P> =
  | { readonly kind: "forward"; readonly pool: P }
  | { readonly kind: "redirect"; readonly status: number; readonly location: string }
  | { readonly kind: "respond"; readonly status: number; readonly headers: Readonly<Record<string, string>>; readonly body: string };

/** A route as compiled: what the forwarding code needs of it besides the action. */
export interface CompiledRoute<P> {
  readonly name: string;
  /** Its place in the config's list (first match wins by this). */
  readonly index: number;
  readonly config: RouteConfig;
  /** The pools it may forward to (one, or a split's), for listings. */
  readonly pools: readonly P[];
  readonly requestHeaders: HeaderRules | undefined;
  readonly responseHeaders: HeaderRules | undefined;
  readonly mirror: { readonly pool: P; readonly percent: number } | undefined;
  /** Per-route overrides, as configured (the caller merges them over the pool's). */
  readonly retry: RouteConfig["retry"];
  readonly timeouts: RouteConfig["timeouts"];
  readonly limits: RouteConfig["limits"];
}

export interface RouteMatch<P> {
  readonly route: CompiledRoute<P>;
  /** A split is already resolved to one pool. */
  readonly action: RouteAction<P>;
  /** Path and query to send upstream: normalized, then rewritten; === req.target when unchanged. */
  readonly target: string;
  /** The normalized path the route matched (before any rewrite): `{path}`. */
  readonly path: string;
  /** The Host without port, lower-cased, as matched: `{host}`; undefined when the request had none. */
  readonly host: string | undefined;
  /** A split with splitBy.cookie that had to choose: the Set-Cookie value to add to the answer. */
  readonly setCookie?: string;
  /** The pool this request is to be copied to (route.mirror, its percent already drawn), if any. */
  readonly mirror?: P;
}

export interface ExplainStep {
  readonly route: string;
  readonly matched: boolean;
  /** Why it did not match (the first condition that failed). */
  readonly why?: string;
}

export interface Explanation<P> {
  /** Every route in order up to the one that took the request (all of them when none did). */
  readonly steps: readonly ExplainStep[];
  readonly result: RouteMatch<P> | PathRefusal | undefined;
}

export interface CompileOptions {
  /** [0, 1): the draw of a split by weight and of mirror percentages; Math.random by default. */
  readonly random?: () => number;
}

type HeaderCond = { readonly name: string } & (
  | { readonly kind: "exact"; readonly value: string }
  | { readonly kind: "regex"; readonly re: SafeRegex }
  | { readonly kind: "present" }
  | { readonly kind: "absent" }
);

interface Side<P> {
  readonly name: string;
  readonly weight: number;
  readonly action: RouteAction<P>;
}

/** One route's matching and action, as the table runs them. */
interface Entry<P> {
  readonly route: CompiledRoute<P>;
  readonly index: number;
  readonly hosts: readonly string[] | undefined;
  /** The path prefix without a trailing "/" ("" for "/"); `slash`: it was written with one. */
  readonly prefix: string | undefined;
  readonly slash: boolean;
  readonly exact: string | undefined;
  readonly methods: readonly string[] | undefined;
  readonly regex: SafeRegex | undefined;
  readonly headers: readonly HeaderCond[] | undefined;
  readonly query: readonly (readonly [string, string | true])[] | undefined;
  readonly clientIp: CidrMatcher | undefined;
  readonly rewrite: ((path: string) => string | PathRefusal) | undefined;
  /** The action and Set-Cookie for a request that matched. */
  readonly act: (req: RouteRequest, path: string, host: string | undefined, q: number) => { action: RouteAction<P>; setCookie?: string };
}

interface TrieNode<P> {
  children: Map<string, TrieNode<P>> | undefined;
  /** Prefix routes ending at this node, in config order. */
  prefix: Entry<P>[];
  /** Exact-path routes ending here. */
  exact: Entry<P>[];
}

/** The routes that share a host condition: those with no path condition, and a path trie. */
interface Bucket<P> {
  anyPath: Entry<P>[];
  root: TrieNode<P>;
}

const newNode = <P>(): TrieNode<P> => ({ children: undefined, prefix: [], exact: [] });
const newBucket = <P>(): Bucket<P> => ({ anyPath: [], root: newNode() });

export class RouteTable<P> {
  /** Every route in config order, the SNI ones included. */
  readonly routes: readonly CompiledRoute<P>[];
  /** Candidates checked since compile: for tests that the index, not a scan, chose them. */
  candidatesChecked = 0;

  private readonly entries: Entry<P>[] = [];
  /** Every entry by config index, the SNI ones included. */
  private readonly byIndex: Entry<P>[] = [];
  private readonly exactHosts = new Map<string, Bucket<P>>();
  /** Keyed by the suffix with its dot: "*.example.com" → ".example.com". */
  private readonly wildcardHosts = new Map<string, Bucket<P>>();
  /**
   * The lengths of those suffixes: a host's suffix is looked up only when some wildcard has its
   * length, so that a request pays a slice and a Map lookup only for suffixes that could match.
   */
  private readonly wildcardLengths = new Set<number>();
  private readonly anyHost: Bucket<P> = newBucket();
  private readonly sniExact = new Map<string, Entry<P>>();
  private readonly sniWildcard = new Map<string, Entry<P>>();
  private readonly sniEntries: Entry<P>[] = [];
  /** Reused per match (matching is synchronous): the candidate lists found. */
  private readonly lists: Entry<P>[][] = [];
  private readonly heads: number[] = [];

  private constructor(routes: readonly RouteConfig[], pool: (name: string) => P, private readonly random: () => number) {
    const compiled: CompiledRoute<P>[] = [];
    routes.forEach((config, index) => {
      const entry = compileEntry(config, index, pool, random);
      compiled.push(entry.route);
      this.byIndex.push(entry);
      if (config.match.sni !== undefined) {
        this.sniEntries.push(entry);
        for (const name of config.match.sni.map(lowerHost)) {
          const map = name.startsWith("*.") ? this.sniWildcard : this.sniExact;
          const key = name.startsWith("*.") ? name.slice(1) : name;
          if (!map.has(key)) map.set(key, entry);
        }
        return;
      }
      this.entries.push(entry);
      const buckets = entry.hosts === undefined ? [this.anyHost] : entry.hosts.map((h) => this.bucketFor(h));
      for (const b of new Set(buckets)) insert(b, entry);
    });
    this.routes = compiled;
    const http = routes.filter((r) => r.match.sni === undefined);
    const placeholder = (r: RouteConfig, name: string) => r.redirect?.to.includes(`{${name}}`) === true;
    this.usesPath = http.some((r) => r.match.path !== undefined || r.match.pathExact !== undefined || r.match.pathRegex !== undefined || r.rewrite !== undefined || placeholder(r, "path") || (r.splitBy !== undefined && "key" in r.splitBy && r.splitBy.key === "path"));
    const hostInRules = (r: RouteConfig) =>
      [r.requestHeaders, r.responseHeaders].some((rules) => rules !== undefined && [...Object.values(rules.set ?? {}), ...Object.values(rules.add ?? {})].some((v) => v.includes("{host}")));
    this.usesHost = http.some((r) => r.match.host !== undefined || placeholder(r, "host") || hostInRules(r));
  }

  /**
   * Whether any route reads the path (a path condition, a rewrite, `{path}`, a split keyed on
   * it) or the host. A table none of whose routes reads the path (the single-pool form's one
   * route) leaves it as sent: there is nothing routing and the backend could read apart, and
   * the target goes upstream byte for byte, as it always has. Likewise the Host.
   */
  private readonly usesPath: boolean;
  private readonly usesHost: boolean;

  /**
   * Compile validated routes (RouteSchema's output, in config order). `pool` resolves a pool
   * name; routeProblems has already refused names that do not exist.
   */
  static compile<P>(routes: readonly RouteConfig[], pool: (name: string) => P, options: CompileOptions = {}): RouteTable<P> {
    return new RouteTable(routes, pool, options.random ?? Math.random);
  }

  private bucketFor(host: string): Bucket<P> {
    const wildcard = host.startsWith("*.");
    const map = wildcard ? this.wildcardHosts : this.exactHosts;
    const key = wildcard ? host.slice(1) : host;
    if (wildcard) this.wildcardLengths.add(key.length);
    let b = map.get(key);
    if (b === undefined) map.set(key, (b = newBucket()));
    return b;
  }

  /**
   * The route that takes `req`, with its action (a split resolved) and the target to send; a
   * refusal (answer 400) when the path cannot be normalized safely; undefined when no route
   * takes it (404 SY_NO_ROUTE).
   */
  match(req: RouteRequest): RouteMatch<P> | PathRefusal | undefined {
    const target = req.target;
    const q = target.indexOf("?");
    const raw = q === -1 ? target : target.slice(0, q);
    let path: string;
    if (raw === "*" || !this.usesPath) path = raw;
    else {
      const n = normalizePath(raw);
      if (typeof n !== "string") return n;
      path = n;
    }
    const host = this.usesHost ? normalizeHost(req.host) : undefined;
    if (typeof host === "object") return host;
    const lists = this.lists;
    lists.length = 0;
    if (host !== undefined) {
      const exact = this.exactHosts.get(host);
      if (exact !== undefined) collect(exact, path, lists);
      if (this.wildcardHosts.size > 0) {
        const lengths = this.wildcardLengths;
        for (let dot = host.indexOf(".", 1); dot !== -1; dot = host.indexOf(".", dot + 1)) {
          if (!lengths.has(host.length - dot)) continue;
          const b = this.wildcardHosts.get(host.slice(dot));
          if (b !== undefined) collect(b, path, lists);
        }
      }
    }
    collect(this.anyHost, path, lists);
    const entry = this.firstHolding(lists, req, path, target, q);
    if (entry === undefined) return undefined;
    return this.finish(entry, req, path, host, raw, q);
  }

  private finish(entry: Entry<P>, req: RouteRequest, path: string, host: string | undefined, raw: string, q: number): RouteMatch<P> | PathRefusal {
    const { action, setCookie } = entry.act(req, path, host, q);
    let sent = path;
    if (entry.rewrite !== undefined && path !== "*") {
      const r = entry.rewrite(path);
      if (typeof r !== "string") return r;
      sent = r;
    }
    const target = sent === raw ? req.target : q === -1 ? sent : sent + req.target.slice(q);
    const mirror = entry.route.mirror;
    const copy = mirror !== undefined && (mirror.percent >= 100 || this.random() * 100 < mirror.percent) ? mirror.pool : undefined;
    if (setCookie === undefined && copy === undefined) return { route: entry.route, action, target, path, host };
    return { route: entry.route, action, target, path, host, setCookie, mirror: copy };
  }

  /** The candidate lists merged in config order; the first entry whose other conditions hold. */
  private firstHolding(lists: Entry<P>[][], req: RouteRequest, path: string, target: string, q: number): Entry<P> | undefined {
    const ctx: Ctx = { query: undefined, target, q };
    if (lists.length === 1) {
      for (const e of lists[0]!) if (this.holds(e, req, path, ctx)) return e;
      return undefined;
    }
    const heads = this.heads;
    heads.length = 0;
    for (let i = 0; i < lists.length; i++) heads.push(0);
    let last = -1;
    for (;;) {
      let best = -1;
      let bestIndex = Infinity;
      for (let i = 0; i < lists.length; i++) {
        const l = lists[i]!;
        // Skip what was already tried (a route reached through two host buckets).
        while (heads[i]! < l.length && l[heads[i]!]!.index <= last) heads[i]!++;
        if (heads[i]! < l.length && l[heads[i]!]!.index < bestIndex) {
          best = i;
          bestIndex = l[heads[i]!]!.index;
        }
      }
      if (best === -1) return undefined;
      const e = lists[best]![heads[best]!++]!;
      last = e.index;
      if (this.holds(e, req, path, ctx)) return e;
    }
  }

  /** The conditions the index did not decide. */
  private holds(e: Entry<P>, req: RouteRequest, path: string, ctx: Ctx): boolean {
    this.candidatesChecked++;
    // Written "/api/": the trie walk reached "/api"; the path must go on past it.
    if (e.slash && path.length <= e.prefix!.length) return false;
    // Indexed by pathExact: a path prefix on the same route still has to hold.
    if (e.exact !== undefined && e.prefix !== undefined && !underPrefix(path, e.prefix)) return false;
    if (e.methods !== undefined && !e.methods.includes(req.method)) return false;
    return whyNotRest(e, req, path, ctx) === undefined;
  }

  /** SNI routes (TCP listeners): the first route whose names include `serverName`, with its pool. */
  matchSni(serverName: string | undefined): { route: CompiledRoute<P>; pool: P } | undefined {
    if (serverName === undefined || serverName === "") return undefined;
    const name = lowerHost(serverName.endsWith(".") ? serverName.slice(0, -1) : serverName);
    let best = this.sniExact.get(name);
    for (let dot = name.indexOf(".", 1); dot !== -1; dot = name.indexOf(".", dot + 1)) {
      const e = this.sniWildcard.get(name.slice(dot));
      if (e !== undefined && (best === undefined || e.index < best.index)) best = e;
    }
    return best === undefined ? undefined : { route: best.route, pool: best.route.pools[0]! };
  }

  /** Whether any route matches on SNI (a TCP listener then reads the ClientHello). */
  get hasSniRoutes(): boolean {
    return this.sniEntries.length > 0;
  }

  /**
   * For `switchyard route`: every route in order until the one that takes the request, each
   * with why it did not; checked route by route, not through the index, so that a test can
   * compare the two.
   */
  explain(req: RouteRequest): Explanation<P> {
    const target = req.target;
    const q = target.indexOf("?");
    const raw = q === -1 ? target : target.slice(0, q);
    // As match() reads them: a table that never reads the path or the host leaves them as sent.
    const n = raw === "*" || !this.usesPath ? raw : normalizePath(raw);
    if (typeof n !== "string") return { steps: [], result: n };
    const host = this.usesHost ? normalizeHost(req.host) : undefined;
    if (typeof host === "object") return { steps: [], result: host };
    const ctx: Ctx = { query: undefined, target, q };
    const steps: ExplainStep[] = [];
    let matchedEntry: Entry<P> | undefined;
    for (const route of this.routes) {
      const e = this.byIndex[route.index]!;
      if (route.config.match.sni !== undefined) {
        steps.push({ route: route.name, matched: false, why: "matches TLS server names (sni): serves TCP listeners only" });
        continue;
      }
      const why = whyNotHostPath(e, host, n) ?? (e.methods !== undefined && !e.methods.includes(req.method) ? `method ${req.method} is not ${e.methods.join(" or ")}` : undefined) ?? whyNotRest(e, req, n, ctx);
      if (why !== undefined) {
        steps.push({ route: route.name, matched: false, why });
        continue;
      }
      steps.push({ route: route.name, matched: true });
      matchedEntry = e;
      break;
    }
    return { steps, result: matchedEntry === undefined ? undefined : this.finish(matchedEntry, req, n, host, raw, q) };
  }
}

interface Ctx {
  query: Map<string, string[]> | undefined;
  readonly target: string;
  readonly q: number;
}

function insert<P>(b: Bucket<P>, e: Entry<P>): void {
  if (e.prefix === undefined && e.exact === undefined) {
    b.anyPath.push(e);
    return;
  }
  // A pathExact and a path on one route: both must hold; index by the exact one, check the other.
  const at = e.exact ?? e.prefix!;
  let node = b.root;
  if (at !== "") {
    // "/a/b" → ["a", "b"]; "/" (exact) → [""]; "/a/" (exact) → ["a", ""].
    for (const seg of at.slice(1).split("/")) {
      node.children ??= new Map();
      let next = node.children.get(seg);
      if (next === undefined) node.children.set(seg, (next = newNode()));
      node = next;
    }
  }
  (e.exact !== undefined ? node.exact : node.prefix).push(e);
}

/** Push the non-empty candidate lists of `b` along `path`: config order within each list. */
function collect<P>(b: Bucket<P>, path: string, lists: Entry<P>[][]): void {
  if (b.anyPath.length > 0) lists.push(b.anyPath);
  if (path === "*") return;
  let node = b.root;
  if (node.prefix.length > 0) lists.push(node.prefix);
  let start = 1;
  for (;;) {
    const children = node.children;
    if (children === undefined) return;
    const slash = path.indexOf("/", start);
    const seg = slash === -1 ? path.slice(start) : path.slice(start, slash);
    const next = children.get(seg);
    if (next === undefined) return;
    node = next;
    if (node.prefix.length > 0) lists.push(node.prefix);
    if (slash === -1) {
      if (node.exact.length > 0) lists.push(node.exact);
      return;
    }
    start = slash + 1;
  }
}

/**
 * Characters of a Host's uri-host (RFC 3986 §3.2.2): reg-name is unreserved, pct-encoded and
 * sub-delims; an IP-literal adds "[", "]" and ":". A Host with anything else ("/", "@", a space)
 * is invalid, and RFC 9112 §3.2 has the server answer 400: it is refused here too, so that
 * `{host}` in a redirect or a header rule can never carry a path or another authority.
 */
const HOST_CHAR = new Uint8Array(128);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=") HOST_CHAR[c.charCodeAt(0)] = 1;
const BAD_HOST: PathRefusal = { refused: "a Host field that is not a host name or address with an optional port (RFC 9112 §3.2)" };

/**
 * Host without port, lower-cased, without a trailing dot; IPv6 literals keep their brackets.
 * undefined when absent or empty; BAD_HOST when it is not a valid Host value.
 */
export function normalizeHost(h: string | undefined): string | undefined | PathRefusal {
  if (h === undefined || h === "") return undefined;
  const n = h.length;
  let end: number;
  let upper = false;
  if (h.charCodeAt(0) === 91) {
    // IP-literal: "[" hex digits, ":" and "." (and "v" for IPvFuture) "]".
    end = h.indexOf("]");
    if (end === -1) return BAD_HOST;
    for (let i = 1; i < end; i++) {
      const c = h.charCodeAt(i);
      if (!((c >= 48 && c <= 58) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70) || c === 46 || c === 118 || c === 86)) return BAD_HOST;
      if (c >= 65 && c <= 90) upper = true;
    }
    end++;
  } else {
    end = n;
    for (let i = 0; i < n; i++) {
      const c = h.charCodeAt(i);
      if (c === 58) {
        end = i;
        break;
      }
      if (c >= 128 || HOST_CHAR[c] === 0) return BAD_HOST;
      if (c >= 65 && c <= 90) upper = true;
    }
  }
  // The port: ":" and digits, or nothing (RFC 3986 §3.2.3 allows an empty port).
  if (end < n) {
    if (h.charCodeAt(end) !== 58) return BAD_HOST;
    for (let i = end + 1; i < n; i++) {
      const c = h.charCodeAt(i);
      if (c < 48 || c > 57) return BAD_HOST;
    }
  }
  if (end > 0 && h.charCodeAt(end - 1) === 46) end--;
  if (end === 0) return BAD_HOST;
  const s = end === n ? h : h.slice(0, end);
  return upper ? s.toLowerCase() : s;
}

function lowerHost(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) return s.toLowerCase();
  }
  return s;
}

/** Whether `path` lies under prefix `p` ("" for "/") on a segment boundary. */
function underPrefix(path: string, p: string): boolean {
  return p === "" || (path.startsWith(p) && (path.length === p.length || path.charCodeAt(p.length) === 47));
}

function whyNotHostPath<P>(e: Entry<P>, host: string | undefined, path: string): string | undefined {
  if (e.hosts !== undefined) {
    const ok = host !== undefined && e.hosts.some((p) => (p.startsWith("*.") ? host.endsWith(p.slice(1)) && host.length > p.length - 1 : p === host));
    if (!ok) return host === undefined ? `no Host; needs ${e.hosts.join(" or ")}` : `host ${host} is not ${e.hosts.join(" or ")}`;
  }
  if (e.exact !== undefined && path !== e.exact) return `path ${path} is not exactly ${e.exact}`;
  if (e.prefix !== undefined) {
    const shown = e.prefix + (e.slash ? "/" : "");
    if (path === "*" || !underPrefix(path, e.prefix) || (e.slash && path.length <= e.prefix.length)) return `path ${path} is not under ${shown || "/"}`;
  }
  return undefined;
}

/** The conditions past host, path and method; undefined when all hold. */
function whyNotRest<P>(e: Entry<P>, req: RouteRequest, path: string, ctx: Ctx): string | undefined {
  if (e.regex !== undefined && !e.regex.test(path)) return `path ${path} does not match ${e.regex.source}`;
  if (e.headers !== undefined) {
    for (const c of e.headers) {
      const value = req.headers.get(c.name);
      switch (c.kind) {
        case "exact":
          if (value !== c.value) return value === null ? `no ${c.name} header` : `header ${c.name} is not "${c.value}"`;
          break;
        case "regex":
          if (value === null || !c.re.test(value)) return value === null ? `no ${c.name} header` : `header ${c.name} does not match ${c.re.source}`;
          break;
        case "present":
          if (value === null) return `no ${c.name} header`;
          break;
        case "absent":
          if (value !== null) return `header ${c.name} is present`;
          break;
      }
    }
  }
  if (e.query !== undefined) {
    const query = (ctx.query ??= parseQuery(ctx.target, ctx.q));
    for (const [name, want] of e.query) {
      const got = query.get(name);
      if (got === undefined) return `no query parameter ${name}`;
      if (want !== true && !got.includes(want)) return `query parameter ${name} is not "${want}"`;
    }
  }
  if (e.clientIp !== undefined && !e.clientIp(req.clientIp)) return `client ${req.clientIp} is not in ${e.route.config.match.clientIp!.join(", ")}`;
  return undefined;
}

function parseQuery(target: string, q: number): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (q === -1) return out;
  for (const [k, v] of new URLSearchParams(target.slice(q + 1))) {
    const list = out.get(k);
    if (list === undefined) out.set(k, [v]);
    else list.push(v);
  }
  return out;
}

/** FNV-1a, 32 bits: a stable, well-spread hash of a split key (the same on every process). */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function compileEntry<P>(config: RouteConfig, index: number, pool: (name: string) => P, random: () => number): Entry<P> {
  const m = config.match;
  const regexOf = (p: string) => {
    const re = compileRegex(p);
    if (typeof re === "string") throw new Error(`route "${config.name}": pattern ${JSON.stringify(p)}: expected ${re}`);
    return re;
  };
  const forward = (name: string): RouteAction<P> => ({ kind: "forward", pool: pool(name) });
  let act: Entry<P>["act"];
  let pools: P[] = [];
  if (config.pool !== undefined) {
    const action = forward(config.pool);
    pools = [(action as { pool: P }).pool];
    const result = { action };
    act = () => result;
  } else if (config.split !== undefined) {
    const sides: Side<P>[] = config.split.map((s) => ({ name: s.pool, weight: s.weight, action: forward(s.pool) }));
    pools = sides.map((s) => (s.action as { pool: P }).pool);
    act = splitAct(sides, config.splitBy, random);
  } else if (config.redirect !== undefined) {
    act = redirectAct(config.redirect.to, config.redirect.status);
  } else if (config.respond !== undefined) {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(config.respond.headers)) headers[k.toLowerCase()] = v;
    if (config.respond.body !== "" && headers["content-type"] === undefined) headers["content-type"] = "text/plain; charset=utf-8";
    const result = { action: { kind: "respond", status: config.respond.status, headers, body: config.respond.body } as RouteAction<P> };
    act = () => result;
  } else {
    throw new Error(`route "${config.name}": expected one of pool, split, redirect, respond`);
  }
  const route: CompiledRoute<P> = {
    name: config.name,
    index,
    config,
    pools,
    requestHeaders: config.requestHeaders === undefined ? undefined : HeaderRules.compile(config.requestHeaders),
    responseHeaders: config.responseHeaders === undefined ? undefined : HeaderRules.compile(config.responseHeaders),
    mirror: config.mirror === undefined ? undefined : { pool: pool(config.mirror.pool), percent: config.mirror.percent },
    retry: config.retry,
    timeouts: config.timeouts,
    limits: config.limits,
  };
  const prefix = m.path === undefined ? undefined : m.path === "/" ? "" : m.path.endsWith("/") ? m.path.slice(0, -1) : m.path;
  return {
    route,
    index,
    hosts: m.host?.map((h) => lowerHost(h.endsWith(".") ? h.slice(0, -1) : h)),
    prefix,
    slash: m.path !== undefined && m.path !== "/" && m.path.endsWith("/"),
    exact: m.pathExact,
    methods: m.method,
    regex: m.pathRegex === undefined ? undefined : regexOf(m.pathRegex),
    headers:
      m.headers === undefined
        ? undefined
        : Object.entries(m.headers).map(([n, c]): HeaderCond => {
            const name = n.toLowerCase();
            if (typeof c === "string") return { name, kind: "exact", value: c };
            if (c === true) return { name, kind: "present" };
            if (c === false) return { name, kind: "absent" };
            return { name, kind: "regex", re: regexOf(c.regex) };
          }),
    query: m.query === undefined ? undefined : Object.entries(m.query),
    clientIp: m.clientIp === undefined ? undefined : cidrMatcher(m.clientIp),
    rewrite: config.rewrite === undefined ? undefined : compileRewrite(config.rewrite, regexOf),
    act,
  };
}

function splitAct<P>(sides: readonly Side<P>[], by: RouteConfig["splitBy"], random: () => number): Entry<P>["act"] {
  const total = sides.reduce((s, x) => s + x.weight, 0);
  const results = sides.map((s) => ({ action: s.action }));
  /** The side at point x of [0, total). */
  const at = (x: number) => {
    let i = 0;
    for (; i < sides.length - 1; i++) {
      x -= sides[i]!.weight;
      if (x < 0) break;
    }
    // Skip weight-0 sides (x can land on one only at its boundary).
    while (sides[i]!.weight === 0) i = (i + 1) % sides.length;
    return i;
  };
  const byWeight = () => at(random() * total);
  if (by === undefined) return () => results[byWeight()]!;
  if ("cookie" in by) {
    const cookie = by.cookie;
    const cookies = sides.map((s) => `${cookie}=${s.name}; Path=/; HttpOnly; SameSite=Lax`);
    return (req) => {
      const named = cookieValue(req.headers.get("cookie"), cookie);
      if (named !== undefined) {
        const i = sides.findIndex((s) => s.name === named);
        if (i !== -1 && sides[i]!.weight > 0) return results[i]!;
      }
      const i = byWeight();
      return { action: sides[i]!.action, setCookie: cookies[i]! };
    };
  }
  const key: KeyExtractor = hashKeyExtractor(by.key);
  // The path as routed (normalized): "/%61pi" and "/api" are one path, so one side.
  return (req, path) => {
    const k = key(req.headers, path, req.clientIp);
    return results[k === undefined ? byWeight() : at(fnv1a(k) % total)]!;
  };
}

function redirectAct<P>(to: string, status: number): Entry<P>["act"] {
  const t = parseTemplate(to, REDIRECT_PLACEHOLDERS) as Template<RedirectPlaceholder>;
  if (t.constant !== undefined) {
    const result = { action: { kind: "redirect", status, location: to } as RouteAction<P> };
    return () => result;
  }
  // "{path}..." first: a path of "//evil.example/x" (empty segments are kept) must not make a
  // scheme-relative Location (RFC 3986 §4.2) that sends the client to another host.
  const pathFirst = t.parts[0] === "" && t.parts[1] === "path";
  return (req, path, host, q) => {
    const p = pathFirst && path.startsWith("//") ? path.replace(/^\/+/, "/") : path;
    const location = t.fill({ host: host ?? "", path: p, query: q === -1 ? "" : req.target.slice(q) });
    return { action: { kind: "redirect", status, location } };
  };
}

function compileRewrite(rw: NonNullable<RouteConfig["rewrite"]>, regexOf: (p: string) => SafeRegex): (path: string) => string | PathRefusal {
  if ("regex" in rw) {
    const re = regexOf(rw.regex);
    const replace = rw.replace;
    return (path) => {
      const out = re.replaceFirst(path, replace);
      if (out === path) return path;
      const n = normalizePath(out === "" ? "/" : out);
      return typeof n === "string" ? n : { refused: `the route's rewrite made a path that is refused: ${n.refused}` };
    };
  }
  const trim = (p: string | undefined) => (p === undefined || p === "/" ? "" : p.endsWith("/") ? p.slice(0, -1) : p);
  const strip = trim(rw.stripPrefix);
  const add = trim(rw.addPrefix);
  return (path) => {
    let p = path;
    if (strip !== "" && underPrefix(p, strip)) p = p.length === strip.length ? "/" : p.slice(strip.length);
    return add === "" ? p : add + p;
  };
}

/** The values of header-rule placeholders for a matched request. */
export function headerVars<P>(m: RouteMatch<P>, clientIp: string, requestId: string): HeaderVars {
  return { client_ip: clientIp, host: m.host ?? "", request_id: requestId, route: m.route.name };
}
