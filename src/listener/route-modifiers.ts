/**
 * Route mirrors (forward/mirror.ts), kept by route name across reloads while the route and its
 * mirror pool stay, so that their bound of copies in flight is one bound, not one per reload.
 */
import type { PoolTarget } from "../forward/router.ts";
import { Mirror } from "../forward/mirror.ts";

export class MirrorFactory {
  private readonly byRoute = new Map<string, { pool: string; mirror: Mirror }>();

  /** The mirror of `route` to `target`, each copy within `timeoutMs` (the mirror pool's retry.timeout). */
  for(route: string, target: PoolTarget, timeoutMs: number): Mirror {
    const known = this.byRoute.get(route);
    if (known !== undefined && known.pool === target.name) {
      known.mirror.retarget(target, timeoutMs);
      return known.mirror;
    }
    const mirror = new Mirror(target, timeoutMs);
    this.byRoute.set(route, { pool: target.name, mirror });
    return mirror;
  }

  /** Forget the mirrors of routes a config no longer has (copies in flight finish). */
  keep(routes: Iterable<string>): void {
    const keep = new Set(routes);
    for (const name of this.byRoute.keys()) if (!keep.has(name)) this.byRoute.delete(name);
  }

  get all(): ReadonlyMap<string, { mirror: Mirror }> {
    return this.byRoute;
  }
}
