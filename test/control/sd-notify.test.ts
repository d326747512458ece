/**
 * The systemd side of an upgrade (deploy/systemd/switchyard.service is Type=notify): what
 * `serve` sends to $NOTIFY_SOCKET, read by a receiver that plays systemd's part (Python's
 * AF_UNIX datagram socket, with SO_PASSCRED so that each message comes with its sender's PID,
 * as systemd reads it). At start: READY=1 from the serving process. On SIGUSR2 (the documented
 * `systemctl kill --kill-whom=main --signal=SIGUSR2`): the new process sends MAINPID=<itself>
 * and READY=1 before the old one exits, and the pid file follows it.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sdNotify } from "../../src/control/sd-notify.ts";
import { requirePrograms } from "../helpers/system.ts";
import { serveProcess } from "../helpers/balancer.ts";
import { processAlive, waitFor } from "../helpers/wait.ts";

const programs = requirePrograms("the sd_notify tests", { python3: "python3" });

/** Prints one JSON line per datagram: {"pid": sender, "msg": text}. */
const RECEIVER = `
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind("\\0" + sys.argv[1][1:] if sys.argv[1].startswith("@") else sys.argv[1])
print(json.dumps({"bound": True}), flush=True)
while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", data[:12])[0]
    print(json.dumps({"pid": pid, "msg": msg.decode()}), flush=True)
`;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Notice {
  pid: number;
  msg: string;
}

async function receiver(path: string): Promise<() => Notice[]> {
  const proc = Bun.spawn([programs.path("python3"), "-c", RECEIVER, path], { stdout: "pipe", stderr: "inherit" });
  cleanups.push(async () => {
    proc.kill();
    await proc.exited;
  });
  let out = "";
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) out += decoder.decode(chunk);
  })();
  await waitFor(() => out.includes('"bound"'), "the notify socket to be bound");
  return () => out.split("\n").filter((l) => l.includes('"msg"')).map((l) => JSON.parse(l) as Notice);
}


test.skipIf(programs.skip)("sdNotify sends one datagram to a path or an abstract name; nothing without NOTIFY_SOCKET", async () => {
  programs.assertPresent();
  const path = join(mkdtempSync(join(tmpdir(), "switchyard-notify-")), "notify.sock");
  const notices = await receiver(path);
  expect(sdNotify("READY=1", { NOTIFY_SOCKET: path })).toBe(true);
  await waitFor(() => notices().length === 1, "the notice");
  expect(notices()[0]).toEqual({ pid: process.pid, msg: "READY=1" });
  const abstract = `@switchyard-notify-test-${process.pid}`;
  const abstractNotices = await receiver(abstract);
  expect(sdNotify("MAINPID=1\nREADY=1", { NOTIFY_SOCKET: abstract })).toBe(true);
  await waitFor(() => abstractNotices().length === 1, "the notice on the abstract socket");
  expect(abstractNotices()[0]).toEqual({ pid: process.pid, msg: "MAINPID=1\nREADY=1" });
  expect(sdNotify("READY=1", {})).toBe(false);
  expect(() => sdNotify("READY=1", { NOTIFY_SOCKET: "relative.sock" })).toThrow("NOTIFY_SOCKET");
});

test.skipIf(programs.skip)("serve says READY=1 once bound; on SIGUSR2 its successor says MAINPID=<itself> READY=1 before the old one exits", async () => {
  programs.assertPresent();
  const dir = mkdtempSync(join(tmpdir(), "switchyard-notify-"));
  const notify = join(dir, "notify.sock");
  const notices = await receiver(notify);
  const backend = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
  cleanups.push(() => backend.stop(true));
  const pidFile = join(dir, "switchyard.pid");
  // The successor writes to the same pipe: serveProcess reads it as it comes.
  const serving = serveProcess({
    config: { backends: [{ url: `http://127.0.0.1:${backend.port}` }] },
    args: ["--pid-file", pidFile],
    env: { NOTIFY_SOCKET: notify },
    stderr: "inherit",
  });
  const old = serving.proc;
  const pids = [old.pid];
  cleanups.push(async () => {
    // A successor that never sent its notice is still named by the pid file, once it wrote it.
    const named = (() => {
      try {
        return Number(readFileSync(pidFile, "utf8"));
      } catch {
        return 0;
      }
    })();
    if (named > 0 && !pids.includes(named)) pids.push(named);
    for (const pid of pids) if (processAlive(pid)) process.kill(pid, "SIGKILL");
    await waitFor(() => pids.every((p) => !processAlive(p)), "the balancer processes to end");
  });
  await waitFor(() => notices().length === 1, "READY=1 from the balancer", 15_000);
  expect(notices()[0]).toEqual({ pid: old.pid, msg: "READY=1" });
  expect(Number(readFileSync(pidFile, "utf8"))).toBe(old.pid);

  old.kill("SIGUSR2");
  await waitFor(() => notices().length === 2, "the successor's notice", 15_000);
  const successor = notices()[1]!;
  pids.push(successor.pid);
  expect(successor.pid).not.toBe(old.pid);
  expect(successor.msg).toBe(`MAINPID=${successor.pid}\nREADY=1`);
  // Nothing in flight: the old process drains at once and exits 0; the new one serves.
  expect(await old.exited).toBe(0);
  expect(Number(readFileSync(pidFile, "utf8"))).toBe(successor.pid);
  expect(processAlive(successor.pid)).toBe(true);
  const port = /proxy listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(serving.output())?.[1];
  expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(200);
  process.kill(successor.pid, "SIGTERM");
  await waitFor(() => !processAlive(successor.pid), "the successor to stop on SIGTERM", 15_000);
  // It stopped cleanly: the pid file that named it is gone.
  expect(() => readFileSync(pidFile)).toThrow();
}, 40_000);
