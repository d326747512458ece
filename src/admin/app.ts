/**
 * The admin listener's app: never reachable through the proxy port.
 */
import { Hono } from "hono";
import type { BalancerContext } from "../balancer.ts";

export function createAdminApp(ctx: BalancerContext): Hono {
  const app = new Hono();
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", (c) => {
    const available = ctx.pool.availableCount();
    return c.json({ ready: available > 0, available }, available > 0 ? 200 : 503);
  });
  return app;
}
