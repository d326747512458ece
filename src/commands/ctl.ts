/**
 * `switchyard ctl`: a client of the admin API (src/admin/api.ts). Prints a table or the
 * outcome, or the error the API gave. Exit codes as the rest of the CLI: 0 done, 1 the
 * balancer could not be reached or failed, 2 a bad command line or a refused request (unknown
 * backend, bad value, missing token, invalid config file on reload).
 */
import { parseArgs } from "node:util";
import { TOKEN_ENV } from "../admin/auth.ts";
import type { BackendReport, DrainReport, ReloadReport, RemoveReport } from "../control/control.ts";
import type { UpgradeReport } from "../control/upgrade.ts";
import type { RenewReport } from "../acme/manager.ts";
import type { PoolReport, RouteReport } from "../admin/api.ts";

export const CTL_HELP = `Usage: switchyard ctl [--admin URL] [--token T] COMMAND

Talks to a running balancer's admin API.

Commands:
  pools [POOL]                 list the pools: mode, strategy, backends available, panic mode,
                               retries over budget, routes; with POOL, that pool and its backends
  routes                       list the routes in order: match, action, listeners, requests by class
  backends                     list the backends: state, weight, in flight
  drain NAME [--wait DURATION] no new requests for NAME; with --wait, wait for in-flight work to end
  enable NAME                  NAME takes new requests again
  weight NAME N                set NAME's weight (1 to 1000)
  add NAME URL [--weight N] [--pool P]
                               add a backend (to pool P, or the pool NAME names as POOL/NAME;
                               with a single pool, to it)
  remove NAME [--deadline D]   drain NAME, wait for in-flight work (up to D, default 30s), remove it
  health NAME down|up|auto     hold NAME down or up for maintenance; auto hands it back to health checks

A backend NAME is POOL/BACKEND, or the backend's name alone where no other pool has one so named.
  acme renew NAME              renew NAME's certificate from ACME now
  acme revoke NAME [--reason R]
                               renew it, then revoke the one it replaced; R: unspecified (default),
                               keyCompromise, affiliationChanged, superseded, cessationOfOperation
  reload                       read the balancer's config file again and apply it
  upgrade                      replace the balancer's process by a new one of the binary on disk

Options:
  --admin URL   the admin listener (default $SWITCHYARD_ADMIN_URL or http://127.0.0.1:8081)
  --token T     the admin token for changes (default $${TOKEN_ENV})
  --json        print the API's JSON answer
  --help        show this help

Changes made here last until the next reload from the config file.
Exit codes: 0 done, 1 the balancer could not be reached or failed, 2 bad usage or a refused request.`;

export const RELOAD_HELP = `Usage: switchyard reload [--admin URL] [--token T]

Asks a running balancer to read its config file again and apply it (the same as
"switchyard ctl reload", or sending it SIGHUP). An invalid file is refused: the balancer keeps
its running config and this prints every problem and exits 2.`;

export const UPGRADE_HELP = `Usage: switchyard upgrade [--admin URL] [--token T]

Replaces a running balancer by a new process of the binary on disk, with no gap: the running
process starts the new one with its own arguments; the new one binds the same ports beside it
(SO_REUSEPORT) and says when it serves; then the old one stops accepting, lets its in-flight
requests and WebSockets finish within timeouts.shutdownGrace, and exits 0. With --pid-file the
file then names the new process; under systemd (Type=notify) the new one becomes MAINPID.
The same as "switchyard ctl upgrade", or sending the serve process SIGUSR2 (the outcome is then
in its log only).

Exits 0 once the new process serves (printing both PIDs); if the new process cannot start (a bad
config, a port, a crash) the running one goes on serving and this prints why and exits 1.`;

interface Request {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  body?: unknown;
  print: (answer: unknown) => string;
}

type Out = { out: (s: string) => void; err: (s: string) => void };
const stdio: Out = { out: (s) => console.log(s), err: (s) => console.error(s) };

