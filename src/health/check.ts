/**
 * The health check a backend gets: the global `healthCheck` merged with the backend's own
 * override, with defaults filled in. Resolved once at start-up.
 *
 * Merging is field by field: a backend's field replaces the global one, except `headers`,
 * which are merged by name (the backend's value wins), so a global `Authorization` survives a
 * backend that only adds `X-Probe`. A backend's `healthCheck: false` turns checks off for it;
 * a global `false` turns them off for every backend that has no object of its own.
 */
import type { Config, BackendConfig, HealthCheckFields } from "../config/schema.ts";

export interface ResolvedCheck {
  /** "http" when a path is given (or type says so), else "tcp": a TCP connect works for any backend; "grpc" only when named. */
  type: "http" | "tcp" | "grpc";
  /** The grpc check's service name ("" for the whole server). */
  service: string;
  path: string;
  method: string;
  headers: Record<string, string>;
  host: string | undefined;
  port: number | undefined;
  interval: number;
  timeout: number;
  rise: number;
  fall: number;
  /** "2xx", "200", "200-399" entries. */
  expectStatus: string[];
  expectBody: string | undefined;
}

export const CHECK_DEFAULTS = {
  path: "/health",
  method: "GET",
  interval: 2000,
  timeout: 1000,
  rise: 2,
  fall: 3,
  expectStatus: ["2xx"],
  service: "",
} as const;

/** Undefined when checks are off for this backend (globally false, or its own false). */
export function resolveCheck(global: Config["healthCheck"], backend: BackendConfig): ResolvedCheck | undefined {
  if (backend.healthCheck === false) return undefined;
  if (global === false && backend.healthCheck === undefined) return undefined;
  const base: HealthCheckFields = global === false ? {} : global;
  const own: HealthCheckFields = backend.healthCheck ?? {};
  const merged: HealthCheckFields = { ...base, ...own };
  const headers = base.headers || own.headers ? { ...base.headers, ...own.headers } : {};
  return {
    type: merged.type ?? (merged.path !== undefined ? "http" : "tcp"),
    service: merged.service ?? CHECK_DEFAULTS.service,
    path: merged.path ?? CHECK_DEFAULTS.path,
    method: merged.method ?? CHECK_DEFAULTS.method,
    headers,
    host: merged.host,
    port: merged.port,
    interval: merged.interval ?? CHECK_DEFAULTS.interval,
    timeout: merged.timeout ?? CHECK_DEFAULTS.timeout,
    rise: merged.rise ?? CHECK_DEFAULTS.rise,
    fall: merged.fall ?? CHECK_DEFAULTS.fall,
    expectStatus: merged.expectStatus ?? [...CHECK_DEFAULTS.expectStatus],
    expectBody: merged.expectBody,
  };
}
