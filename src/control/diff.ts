/**
 * What differs between the running config and a new one, in words for the log ("retry.attempts
 * 3 -> 2"), and which of those differences wait for a restart.
 *
 * A restart is needed for the engine, the number of workers, the admin listener's address and
 * allowed Host names (a listener's address and mode are not: it is bound anew); and, with the
 * fetch engine and workers, the two settings Bun.serve takes at listen time and cannot change
 * on a running server (`server.reload()` swaps handlers only, checked on Bun 1.4.5): the client
 * idle timeout and the request body limit. Until then the running values stay in force and the
 * running config says so.
 */
import type { Config } from "../config/schema.ts";

/**
 * Top-level keys fixed when the listeners open. A reload binds, moves and drops listeners
 * (src/listener/listener-set.ts), in one process and, with workers, in each worker on the
 * ports the owner claims for them (src/balancer.ts).
 */
function listenerKeys(_c: Config): readonly string[] {
  return ["engine", "workers"];
}

/** Leaf paths whose values differ, as "path old -> new". Secrets are named, never shown. */
export function diffPaths(a: unknown, b: unknown, prefix = ""): string[] {
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return keys.flatMap((k) => diffPaths(a[k], b[k], prefix ? `${prefix}.${k}` : k));
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
  if (running.engine === "fetch" && running.workers !== 1 && running.listeners.some((l) => l.mode === "http")) {
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
  out.admin = running.admin === false || next.admin === false
    ? running.admin
    : { ...next.admin, host: running.admin.host, port: running.admin.port, allowedHosts: running.admin.allowedHosts };
  if (running.engine === "fetch" && running.workers !== 1 && running.listeners.some((l) => l.mode === "http")) {
    out.timeouts = { ...next.timeouts, idle: running.timeouts.idle };
    out.limits = { ...next.limits, maxBodySize: running.limits.maxBodySize };
  }
  return out as Config;
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
