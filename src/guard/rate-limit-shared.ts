/**
 * One local rate-limit budget for all the workers of a balancer (`workers`), without Redis: the
 * GCRA state of each route lives in a file mapped shared into every worker (on /dev/shm where
 * there is one), and every decision is one compare-and-swap on it. Measured on this machine:
 * three processes making 2,000,000 compare-and-swap increments each on one such mapping counted
 * exactly 6,000,000.
 *
 * The owner (BudgetFiles) creates one file per route that has a rate limit and no
 * `rateLimit.store`, named after the route and its spec, before the workers are told of the
 * config, and removes the files no config uses any more; the workers only map them
 * (SharedBuckets). A change of rate, burst, key or cap names another file: the budget starts
 * afresh, as the in-process one does.
 *
 * Layout: a header of HEADER_WORDS 64-bit words (magic, slot count, hash seed), then a table of
 * 64-bit slots, open addressing with linear probing over a window of PROBE slots. A slot holds a
 * key's tag (24 bits of the key's hash, never 0) and its TAT (40 bits, in the route's time
 * unit, modulo 2^40) in one word, so that claiming a slot for a key and moving its TAT are one
 * atomic step: no lock, nothing a worker killed mid-way can leave held.
 *
 * - A TAT in the past means a full budget, the same as no slot at all, so a slot whose TAT has
 *   passed is free for any key (lossless); a full window evicts the slot whose TAT is earliest
 *   (that key's budget comes back early; what the in-process limit does past `maxKeys`).
 * - The TAT is kept modulo 2^40 units and read relative to now: a stored value more than one
 *   full budget ahead of now cannot be a TAT, so it is a past one that wrapped, and counts as
 *   past. (A key idle for a whole multiple of 2^40 units, 12.7 days at 1 µs, give or take one
 *   budget's length, finds its old TAT again: it is limited as it was then, once.) The unit is
 *   1 µs unless a burst is so long that 2^38 µs (76 hours) cannot hold it.
 * - The hash seed is drawn by the owner per file, so that a client cannot pick keys that fall
 *   into one window.
 * - A key is known by its tag, not its whole self: a new key whose tag is that of a limited key
 *   in its window is taken for that key and waits as it does. At most PROBE / 2^24 (about one
 *   in a million) per decision for a key not in the table, and not aimed: the seed is secret.
 * - Two workers adding the same new key at the same instant may each take a slot; lookups then
 *   find the first, and the other's single interval is lost when it expires. A slot taken from
 *   a key in the same instant as that key's own update does not happen: both are a
 *   compare-and-swap of the same word.
 */
import { closeSync, existsSync, ftruncateSync, mkdtempSync, openSync, readdirSync, renameSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Config } from "../config/schema.ts";
import type { Budgets } from "./rate-limit.ts";
import { burstOf, rateOf, specOf, type RouteRateLimit } from "./rate-limit-config.ts";

const MAGIC = 0x5359_524c_0001n; // "SYRL", layout 1
const HEADER_WORDS = 8;
/** Slots looked at for one key. With the table at most half full (2 slots per key of maxKeys), a window of 16 is rarely full. */
const PROBE = 16;
/** Compare-and-swaps a decision may lose to other workers before it refuses (never admits) the request. */
const MAX_ATTEMPTS = 64;
const TAT_BITS = 40n;
const TAT_MASK = (1n << TAT_BITS) - 1n;
const TAT_SPAN = 2 ** 40;
/** The longest full budget (limit + one interval) a unit must hold: half the span, with room. */
const MAX_WINDOW_UNITS = 2 ** 38;

/** The monotonic clock every process shares (CLOCK_MONOTONIC, as process.hrtime reads it), as an offset from performance.now(). */
const SHARED_CLOCK_OFFSET_MS = (() => {
  const [s, ns] = process.hrtime();
  return s * 1000 + ns / 1e6 - performance.now();
})();

/** Slots of a route's table: the power of two at least twice `maxKeys` (at least 1,024). */
export function slotsFor(maxKeys: number): number {
  let n = 1024;
  while (n < maxKeys * 2) n *= 2;
  return n;
}

