/**
 * `switchyard upgrade` replaces the running process under load with no gap: wrk at 64
 * connections across the upgrade sees 0 non-2xx answers and 0 socket errors; a WebSocket
 * opened through the old process keeps working after the new one took over, until its backend
 * closes it (the close code reaches the client), and only then does the old process exit, well
 * before timeouts.shutdownGrace. The pid file moves to the new process. Both engines, one
 * process and `workers: 2`. And a new process that cannot start leaves the old one serving,
 * with the reason on the command's stderr and exit code 1.
 *
 * The balancer runs as `switchyard serve` in its own process (from source: bun src/cli.ts), as
 * it runs in production, since the upgrade replaces that process.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
import type { Balancer } from "../../src/balancer.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { Upgrader, UPGRADE_FROM_ENV, type UpgradeReport } from "../../src/control/upgrade.ts";
import { requirePrograms } from "../helpers/system.ts";
import { serveProcess, startRig, type Serving } from "../helpers/balancer.ts";
import { processAlive, waitFor } from "../helpers/wait.ts";

const CLI = join(import.meta.dir, "../../src/cli.ts");
const TOKEN = "upgrade-test-token-0123456789abcdef";
const CONNECTIONS = 64;
const programs = requirePrograms("the upgrade-under-load tests", { wrk: "wrk" });

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A backend answering 200 to every request, and a WebSocket echo it closes with 4000 on "bye". */
function startBackend(): Server<unknown> {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req, srv) {
      if (req.headers.get("upgrade")?.toLowerCase() === "websocket" && srv.upgrade(req, { data: undefined })) return undefined;
      return new Response("ok");
    },
    websocket: {
      message(ws, m) {
        if (m === "bye") ws.close(4000, "backend done");
        else ws.send(`echo:${m}`);
      },
    },
  });
  cleanups.push(() => server.stop(true));
  return server;
}

/** `switchyard serve --config <file> --pid-file <pidFile>`; its successors share its stdout. */
function serveWithPidFile(file: string, pidFile: string): Serving {
  return serveProcess({ file, args: ["--pid-file", pidFile], stderr: "inherit" });
}

/** End a process this test started (the old one and its successor), and wait for it. */
function ends(pid: number): void {
  cleanups.push(async () => {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      return; // Already gone.
    }
    await waitFor(() => !processAlive(pid), `pid ${pid} to end`, 5000);
  });
}


interface WrkResult {
  requests: number;
  non2xx: number;
  socketErrors: string;
  errorCount: number;
}

