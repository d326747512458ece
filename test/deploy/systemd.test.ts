/**
 * deploy/systemd/switchyard.service: systemd's own checker accepts it (with ExecStart pointed
 * at an executable that exists here), and what it runs agrees with the command line: the
 * commands and flags exist, the stop timeout outlasts the default drain, a bad config (exit 2)
 * is not restarted in a loop, reload sends SIGHUP, and an upgrade's new process can take over
 * as the main process (Type=notify).
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { validateConfig } from "../../src/config/load.ts";
import { requirePrograms } from "../helpers/system.ts";

const UNIT = join(import.meta.dir, "../../deploy/systemd/switchyard.service");
const CLI = join(import.meta.dir, "../../src/cli.ts");
const text = readFileSync(UNIT, "utf8");

/** The unit's [Service] settings; a key given twice keeps its last value, as systemd does. */
function section(name: string): Record<string, string> {
  const out: Record<string, string> = {};
  let current = "";
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const header = trimmed.match(/^\[(.+)\]$/);
    if (header) current = header[1]!;
    else if (current === name) {
      const eq = trimmed.indexOf("=");
      out[trimmed.slice(0, eq)] = trimmed.slice(eq + 1);
    }
  }
  return out;
}
const service = section("Service");
const BIN = "/usr/local/bin/switchyard";

const analyze = requirePrograms("the systemd unit check", { "systemd-analyze": "systemd" });

describe("deploy/systemd/switchyard.service", () => {
  test.skipIf(analyze.skip)("systemd-analyze verify accepts it", () => {
    analyze.assertPresent();
    const dir = mkdtempSync(join(tmpdir(), "switchyard-unit-"));
    try {
      // verify checks that the commands exist and are executable: Bun stands in for the binary.
      const unit = join(dir, "switchyard.service");
      writeFileSync(unit, text.replaceAll(BIN, process.execPath));
      const r = Bun.spawnSync([analyze.path("systemd-analyze"), "verify", unit], { stdout: "pipe", stderr: "pipe" });
      expect(r.stderr.toString()).toBe("");
      expect(r.exitCode).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("it runs check, then serve, with one config file; the flags exist", async () => {
    const start = service.ExecStart!.split(/\s+/);
    const pre = service.ExecStartPre!.split(/\s+/);
    expect(start[0]).toBe(BIN);
    expect(start.slice(1, 3)).toEqual(["serve", "--config"]);
    expect(pre).toEqual([BIN, "check", "--config", start[3]!]);
    // The same arguments, given to the real CLI with --help: accepted (an unknown flag exits 2).
    for (const args of [start.slice(1), pre.slice(1)]) {
      const p = Bun.spawn([process.execPath, CLI, ...args, "--help"], { stdout: "pipe", stderr: "pipe" });
      expect(await p.exited).toBe(0);
    }
  });

  test("stop outlasts the default drain; a bad config is not restarted; reload is SIGHUP", () => {
    const defaults = validateConfig({ backends: [{ url: "http://127.0.0.1:5001" }] });
    expect(service.KillSignal).toBe("SIGTERM");
    expect(Number(service.TimeoutStopSec) * 1000).toBeGreaterThan(defaults.timeouts.shutdownGrace);
    // Exit code 2 is the CLI's "bad command line or config" (docs/operations.md, "Command line").
    expect(service.RestartPreventExitStatus).toBe("2");
    expect(service.ExecReload).toBe("/bin/kill -HUP $MAINPID");
    expect(service.Restart).toBe("on-failure");
  });

  test("an upgrade's new process can become the main process: Type=notify, NotifyAccess=all", () => {
    // The balancer sends READY=1 once bound, and its successor MAINPID=<pid> with READY=1
    // (src/control/sd-notify.ts, test/control/sd-notify.test.ts); the successor is not the
    // main process when it says so, hence NotifyAccess=all rather than main.
    expect(service.Type).toBe("notify");
    expect(service.NotifyAccess).toBe("all");
    // The old process drains after the handover: stopping the service reaches every process of
    // its cgroup (KillMode=control-group, the default), the draining one included.
    expect(service.KillMode ?? "control-group").toBe("control-group");
    // The documented trigger names the main process only: a worker or a draining old process
    // must not start an upgrade of its own.
    expect(text).toContain("systemctl kill --kill-whom=main --signal=SIGUSR2 switchyard");
  });
});