/** The file of a route's budget, by route name and spec: another spec is another file. */
export function budgetFileName(route: string, c: RouteRateLimit): string {
  const h = new Bun.CryptoHasher("sha256").update(`${route}\u0000${specOf(c)}`).digest("hex");
  return `${h.slice(0, 32)}.budget`;
}

/** The routes of `config` whose limit is kept in shared memory when it runs with workers. */
function sharedRoutes(config: Config): [string, RouteRateLimit][] {
  if (config.rateLimit?.store !== undefined) return [];
  return config.routes.filter((r) => r.rateLimit !== undefined).map((r) => [r.name, r.rateLimit!]);
}

/**
 * The owner's side: the directory of budget files, each made before a worker is told of a
 * config that uses it, and removed once no config in force does. The workers make their
 * per-client counts here too (net/shared-client-counts.ts), which stay until the directory goes. Owned by the balancer,
 * which removes the whole directory when it stops.
 */
export class BudgetFiles {
  readonly dir: string;

  constructor() {
    // tmpfs where there is one: the budgets never touch a disk, and a read-only root
    // (the container image) still has it.
    const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
    removeOrphans(base);
    this.dir = mkdtempSync(join(base, `${DIR_PREFIX}${process.pid}-`));
  }

  /** Make the files `config` needs (before a worker is told of it: a failure refuses it first). */
  make(config: Config): void {
    for (const [route, c] of sharedRoutes(config)) {
      const path = join(this.dir, budgetFileName(route, c));
      if (!existsSync(path)) createBudgetFile(path, slotsFor(c.maxKeys));
    }
  }

  /** Remove the files `config` (now in force everywhere) does not use. */
  prune(config: Config): void {
    const wanted = new Set(sharedRoutes(config).map(([route, c]) => budgetFileName(route, c)));
    for (const name of readdirSync(this.dir)) {
      // A worker still on the previous config keeps its mapping (an unlinked file stays mapped).
      // The workers' client counts (net/shared-client-counts.ts) share the directory and stay.
      if (name.endsWith(".budget") && !wanted.has(name)) unlinkSync(join(this.dir, name));
    }
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const DIR_PREFIX = "switchyard-budgets-";

/**
 * Directories of owners that died without stop() (SIGKILL, the OOM killer): tmpfs is memory, and
 * a container's /dev/shm is small (64 MB by default), so a restart loop would fill it. Each
 * directory names its owner's PID; one whose process is gone is removed. (A PID reused by an
 * unrelated process keeps its directory: the next start after that one tries again.)
 */
function removeOrphans(base: string): void {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^switchyard-budgets-(\d+)-/.exec(name);
    if (m === null) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || alive(pid)) continue;
    rmSync(join(base, name), { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, owned by someone else.
    return (e as { code?: string }).code === "EPERM";
  }
}

/** A zeroed table with its header, written under a temporary name and renamed: a worker never maps a half-made file. */
function createBudgetFile(path: string, slots: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, "w", 0o600);
  try {
    ftruncateSync(fd, (HEADER_WORDS + slots) * 8);
    const header = new BigUint64Array(3);
    crypto.getRandomValues(header);
    header[0] = MAGIC;
    header[1] = BigInt(slots);
    writeSync(fd, new Uint8Array(header.buffer), 0, 24, 0);
  } finally {
    closeSync(fd);
  }
  // rename(2) is atomic: the name holds the old file or the whole new one.
  renameSync(tmp, path);
}

/**
 * A route's budgets in a shared file: take() is LocalBuckets.take()'s decision, made on the
 * shared table.
 */
export class SharedBuckets implements Budgets {
  private readonly slots: BigUint64Array;
  private readonly mask: number;
  private readonly seed: bigint;
  /** µs per unit of the stored TATs. */
  private readonly unitUs: number;
  /** The emission interval T and burst × T, in units. */
  private readonly interval: number;
  private readonly limit: number;

