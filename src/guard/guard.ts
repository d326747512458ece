/**
 * Guards: what a route checks before a request may go to its pool (issue: rate limits, access
 * control). A guard reads the request's head and lets it through or refuses it with the
 * proxy's own answer; it never reads the body and never reaches a backend's health.
 *
 * Two kinds, by when they can decide:
 * - A `HeadGuard` decides at once, from the head alone (an address list, a local rate limit,
 *   a password checked against a hash in memory). The router runs these when it routes the
 *   request, before its body is read (forward/router.ts): the socket engine refuses a request
 *   without reading its body.
 * - A `Guard` may have to wait (an auth service's answer, a shared rate limit in Redis, a key
 *   set to fetch). The forwarding loop runs these before its first try (forward/forward.ts).
 * Both are built once per config, per route (src/guard/build.ts), in the order the route lists.
 */
import type { HeaderFields } from "../http/fields.ts";
import type { ErrorAnswer, GuardCode } from "../errors.ts";
import type { InFlightLimit } from "./in-flight.ts";

/** What a guard reads of a request: its head, and the client's address (PROXY protocol's, when the listener takes it). */
export interface GuardRequest {
  readonly method: string;
  /** The request target as received (origin-form). */
  readonly target: string;
  /** The client's fields, as received; a guard may add some (claims, an auth service's answer). */
  readonly headers: HeaderFields;
  readonly clientIp: string;
}

/** A guard's refusal: its stable code (counted by code in /stats and /metrics) and the answer. */
export interface Refusal {
  readonly code: GuardCode;
  readonly answer: ErrorAnswer;
}

/** Decides at once from the head: run by the router, before the body is read. */
export interface HeadGuard {
  check(req: GuardRequest): Refusal | undefined;
}

/** May wait for something outside the process: run by the loop before the first try. */
export interface Guard {
  check(req: GuardRequest): Refusal | undefined | Promise<Refusal | undefined>;
}

/** A route's guards, in the two kinds, and its bound of requests in flight per client; `NO_GUARDS` when it has none. */
export interface Guards {
  readonly head: readonly HeadGuard[];
  readonly late: readonly Guard[];
  /**
   * Counted by the loop when it takes the request (after the head guards, before the late
   * ones) and released when the request is over, both in forward.ts: a request that never
   * reaches the loop (its client left first) never holds a slot.
   */
  readonly inFlight?: InFlightLimit;
}

export const NO_GUARDS: Guards = { head: [], late: [] };