async function wrk(url: string, seconds: number): Promise<WrkResult> {
  const proc = Bun.spawn([programs.path("wrk"), "-t2", `-c${CONNECTIONS}`, `-d${seconds}s`, "--timeout", "5s", url], { stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const requests = /(\d+) requests in/.exec(out);
  if (!requests) throw new Error(`unexpected wrk output:\n${out}\n${err}`);
  const sock = /Socket errors: (connect \d+, read \d+, write \d+, timeout \d+)/.exec(out);
  return {
    requests: Number(requests[1]),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    socketErrors: sock?.[1] ?? "none",
    errorCount: sock ? [...sock[1]!.matchAll(/\d+/g)].reduce((n, m) => n + Number(m[0]), 0) : 0,
  };
}

/** A WebSocket client that keeps what it received and how it closed. */
async function openSocket(url: string) {
  const ws = new WebSocket(url);
  const got: string[] = [];
  let closed: { code: number; reason: string } | undefined;
  ws.onmessage = (e) => got.push(String(e.data));
  ws.onclose = (e) => (closed = { code: e.code, reason: e.reason });
  await waitFor(() => ws.readyState === WebSocket.OPEN || closed !== undefined, "the WebSocket to open");
  if (closed) throw new Error(`the WebSocket closed at once: ${JSON.stringify(closed)}`);
  return {
    ws,
    closed: () => closed,
    async echo(text: string) {
      ws.send(text);
      await waitFor(() => got.includes(`echo:${text}`) || closed !== undefined, `the echo of ${text}`);
      expect(got).toContain(`echo:${text}`);
    },
  };
}

function configFile(backend: Server<unknown>, engine: string, workers: number, dir: string): string {
  const file = join(dir, "switchyard.json");
  writeFileSync(file, JSON.stringify({
    listen: { host: "127.0.0.1", port: 0 },
    admin: { host: "127.0.0.1", port: 0, token: TOKEN },
    engine,
    workers,
    log: { access: false },
    // Far longer than the test waits for the old process to exit: it exits because it drained.
    timeouts: { shutdownGrace: "60s" },
    healthCheck: { path: "/", interval: "1s" },
    backends: [{ name: "b1", url: `http://127.0.0.1:${backend.port}` }],
  }));
  return file;
}

async function upgradeCommand(adminUrl: string): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn([process.execPath, CLI, "upgrade", "--admin", adminUrl], {
    env: { ...process.env, SWITCHYARD_ADMIN_TOKEN: TOKEN }, stdout: "pipe", stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

/** Both engines, or only SWITCHYARD_TEST_ENGINE's when that is set (CI's second pass). */
const ENGINES = process.env.SWITCHYARD_TEST_ENGINE ? [process.env.SWITCHYARD_TEST_ENGINE] : ["socket", "fetch"];

describe.skipIf(programs.skip)("switchyard upgrade under wrk", () => {
  for (const engine of ENGINES) {
    for (const workers of [1, 2]) {
      test(`${engine} engine, ${workers === 1 ? "one process" : `${workers} workers`}: 0 failed requests, the WebSocket works on until its backend closes it`, async () => {
        programs.assertPresent();
        const dir = mkdtempSync(join(tmpdir(), "switchyard-upgrade-"));
        const backend = startBackend();
        const pidFile = join(dir, "switchyard.pid");
        const old = serveWithPidFile(configFile(backend, engine, workers, dir), pidFile);
        ends(old.proc.pid);
        const proxyUrl = await old.waitForLine(/proxy listening on (http:\/\/\S+)/, "the proxy to listen");
        const adminUrl = await old.waitForLine(/admin listening on (http:\/\/\S+)/, "the admin port to listen");
        // Written once every listener is bound: with workers, after the admin port says so.
        await waitFor(() => existsSync(pidFile), "the pid file");
        expect(Number(readFileSync(pidFile, "utf8"))).toBe(old.proc.pid);

        const socket = await openSocket(proxyUrl.replace("http:", "ws:") + "/ws");
        await socket.echo("before");

        const seconds = 6;
        const load = wrk(`${proxyUrl}/`, seconds);
        // Load on both sides of the upgrade.
        await Bun.sleep(1500);
        const t0 = performance.now();
        const up = await upgradeCommand(adminUrl);
        const upgradeMs = performance.now() - t0;
        // Ended by the cleanups whatever the assertions below say.
        const newPid = Number(/upgraded: pid (\d+) serves/.exec(up.out)?.[1]);
        if (newPid > 0) ends(newPid);
        expect(up.err).toBe("");
        expect(up.code).toBe(0);
        expect(newPid).not.toBe(old.proc.pid);
        expect(processAlive(newPid)).toBe(true);
        expect(Number(readFileSync(pidFile, "utf8"))).toBe(newPid);

        // The old process holds the WebSocket, so it is still draining; the socket works on.
        await socket.echo("after the upgrade");
        const result = await load;
        await socket.echo("after the load");
        expect(old.proc.exitCode).toBeNull();
        console.log(
          `upgrade (${engine}, workers ${workers}): wrk -t2 -c${CONNECTIONS} ${seconds}s: ${result.requests} requests, ` +
            `${result.non2xx} non-2xx, socket errors ${result.socketErrors}; upgrade command ${Math.round(upgradeMs)}ms`,
        );
        expect(result.requests).toBeGreaterThan(0);
        expect(result.non2xx).toBe(0);
        expect(result.errorCount).toBe(0);
        // The load moved: the admin port is the new process's alone now, and it answered part of it.
        const stats = (await (await fetch(`${adminUrl}/stats`)).json()) as { totals: { requests: number } };
        expect(stats.totals.requests).toBeGreaterThan(0);
        expect(stats.totals.requests).toBeLessThan(result.requests);
        console.log(`upgrade (${engine}, workers ${workers}): the new process answered ${stats.totals.requests} of them`);

        // The backend ends the WebSocket: its close reaches the client through the old process,
        // which then has nothing left and exits 0, long before its 60 s grace.
        const closedAt = performance.now();
        socket.ws.send("bye");
        await waitFor(() => socket.closed() !== undefined, "the backend's close to reach the client");
        expect(socket.closed()!.code).toBe(4000);
        expect(await Promise.race([old.proc.exited, Bun.sleep(15_000).then(() => "still running")])).toBe(0);
        const drainedMs = performance.now() - closedAt;
        expect(old.output()).toContain(`upgrade: pid ${old.proc.pid} drained; exiting`);
        console.log(`upgrade (${engine}, workers ${workers}): the old process exited ${Math.round(drainedMs)}ms after the backend closed the WebSocket`);

        // The new process serves on its own, new WebSockets included, and stops cleanly.
        expect((await fetch(`${proxyUrl}/`)).status).toBe(200);
        const again = await openSocket(proxyUrl.replace("http:", "ws:") + "/ws");
        await again.echo("on the new process");
        again.ws.close();
        process.kill(newPid, "SIGTERM");
        await waitFor(() => !processAlive(newPid), "the new process to stop on SIGTERM", 15_000);
      }, 60_000);
    }
  }
});

test("a new process that cannot start leaves the old one serving; the command says why and exits 1", async () => {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-upgrade-"));
  const backend = startBackend();
  const pidFile = join(dir, "switchyard.pid");
  const file = configFile(backend, process.env.SWITCHYARD_TEST_ENGINE ?? "socket", 1, dir);
  const old = serveWithPidFile(file, pidFile);
  ends(old.proc.pid);
  const proxyUrl = await old.waitForLine(/proxy listening on (http:\/\/\S+)/, "the proxy to listen");
  const adminUrl = await old.waitForLine(/admin listening on (http:\/\/\S+)/, "the admin port to listen");

  // The new process reads the file again: make it invalid.
  writeFileSync(file, JSON.stringify({ listen: { port: "eighty" }, backends: [{ url: "http://127.0.0.1:1" }] }));
  const up = await upgradeCommand(adminUrl);
  expect(up.code).toBe(1);
  expect(up.err).toContain("SY_UPGRADE_FAILED");
  expect(up.err).toContain("listen.port");
  expect(up.err).toContain(`pid ${old.proc.pid}, goes on serving`);
  expect(Number(readFileSync(pidFile, "utf8"))).toBe(old.proc.pid);
  expect((await fetch(`${proxyUrl}/`)).status).toBe(200);
  expect(old.proc.exitCode).toBeNull();
});

describe("every listener binds with SO_REUSEPORT, yet a second balancer is refused", () => {
  const modes = [
    { mode: "http", engine: "fetch" },
    { mode: "http", engine: "socket" },
    { mode: "tcp", engine: "fetch" },
  ] as const;
  for (const { mode, engine } of modes) {
    const name = mode === "tcp" ? "TCP mode" : `${engine} engine`;
    test(`${name}: a fresh start on a running balancer's proxy or admin port fails; its successor binds beside it`, async () => {
      const backend = startBackend();
      const config = (proxy: number, admin: number) => ({
        mode, engine,
        listen: { host: "127.0.0.1", port: proxy },
        admin: { host: "127.0.0.1", port: admin },
        backends: [{ url: mode === "tcp" ? `127.0.0.1:${backend.port}` : `http://127.0.0.1:${backend.port}` }],
      });
      const firstRig = await startRig(0, config(0, 0));
      cleanups.push(() => firstRig.stop());
      const first = firstRig.balancer;
      await expect(startRig(0, config(first.port, 0))).rejects.toThrow(
        `proxy listener on 127.0.0.1:${first.port}: address already in use`,
      );
      await expect(startRig(0, config(0, first.ports.admin!))).rejects.toThrow(
        `admin listener on 127.0.0.1:${first.ports.admin}: address already in use`,
      );
      // As a successor (port 0 stands for the predecessor's port): the same ports, beside it.
      const secondRig = await startRig(0, config(0, 0), undefined, { predecessor: { pid: process.pid, ports: first.ports } });
      cleanups.push(() => secondRig.stop());
      const second: Balancer = secondRig.balancer;
      expect(second.ports).toEqual(first.ports);
      // The first one stops as in a handover: what arrives now is answered by the second.
      await first.stop(true, true);
      if (mode === "http") {
        expect((await fetch(`${second.url}/`)).status).toBe(200);
        expect((await fetch(`${second.adminUrl}/healthz`)).status).toBe(200);
      }
    });
  }
});

describe("Upgrader: the old process's side of the handshake", () => {
  const actor = { by: "test", from: "local" };
  /** An Upgrader whose "new process" is `script` run by bun; it records its handovers. */
  function upgrader(script: string, startTimeoutMs = 15_000) {
    const handovers: UpgradeReport[] = [];
    const logger = memoryLogger();
    const u = new Upgrader({
      command: [process.execPath, "-e", script],
      ports: () => ({ proxy: 8123, admin: 8124 }),
      grace: () => 10_000,
      logger,
      onHandover: (r) => handovers.push(r),
      startTimeoutMs,
    });
    cleanups.push(() => u.stop());
    return { u, handovers, logger };
  }

  test("ready: hands over once, with the PIDs; the new process got this one's PID and ports; a second upgrade is refused", async () => {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-upgrader-"));
    const seen = join(dir, "from.json");
    const { u, handovers } = upgrader(
      `require("fs").writeFileSync(${JSON.stringify(seen)}, process.env.${UPGRADE_FROM_ENV}); process.send({ t: "ready", pid: process.pid }); setTimeout(() => {}, 10000);`,
    );
    const report = await u.upgrade(actor);
    ends(report.newPid);
    expect(report.oldPid).toBe(process.pid);
    expect(report.drainWithinMs).toBe(10_000);
    expect(processAlive(report.newPid)).toBe(true);
    expect(handovers).toEqual([report]);
    expect(JSON.parse(readFileSync(seen, "utf8"))).toEqual({ pid: process.pid, ports: { proxy: 8123, admin: 8124 } });
    await expect(u.upgrade(actor)).rejects.toThrow(`already upgraded: pid ${report.newPid} serves`);
  });

  test("a new process that says why it failed is ended; the reason is the error; the next upgrade may start", async () => {
    const { u, handovers, logger } = upgrader(`process.send({ t: "failed", message: "cannot start: proxy listener on 127.0.0.1:1: permission denied" }); setTimeout(() => {}, 10000);`);
    const error = await u.upgrade(actor).catch((e: { code: string; message: string }) => e);
    expect(error).toMatchObject({ code: "SY_UPGRADE_FAILED" });
    expect((error as { message: string }).message).toContain("cannot start: proxy listener on 127.0.0.1:1: permission denied");
    expect(handovers).toEqual([]);
    expect(logger.lines.join("\n")).toContain("goes on serving");
    // Serving again: another attempt runs (and fails the same way).
    await expect(u.upgrade(actor)).rejects.toThrow("permission denied");
  });

  test("a new process that exits, or never says ready, fails the upgrade with what happened, and is ended", async () => {
    const exits = upgrader("process.exit(3)");
    await expect(exits.u.upgrade(actor)).rejects.toThrow("exited with code 3 before it was ready");
    const dir = mkdtempSync(join(tmpdir(), "switchyard-upgrader-"));
    const pidOf = join(dir, "pid");
    const stuck = upgrader(`require("fs").writeFileSync(${JSON.stringify(pidOf)}, String(process.pid)); setTimeout(() => {}, 60000);`, 1000);
    await expect(stuck.u.upgrade(actor)).rejects.toThrow("was not ready within 1000ms");
    const pid = Number(readFileSync(pidOf, "utf8"));
    await waitFor(() => !processAlive(pid), "the stuck new process to be ended");
    expect(stuck.handovers).toEqual([]);
  });

  test("one at a time; stopping abandons one under way (SY_STOPPING) and ends its process", async () => {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-upgrader-"));
    const pidOf = join(dir, "pid");
    const { u } = upgrader(`require("fs").writeFileSync(${JSON.stringify(pidOf)}, String(process.pid)); setTimeout(() => {}, 60000);`);
    const first = u.upgrade(actor).catch((e: { code: string }) => e);
    await expect(u.upgrade(actor)).rejects.toMatchObject({ code: "SY_UPGRADE_IN_PROGRESS" });
    await waitFor(() => existsSync(pidOf) && readFileSync(pidOf, "utf8") !== "", "the new process to start");
    u.stop();
    expect(await first).toMatchObject({ code: "SY_STOPPING" });
    const pid = Number(readFileSync(pidOf, "utf8"));
    await waitFor(() => !processAlive(pid), "the abandoned new process to be ended");
    await expect(u.upgrade(actor)).rejects.toMatchObject({ code: "SY_STOPPING" });
  });
});