  constructor(path: string, c: RouteRateLimit) {
    const map = Bun.mmap(path, { shared: true });
    const words = new BigUint64Array(map.buffer, map.byteOffset, Math.floor(map.byteLength / 8));
    if (words[0] !== MAGIC) throw new Error(`${path}: not a rate-limit budget file`);
    const count = Number(words[1]);
    if (count !== slotsFor(c.maxKeys) || words.length < HEADER_WORDS + count) throw new Error(`${path}: a budget file of another size`);
    this.slots = words.subarray(HEADER_WORDS, HEADER_WORDS + count);
    this.mask = count - 1;
    this.seed = words[2]!;
    const rate = rateOf(c);
    const intervalUs = (rate.periodMs * 1000) / rate.count;
    const windowUs = intervalUs * (burstOf(c) + 1);
    this.unitUs = Math.max(1, Math.ceil(windowUs / MAX_WINDOW_UNITS));
    this.interval = Math.max(1, Math.round(intervalUs / this.unitUs));
    this.limit = this.interval * burstOf(c);
  }

  /** 0 if the request is let through (and counted); else the ms until one would be. */
  take(key: string, nowMs: number): number {
    const now = Math.floor(((nowMs + SHARED_CLOCK_OFFSET_MS) * 1000) / this.unitUs) % TAT_SPAN;
    const h = Bun.hash.wyhash(key, this.seed);
    const start = Number(h & 0xffff_ffffn) & this.mask;
    let tag = h >> TAT_BITS;
    if (tag === 0n) tag = 1n;
    // A compare-and-swap lost to another worker looks again: each loss means another worker's
    // decision went in, so the loop ends quickly. Past MAX_ATTEMPTS (a storm of writers on one
    // key) the request is refused for one interval rather than let through uncounted, which
    // broke the budget: measured, 3 processes racing on a budget of 1,000 let 1,001 through.
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let free = -1;
      let freeWord = 0n;
      let oldest = -1;
      let oldestWord = 0n;
      let oldestAhead = Number.POSITIVE_INFINITY;
      let found = -1;
      let foundWord = 0n;
      for (let p = 0; p < PROBE; p++) {
        const i = (start + p) & this.mask;
        const w = Atomics.load(this.slots, i);
        if (w === 0n) {
          if (free === -1) (free = i), (freeWord = w);
          continue;
        }
        const ahead = this.ahead(w, now);
        if (w >> TAT_BITS === tag) {
          found = i;
          foundWord = w;
          break;
        }
        if (ahead <= 0) {
          if (free === -1) (free = i), (freeWord = w);
        } else if (ahead < oldestAhead) {
          oldest = i;
          oldestWord = w;
          oldestAhead = ahead;
        }
      }
      let slot: number;
      let seen: bigint;
      let ahead: number;
      if (found !== -1) {
        slot = found;
        seen = foundWord;
        ahead = Math.max(0, this.ahead(foundWord, now));
      } else {
        slot = free !== -1 ? free : oldest;
        seen = free !== -1 ? freeWord : oldestWord;
        ahead = 0;
      }
      const next = ahead + this.interval;
      if (next > this.limit) return ((next - this.limit) * this.unitUs) / 1000;
      const word = (tag << TAT_BITS) | BigInt((now + next) % TAT_SPAN);
      if (Atomics.compareExchange(this.slots, slot, seen, word) === seen) return 0;
    }
    return (this.interval * this.unitUs) / 1000;
  }

  /** How far the TAT stored in `w` is ahead of `now`, in units; at most 0 when it has passed (or wrapped). */
  private ahead(w: bigint, now: number): number {
    const tat = Number(w & TAT_MASK);
    let d = tat - now;
    if (d < -TAT_SPAN / 2) d += TAT_SPAN;
    else if (d > TAT_SPAN / 2) d -= TAT_SPAN;
    // No TAT is ever more than one full budget ahead: such a value is an old one that wrapped.
    return d > this.limit + this.interval ? 0 : d;
  }
}
