/**
 * The access log: one line per request, text or JSON lines, through a buffered writer so that
 * logging costs a string build and a memcpy, not a syscall, per request.
 */
import type { FileSink } from "bun";

export interface AccessEntry {
  time: number;
  client: string;
  method: string;
  path: string;
  status: number;
  bytes: number;
  durationMs: number;
  /** Backends tried, in order; empty when none was available. */
  backends: string[];
  attempts: number;
  requestId: string;
  /** Stable error code when the balancer answered itself. */
  error?: string;
  /** The route that took the request and the pool it went to (names from the config). */
  route?: string;
  pool?: string;
  traceId?: string;
}

export interface AccessLog {
  write(e: AccessEntry): void;
  close(): Promise<void>;
}

export interface LineSink {
  write(line: string): void;
  flush(): void | Promise<unknown> | number;
  end?(): void | Promise<unknown> | number;
}

export function formatText(e: AccessEntry): string {
  const backends = e.backends.length > 0 ? e.backends.join(",") : "-";
  const error = e.error ? ` error=${e.error}` : "";
  const route = e.route !== undefined ? ` route=${e.route}` : "";
  const pool = e.pool !== undefined ? ` pool=${e.pool}` : "";
  return `${new Date(e.time).toISOString()} ${e.client} "${e.method} ${e.path}" ${e.status} ${e.bytes} ${e.durationMs.toFixed(1)}ms backend=${backends} attempts=${e.attempts} id=${e.requestId}${route}${pool}${error}\n`;
}

export function formatJson(e: AccessEntry): string {
  return JSON.stringify({ ...e, time: new Date(e.time).toISOString(), durationMs: Math.round(e.durationMs * 10) / 10 }) + "\n";
}

/**
 * Buffered access log. The sink (stdout's FileSink by default) flushes by itself when its
 * buffer fills; a timer owned by this log flushes the tail at least every `flushMs`.
 */
export function createAccessLog(format: "text" | "json", sink: LineSink = stdoutSink(), flushMs = 250): AccessLog {
  const fmt = format === "json" ? formatJson : formatText;
  const timer = setInterval(() => sink.flush(), flushMs);
  timer.unref();
  return {
    write: (e) => sink.write(fmt(e)),
    async close() {
      clearInterval(timer);
      await sink.flush();
    },
  };
}

function stdoutSink(): FileSink {
  return Bun.stdout.writer({ highWaterMark: 64 * 1024 });
}
