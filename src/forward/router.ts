/**
 * Where a request goes, decided once per request from its head, before its body is read: the
 * route table (src/route/, which knows nothing of pools or engines) says which route takes it,
 * and this module turns that into what the forwarding loop needs, all of it built once per
 * config (Destination): the pool and its passive health, the route's retry rules and time
 * limits, its header rules. An answer the proxy makes itself (a redirect, a fixed response, no
 * route, a path that cannot be routed) is a Routed too, so that both engines count, log and
 * answer it through the one loop.
 *
 * Both engines call route() at head time: limits.maxBodySize and retry.bufferBody may differ
 * per route, and the socket engine refuses a body over the limit before reading it.
 */
import { HTTP01_PREFIX, http01Answer } from "../acme/http01.ts";
import type { Pool } from "../pool/pool.ts";
import type { PassiveSignals } from "../health/passive.ts";
import type { KeyExtractor } from "../policy/hash-key.ts";
import type { StickySessions } from "../policy/sticky.ts";
import type { RetryBudgetConfig } from "./retry.ts";
import type { ResponseHeaderRules } from "../http/headers.ts";
import type { RouteRequest, RouteTable } from "../route/table.ts";
import type { GuardRequest, Guards, Refusal } from "../guard/guard.ts";

/** What the router reads of a request: what the route table reads, and what guards read. */
export type RoutedRequest = RouteRequest & GuardRequest;
import type { HeaderRules } from "../route/header-rules.ts";
import type { TrafficStats } from "../stats/traffic.ts";
import type { ErrorAnswer, ProxyAnswerCode } from "../errors.ts";
import type { GrpcStatusName } from "../errors.ts";

/** One pool as the loop uses it: built once per config by the composition root. */
export interface PoolTarget {
  readonly name: string;
  readonly pool: Pool;
  readonly passive: PassiveSignals;
  /** consistent-hash: reads the request's key (hash.key). */
  readonly hashKey?: KeyExtractor;
  /** Sticky sessions: the backend a request's cookie names, and the cookie for a new one. */
  readonly sticky?: StickySessions;
}

export interface RetryOptions {
  attempts: number;
  perTryTimeout: number;
  timeout: number;
  onStatus: number[];
  nonIdempotent: boolean;
  /** retry.onGrpcStatus, by name (the Destination holds their numbers). */
  onGrpcStatus: readonly GrpcStatusName[];
  /** retry.budget: retries at most a share of the pool's requests (pool/retry-budget.ts). */
  budget: RetryBudgetConfig;
}

/** A copy of a request, thrown away once answered (route `mirror`): see forward/mirror.ts. */
export interface MirrorSink {
  send(req: MirrorRequest): void;
}

export interface MirrorRequest {
  readonly method: string;
  readonly target: string;
  /** A copy of the request's fields (forward/mirror.ts mirrorFields). */
  readonly headers: Headers;
  readonly body: Uint8Array | null;
  readonly clientIp: string;
}

/** What the loop needs for one pool of one route: built once per config. */
export interface Destination {
  /** The route's name: logs, metrics labels (from the config, never from the request). */
  readonly route: string;
  readonly target: PoolTarget;
  readonly retry: RetryOptions;
  readonly retryOn: ReadonlySet<number>;
  /** retry.onGrpcStatus as numbers: a gRPC call answered with one in its head is tried again (empty: never). */
  readonly retryOnGrpc: ReadonlySet<number>;
  /** retry.bufferBody: bodies up to this size are read whole before the first try, so a retry can resend them. */
  readonly bufferBody: number;
  /** timeouts.send, ms (0: no bound). */
  readonly sendTimeout: number;
  /** The route's request header rules (route/header-rules.ts). */
  readonly requestHeaders?: HeaderRules;
  /** The top-level responseHeaders, compiled. */
  readonly responseHeaders?: ResponseHeaderRules;
  /** The route's own response header rules, applied after the top-level ones. */
  readonly routeResponseHeaders?: HeaderRules;
  /** Where a request this route copies goes (the table draws route.mirror.percent per request). */
  readonly mirror?: MirrorSink;
  /** The route's own figures (requests, status classes, latency). */
  readonly traffic: TrafficStats;
  /** What the route checks before a request may go on (src/guard/): head guards here, late ones in the loop. */
  readonly guards: Guards;
  /** routes[].tracing.sampleRatio as the sampler's threshold (tracing/sampler.ts); absent: the top-level one. */
  readonly traceThreshold?: number;
}

export const enum RoutedKind {
  /** To a pool. */
  Forward = 0,
  /** Answered by the proxy: a redirect, a fixed response, no route, a path refused. */
  Answer = 1,
}

export type Routed = RoutedForward | RoutedAnswer;

export interface RoutedForward {
  readonly kind: RoutedKind.Forward;
  readonly dest: Destination;
  /** Path and query to send upstream: normalized, then rewritten; the request's own target when neither changed it. */
  readonly upstreamTarget: string;
  /** A split that chose a side for a new client (splitBy.cookie): added to the answer. */
  readonly setCookie: string | undefined;
  /** Copy this request (the route's mirror, drawn for this request). */
  readonly mirror: MirrorSink | undefined;
  /** The Host as the table read it (lower case, no port), when some route reads it: `{host}`. */
  readonly host: string | undefined;
  readonly maxBodySize: number;
  readonly bufferBody: number;
}

