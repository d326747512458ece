/**
 * Requests in flight per client address, per route (`limits.maxInFlightPerClient`): a client
 * that already has that many requests on a route waiting for their answers gets 429 for the
 * next, so that one client cannot hold every slot a route's backends have. Counted from when
 * the loop takes the request (its body read up to retry.bufferBody, or whole) to the end of the
 * answer (its body included): a client's uploads still arriving are not counted. A count that
 * reaches zero is removed,
 * so the map holds only clients with requests in flight: its size is bounded by the requests
 * in flight themselves.
 *
 * One per route name, kept across reloads (GuardState), so that requests admitted before a
 * reload are released on the same counts.
 */
import { errorAnswer, messageFor } from "../errors.ts";
import type { ClientCounts } from "../net/client-counts.ts";
import { clientCounts } from "../net/shared-client-counts.ts";
import type { Refusal } from "./guard.ts";

export class InFlightLimit {
  private readonly counts: ClientCounts;
  private refusal: Refusal;

  /** `route`: the route's name, which the workers' shared counts go by. */
  constructor(route: string, max: number) {
    this.counts = clientCounts(`in-flight ${route}`, max);
    this.refusal = refusalFor(max);
  }

  /** A reload's new bound: requests in flight stay counted. */
  setMax(max: number): void {
    if (max === this.counts.max) return;
    this.counts.setMax(max);
    this.refusal = refusalFor(max);
  }

  /** Count a request of `client` in, or refuse it (then nothing is counted). */
  admit(client: string): Refusal | undefined {
    return this.counts.admit(client) ? undefined : this.refusal;
  }

  /** A request admitted for `client` is over (called exactly once per admitted request). */
  release(client: string): void {
    this.counts.release(client);
  }

  /** Clients with requests in flight now. */
  get clients(): number {
    return this.counts.clients;
  }
}

function refusalFor(max: number): Refusal {
  // RFC 6585 §4: 429 for too many requests from one client; Retry-After: try again in a second.
  return {
    code: "SY_RATE_LIMITED",
    answer: errorAnswer("SY_RATE_LIMITED", messageFor("SY_RATE_LIMITED", `at most ${max} requests in flight per client on this route`), { headers: { "retry-after": "1" } }),
  };
}
