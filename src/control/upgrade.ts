/**
 * `switchyard upgrade` (POST /api/upgrade, or SIGUSR2 as nginx's binary upgrade): replace the
 * running process by a new one of the binary on disk, on the same command line and config,
 * with no moment at which the ports refuse a connection.
 *
 * The handshake (nginx's USR2 then QUIT, done by the old process itself):
 *   1. The old process starts the new one (this binary's path, its own arguments, its working
 *      directory and environment) with an IPC channel, and $SWITCHYARD_UPGRADE_FROM naming its
 *      PID and the ports it holds.
 *   2. The new one starts as any balancer does (config, backends, start-up health probes) but
 *      binds its listeners beside the old ones (every listener is bound with SO_REUSEPORT; a
 *      fresh start claims its ports exclusively first, a successor does not). Bound, it writes
 *      the pid file, tells systemd MAINPID=<itself> and READY=1 (src/control/sd-notify.ts), and
 *      says "ready" on the channel. From then on the kernel spreads new connections over both.
 *   3. The old process stops accepting and drains: in-flight requests and WebSockets finish
 *      within timeouts.shutdownGrace (with `workers`: its supervisor and every worker of its
 *      generation), then it exits 0. The new one runs on; its parent is gone.
 *   If the new process fails first (a bad config, a port it cannot bind, a crash, no "ready"
 *   within UPGRADE_START_TIMEOUT_MS), it is ended, the old one goes on serving as if nothing
 *   happened, and the upgrade fails with the reason (SY_UPGRADE_FAILED).
 *
 * Why the old process starts the new one, rather than `serve --replace PID` started by hand:
 * the successor then has exactly the old one's argv, cwd and environment (what systemd or a
 * shell gave it), and the old one learns of its readiness, or of its failure and why, on a
 * channel rather than by polling a pid file.
 */
import { readFileSync } from "node:fs";
import type { Subprocess } from "bun";
import type { Logger } from "../log/logger.ts";
import type { ListenPorts } from "../balancer.ts";
import { ControlError, type Actor } from "./control.ts";

/** The environment variable by which the old process hands its PID and ports to the new one. */
export const UPGRADE_FROM_ENV = "SWITCHYARD_UPGRADE_FROM";

/**
 * How long the new process may take to be ready: it loads the config, resolves DNS entries
 * and runs its start-up health probes before it binds, as any start does.
 */
export const UPGRADE_START_TIMEOUT_MS = 30_000;

export interface UpgradeReport {
  /** The process that drains now and exits. */
  oldPid: number;
  /** The process that serves from now on. */
  newPid: number;
  /** From the start of the new process to its "ready". */
  readyMs: number;
  /** The old process's in-flight work ends within this (timeouts.shutdownGrace). */
  drainWithinMs: number;
}

/** What the new process says on the channel. */
type FromSuccessor = { t: "ready"; pid: number } | { t: "failed"; message: string };

/** What the old process hands to the new one. */
export interface Predecessor {
  pid: number;
  ports: ListenPorts;
}

type State =
  | { kind: "serving" }
  | { kind: "starting"; proc: Subprocess; end: (why: string, stopping?: boolean) => void }
  | { kind: "handed-over"; report: UpgradeReport }
  | { kind: "stopped" };

export interface UpgraderOptions {
  /** The command that starts the new process: this binary with this process's arguments. */
  command: string[];
  /** The ports bound now (port 0 in the config stays the same port). */
  ports: () => ListenPorts;
  /** timeouts.shutdownGrace of the running config, for the report. */
  grace: () => number;
  logger: Logger;
  /** The new process serves: drain this one and exit. Called once. */
  onHandover: (report: UpgradeReport) => void;
  startTimeoutMs?: number;
}

/** The old process's side: start the successor, wait for its word, hand over or carry on. */
export class Upgrader {
  private state: State = { kind: "serving" };

  constructor(private readonly o: UpgraderOptions) {}

