/**
 * What differs between the running config and a new one, in words for the log ("retry.attempts
 * 3 -> 2"), and which of those differences wait for a restart.
 *
 * A restart is needed for what is fixed when a listener opens: its address, the mode, the
 * engine, the number of workers, the admin listener's address and allowed Host names; and, with the fetch engine, the two settings Bun.serve takes at
 * listen time and cannot change on a running server (`server.reload()` swaps handlers only,
 * checked on Bun 1.4.5): the client idle timeout and the request body limit. Until then the
 * running values stay in force and the running config says so.
 */
import type { Config } from "../config/schema.ts";

/**
 * Top-level keys fixed when the listeners open. One process binds, moves and drops listeners
 * on a reload (src/listener/listener-set.ts); worker processes are told their one port at
 * start, so with workers the listeners are fixed too.
 */
function listenerKeys(c: Config): readonly string[] {
  return c.workers === 1 ? ["engine", "workers"] : ["mode", "engine", "listen", "listeners", "workers"];
}

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
  for (const k of listenerKeys(running)) out.push(...diffPaths(withoutTls(r[k], n[k]), withoutTls(n[k], r[k]), k));
  out.push(...diffPaths(adminAddress(running), adminAddress(next), "admin"));
  // With workers, the fetch engine's Bun.serve options are fixed when the workers bind; one
  // process binds such a listener anew instead (src/listener/listener-set.ts).
  if (fetchFixed(running)) {
    out.push(...diffPaths(running.timeouts.idle, next.timeouts.idle, "timeouts.idle"));
    out.push(...diffPaths(running.limits.maxBodySize, next.limits.maxBodySize, "limits.maxBodySize"));
  }
  return out;
}

/** `next`, with what needs a restart kept at its running value: the config that is really in force. */
export function inForce(running: Config, next: Config): Config {
  const out = { ...next } as Record<string, unknown>;
  const r = running as Record<string, unknown>;
  for (const k of listenerKeys(running)) {
    if (k in r) out[k] = r[k];
    else delete out[k];
  }
  // Certificates are re-read on a reload (src/tls/termination.ts): only TLS on or off waits.
  if (running.workers !== 1) {
    out.listeners = running.listeners.map((l) => {
      const tls = next.listeners.find((x) => x.name === l.name)?.tls;
      return l.tls !== undefined && tls !== undefined ? { ...l, tls } : l;
    });
  }
  out.admin = running.admin === false || next.admin === false
    ? running.admin
    : { ...next.admin, host: running.admin.host, port: running.admin.port, allowedHosts: running.admin.allowedHosts };
  if (fetchFixed(running)) {
    out.timeouts = { ...next.timeouts, idle: running.timeouts.idle };
    out.limits = { ...next.limits, maxBodySize: running.limits.maxBodySize };
  }
  return out as Config;
}

function fetchFixed(c: Config): boolean {
  return c.engine === "fetch" && c.workers !== 1 && c.listeners.some((l) => l.mode === "http");
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

/**
 * `listen` as far as a restart is concerned: its tls settings are applied by a reload when TLS
 * is on before and after (certificate files, server names, minVersion), so only on/off counts.
 */
function withoutTls(listen: unknown, other: unknown): unknown {
  if (!isObject(listen) || !isObject(other) || listen.tls === undefined || other.tls === undefined) return listen;
  const { tls: _, ...rest } = listen;
  return rest;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function show(x: unknown): string {
  return x === undefined ? "(unset)" : JSON.stringify(x);
}
