/**
 * src/acme/dns01.ts: the DNS-01 hook as lego's exec provider is called, its failures said with
 * what it printed, and its time bounded even when it leaves a child holding its output. The
 * whole challenge against pebble is in pebble.test.ts ("DNS-01").
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { challengeRecordName, runDns01Hook } from "../../src/acme/dns01.ts";

const dir = mkdtempSync(join(tmpdir(), "switchyard-dns01-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sh = (script: string, timeoutMs = 5000) => ({ command: ["/bin/sh", "-c", script], timeoutMs, propagationDelayMs: 0 });

test("the record's name: _acme-challenge under the name, a wildcard's under its base name, with the final dot", () => {
  expect(challengeRecordName("Example.COM")).toBe("_acme-challenge.example.com.");
  expect(challengeRecordName("*.example.com")).toBe("_acme-challenge.example.com.");
  expect(challengeRecordName("example.com.")).toBe("_acme-challenge.example.com.");
});

test("called as COMMAND... ACTION FQDN VALUE, without a shell between", async () => {
  const file = join(dir, "args");
  // sh -c SCRIPT then the arguments: $0 is the action.
  await runDns01Hook(sh(`printf '%s|%s|%s' "$0" "$1" "$2" > '${file}'`), "present", "_acme-challenge.a.test.", "v a l;$(id)");
  expect(readFileSync(file, "utf8")).toBe("present|_acme-challenge.a.test.|v a l;$(id)");
});

test("a failure says its exit code and the end of what it printed", async () => {
  const e = await runDns01Hook(sh("printf '%05000d' 0 >&2; echo ' no API token' >&2; exit 7"), "present", "_acme-challenge.a.test.", "v").catch((x: Error) => x);
  expect(e).toBeInstanceOf(Error);
  const m = (e as Error).message;
  expect(m).toStartWith("dns01.command present _acme-challenge.a.test. exited with 7: ");
  expect(m).toEndWith("0 no API token");
  // The last 2 KiB, not all 5,000 bytes.
  expect(m.length).toBeLessThan(2200);
  const missing = await runDns01Hook({ command: [join(dir, "no-such-hook")], timeoutMs: 1000, propagationDelayMs: 0 }, "present", "f.", "v").catch((x: Error) => x);
  expect((missing as Error).message).toContain("cannot be run");
});

test("one that hangs is killed at its timeout; one that exits 0 and leaves a child holding its output is done", async () => {
  const started = performance.now();
  const hung = await runDns01Hook(sh("sleep 30", 300), "present", "_acme-challenge.a.test.", "v").catch((x: Error) => x);
  expect((hung as Error).message).toBe("dns01.command present _acme-challenge.a.test. did not finish within 0.3s");
  expect(performance.now() - started).toBeLessThan(3000);
  const t = performance.now();
  // The child (a sleep of 4 s, ended by itself) holds the pipes; the hook is done when it exits.
  await runDns01Hook(sh("sleep 4 & exit 0", 5000), "cleanup", "_acme-challenge.a.test.", "v");
  expect(performance.now() - t).toBeLessThan(2000);
});
