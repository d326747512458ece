#!/usr/bin/env bun
/**
 * The command line: serve | sim | demo | check. Parses flags, loads config, and dispatches;
 * the work itself lives in the modules it calls.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import pkg from "../package.json" with { type: "json" };
import demoConfig from "../examples/demo.json" with { type: "json" };
import { ConfigError, loadConfigFile, readConfigFile, validateConfig } from "./config/load.ts";
import type { Config } from "./config/schema.ts";
import { configWarnings, expandedView } from "./config/expand.ts";
import { POLICY_NAMES } from "./config/policy-names.ts";
import { startBalancer, type Balancer, type BalancerOptions } from "./balancer.ts";
import { runSimCli, simHelp } from "../sim/cli.ts";
import { RELOAD_HELP, runCtl, UPGRADE_HELP } from "./commands/ctl.ts";
import { startCluster } from "../sim/cluster.ts";
import { runWorker } from "./workers/worker.ts";
import { WORKER_COMMAND } from "./workers/protocol.ts";
import { runHealthCommand } from "./commands/health.ts";
import { runRouteCommand } from "./commands/route.ts";
import { runHashPasswordCommand } from "./commands/hash-password.ts";
import { ControlError } from "./control/control.ts";
import { successorLink, Upgrader, type SuccessorLink } from "./control/upgrade.ts";
import { keeperWanted, runKeeper } from "./control/keeper.ts";
import { consoleLogger } from "./log/logger.ts";
import { PidFile } from "./control/pidfile.ts";
import { sdNotify } from "./control/sd-notify.ts";

const HELP = `switchyard ${pkg.version}: a layer 7 and layer 4 load balancer

Usage: switchyard <command> [options]

Commands:
  serve    run the load balancer
  sim      run a simulated backend cluster
  demo     run a 3-backend sim and the balancer in front of it
  check    validate a config file and print it expanded (listeners, pools, routes)
  route    show which route takes a request, and what the backend would get
  ctl      change a running balancer through its admin API (backends, drain, weight...)
  reload   make a running balancer read its config file again
  upgrade  replace a running balancer by a new process of the binary on disk, with no gap
  health   ask a running balancer's admin /healthz (exit 0 healthy, 1 not)
  hash-password  print a basicAuth users file line for a password read from stdin

Run "switchyard <command> --help" for a command's options.
  --version   print the version
  --help      show this help`;

const SERVE_HELP = `Usage: switchyard serve --config FILE [options]
       switchyard serve --port 8000 --backend URL [--backend URL ...] [options]

Runs the load balancer until SIGINT/SIGTERM, then stops accepting, lets in-flight requests
finish (up to timeouts.shutdownGrace, default 10s) and exits 0. SIGHUP reloads the config file;
an invalid one is refused and the running config stays. SIGUSR1 reopens the access-log file
(log.file), for logrotate. SIGUSR2 upgrades: a new process of the
binary on disk starts with the same arguments, binds the same ports beside this one, and once
it serves, this one stops accepting, drains and exits 0 (see "switchyard upgrade --help").

Options (flags override the file's values):
  --config FILE        config file: .json, .yaml, .yml or .toml
  --watch              reload the config file whenever it changes
  --host HOST          listen address (listen.host, default 0.0.0.0)
  --port PORT          listen port (listen.port, default 8000)
  --backend URL        a backend; repeat for more (replaces the file's backends)
  --strategy NAME      ${POLICY_NAMES.join(" | ")}
  --hash-key KEY       consistent-hash's key (hash.key): header:NAME | cookie:NAME | ip | path
  --mode MODE          http (default) or tcp
  --engine ENGINE      HTTP mode's data path: socket (default) or fetch
  --workers N|auto     processes serving the proxy port (workers, default 1; auto: one per core)
  --admin-port PORT    admin port (admin.port, default 8081)
  --no-admin           no admin listener
  --pid-file FILE      write the serving process's PID to FILE (an upgrade moves it to the new one)
  --help               show this help`;

const CHECK_HELP = `Usage: switchyard check --config FILE

Validates FILE, prints the expanded config (listeners, pools and routes; the single-pool form
becomes one of each named "default"; every default filled in, durations in ms, sizes in bytes)
and exits 0, with a warning for a route an earlier one hides and a pool nothing uses; or prints
every problem and exits 2.`;

const DEMO_HELP = `Usage: switchyard demo [--tcp]

Starts three simulated backends on 127.0.0.1:5001-5003, the balancer on 127.0.0.1:8000 and
its admin port on 127.0.0.1:8081, with an embedded default config, and prints what to try.
  --tcp     run the balancer in TCP (layer 4) mode in front of the same backends
  --help    show this help`;

/** Exit codes: 0 ok, 1 runtime failure (port busy...), 2 bad usage or config. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serve(rest);
    case "sim":
      return rest.includes("--help") ? print(simHelp()) : runSimCli(rest);
    case "demo":
      return demo(rest);
    case "check":
      return check(rest);
    case "route":
      return runRouteCommand(rest);
    case "ctl":
      return runCtl(rest);
    case "reload":
      return rest.includes("--help") ? print(RELOAD_HELP) : runCtl(["reload", ...rest]);
    case "upgrade":
      return rest.includes("--help") ? print(UPGRADE_HELP) : runCtl(["upgrade", ...rest]);
    case WORKER_COMMAND:
      // Internal: one worker process of a balancer started with `workers` (src/workers/).
      return runWorker();
    case "health":
      return runHealthCommand(rest);
    case "hash-password":
      return runHashPasswordCommand(rest);
    case "--version":
    case "-v":
    case "version":
      return print(pkg.version);
    case undefined:
    case "--help":
    case "-h":
    case "help":
      return print(HELP);
    default:
      console.error(`switchyard: unknown command "${command}"\n\n${HELP}`);
      return 2;
  }
}

function print(text: string): number {
  console.log(text);
  return 0;
}

function parse<T extends ParseArgsConfig["options"]>(argv: string[], options: T, help: string) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: "boolean" } }, strict: true, allowPositionals: false }).values;
  } catch (e) {
    console.error(`switchyard: ${(e as Error).message}\n\n${help}`);
    return undefined;
  }
}

function reportConfigError(e: unknown): number {
  if (e instanceof ConfigError) {
    console.error(`switchyard: invalid configuration\n${e.message}`);
    return 2;
  }
  throw e;
}

async function check(argv: string[]): Promise<number> {
  const flags = parse(argv, { config: { type: "string" } }, CHECK_HELP);
  if (!flags) return 2;
  if (flags.help) return print(CHECK_HELP);
  if (typeof flags.config !== "string") {
    console.error(`switchyard check: --config FILE is required\n\n${CHECK_HELP}`);
    return 2;
  }
  try {
    const config = await loadConfigFile(flags.config);
    console.log(JSON.stringify(expandedView(config), null, 2));
    const warnings = configWarnings(config);
    for (const w of warnings) console.error(`${flags.config}: warning: ${w}`);
    console.error(`${flags.config}: ok${warnings.length > 0 ? ` (${warnings.length} warning${warnings.length === 1 ? "" : "s"})` : ""}`);
    return 0;
  } catch (e) {
    return reportConfigError(e);
  }
}

async function serve(argv: string[]): Promise<number> {
  // PID 1 (a container's entry point): keep the container alive across upgrades (keeper.ts).
  if (keeperWanted()) {
    const logger = consoleLogger();
    return runKeeper({ command: selfCommand(["serve", ...argv]), log: (line) => logger.info(line) });
  }
  // Started by `switchyard upgrade`: the process this one replaces waits for its word.
  let successor: SuccessorLink | undefined;
  try {
    successor = successorLink();
  } catch (e) {
    console.error(`switchyard: ${(e as Error).message}`);
    return 2;
  }
  const code = await serveAs(argv, successor);
  if (code !== 0) await successor?.failed(`the new process exited with code ${code} (its output is in this log)`);
  return code;
}

async function serveAs(argv: string[], successor: SuccessorLink | undefined): Promise<number> {
  // Until runUntilSignal takes them over, SIGHUP (reload) and SIGUSR2 (upgrade) are ignored:
  // their default action would end a process still loading its config or probing (a keeper
  // passes them to the newest generation, which may be one still starting).
  const ignore = () => {};
  process.on("SIGHUP", ignore);
  process.on("SIGUSR2", ignore);
  process.on("SIGUSR1", ignore);
  const flags = parse(
    argv,
    {
      config: { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      backend: { type: "string", multiple: true },
      strategy: { type: "string" },
      "hash-key": { type: "string" },
      mode: { type: "string" },
      engine: { type: "string" },
      workers: { type: "string" },
      "admin-port": { type: "string" },
      "no-admin": { type: "boolean" },
      watch: { type: "boolean" },
      "pid-file": { type: "string" },
    },
    SERVE_HELP,
  );
  if (!flags) return 2;
  if (flags.help) return print(SERVE_HELP);
  const file = typeof flags.config === "string" ? flags.config : undefined;
  if (file === undefined && !flags.backend) {
    console.error(`switchyard serve: give --config FILE or at least one --backend URL\n\n${SERVE_HELP}`);
    return 2;
  }
  if (file === undefined && flags.watch) {
    console.error(`switchyard serve: --watch needs --config FILE\n\n${SERVE_HELP}`);
    return 2;
  }
  // The same steps at start and on every reload: read the file, apply the flags, validate.
  const load = async (): Promise<Config> => validateConfig(applyFlags(file ? await readConfigFile(file) : {}, flags), file ?? "command line");
  let config: Config;
  try {
    config = await load();
  } catch (e) {
    if (e instanceof ConfigError) await successor?.failed(`invalid configuration: ${e.message}`);
    return reportConfigError(e);
  }
  let upgrader: Upgrader | undefined;
  const started = await startOrReport(
    config,
    {
      ...(file ? { load, file, watch: flags.watch === true } : {}),
      ...(successor ? { predecessor: successor.predecessor } : {}),
      upgrade: (actor) => upgrader?.upgrade(actor) ?? Promise.reject(new ControlError("SY_STOPPING", "the balancer is stopping")),
    },
    successor,
  );
  if (started === "config") return 2;
  if (!started) return 1;
  const pidFile = typeof flags["pid-file"] === "string" ? new PidFile(flags["pid-file"]) : undefined;
  try {
    pidFile?.write();
  } catch (e) {
    const why = `cannot write the pid file: ${(e as Error).message}`;
    console.error(`switchyard: ${why}`);
    await successor?.failed(why);
    await started.stop(false);
    return 1;
  }
  const balancer = started;
  upgrader = new Upgrader({
    command: selfCommand(["serve", ...argv]),
    ports: () => balancer.ports,
    grace: () => balancer.config.timeouts.shutdownGrace,
    logger: balancer.logger,
    onHandover: () => handOver?.(),
  });
  let handOver: (() => void) | undefined;
  const running = runUntilSignal(balancer, undefined, {
    upgrader,
    onHandover: (f) => (handOver = f),
    atExit: () => {
      upgrader?.stop();
      pidFile?.release();
    },
  });
  // Ready only now that every signal handler is in place: a SIGHUP or SIGUSR2 sent the moment
  // READY=1 arrives (systemctl reload, an upgrade) would otherwise meet the default action,
  // which ends the process. Type=notify (deploy/systemd): as a successor, also "the main
  // process is now me".
  try {
    sdNotify(successor ? `MAINPID=${process.pid}\nREADY=1` : "READY=1");
  } catch (e) {
    balancer.logger.warn(`systemd notification: ${(e as Error).message}`);
  }
  if (successor) balancer.logger.info(`upgrade: serving beside pid ${successor.predecessor.pid}, which drains now`);
  successor?.ready();
  return running;
}

/** This binary with `args`: the compiled executable runs itself, a checkout runs bun on this file. */
function selfCommand(args: string[]): string[] {
  // A binary replaced on disk (install or rename over it) reads as "PATH (deleted)" in /proc.
  const exe = process.execPath.replace(/ \(deleted\)$/, "");
  return import.meta.path.startsWith("/$bunfs/") ? [exe, ...args] : [exe, import.meta.path, ...args];
}

