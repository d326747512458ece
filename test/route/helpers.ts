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

/** A seeded random in [0, 1) (mulberry32), so distribution tests are deterministic. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