export async function runCtl(argv: string[], env: Record<string, string | undefined> = process.env, io: Out = stdio): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        admin: { type: "string" },
        token: { type: "string" },
        json: { type: "boolean" },
        wait: { type: "string" },
        deadline: { type: "string" },
        weight: { type: "string" },
        pool: { type: "string" },
        reason: { type: "string" },
        help: { type: "boolean" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    io.err(`switchyard ctl: ${(e as Error).message}\n\n${CTL_HELP}`);
    return 2;
  }
  const { values: flags, positionals } = parsed;
  if (flags.help) {
    io.out(CTL_HELP);
    return 0;
  }
  const req = request(positionals, flags);
  if (typeof req === "string") {
    io.err(`switchyard ctl: ${req}\n\n${CTL_HELP}`);
    return 2;
  }
  const admin = (flags.admin ?? env.SWITCHYARD_ADMIN_URL ?? "http://127.0.0.1:8081").replace(/\/+$/, "");
  let base: URL;
  try {
    base = new URL(admin);
    if (base.protocol !== "http:" && base.protocol !== "https:") throw new Error();
  } catch {
    io.err(`switchyard ctl: --admin: got ${JSON.stringify(admin)}, expected a URL like http://127.0.0.1:8081`);
    return 2;
  }
  const token = flags.token ?? env[TOKEN_ENV];
  const headers: Record<string, string> = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (req.body !== undefined) headers["content-type"] = "application/json";

  let res: Response;
  let answer: unknown;
  try {
    res = await fetch(`${admin}${req.path}`, { method: req.method, headers, body: req.body === undefined ? undefined : JSON.stringify(req.body) });
    const text = await res.text();
    try {
      answer = JSON.parse(text);
    } catch {
      answer = { error: `HTTP ${res.status}`, message: text.slice(0, 200) };
    }
  } catch (e) {
    io.err(`switchyard ctl: cannot reach the admin API at ${admin}: ${(e as { code?: string }).code ?? (e as Error).message}`);
    return 1;
  }
  if (!res.ok) {
    const a = answer as { error?: string; message?: string; problems?: string[] };
    if (flags.json) io.out(JSON.stringify(answer, null, 2));
    const problems = a.problems?.length && !(a.message ?? "").includes(a.problems[0]!) ? `\n  - ${a.problems.join("\n  - ")}` : "";
    io.err(`switchyard ctl: ${a.message ?? `HTTP ${res.status}`}${a.error ? ` (${a.error})` : ""}${problems}`);
    return res.status >= 500 ? 1 : 2;
  }
  io.out(flags.json ? JSON.stringify(answer, null, 2) : req.print(answer));
  return 0;
}