type Flags = Record<string, string | boolean | string[] | undefined>;

/** Flags override file values; numbers are passed through as typed so the schema checks them. */
function applyFlags(raw: Record<string, unknown>, flags: Flags): Record<string, unknown> {
  const out = { ...raw };
  const num = (s: string) => (/^\d+$/.test(s) ? Number(s) : s);
  if ("lb_port" in out && (flags.port !== undefined || flags.host !== undefined)) {
    out.listen = { port: out.lb_port };
    delete out.lb_port;
  }
  if (flags.host !== undefined || flags.port !== undefined) {
    const listen = { ...(out.listen as object | undefined) } as Record<string, unknown>;
    if (typeof flags.host === "string") listen.host = flags.host;
    if (typeof flags.port === "string") listen.port = num(flags.port);
    out.listen = listen;
  }
  if (Array.isArray(flags.backend)) out.backends = flags.backend.map((url) => ({ url }));
  if (typeof flags.strategy === "string") out.strategy = flags.strategy;
  if (typeof flags["hash-key"] === "string") out.hash = { key: flags["hash-key"] };
  if (typeof flags.mode === "string") out.mode = flags.mode;
  if (typeof flags.engine === "string") out.engine = flags.engine;
  if (typeof flags.workers === "string") out.workers = num(flags.workers);
  if (flags["no-admin"]) out.admin = false;
  else if (typeof flags["admin-port"] === "string") {
    out.admin = { ...(typeof out.admin === "object" ? out.admin : {}), port: num(flags["admin-port"]) };
  }
  return out;
}

