/**
 * Counts per client address under one bound, each count removed when it reaches zero, so the
 * map holds only clients with something open and its size is bounded by what is open. Two
 * owners, each with one per thing it bounds, kept across reloads (a reload changes the bound
 * with setMax, and what was admitted before stays counted):
 * - connections a client holds open to one listener, `limits.maxConnectionsPerClient` (the
 *   socket engine, engine/socket/engine.ts, and TCP listeners, tcp/proxy.ts), as HAProxy's
 *   `sc_conn_cur` with `tcp-request connection reject` and nginx's `limit_conn` bound them;
 * - requests a client has in flight on one route, `limits.maxInFlightPerClient`
 *   (guard/in-flight.ts).
 *
 * The address is the real client's: the one a PROXY header names on a listener that takes one,
 * else the peer's, IPv4-mapped IPv6 written as IPv4 (net/cidr.ts plainAddress), so that one
 * client is one key whichever way it came. Its owner releases each admitted unit exactly once.
 *
 * With `workers`, every worker sees the others' counts (net/shared-client-counts.ts); the
 * `clientCounts` factory there gives each owner the right kind.
 */
export interface ClientCounts {
  /** The bound in force (undefined: none). */
  readonly max: number | undefined;
  /** A reload's new bound: what is open stays counted, and only new units meet it. */
  setMax(max: number | undefined): void;
  /** Count a unit of `client` in, or refuse it (nothing is counted then). */
  admit(client: string): boolean;
  /** A unit admitted for `client` is over. */
  release(client: string): void;
  /** Units `client` holds now (in this process). */
  of(client: string): number;
  /** Clients holding any now (in this process). */
  readonly clients: number;
}

/** ClientCounts of one process. */
export class LocalClientCounts implements ClientCounts {
  private readonly counts = new Map<string, number>();

  /** `maxPerClient`: units per client; undefined for no bound (counted all the same). */
  constructor(private maxPerClient: number | undefined) {}

  /** The bound in force (undefined: none). */
  get max(): number | undefined {
    return this.maxPerClient;
  }

  /** A reload's new bound: what is open stays counted, and only new units meet it. */
  setMax(max: number | undefined): void {
    this.maxPerClient = max;
  }

  /** Count a unit of `client` in, or refuse it (nothing is counted then). */
  admit(client: string): boolean {
    const n = this.counts.get(client) ?? 0;
    if (this.maxPerClient !== undefined && n >= this.maxPerClient) return false;
    this.counts.set(client, n + 1);
    return true;
  }

  /** A unit admitted for `client` is over. */
  release(client: string): void {
    const n = this.counts.get(client);
    if (n === undefined) return;
    if (n <= 1) this.counts.delete(client);
    else this.counts.set(client, n - 1);
  }

  /** Units `client` holds now. */
  of(client: string): number {
    return this.counts.get(client) ?? 0;
  }

  /** Clients holding any now. */
  get clients(): number {
    return this.counts.size;
  }
}
