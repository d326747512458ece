/** Build route tables from config-like input, as the loader would (RouteSchema, then compile). */
import * as v from "valibot";
import { RouteSchema, type RouteConfig, type RouteInput } from "../../src/route/schema.ts";
import { RouteTable, type CompileOptions, type RouteRequest } from "../../src/route/table.ts";

export function parseRoutes(input: readonly RouteInput[]): RouteConfig[] {
  return input.map((r, i) => {
    const res = v.safeParse(RouteSchema, r);
    if (!res.success) throw new Error(`routes[${i}]: ${res.issues.map((x) => `${v.getDotPath(x) ?? ""}: ${x.message}`).join("; ")}`);
    return res.output;
  });
}

/** The pool handle is the pool's name, tagged so a test sees the resolver was used. */
export function table(input: readonly RouteInput[], options?: CompileOptions): RouteTable<string> {
  return RouteTable.compile(parseRoutes(input), (name) => `pool:${name}`, options);
}

/** Issues as "path: message", for schema tests. */
export function issuesOf(input: unknown): string[] {
  const res = v.safeParse(RouteSchema, input);
  return res.success ? [] : res.issues.map((x) => `${v.getDotPath(x) ?? "(route)"}: ${x.message}`);
}

export interface Req {
  method?: string;
  target: string;
  host?: string;
  headers?: Record<string, string>;
  clientIp?: string;
}

export function req(r: Req): RouteRequest {
  const headers = new Map(Object.entries(r.headers ?? {}).map(([k, val]) => [k.toLowerCase(), val]));
  return { method: r.method ?? "GET", target: r.target, host: r.host, headers: { get: (n) => headers.get(n) ?? null }, clientIp: r.clientIp ?? "192.0.2.1" };
}

/** A seeded random, so that distribution tests are deterministic. */
export { seeded } from "../helpers/random.ts";
