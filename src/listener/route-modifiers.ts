/**
 * Route mirrors (forward/mirror.ts), kept by route name across reloads while the route and its
 * mirror pool stay, so that their bound of copies in flight is one bound, not one per reload.
 */
import type { PoolTarget } from "../forward/router.ts";
import { Mirror } from "../forward/mirror.ts";

export class MirrorFactory {
  private readonly byRoute = new Map<string, { pool: PoolTarget; mirror: Mirror }>();

  constructor(private readonly timeoutMs: () => number) {}

  for(route: string, target: PoolTarget): Mirror {
    const known = this.byRoute.get(route);
    if (known !== undefined && known.pool.name === target.name) {
      known.mirror.retarget(target);
      return known.mirror;
    }
    const mirror = new Mirror(target, this.timeoutMs());
    this.byRoute.set(route, { pool: target, mirror });
    return mirror;
  }

  get all(): ReadonlyMap<string, { mirror: Mirror }> {
    return this.byRoute;
  }
}