/** The API request for a command line, or what is wrong with it. */
function request(args: string[], flags: { wait?: string; deadline?: string; weight?: string; pool?: string; reason?: string }): Request | string {
  const [cmd, ...rest] = args;
  const need = (n: number, usage: string): string | undefined =>
    rest.length === n ? undefined : `${cmd}: expected ${usage}, got ${rest.length === 0 ? "nothing" : JSON.stringify(rest.join(" "))}`;
  const name = encodeURIComponent(rest[0] ?? "");
  switch (cmd) {
    case "pools":
      if (rest.length > 1) return `pools: expected nothing or POOL, got ${JSON.stringify(rest.join(" "))}`;
      if (rest.length === 1) return { method: "GET", path: `/api/pools/${name}`, print: (a) => poolDetail(a as PoolReport) };
      return { method: "GET", path: "/api/pools", print: (a) => poolTable((a as { pools: PoolReport[] }).pools) };
    case "routes":
      return need(0, "no arguments") ?? { method: "GET", path: "/api/routes", print: (a) => routeTable((a as { routes: RouteReport[] }).routes) };
    case "backends":
      return need(0, "no arguments") ?? { method: "GET", path: "/api/backends", print: (a) => table((a as { backends: BackendReport[] }).backends) };
    case "drain": {
      const wait = flags.wait ? `?wait=${encodeURIComponent(flags.wait)}` : "";
      return need(1, "NAME") ?? {
        method: "POST", path: `/api/backends/${name}/drain${wait}`,
        print: (a) => {
          const r = a as DrainReport;
          return `${idOf(r)}: ${r.state}, ${r.inFlight} in flight${flags.wait ? (r.drained ? ` (drained in ${r.waitedMs}ms)` : ` (still busy after ${r.waitedMs}ms)`) : ""}`;
        },
      };
    }
    case "enable":
      return need(1, "NAME") ?? { method: "POST", path: `/api/backends/${name}/enable`, print: (a) => line(a as BackendReport) };
    case "weight": {
      const bad = need(2, "NAME N");
      if (bad) return bad;
      const n = Number(rest[1]);
      if (!/^\d+$/.test(rest[1]!)) return `weight: got ${JSON.stringify(rest[1])}, expected a whole number from 1 to 1000`;
      return { method: "PUT", path: `/api/backends/${name}/weight`, body: { weight: n }, print: (a) => line(a as BackendReport) };
    }
    case "add": {
      const bad = need(2, "NAME URL");
      if (bad) return bad;
      // POOL/NAME names the pool, unless --pool does (then NAME is the backend's whole name).
      const slash = rest[0]!.indexOf("/");
      const pool = flags.pool ?? (slash > 0 ? rest[0]!.slice(0, slash) : undefined);
      const backend = flags.pool === undefined && slash > 0 ? rest[0]!.slice(slash + 1) : rest[0]!;
      const body: Record<string, unknown> = { name: backend, url: rest[1] };
      if (pool !== undefined) body.pool = pool;
      if (flags.weight !== undefined) {
        if (!/^\d+$/.test(flags.weight)) return `--weight: got ${JSON.stringify(flags.weight)}, expected a whole number from 1 to 1000`;
        body.weight = Number(flags.weight);
      }
      return { method: "POST", path: "/api/backends", body, print: (a) => `added ${line(a as BackendReport)}` };
    }
    case "remove": {
      const deadline = flags.deadline ? `?deadline=${encodeURIComponent(flags.deadline)}` : "";
      return need(1, "NAME") ?? {
        method: "DELETE", path: `/api/backends/${name}${deadline}`,
        print: (a) => {
          const r = a as RemoveReport;
          return r.deadlineReached
            ? `removed ${r.name} at the deadline after ${r.waitedMs}ms; ${r.inFlightAtRemoval} in flight finish on their own`
            : `removed ${r.name} (drained in ${r.waitedMs}ms)`;
        },
      };
    }
    case "health": {
      const bad = need(2, "NAME down|up|auto");
      if (bad) return bad;
      if (!["down", "up", "auto"].includes(rest[1]!)) return `health: got ${JSON.stringify(rest[1])}, expected down, up or auto`;
      return { method: "POST", path: `/api/backends/${name}/health`, body: { health: rest[1] }, print: (a) => line(a as BackendReport) };
    }
    case "reload":
      return need(0, "no arguments") ?? {
        method: "POST", path: "/api/reload",
        print: (a) => {
          const r = a as ReloadReport;
          const head = r.changed ? `reloaded: config version ${r.version}` : `reloaded: no change (config version ${r.version})`;
          return [head, ...r.lines.map((l) => `  ${l}`), ...r.restartNeeded.map((l) => `  needs a restart: ${l}`)].join("\n");
        },
      };
    case "upgrade":
      return need(0, "no arguments") ?? {
        method: "POST", path: "/api/upgrade",
        print: (a) => {
          const r = a as UpgradeReport;
          return `upgraded: pid ${r.newPid} serves (ready in ${r.readyMs}ms); pid ${r.oldPid} drains within ${r.drainWithinMs}ms and exits`;
        },
      };
    case "acme": {
      // acme renew NAME | acme revoke NAME [--reason R]
      const [action, cert] = rest;
      if ((action !== "renew" && action !== "revoke") || cert === undefined || rest.length !== 2) {
        return `acme: expected renew NAME or revoke NAME [--reason R], got ${rest.length === 0 ? "nothing" : JSON.stringify(rest.join(" "))}`;
      }
      if (action === "renew" && flags.reason !== undefined) return "acme renew: --reason goes with revoke";
      return {
        method: "POST", path: `/api/acme/${encodeURIComponent(cert)}/${action}`,
        ...(action === "revoke" && flags.reason !== undefined ? { body: { reason: flags.reason } } : {}),
        print: (a) => {
          const r = a as RenewReport;
          const old = r.replaced === null ? "" : `; replaced serial ${r.replaced.serial}${r.replaced.revoked !== null ? `, revoked (${r.replaced.revoked})` : ""}`;
          return `${r.name}: renewed, serial ${r.serial}, valid to ${r.notAfter}${old}`;
        },
      };
    }
    case undefined:
      return "a command is required";
    default:
      return `unknown command "${cmd}"`;
  }
}

