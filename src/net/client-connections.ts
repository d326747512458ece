/**
 * Connections open per client address on one listener (`limits.maxConnectionsPerClient`), as
 * HAProxy's `sc_conn_cur` with `tcp-request connection reject` and nginx's `limit_conn` bound
 * them: a client that already holds the bound is refused its next connection, so that one
 * address cannot take every connection a listener has (limits.maxConnections) or every relay
 * a TCP pool has.
 *
 * The address is the real client's: the one a PROXY header names on a listener that takes one
 * (counted once the header is read), else the peer's, IPv4-mapped IPv6 written as IPv4
 * (net/cidr.ts plainAddress), so one client is one key whichever way it came.
 *
 * Counted whether or not a bound is set (one map update per connection, none per request), so
 * that a reload that sets or lowers the bound finds the connections already open counted. A
 * count that reaches zero is removed: the map holds only clients with connections open, and its
 * size is bounded by those connections. One per listener, kept across reloads (like
 * guard/in-flight.ts InFlightLimit): a reload changes the bound for new connections only.
 */
export class ClientConnections {
  private readonly counts = new Map<string, number>();

  /** `max`: connections per client; undefined for no bound. */
  constructor(private maxPerClient: number | undefined) {}

  /** The bound in force (undefined: none). */
  get max(): number | undefined {
    return this.maxPerClient;
  }

  /** A reload's new bound: connections open stay counted, and only new ones meet it. */
  setMax(max: number | undefined): void {
    this.maxPerClient = max;
  }

  /**
   * Count a connection of `client` in, or refuse it (nothing is counted then). Each admitted
   * connection must be released exactly once, when it closes.
   */
  admit(client: string): boolean {
    const n = this.counts.get(client) ?? 0;
    if (this.maxPerClient !== undefined && n >= this.maxPerClient) return false;
    this.counts.set(client, n + 1);
    return true;
  }

  /** An admitted connection of `client` closed. */
  release(client: string): void {
    const n = this.counts.get(client);
    if (n === undefined) return;
    if (n <= 1) this.counts.delete(client);
    else this.counts.set(client, n - 1);
  }

  /** Connections `client` holds open now. */
  of(client: string): number {
    return this.counts.get(client) ?? 0;
  }

  /** Clients with connections open now. */
  get clients(): number {
    return this.counts.size;
  }
}
