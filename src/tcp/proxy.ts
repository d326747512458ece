/**
 * Layer 4 mode: each client connection is paired with a backend connection chosen by the pool.
 */
import type { BalancerContext } from "../balancer.ts";

export interface TcpProxy {
  readonly port: number;
  stop(force?: boolean): Promise<void>;
}

export async function startTcpProxy(_ctx: BalancerContext): Promise<TcpProxy> {
  throw new Error("TCP mode is not built yet");
}
