/**
 * The access logs of one process (the balancer, or one worker): one AccessLog per shape a
 * config asks for (format, fields, filter, file), made when first needed and kept to the end
 * (a reload may switch back), and one AccessSink per destination, shared by every shape that
 * writes there. Owns reopening (SIGUSR1) and closing them.
 */
import type { Config } from "../config/schema.ts";
import { createAccessLog, type AccessLog, type LineSink } from "./access.ts";
import { AccessSink, DEFAULT_MAX_BUFFER } from "./access-sink.ts";

export interface AccessLogsOptions {
  /** Every line here instead (tests). */
  sink?: LineSink;
  /** Lines dropped: the queue was full, or a write failed. */
  onDrop(lines: number): void;
  /** A file could not be reopened. */
  onError(message: string): void;
  /** This is a worker: other processes write to the same stdout (AccessSinkOptions.sharedStdout). */
  sharedStdout?: boolean;
}

export class AccessLogs {
  private readonly logs = new Map<string, AccessLog>();
  private readonly sinks = new Map<string, AccessSink>();

  constructor(private readonly o: AccessLogsOptions) {}

  /** The access log `config` asks for, or undefined when it is off. Throws when log.file cannot be opened. */
  for(config: Config): AccessLog | undefined {
    const l = config.log;
    if (!l.access) return undefined;
    const key = JSON.stringify([l.format, l.file ?? null, l.fields ?? null, l.only ?? null, l.maxBuffer]);
    let log = this.logs.get(key);
    if (log === undefined) {
      const sink = this.o.sink ?? this.sinkFor(l.file, l.maxBuffer ?? DEFAULT_MAX_BUFFER);
      this.logs.set(key, (log = createAccessLog({ format: l.format, fields: l.fields, only: l.only }, sink)));
    }
    return log;
  }

  private sinkFor(file: string | undefined, maxBuffer: number): AccessSink {
    const key = `${maxBuffer}:${file ?? ""}`;
    let sink = this.sinks.get(key);
    if (sink === undefined) {
      try {
        sink = new AccessSink(file, { maxBuffer, onDrop: this.o.onDrop, onError: this.o.onError, sharedStdout: this.o.sharedStdout });
      } catch (e) {
        throw new Error(`log.file: cannot open ${JSON.stringify(file)} for appending: ${(e as Error).message}`);
      }
      this.sinks.set(key, sink);
    }
    return sink;
  }

  /** Open every log file anew (SIGUSR1, after logrotate moved them). */
  async reopen(): Promise<void> {
    await Promise.all([...this.sinks.values()].map((s) => s.reopen()));
  }

  /** Write out what is queued and close the files (a sink that takes nothing is given up: AccessSink.close). */
  async close(): Promise<void> {
    // The sinks first, each bounded in time; the logs' own flush is then nothing to wait for.
    await Promise.all([...this.sinks.values()].map((s) => s.close()));
    for (const log of this.logs.values()) await log.close();
  }
}
