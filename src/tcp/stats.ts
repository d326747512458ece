/**
 * Balancer-wide figures of one TCP listener, beside each backend's own BackendStats. Counters
 * only: memory stays flat however many connections pass.
 *
 * Byte directions follow HAProxy's bytes_in/bytes_out, seen from the balancer's client side, and
 * match the per-backend `stats.bytesIn` / `stats.bytesOut`:
 * - bytesIn: bytes the client sent that were handed to the backend's socket (client -> backend);
 * - bytesOut: bytes the backend sent that were handed to the client's socket (backend -> client).
 * "Handed to" means taken by socket.write(), i.e. in the kernel's send buffer: bytes that were
 * read but dropped because the other side had gone away are not counted.
 */
/** Why an SNI-routing listener closed a client before dialling (relay.ts SniRouting). */
export type SniRefusal = "timeout" | "invalid" | "not-tls" | "no-route";

export class TcpStats {
  /** Client connections accepted. */
  accepted = 0;
  /** Client connections open now (connecting or relaying). */
  open = 0;
  /** Client connections closed at once because no backend was available. */
  rejected = 0;
  /** Client connections closed because every try to reach a backend failed. */
  unreachable = 0;
  /** Backend connects that failed (refused, reset, unresolvable) or timed out. */
  connectFailures = 0;
  /**
   * Backend connects that failed for want of the proxy's own resources (EMFILE, no local port:
   * net/network-error.ts): the proxy's errors, never counted against a backend.
   */
  localErrors = 0;
  /** Of those, the ones that ran out of `timeouts.connect`. */
  connectTimeouts = 0;
  /** Connects to a further backend after one failed. */
  retries = 0;
  /** Relays closed because no byte moved either way for `timeouts.idle`. */
  idleTimeouts = 0;
  /** Relays cut short by a reset or an error on either side. */
  resets = 0;
  /** SNI routing: clients that sent no complete ClientHello within its time limit. */
  sniTimeouts = 0;
  /** SNI routing: clients whose ClientHello was malformed, too large, or cut short by their FIN. */
  sniInvalid = 0;
  /** SNI routing: clients whose first bytes were not a TLS handshake record. */
  sniNotTls = 0;
  /** SNI routing: clients whose server name (or lack of one) no route takes. */
  sniNoRoute = 0;
  /** listeners[].proxyProtocol: clients closed for an untrusted peer, or no valid PROXY header in time. */
  proxyRefused = 0;
  /** limits.maxConnectionsPerClient: clients closed before dialling because their address held that many connections already. */
  clientConnectionsRefused = 0;
  bytesIn = 0;
  bytesOut = 0;
}

/**
 * Count a client closed at the SNI step; returns that reason's count, now. A function beside the
 * class rather than a method: TcpStats is also read and summed as a plain record of numbers
 * (admin snapshot, worker reports).
 */
export function countSniRefusal(stats: TcpStats, reason: SniRefusal): number {
  switch (reason) {
    case "timeout":
      return ++stats.sniTimeouts;
    case "invalid":
      return ++stats.sniInvalid;
    case "not-tls":
      return ++stats.sniNotTls;
    case "no-route":
      return ++stats.sniNoRoute;
  }
}