  /** Resolves once the new process serves (this one then drains); rejects with the reason, this one serving on. */
  upgrade(actor: Actor): Promise<UpgradeReport> {
    switch (this.state.kind) {
      case "starting":
        return Promise.reject(new ControlError("SY_UPGRADE_IN_PROGRESS", `an upgrade is under way: pid ${this.state.proc.pid} is starting`));
      case "handed-over":
        return Promise.reject(new ControlError("SY_STOPPING", `already upgraded: pid ${this.state.report.newPid} serves, this process (pid ${process.pid}) is draining`));
      case "stopped":
        return Promise.reject(new ControlError("SY_STOPPING", "the balancer is stopping"));
    }
    this.o.logger.info(`upgrade (by ${actor.by} from ${actor.from}): starting a new process: ${this.o.command.join(" ")}`);
    const startedAt = performance.now();
    let said: FromSuccessor | undefined;
    let proc: Subprocess;
    let decide = () => {};
    try {
      proc = Bun.spawn(this.o.command, {
        env: { ...process.env, [UPGRADE_FROM_ENV]: JSON.stringify({ pid: process.pid, ports: this.o.ports() } satisfies Predecessor) },
        // Its logs go where this process's go (the journal, the container's output).
        stdio: ["ignore", "inherit", "inherit"],
        ipc: (m) => {
          said ??= m as FromSuccessor;
          decide();
        },
      });
    } catch (e) {
      return Promise.reject(this.failed(`cannot start ${this.o.command[0]}: ${(e as Error).message}`));
    }
    return new Promise<UpgradeReport>((resolve, reject) => {
      const timeoutMs = this.o.startTimeoutMs ?? UPGRADE_START_TIMEOUT_MS;
      const timer = setTimeout(() => end(`pid ${proc.pid} was not ready within ${timeoutMs}ms`), timeoutMs);
      /** Not ready, for `why`: the new process is ended (it may be stuck) and this one serves on (or stops: `stopping`). */
      const end = (why: string, stopping = false) => {
        if (this.state.kind !== "starting" || this.state.proc !== proc) return;
        clearTimeout(timer);
        this.state = { kind: stopping ? "stopped" : "serving" };
        if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
        reject(stopping ? new ControlError("SY_STOPPING", why) : this.failed(why));
      };
      decide = () => {
        if (this.state.kind !== "starting" || this.state.proc !== proc) return;
        if (said?.t === "failed") return end(said.message);
        if (said?.t !== "ready" || proc.exitCode !== null || proc.signalCode !== null) return;
        clearTimeout(timer);
        const report: UpgradeReport = { oldPid: process.pid, newPid: proc.pid, readyMs: Math.round(performance.now() - startedAt), drainWithinMs: this.o.grace() };
        this.state = { kind: "handed-over", report };
        // The new process outlives this one: no channel, no wait for its exit.
        try {
          proc.disconnect();
        } catch {
          // Already closed.
        }
        proc.unref();
        this.o.logger.info(`upgrade: pid ${proc.pid} serves (ready in ${report.readyMs}ms); this process (pid ${process.pid}) stops accepting and drains within ${report.drainWithinMs}ms`);
        const note = acceptQueueNote();
        if (note) this.o.logger.info(note);
        resolve(report);
        this.o.onHandover(report);
      };
      void proc.exited.then(() => {
        const how = proc.signalCode ? `signal ${proc.signalCode}` : `code ${proc.exitCode}`;
        // A "failed" message sent just before the exit carries the better reason.
        end(said?.t === "failed" ? said.message : `pid ${proc.pid} exited with ${how} before it was ready (its output is in this log)`);
      });
      this.state = { kind: "starting", proc, end };
    });
  }

  /** The balancer stops: a successor still starting is ended (its upgrade fails), and no upgrade starts any more. */
  stop(): void {
    if (this.state.kind === "starting") this.state.end("the balancer is stopping: the upgrade was abandoned and its new process ended", true);
    if (this.state.kind !== "handed-over") this.state = { kind: "stopped" };
  }

  private failed(why: string): ControlError {
    this.o.logger.error(`upgrade failed (this process, pid ${process.pid}, goes on serving): ${why}`);
    return new ControlError("SY_UPGRADE_FAILED", `upgrade failed (the running process, pid ${process.pid}, goes on serving): ${why}`);
  }
}

/**
 * Linux resets the connections waiting in a SO_REUSEPORT listener's accept queue when it
 * closes, unless net.ipv4.tcp_migrate_req is 1 (kernel 5.14+), which moves them to another
 * listener of the same port: the successor's. Keep-alive clients never wait there during an
 * upgrade (this process closes its listener before it tells any of them to reconnect); a client
 * opening a new connection at that very moment may. Said once per upgrade when it applies.
 */
function acceptQueueNote(): string | undefined {
  let value: string;
  try {
    value = readFileSync("/proc/sys/net/ipv4/tcp_migrate_req", "utf8").trim();
  } catch {
    return undefined;
  }
  if (value !== "0") return undefined;
  return "upgrade: net.ipv4.tcp_migrate_req is 0: a connection still in this process's accept queue when its listener closes is reset by the kernel; set it to 1 to hand such connections to the new process (docs/operations.md, Upgrading the binary)";
}

/** The new process's side: its predecessor, from the environment, and the channel to it. */
export interface SuccessorLink {
  readonly predecessor: Predecessor;
  /** Bound and serving: the predecessor may drain. */
  ready(): void;
  /** Could not start: the predecessor serves on and reports `message`. Resolves once it is sent. */
  failed(message: string): Promise<void>;
}

/**
 * When this process was started by an upgrade: the link to the process it replaces. The
 * variable is taken out of the environment, so that nothing this process starts inherits it.
 */
export function successorLink(env: Record<string, string | undefined> = process.env): SuccessorLink | undefined {
  const raw = env[UPGRADE_FROM_ENV];
  if (raw === undefined) return undefined;
  delete env[UPGRADE_FROM_ENV];
  let predecessor: Predecessor;
  try {
    predecessor = JSON.parse(raw) as Predecessor;
    if (!Number.isInteger(predecessor.pid) || typeof predecessor.ports?.proxy !== "number") throw new Error();
  } catch {
    throw new Error(`${UPGRADE_FROM_ENV}: got ${JSON.stringify(raw)}, expected {"pid":N,"ports":{"proxy":N,...}} (set by the process being upgraded, not by hand)`);
  }
  /** One word only, ready or failed: after it the predecessor has hung up. */
  let said = false;
  const send = (m: FromSuccessor): Promise<void> =>
    new Promise((resolve) => {
      if (said || typeof process.send !== "function") return resolve();
      said = true;
      // Sent once written to the channel; a predecessor that has gone must not hold up an exit.
      const timer = setTimeout(resolve, 1000);
      try {
        process.send(m, undefined, undefined, () => {
          clearTimeout(timer);
          resolve();
        });
      } catch {
        clearTimeout(timer);
        resolve();
      }
    });
  return {
    predecessor,
    ready: () => void send({ t: "ready", pid: process.pid }),
    failed: (message) => send({ t: "failed", message }),
  };
}
