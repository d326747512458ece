/**
 * `serve --pid-file FILE`: the process serving now. Written once the listeners are bound;
 * during an upgrade (src/control/upgrade.ts) the successor writes its own PID there before it
 * tells its predecessor it is ready, so the file moves to the new process at the moment the
 * old one starts to drain, and the old one, exiting, leaves it alone because it no longer names
 * it. What a supervisor reads (nginx's `pid`, systemd's PIDFile=, `kill $(cat FILE)`) is always
 * the process that takes new connections.
 */
import { readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";

export class PidFile {
  constructor(readonly path: string) {}

  /** Write this process's PID: a temporary file renamed over the old, so a reader never sees half. */
  write(pid = process.pid): void {
    const tmp = `${this.path}.${pid}.tmp`;
    writeFileSync(tmp, `${pid}\n`);
    renameSync(tmp, this.path);
  }

  /** The PID in the file, or undefined when it is missing or holds no number. */
  read(): number | undefined {
    try {
      const pid = Number.parseInt(readFileSync(this.path, "utf8").trim(), 10);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Remove the file when it still names `pid` (a successor's PID stays). */
  release(pid = process.pid): void {
    if (this.read() !== pid) return;
    try {
      unlinkSync(this.path);
    } catch {
      // Already gone.
    }
  }
}
