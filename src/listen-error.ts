/**
 * A listener that cannot bind at start-up, named: which one (proxy or admin), at which address,
 * and why in words. Bun's own errors say "EINVAL: invalid argument, listen" or "Is port 8000 in
 * use?" without saying which of our listeners it was.
 */
import type { ErrorCode } from "./errors.ts";

/** "proxy", "admin", "redirect", or a named listener's `proxy "web"` and `redirect "web"`. */
export type ListenerName = string;

/** Why a bind fails, by the errno code Bun reports (Bun.listen gives none for a bad name). */
const REASONS: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available: it is not an address of this machine",
  EACCES: "permission denied (ports below 1024 need privileges)",
  EINVAL: "invalid address: does the host name resolve to an address of this machine?",
};

export class ListenError extends Error {
  readonly code = "SY_LISTEN_FAILED" satisfies ErrorCode;
  constructor(
    readonly listener: ListenerName,
    /** host:port as configured ([v6]:port). */
    readonly address: string,
    /** The system's code (EADDRINUSE, ...) when there is one. */
    readonly reason: string | undefined,
    options?: ErrorOptions,
  ) {
    const why = reason === undefined ? REASONS.EINVAL! : (REASONS[reason] ?? `error ${reason}`);
    super(`${listener} listener on ${address}: ${why}`, options);
  }
}

/** A bind failure `e` of the listener at host:port, as a ListenError. */
export function listenError(listener: ListenerName, host: string, port: number, e: unknown): ListenError {
  const address = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  return new ListenError(listener, address, (e as { code?: string }).code, { cause: e });
}

/** Run `bind` (a Bun.serve call); a failure becomes a ListenError naming the listener. */
export function bindListener<T>(listener: ListenerName, host: string, port: number, bind: () => T): T {
  try {
    return bind();
  } catch (e) {
    throw listenError(listener, host, port, e);
  }
}

/**
 * Claim host:port for this balancer alone before its listeners bind it with SO_REUSEPORT: an
 * exclusive bind (no SO_REUSEPORT) fails when anything holds the port, SO_REUSEPORT or not,
 * so a second balancer is refused as it would be without reusePort. Returns the port (port 0
 * becomes one chosen port for all the listeners that bind it). Every listener binds with
 * SO_REUSEPORT so that a successor (`switchyard upgrade`, src/control/upgrade.ts) or the
 * workers can bind beside it; a successor skips this claim, since its predecessor holds the port.
 */
export function claimPort(listener: ListenerName, host: string, port: number): number {
  const probe = bindListener(listener, host, port, () => Bun.listen({ hostname: host, port, exclusive: true, socket: { data() {} } }));
  const claimed = probe.port;
  probe.stop(true);
  return claimed;
}
