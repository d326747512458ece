/**
 * What differs between the running config and a new one, in words for the log ("retry.attempts
 * 3 -> 2"), and which of those differences wait for a restart.
 *
 * A restart is needed for the engine, the number of workers, and the admin listener's address
 * and allowed Host names. A proxy listener's address, mode, and the options Bun.serve takes only
 * when it listens (fetch engine: the idle timeout, the body limit) are not: the listener is bound
 * anew (src/listener/listener-set.ts), in one process and in every worker alike. Until then the
 * running values stay in force and the running config says so.
 */
import type { Config } from "../config/schema.ts";

/**
 * Top-level keys fixed when the proxy starts. A reload binds, moves and drops listeners
 * (src/listener/listener-set.ts), in one process and, with workers, in each worker on the
 * ports the owner claims for them (src/balancer.ts).
 */
const RESTART_KEYS = ["engine", "workers"] as const;

/** Leaf paths whose values differ, as "path old -> new". Secrets are named, never shown. */
export function diffPaths(a: unknown, b: unknown, prefix = ""): string[] {
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return keys.flatMap((k) => diffPaths(a[k], b[k], prefix ? `${prefix}.${k}` : k));
  }
  // Lists of objects of one length (listeners, routes) by position: "listeners[0].port 8000 -> 9000".
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every(isObject) && b.every(isObject)) {
    return a.flatMap((x, i) => diffPaths(x, b[i], `${prefix}[${i}]`));
  }
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  if (/(^|\.)token$/.test(prefix)) return [`${prefix} changed`];
  return [`${prefix} ${show(a)} -> ${show(b)}`];
}

/** Settings changed in `next` that take effect only after a restart. */
export function restartNeeded(running: Config, next: Config): string[] {
  const out: string[] = [];
  const r = running as Record<string, unknown>;
  const n = next as Record<string, unknown>;
  for (const k of RESTART_KEYS) out.push(...diffPaths(r[k], n[k], k));
  out.push(...diffPaths(adminAddress(running), adminAddress(next), "admin"));
  return out;
}

/** `next`, with what needs a restart kept at its running value: the config that is really in force. */
export function inForce(running: Config, next: Config): Config {
  const out = { ...next } as Record<string, unknown>;
  const r = running as Record<string, unknown>;
  for (const k of RESTART_KEYS) {
    if (k in r) out[k] = r[k];
    else delete out[k];
  }
  out.admin = running.admin === false || next.admin === false
    ? running.admin
    : { ...next.admin, host: running.admin.host, port: running.admin.port, allowedHosts: running.admin.allowedHosts };
  return out as Config;
}

/**
 * A config for diffPaths: each pool with only what it sets apart from the top level (in the
 * single-pool form, nothing), so that a change to a top-level option is said once, not once
 * more for every pool that inherits it. Backends are left to reconcile's own lines.
 */
export function forDiff(c: Config): Record<string, unknown> {
  const top = c as unknown as Record<string, unknown>;
  const pools = Object.fromEntries(
    Object.entries(c.pools).map(([name, p]) => {
      const own: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(p)) {
        if (k === "backends" || k === "name") continue;
        const inherited = k === "timeouts" || k === "limits" ? pick(top[k], Object.keys(v as object)) : top[k];
        if (JSON.stringify(v) !== JSON.stringify(inherited)) own[k] = v;
      }
      return [name, own];
    }),
  );
  return { ...c, pools };
}

function pick(o: unknown, keys: string[]): unknown {
  if (!isObject(o)) return o;
  return Object.fromEntries(keys.map((k) => [k, o[k]]));
}

/** What the admin listener is given when it opens: its address and the Host names it answers. */
function adminAddress(c: Config): unknown {
  return c.admin === false ? false : { host: c.admin.host, port: c.admin.port, allowedHosts: c.admin.allowedHosts };
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function show(x: unknown): string {
  return x === undefined ? "(unset)" : JSON.stringify(x);
}
