/**
 * What Bun 1.4.5 does that bun-types 1.4.5 does not declare, in one place, so that the gap is
 * declared once and removed once bun-types catches up.
 * Checked by test/workers: Bun.listen takes `reusePort` (SO_REUSEPORT) as Bun.connect's options
 * and Bun.serve do, and the kernel spreads connections over the listeners that share the port.
 */
export {};

declare module "bun" {
  interface TCPSocketListenOptions<Data> {
    reusePort?: boolean;
  }
}
