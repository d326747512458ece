/**
 * A route's guards, built once per config from its options, in a fixed order: who may ask
 * (address lists) before how often (rate limits) before who they are (authentication), so that
 * a refused address costs no rate-limit budget and no password check.
 */
import type { Config } from "../config/schema.ts";
import type { RouteConfig } from "../route/schema.ts";
import type { Logger } from "../log/logger.ts";
import { RateLimitState } from "./rate-limit-state.ts";
import { InFlightLimit } from "./in-flight.ts";
import { LocalBuckets, rateAnswer, type RateAnswer } from "./rate-limit.ts";
import { DEFAULT_MAX_KEYS, parseRate } from "./rate-limit-config.ts";
import { NO_GUARDS, type Guard, type Guards, type HeadGuard } from "./guard.ts";
import { AddressListGuard } from "./address-list.ts";
import { BasicAuthGuard } from "./basic-auth.ts";
import { readSecretFile, readUsersFile } from "./users-file.ts";
import { ForwardAuthGuard } from "./forward-auth.ts";
import { JwtGuard } from "./jwt.ts";
import { KeySets } from "./key-sets.ts";
import { JWT_ASYMMETRIC, JWT_HMAC } from "../route/schema.ts";

/**
 * What lives across reloads for the guards of one process: state kept by route name (rate-limit
 * budgets), connections (a shared store), caches (key sets). Owned by the balancer (or a
 * worker), which stops it.
 */
export class GuardState {
  /** JWKS key sets by URL (jwt routes), so that a reload keeps the keys and the refetch bound. */
  readonly keySets = new KeySets();
  /** Rate-limit budgets by route name, and the shared store's connection (src/guard/rate-limit-state.ts). */
  readonly rateLimits = new RateLimitState();
  /** Failed basic-auth attempts per client, by route name (basicAuth.failures), with the spec they were made for. */
  private readonly failures = new Map<string, { spec: string; buckets: LocalBuckets; answer: RateAnswer }>();

  /** The failed-attempt budgets of `route`, kept across reloads while its rate and burst stay. */
  authFailures(route: string, rate: string, burst: number | undefined): { buckets: LocalBuckets; answer: RateAnswer } {
    const spec = `${rate} ${burst ?? ""}`;
    const known = this.failures.get(route);
    if (known !== undefined && known.spec === spec) return known;
    const r = parseRate(rate)!;
    const made = { spec, buckets: new LocalBuckets(r, burst ?? r.count, DEFAULT_MAX_KEYS), answer: rateAnswer(`${route}-auth-failures`, r) };
    this.failures.set(route, made);
    return made;
  }

  /** Requests in flight per client, by route name (limits.maxInFlightPerClient). */
  private readonly inFlight = new Map<string, InFlightLimit>();

  /** The in-flight limit of `route`, kept across reloads with its counts; undefined without one. */
  inFlightLimit(route: string, max: number | undefined): InFlightLimit | undefined {
    if (max === undefined) return undefined;
    let l = this.inFlight.get(route);
    if (l === undefined) this.inFlight.set(route, (l = new InFlightLimit(route, max)));
    else l.setMax(max);
    return l;
  }

  /**
   * Forget the per-route state of routes a new config no longer has (a reload), so that routes
   * renamed or removed over time do not pile up. Requests admitted earlier keep the InFlightLimit
   * they were counted in, and release on it.
   */
  keep(routes: readonly string[]): void {
    const names = new Set(routes);
    for (const name of this.failures.keys()) if (!names.has(name)) this.failures.delete(name);
    for (const name of this.inFlight.keys()) if (!names.has(name)) this.inFlight.delete(name);
  }

  /** The config whose guards were built last is in force everywhere in this process. */
  committed(): void {
    this.rateLimits.committed();
  }

  async stop(): Promise<void> {
    await this.rateLimits.stop();
  }
}

export interface GuardContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly state: GuardState;
}

export function buildGuards(route: RouteConfig, ctx: GuardContext): Guards {
  const head: HeadGuard[] = [];
  const late: Guard[] = [];
  const inFlight = ctx.state.inFlightLimit(route.name, route.limits?.maxInFlightPerClient);
  // Who may ask: the client's address.
  if (AddressListGuard.wanted(route)) head.push(new AddressListGuard(route));
  // How often: the rate limits.
  if (route.rateLimit !== undefined) ctx.state.rateLimits.add(route.name, route.rateLimit, ctx, head, late);
  // Who they are: authentication.
  if (route.basicAuth !== undefined) {
    // Read again on every build (load and reload): validation read it too, and named its lines.
    const { users, problems } = readUsersFile(route.basicAuth.usersFile);
    if (problems.length > 0) throw new Error(`route "${route.name}": basicAuth.usersFile: ${problems.join("; ")}`);
    const f = route.basicAuth.failures;
    const failures = f === undefined ? undefined : ctx.state.authFailures(route.name, f.rate, f.burst);
    late.push(new BasicAuthGuard({ users, realm: route.basicAuth.realm, failures }));
  }
  const fa = route.forwardAuth;
  if (fa !== undefined) late.push(new ForwardAuthGuard({ url: fa.url, copyHeaders: fa.copyHeaders, headers: fa.headers, timeoutMs: fa.timeout }));
  const jwt = route.jwt;
  if (jwt !== undefined) {
    const key = jwt.jwks !== undefined ? ctx.state.keySets.get(jwt.jwks) : jwt.secret !== undefined ? new TextEncoder().encode(jwt.secret) : secretFrom(route.name, jwt.secretFile!);
    const algorithms = jwt.algorithms ?? [...(jwt.jwks === undefined ? JWT_HMAC : JWT_ASYMMETRIC)];
    const claimsToHeaders = Object.fromEntries(Object.entries(jwt.claimsToHeaders).map(([c, f]) => [c, f.toLowerCase()]));
    late.push(new JwtGuard({ key, issuer: jwt.issuer, audience: jwt.audience, algorithms, leewayMs: jwt.leeway, claimsToHeaders, realm: route.name }));
  }
  return head.length === 0 && late.length === 0 && inFlight === undefined ? NO_GUARDS : { head, late, inFlight };
}

/** A jwt route's secretFile, read again on every build (validation read it too). */
function secretFrom(route: string, path: string): Uint8Array {
  const { secret, problem } = readSecretFile(path);
  if (secret === undefined) throw new Error(`route "${route}": jwt.secretFile: ${problem}`);
  return secret;
}
