/**
 * The measurement behind `workers` (docs/operations.md, "Workers"): what child processes of the same binary
 * (IPC) and Worker threads (postMessage) cost in Bun, and whether `reusePort` spreads
 * connections across listeners of one process (threads) as it does across processes.
 *
 *   bun bench/workers-measure.ts [--seconds 5]
 *
 * Loopback only, bounded; every child and thread it starts is stopped at the end. wrk is used
 * for the throughput rows when installed, with the listeners' own CPU per request beside them
 * (user and system time from /proc: of the two child processes, or of this process, whose
 * threads the two Workers are, divided by the requests wrk completed).
 */
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import { has, wrk } from "./harness.ts";

declare const self: Worker & { onmessage: ((e: MessageEvent) => void) | null };

const ROLE = process.argv[2];

/** What a child (process or thread) does: answer pings, listen where told, report counts. */
function child(send: (m: unknown) => void, onMessage: (fn: (m: any) => void) => void): void {
  let accepted = 0;
  let served = 0;
  const listeners: { stop(force?: boolean): void }[] = [];
  onMessage((m) => {
    if (m.t === "ping") send({ t: "pong", i: m.i });
    else if (m.t === "listen") {
      listeners.push(Bun.listen({ hostname: "127.0.0.1", port: m.port, reusePort: true, socket: { open() { accepted++; }, data() {} } }));
      listeners.push(Bun.serve({ hostname: "127.0.0.1", port: m.httpPort, reusePort: true, development: false, fetch() { served++; return new Response("ok"); } }));
      send({ t: "listening" });
    } else if (m.t === "count") send({ t: "count", accepted, served });
    else if (m.t === "stop") {
      for (const l of listeners) l.stop(true);
      send({ t: "stopped" });
      if (typeof process.send === "function" && ROLE === "child-process") process.exit(0);
    }
  });
  send({ t: "ready" });
}

if (ROLE === "child-process") {
  child((m) => process.send!(m), (fn) => process.on("message", fn));
} else if (typeof self !== "undefined" && typeof Bun !== "undefined" && !Bun.isMainThread) {
  child((m) => self.postMessage(m), (fn) => (self.onmessage = (e) => fn(e.data)));
} else {
  const { values } = parseArgs({ args: Bun.argv.slice(2), options: { seconds: { type: "string", default: "5" } } });
  await main(Number(values.seconds));
}

interface Peer {
  /** The child process's PID; this process's for a thread. */
  pid: number;
  send(m: unknown): void;
  next(type: string): Promise<any>;
  stop(): Promise<void>;
}

function makePeer(kind: "process" | "thread"): { peer: Peer; started: number } {
  const waiting = new Map<string, ((m: any) => void)[]>();
  const inbox = new Map<string, any[]>();
  const deliver = (m: any) => {
    const w = waiting.get(m.t);
    if (w && w.length > 0) w.shift()!(m);
    else inbox.set(m.t, [...(inbox.get(m.t) ?? []), m]);
  };
  const next = (type: string) =>
    new Promise<any>((resolve) => {
      const q = inbox.get(type);
      if (q && q.length > 0) return resolve(q.shift());
      waiting.set(type, [...(waiting.get(type) ?? []), resolve]);
    });
  const started = performance.now();
  if (kind === "process") {
    const p: Subprocess = Bun.spawn([process.execPath, import.meta.path, "child-process"], { ipc: (m) => deliver(m), stdio: ["ignore", "inherit", "inherit"], serialization: "advanced" });
    return { started, peer: { pid: p.pid, send: (m) => p.send(m), next, stop: async () => { p.kill(); await p.exited; } } };
  }
  const w = new Worker(import.meta.path);
  w.onmessage = (e) => deliver(e.data);
  return { started, peer: { pid: process.pid, send: (m) => w.postMessage(m), next, stop: async () => { w.terminate(); } } };
}

async function main(seconds: number): Promise<void> {
  const rows: string[] = [];
  for (const kind of ["process", "thread"] as const) {
    // Start-up: spawn to the first message.
    const starts: number[] = [];
    const peers: Peer[] = [];
    for (let i = 0; i < 2; i++) {
      const { peer, started } = makePeer(kind);
      await peer.next("ready");
      starts.push(performance.now() - started);
      peers.push(peer);
    }
    // Round trips, one at a time.
    const n = 5000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      peers[0]!.send({ t: "ping", i });
      await peers[0]!.next("pong");
    }
    const rtt = ((performance.now() - t0) / n) * 1000;
    // A state message of the size a backend table makes (20 backends).
    const table = { t: "ping", i: 0, backends: Array.from({ length: 20 }, (_, i) => ({ name: `backend-${i}`, url: `http://10.0.0.${i}:8080/`, weight: 1, healthy: true, enabled: true, ejectedUntil: 0, availableSince: 0 })) };
    const t1 = performance.now();
    for (let i = 0; i < 1000; i++) {
      peers[0]!.send(table);
      await peers[0]!.next("pong");
    }
    const rttTable = (performance.now() - t1) * 1;
    // reusePort: two listeners of the same port, one per child. 200 connections, then counts.
    const port = 19300 + (kind === "process" ? 0 : 1);
    const httpPort = 19310 + (kind === "process" ? 0 : 1);
    for (const p of peers) {
      p.send({ t: "listen", port, httpPort });
      await p.next("listening");
    }
    const sockets = await Promise.all(Array.from({ length: 200 }, () => Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } })));
    let rps = "";
    let cpu = "";
    if (has("wrk")) {
      const pids = [...new Set(peers.map((p) => p.pid))];
      const r = await wrk({ name: kind, port: httpPort, pids: () => pids }, { connections: 64, duration: seconds });
      rps = r.rps.toFixed(0);
      cpu = (r.user + r.sys).toFixed(1);
    }
    await Bun.sleep(100);
    const counts = [];
    for (const p of peers) {
      p.send({ t: "count" });
      counts.push(await p.next("count"));
    }
    for (const s of sockets) s.end();
    for (const p of peers) {
      p.send({ t: "stop" });
      await p.next("stopped");
      await p.stop();
    }
    rows.push(
      `| ${kind === "process" ? "child processes (Bun.spawn ipc)" : "Worker threads (postMessage)"} | ${starts.map((s) => s.toFixed(0)).join(", ")} ms | ${rtt.toFixed(1)} us | ${(rttTable).toFixed(0)} us | ${counts.map((c) => c.accepted).join(" / ")} | ${counts.map((c) => c.served).join(" / ")} | ${rps} | ${cpu} |`,
    );
  }
  console.log(`\n| way | start-up (each) | round trip, small message | round trip, 20-backend table | Bun.listen reusePort: 200 connections split | Bun.serve reusePort: wrk requests split | Bun.serve hello, 2 listeners, wrk -c64 req/s | their own CPU µs/request (user+system) |`);
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const r of rows) console.log(r);
}
