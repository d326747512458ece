/**
 * src/net/shared-client-counts.ts: per-client counts every worker sees. Here two or three
 * "workers" are objects mapping one file in this process, as the real workers each map it; the
 * real thing, with worker processes and the kernel spreading connections, is in
 * client-counts.test.ts and guard/in-flight.test.ts.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SharedClientCounts, SLOTS, countsFileName } from "../../src/net/shared-client-counts.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function space(): string {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-counts-"));
  dirs.push(dir);
  return dir;
}

test("a bound holds over every worker: what one admits, the others count", () => {
  const dir = space();
  const [a, b, c] = [0, 1, 2].map((index) => new SharedClientCounts({ dir, index, count: 3 }, "connections 127.0.0.1:8000", 4)) as [SharedClientCounts, SharedClientCounts, SharedClientCounts];
  expect(a.admit("10.0.0.1")).toBe(true);
  expect(a.admit("10.0.0.1")).toBe(true);
  expect(b.admit("10.0.0.1")).toBe(true);
  expect(c.admit("10.0.0.1")).toBe(true);
  // Four held over three workers: a fifth is refused wherever it lands, and counts nowhere.
  for (const w of [a, b, c]) expect(w.admit("10.0.0.1")).toBe(false);
  expect([a.of("10.0.0.1"), b.of("10.0.0.1"), c.of("10.0.0.1")]).toEqual([2, 1, 1]);
  // Another client has its own count.
  expect(b.admit("10.0.0.2")).toBe(true);
  expect(b.clients).toBe(2);
  // One given back anywhere makes room anywhere.
  a.release("10.0.0.1");
  expect(c.admit("10.0.0.1")).toBe(true);
  expect(b.admit("10.0.0.1")).toBe(false);
  // All given back: nothing left in any region.
  a.release("10.0.0.1");
  b.release("10.0.0.1");
  c.release("10.0.0.1");
  c.release("10.0.0.1");
  b.release("10.0.0.2");
  for (const w of [a, b, c]) expect(w.clients).toBe(0);
  for (let i = 0; i < 4; i++) expect(a.admit("10.0.0.1")).toBe(true);
  expect(b.admit("10.0.0.1")).toBe(false);
  // One file for the thing counted, none left half-made.
  expect(readdirSync(dir)).toEqual([countsFileName("connections 127.0.0.1:8000", 3)]);
});

test("no bound still counts, so that a bound set later finds what is open; a new bound holds at once", () => {
  const dir = space();
  const a = new SharedClientCounts({ dir, index: 0, count: 2 }, "in-flight api", undefined);
  const b = new SharedClientCounts({ dir, index: 1, count: 2 }, "in-flight api", undefined);
  for (let i = 0; i < 5; i++) expect(a.admit("c")).toBe(true);
  b.setMax(3);
  expect(b.admit("c")).toBe(false);
  a.setMax(3);
  expect(a.admit("c")).toBe(false);
  for (let i = 0; i < 3; i++) a.release("c");
  expect(b.admit("c")).toBe(true);
  expect(b.admit("c")).toBe(false);
});

test("other things counted and other worker counts are other files", () => {
  const dir = space();
  const a = new SharedClientCounts({ dir, index: 0, count: 2 }, "in-flight api", 1);
  const b = new SharedClientCounts({ dir, index: 1, count: 2 }, "in-flight web", 1);
  expect(a.admit("c")).toBe(true);
  expect(b.admit("c")).toBe(true);
  expect(readdirSync(dir).sort()).toEqual([countsFileName("in-flight api", 2), countsFileName("in-flight web", 2)].sort());
  expect(countsFileName("in-flight api", 3)).not.toBe(countsFileName("in-flight api", 2));
});

test("a worker started in a dead one's place drops what it held; the others keep theirs", () => {
  const dir = space();
  const name = "connections 127.0.0.1:8443";
  const dead = new SharedClientCounts({ dir, index: 0, count: 2 }, name, 3);
  const other = new SharedClientCounts({ dir, index: 1, count: 2 }, name, 3);
  expect(dead.admit("c")).toBe(true);
  expect(dead.admit("c")).toBe(true);
  expect(other.admit("c")).toBe(true);
  expect(other.admit("c")).toBe(false);
  // The successor maps the same file: the dead worker's two connections are gone with it.
  const successor = new SharedClientCounts({ dir, index: 0, count: 2 }, name, 3);
  expect(other.admit("c")).toBe(true);
  expect(successor.admit("c")).toBe(true);
  expect(other.admit("c")).toBe(false);
});

test("a client whose window is full in its worker's region is counted there only; a freed slot takes the next", () => {
  const dir = space();
  const name = "connections 127.0.0.1:9000";
  const a = new SharedClientCounts({ dir, index: 0, count: 2 }, name, 1);
  const b = new SharedClientCounts({ dir, index: 1, count: 2 }, name, 1);
  // The seed is the file's (words 3 and 4 of the header): find 33 clients with one home slot.
  const words = new Int32Array(Bun.mmap(join(dir, countsFileName(name, 2))).buffer.slice(0, 64));
  const seed = (BigInt(words[3]! >>> 0) << 32n) | BigInt(words[4]! >>> 0);
  const home = (client: string) => Number(Bun.hash.wyhash(client, seed) & 0xffff_ffffn) & (SLOTS - 1);
  const target = home("client-0");
  const crowd: string[] = [];
  for (let i = 0; crowd.length < 34; i++) if (home(`client-${i}`) === target) crowd.push(`client-${i}`);
  for (const c of crowd.slice(0, 33)) expect(a.admit(c)).toBe(true);
  const last = crowd[32]!;
  // Worker a still bounds it (its own count is exact); worker b cannot see it.
  expect(a.admit(last)).toBe(false);
  expect(b.admit(last)).toBe(true);
  // The first 32 are seen by b.
  expect(b.admit(crowd[0]!)).toBe(false);
  // Given back, a slot is free for the next, which b sees again.
  a.release(crowd[0]!);
  expect(a.admit(crowd[33]!)).toBe(true);
  expect(b.admit(crowd[33]!)).toBe(false);
});