async function startOrReport(config: Config, opts: BalancerOptions = {}, successor?: SuccessorLink): Promise<Balancer | undefined | "config"> {
  try {
    return await startBalancer(config, opts);
  } catch (e) {
    // A token file that cannot be read is found only at start: still a config error.
    if (e instanceof ConfigError) {
      await successor?.failed(`invalid configuration: ${e.message}`);
      reportConfigError(e);
      return "config";
    }
    // A ListenError (SY_LISTEN_FAILED) names the listener, its address and the reason.
    await successor?.failed(`cannot start: ${(e as Error).message}`);
    console.error(`switchyard: cannot start: ${(e as Error).message}`);
    return undefined;
  }
}

/** What `serve` adds to the signals: SIGUSR2 upgrades, and the end of an upgrade drains this process. */
interface ServeHooks {
  upgrader: Upgrader;
  /** Registers what to run once a successor serves. */
  onHandover(run: () => void): void;
  /** Before the process exits, however it stops. */
  atExit(): void;
}

/**
 * SIGINT/SIGTERM: graceful stop (in-flight work finishes within the grace period), exit 0.
 * SIGHUP: reload the config file (a refused one is logged and shown in /stats; the running
 * config stays). SIGUSR1: reopen the access-log files (log.file).
 */
function runUntilSignal(balancer: Balancer | undefined | "config", also?: () => Promise<void>, hooks?: ServeHooks): Promise<number> {
  if (!balancer || balancer === "config") return (also ? also() : Promise.resolve()).then(() => (balancer === "config" ? 2 : 1));
  if (hooks) {
    process.on("SIGUSR2", () => {
      hooks.upgrader.upgrade({ by: "SIGUSR2", from: "signal" }).catch(() => {
        // Logged by the upgrader with its reason; this process serves on.
      });
    });
  }
  // SIGUSR1: logrotate's postrotate (`kill -USR1`) moved the access-log file; open it anew.
  process.on("SIGUSR1", () => void balancer.reopenLogs());
  process.on("SIGHUP", () => {
    balancer.reload({ by: "SIGHUP", from: "signal" }).catch((e: Error) => {
      // Invalid configs are already logged with their problems; anything else is said here.
      if ((e as { code?: string }).code !== "SY_CONFIG_INVALID") balancer.logger.warn(`SIGHUP: ${e.message}`);
    });
  });
  return new Promise((resolve) => {
    let signalled = false;
    const onSignal = async (sig: string) => {
      // An upgrade still starting is abandoned first: a successor that said "ready" during the
      // drain would otherwise take over from a process told to stop.
      hooks?.upgrader.stop();
      if (signalled) {
        // A second Ctrl-C means now.
        await balancer.stop(false);
        hooks?.atExit();
        return resolve(0);
      }
      signalled = true;
      balancer.logger.info(`${sig}: stopping; in-flight requests may finish (Ctrl-C again to stop now)`);
      await balancer.stop(true);
      await also?.();
      hooks?.atExit();
      resolve(0);
    };
    // A successor serves the same ports: drain this process within shutdownGrace, then exit 0.
    hooks?.onHandover(() => {
      signalled = true;
      void balancer.stop(true, true).then(() => {
        hooks.atExit();
        balancer.logger.info(`upgrade: pid ${process.pid} drained; exiting`);
        resolve(0);
      });
    });
    process.on("SIGINT", () => void onSignal("SIGINT"));
    process.on("SIGTERM", () => void onSignal("SIGTERM"));
  });
}

