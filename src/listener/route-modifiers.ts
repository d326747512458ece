/**
 * A route's modifiers, compiled once per config: its request and response header rules (with
 * placeholders) and its mirror. The rules' grammar is the route module's (src/route/).
 */
import type { RouteConfig } from "../route/schema.ts";
import type { HeaderModifier, MirrorSink, PoolTarget } from "../forward/router.ts";
import { Mirror } from "../forward/mirror.ts";

export interface RouteModifiers {
  requestHeaders?: HeaderModifier;
  responseHeaders?: HeaderModifier;
  mirror?: MirrorSink;
}

/** Mirrors by route name, kept across reloads while the route and its mirror stay (their counts with them). */
export class MirrorFactory {
  private readonly byRoute = new Map<string, { key: string; mirror: Mirror }>();

  constructor(private readonly timeoutMs: () => number) {}

  for(route: string, percent: number, target: PoolTarget): Mirror {
    const key = `${target.name}:${percent}`;
    const known = this.byRoute.get(route);
    if (known !== undefined && known.key === key) return known.mirror;
    const mirror = new Mirror(percent, target, this.timeoutMs());
    this.byRoute.set(route, { key, mirror });
    return mirror;
  }

  get all(): ReadonlyMap<string, { mirror: Mirror }> {
    return this.byRoute;
  }
}

export function routeModifiers(r: RouteConfig, target: (pool: string) => PoolTarget, mirrors: MirrorFactory): RouteModifiers {
  const m = (r as { mirror?: { pool: string; percent: number } }).mirror;
  return {
    mirror: m !== undefined ? mirrors.for(r.name, m.percent, target(m.pool)) : undefined,
  };
}
