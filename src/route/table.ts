/** Interim: the route table (replaced by the route module's full one). */
import type { RouteConfig } from "./schema.ts";

export interface RouteRequest {
  readonly method: string;
  readonly target: string;
  readonly host: string | undefined;
  readonly headers: { get(name: string): string | null };
  readonly clientIp: string;
}
export type RouteAction<P> =
  | { kind: "forward"; pool: P }
  | { kind: "redirect"; status: number; location: string }
  | { kind: "respond"; status: number; headers: Record<string, string>; body: string };
export interface CompiledRoute<P> {
  readonly name: string;
  readonly index: number;
  readonly config: RouteConfig;
  readonly pool?: P;
}
export interface RouteMatch<P> {
  readonly route: CompiledRoute<P>;
  readonly action: RouteAction<P>;
  readonly target: string;
  readonly setCookie?: string;
}
export class RouteTable<P> {
  private constructor(private readonly routes: CompiledRoute<P>[]) {}
  static compile<P>(routes: readonly RouteConfig[], pool: (name: string) => P): RouteTable<P> {
    return new RouteTable(routes.map((r, index) => ({ name: r.name, index, config: r, pool: r.pool !== undefined ? pool(r.pool) : undefined })));
  }
  match(req: RouteRequest): RouteMatch<P> | { refused: string } | undefined {
    for (const route of this.routes) {
      const m = route.config.match;
      if (m.path !== undefined && !req.target.startsWith(m.path)) continue;
      if (m.host !== undefined) {
        const host = (req.host ?? "").replace(/:\d+$/, "").toLowerCase();
        if (![m.host].flat().includes(host)) continue;
      }
      return { route, action: { kind: "forward", pool: route.pool! }, target: req.target };
    }
    return undefined;
  }
}