export interface RoutedAnswer {
  readonly kind: RoutedKind.Answer;
  /** A route's own answer (redirect, respond) or a guard's; its headers are copied per request. */
  readonly answer: ErrorAnswer | undefined;
  /**
   * The code it is counted by: with `answer`, a guard's refusal; without, the proxy's own error
   * answer (no route, a path refused), made with `detail`.
   */
  readonly code: ProxyAnswerCode | undefined;
  readonly detail: string | undefined;
  /** The route's name and figures; undefined when no route took the request. */
  readonly route: string | undefined;
  readonly traffic: TrafficStats | undefined;
  readonly maxBodySize: number;
  readonly bufferBody: number;
}

/** What a route adds to the table's match: built once per config, per route. */
export interface RouteRuntime {
  readonly name: string;
  readonly maxBodySize: number;
  readonly bufferBody: number;
  readonly traffic: TrafficStats;
  /** Per pool the route may send to (its pool, or each side of its split). */
  destination(pool: PoolTarget): Destination;
}

export interface RouterLimits {
  maxBodySize: number;
  bufferBody: number;
}

/** The router of one listener's config: the table, each route's runtime, the listener's defaults. */
export class Router {
  /** The one answer to every request no route takes: made once. */
  private readonly noRoute: RoutedAnswer;

  constructor(
    private readonly table: RouteTable<PoolTarget>,
    /** By the route's index in the table. */
    private readonly routes: readonly RouteRuntime[],
    /** The listener's own limits, for requests no route takes. */
    private readonly limits: RouterLimits,
    /** A plain-HTTP listener while some listener gets certificates by ACME: where pending HTTP-01 answers are. */
    private readonly acmeStorage?: string,
  ) {
    this.noRoute = proxyAnswer("SY_NO_ROUTE", undefined, limits);
  }

  route(req: RoutedRequest): Routed {
    // RFC 8555 §8.3: the CA's HTTP-01 request is answered before any route sees it; a path
    // with no pending token goes on to the routes as before.
    if (this.acmeStorage !== undefined && req.target.startsWith(HTTP01_PREFIX)) {
      const keyAuthorization = http01Answer(this.acmeStorage, req.target);
      if (keyAuthorization !== undefined) {
        const answer: ErrorAnswer = { status: 200, headers: { "content-type": "text/plain" }, body: keyAuthorization };
        return { kind: RoutedKind.Answer, answer, code: undefined, detail: undefined, route: undefined, traffic: undefined, maxBodySize: this.limits.maxBodySize, bufferBody: this.limits.bufferBody };
      }
    }
    const m = this.table.match(req);
    if (m === undefined) return this.noRoute;
    if ("refused" in m) return proxyAnswer("SY_BAD_PATH", m.refused, this.limits);
    const rt = this.routes[m.route.index]!;
    const a = m.action;
    if (a.kind === "forward") {
      const dest = rt.destination(a.pool);
      // The route's head guards decide now, before the body is read (src/guard/guard.ts).
      const head = dest.guards.head;
      for (let i = 0; i < head.length; i++) {
        const refusal = head[i]!.check(req);
        if (refusal !== undefined) return refused(refusal, rt);
      }
      return {
        kind: RoutedKind.Forward, dest, upstreamTarget: m.target, setCookie: m.setCookie, mirror: m.mirror !== undefined ? dest.mirror : undefined, host: m.host,
        maxBodySize: rt.maxBodySize, bufferBody: dest.bufferBody,
      };
    }
    const answer: ErrorAnswer =
      a.kind === "redirect"
        ? { status: a.status, headers: { location: a.location, "content-type": "text/plain; charset=utf-8" }, body: `Redirecting to ${a.location}\n` }
        : { status: a.status, headers: a.headers, body: a.body };
    return { kind: RoutedKind.Answer, answer, code: undefined, detail: undefined, route: rt.name, traffic: rt.traffic, maxBodySize: rt.maxBodySize, bufferBody: rt.bufferBody };
  }
}

/** A guard's refusal, answered for the route. */
export function refused(r: Refusal, rt: Pick<RouteRuntime, "name" | "traffic" | "maxBodySize" | "bufferBody">): RoutedAnswer {
  return { kind: RoutedKind.Answer, answer: r.answer, code: r.code, detail: undefined, route: rt.name, traffic: rt.traffic, maxBodySize: rt.maxBodySize, bufferBody: rt.bufferBody };
}

function proxyAnswer(code: ProxyAnswerCode, detail: string | undefined, limits: RouterLimits): RoutedAnswer {
  return {
    kind: RoutedKind.Answer, answer: undefined, code, detail, route: undefined, traffic: undefined,
    maxBodySize: limits.maxBodySize, bufferBody: limits.bufferBody,
  };
}

/** The path and query a request is sent upstream with (its own target when it is answered locally). */
export function upstreamTargetOf(req: { readonly target: string; readonly routed: Routed }): string {
  const r = req.routed;
  return r.kind === RoutedKind.Forward ? r.upstreamTarget : req.target;
}