async function demo(argv: string[]): Promise<number> {
  const flags = parse(argv, { tcp: { type: "boolean" } }, DEMO_HELP);
  if (!flags) return 2;
  if (flags.help) return print(DEMO_HELP);
  let cluster;
  try {
    cluster = await startCluster({ count: 3, basePort: 5001, latency: { min: 5, max: 40 } });
  } catch (e) {
    console.error(`switchyard demo: cannot start the sim backends on 5001-5003: ${(e as Error).message}`);
    return 1;
  }
  for (const b of cluster.backends) console.log(`sim ${b.name} listening on ${b.url}`);
  const raw = structuredClone(demoConfig) as Record<string, unknown>;
  if (flags.tcp) {
    // Same backends and the same HTTP health check (the sim speaks HTTP), relayed as bytes.
    raw.mode = "tcp";
    raw.backends = cluster.backends.map((b) => ({ name: b.name, url: `127.0.0.1:${b.port}` }));
    delete raw.log;
    delete raw.retry;
  }
  const config = validateConfig(raw, "embedded demo config");
  const balancer = await startOrReport(config);
  if (balancer && balancer !== "config") {
    const base = balancer.url.replace(/^tcp:/, "http:");
    console.log(`
Switchyard demo is running${flags.tcp ? " in TCP (layer 4) mode" : ""}. Try:
  curl ${base}/                    # answered by backend-1, -2, -3 in turn
  curl ${base}/echo                # the request as the backend saw it
  for i in $(seq 20); do curl -s ${base}/; done | sort | uniq -c
  curl -X POST -d '{"health":"down"}' http://127.0.0.1:5002/_control   # take backend-2 down
  curl -X POST -d '{"health":"up"}' http://127.0.0.1:5002/_control     # and back up
Dashboard: ${balancer.adminUrl ?? "(admin off)"}/   Stats: ${balancer.adminUrl}/stats   Metrics: ${balancer.adminUrl}/metrics
Ctrl-C stops everything.
`);
  }
  return runUntilSignal(balancer, () => cluster.stop());
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
  // Listeners are closed by now; exit even if a stray handle would keep the loop alive.
  process.exit();
}