/** What ctl and the API call a backend: "pool/backend", the bare name in the pool `default`. */
function idOf(b: BackendReport): string {
  return b.id ?? b.name;
}

function line(b: BackendReport): string {
  return `${idOf(b)}: ${b.state}${b.forced ? ` (forced ${b.forced})` : ""}, weight ${b.weight}, ${b.inFlight} in flight`;
}

function table(rows: BackendReport[]): string {
  const head = ["NAME", "STATE", "WEIGHT", "IN FLIGHT", "REQUESTS", "URL", "REASON"];
  return columns(head, rows.map((b) => [idOf(b), b.forced ? `${b.state} (forced)` : b.state, String(b.weight), String(b.inFlight), String(b.requests), b.url, b.reason]));
}

function panicOf(p: PoolReport): string {
  return p.panic.active ? `PANIC (<${p.panic.threshold}%)` : "no";
}

function poolTable(pools: PoolReport[]): string {
  const head = ["POOL", "MODE", "STRATEGY", "AVAILABLE", "PANIC", "OVER BUDGET", "IN FLIGHT", "REQUESTS", "USED BY"];
  return columns(head, pools.map((p) => [
    p.name, p.mode, p.strategy, `${p.states.available}/${p.states.total}`, panicOf(p), p.retryBudget ? String(p.retryBudget.exhausted) : "-",
    String(p.inFlight), String(p.requests), usedBy(p),
  ]));
}

function usedBy(p: PoolReport): string {
  return [...p.routes.map((r) => `route ${r}`), ...p.listeners.map((l) => `listener ${l}`), ...p.mirroredBy.map((r) => `mirror of route ${r}`)].join(", ") || "-";
}

function poolDetail(p: PoolReport): string {
  const budget = p.retryBudget ? `, ${p.retryBudget.exhausted} retries over budget` : "";
  const head = `pool ${p.name}: ${p.mode}, ${p.strategy}, ${p.states.available}/${p.states.total} available, panic ${panicOf(p)}${budget}; used by ${usedBy(p)}`;
  return `${head}\n${table(p.backends)}`;
}

function routeTable(routes: RouteReport[]): string {
  const head = ["ROUTE", "MATCH", "ACTION", "LISTENERS", "REQUESTS", "2XX", "3XX", "4XX", "5XX", "P50 MS", "P99 MS"];
  const n = (x: number | undefined) => (x === undefined ? "-" : String(x));
  return columns(head, routes.map((r) => {
    const t = r.traffic;
    const action = r.action === "split" ? `split ${r.split!.map((s) => `${s.pool}:${s.weight}`).join(",")}`
      : r.action === "pool" ? `pool ${r.pools.join(",")}` : `${r.action} ${r.target ?? ""}`.trim();
    const lat = t?.latencyMsAllTime;
    return [
      r.name, r.match, action + (r.mirror ? ` (mirror ${r.mirror.pool} ${r.mirror.percent}%)` : ""), r.listeners.join(",") || "-",
      n(t?.requests), n(t?.responses["2xx"]), n(t?.responses["3xx"]), n(t?.responses["4xx"]), n(t?.responses["5xx"]),
      lat ? String(lat.p50) : "-", lat ? String(lat.p99) : "-",
    ];
  }));
}

/** Columns padded to their widest cell; the last one is not padded. */
function columns(head: string[], cells: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  return [fmt(head), ...cells.map(fmt)].join("\n");
}
