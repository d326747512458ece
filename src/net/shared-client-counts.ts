/**
 * Per-client counts that every worker of a balancer (`workers`) sees, so that a bound such as
 * `limits.maxConnectionsPerClient` holds for the balancer, not for each worker: the kernel
 * spreads a client's connections over the workers (SO_REUSEPORT), and counted apart a client
 * could hold the bound once per worker. nginx keeps `limit_conn` in a shared zone for the same
 * reason.
 *
 * One file per counted thing (a listener's connections, a route's requests in flight), in the
 * owner's shared directory (guard/rate-limit-shared.ts BudgetFiles, on /dev/shm where there is
 * one), mapped by every worker. It holds one region per worker, and a worker writes only its
 * own, so no write races another:
 *
 * - A region is an open-addressing table of (tag, count) pairs of 32-bit words: the tag is 32
 *   bits of the client's keyed hash (never 0), found within a window of PROBE slots from the
 *   hash's home slot. A worker's own counts stay exact in its own Map; the region mirrors them
 *   for the others to read.
 * - admit(): publish the new count first, then add up what the other regions hold for the tag;
 *   over the bound, the count is taken back and the client refused. With every load and store
 *   sequentially consistent (Atomics), of two workers admitting the same client at once at
 *   least one sees the other's count: the bound is never exceeded. Both may refuse instead, a
 *   false refusal that only a race within microseconds can cause.
 * - A worker that dies leaves its counts behind: its successor (same index) zeroes the region
 *   when it maps the file, since the connections those counts stood for died with it.
 * - Two clients whose tags are equal and whose windows overlap read each other's counts in other
 *   workers (a refusal early, never a count lost). With a secret seed per file, about PROBE in
 *   2^32 for a pair.
 * - A client whose window in the worker's own region is full (more than PROBE of its neighbours
 *   hold connections at once, in a table sized for SLOTS clients) is counted in its own worker
 *   only: the others do not see it, so it may hold up to its bound there besides what it holds
 *   elsewhere.
 */
import { closeSync, ftruncateSync, linkSync, openSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { LocalClientCounts, type ClientCounts } from "./client-counts.ts";

const MAGIC = 0x5359_4343; // "SYCC"
/** Header: magic, regions, slots per region, seed (two words), then padding to 16 words. */
const HEADER_WORDS = 16;
/** Slots (clients) per worker's region: 16,384 pairs, 128 KiB, touched only where written (tmpfs pages are made on use). */
export const SLOTS = 16_384;
const MASK = SLOTS - 1;
/** Slots looked at for one client. */
const PROBE = 32;

/** Where this process's counts are shared: the directory, its worker index and the number of workers. */
export interface Sharing {
  readonly dir: string;
  readonly index: number;
  readonly count: number;
}

/** The file of the counted thing `name` among `count` workers. */
export function countsFileName(name: string, count: number): string {
  const h = new Bun.CryptoHasher("sha256").update(name).digest("hex");
  return `${h.slice(0, 32)}.${count}.counts`;
}

/**
 * Map the file for `name`, making it if no worker has yet: written whole under a name of our
 * own, then linked to its real name, which fails if another worker's is there first. Either
 * way every worker maps the one file under that name.
 */
function mapFile(sharing: Sharing, name: string): Int32Array {
  const path = join(sharing.dir, countsFileName(name, sharing.count));
  const bytes = (HEADER_WORDS + sharing.count * SLOTS * 2) * 4;
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, "w", 0o600);
  try {
    ftruncateSync(fd, bytes);
    const header = new Int32Array(5);
    crypto.getRandomValues(header);
    header[0] = MAGIC;
    header[1] = sharing.count;
    header[2] = SLOTS;
    writeSync(fd, new Uint8Array(header.buffer), 0, header.byteLength, 0);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (e) {
    if ((e as { code?: string }).code !== "EEXIST") throw e;
  } finally {
    unlinkSync(tmp);
  }
  const map = Bun.mmap(path, { shared: true });
  const words = new Int32Array(map.buffer, map.byteOffset, Math.floor(map.byteLength / 4));
  if (words[0] !== MAGIC || words[1] !== sharing.count || words[2] !== SLOTS || words.length < bytes / 4) {
    throw new Error(`${path}: not a client-counts file for ${sharing.count} workers`);
  }
  return words;
}

interface Held {
  n: number;
  /** Its pair in this worker's region, or -1 when the window was full (counted here only). */
  slot: number;
}

/** ClientCounts of one counted thing, shared by every worker through its file. */
export class SharedClientCounts implements ClientCounts {
  private readonly held = new Map<string, Held>();
  private readonly words: Int32Array;
  private readonly own: number;
  private readonly regions: number;
  private readonly seed: bigint;

  constructor(
    sharing: Sharing,
    name: string,
    private maxPerClient: number | undefined,
  ) {
    this.words = mapFile(sharing, name);
    this.regions = sharing.count;
    this.own = HEADER_WORDS + sharing.index * SLOTS * 2;
    this.seed = (BigInt(this.words[3]! >>> 0) << 32n) | BigInt(this.words[4]! >>> 0);
    // What a predecessor at this index left: its connections are gone with it.
    this.words.fill(0, this.own, this.own + SLOTS * 2);
  }

  get max(): number | undefined {
    return this.maxPerClient;
  }

  setMax(max: number | undefined): void {
    this.maxPerClient = max;
  }

  admit(client: string): boolean {
    const h = Bun.hash.wyhash(client, this.seed);
    const home = Number(h & 0xffff_ffffn) & MASK;
    const tag = Number(h >> 32n) | 0 || 1;
    let held = this.held.get(client);
    if (held === undefined) held = { n: 0, slot: this.freeSlot(home) };
    const n = held.n + 1;
    const w = this.words;
    if (held.slot >= 0) {
      // Count before tag: a reader that finds the tag finds its count.
      Atomics.store(w, held.slot + 1, n);
      if (held.n === 0) Atomics.store(w, held.slot, tag);
    }
    if (this.maxPerClient !== undefined && n + this.others(tag, home) > this.maxPerClient) {
      if (held.slot >= 0) this.publish(held.slot, held.n);
      return false;
    }
    if (held.n === 0) this.held.set(client, held);
    held.n = n;
    return true;
  }

  release(client: string): void {
    const held = this.held.get(client);
    if (held === undefined) return;
    held.n--;
    if (held.n <= 0) this.held.delete(client);
    if (held.slot >= 0) this.publish(held.slot, Math.max(0, held.n));
  }

  of(client: string): number {
    return this.held.get(client)?.n ?? 0;
  }

  get clients(): number {
    return this.held.size;
  }

  /** What every other worker holds for `tag` now (a client may have moved between windows of nobody). */
  private others(tag: number, home: number): number {
    const w = this.words;
    let sum = 0;
    for (let r = 0; r < this.regions; r++) {
      const base = HEADER_WORDS + r * SLOTS * 2;
      if (base === this.own) continue;
      for (let p = 0; p < PROBE; p++) {
        const i = base + ((home + p) & MASK) * 2;
        if (Atomics.load(w, i) === tag) sum += Atomics.load(w, i + 1);
      }
    }
    return sum;
  }

  /** A free pair in this worker's own window from `home`, or -1. */
  private freeSlot(home: number): number {
    const w = this.words;
    for (let p = 0; p < PROBE; p++) {
      const i = this.own + ((home + p) & MASK) * 2;
      if (w[i] === 0) return i;
    }
    return -1;
  }

  /** Set a pair's count; at zero the pair is freed, tag first, so that no reader takes the count of a client gone. */
  private publish(slot: number, n: number): void {
    if (n > 0) Atomics.store(this.words, slot + 1, n);
    else {
      Atomics.store(this.words, slot, 0);
      Atomics.store(this.words, slot + 1, 0);
    }
  }
}

/** This process's sharing, set once by a worker as it starts (workers/worker.ts); none in a balancer without workers. */
let sharing: Sharing | undefined;
/** One object per counted thing in this process: a listener bound anew (a reload) keeps counting what its predecessor admitted. */
const shared = new Map<string, SharedClientCounts>();

export function shareClientCounts(s: Sharing): void {
  sharing = s;
}

/**
 * The counts of `name` (a listener's connections, a route's requests in flight), bounded by
 * `max`: shared by every worker when this process is one, else its own.
 */
export function clientCounts(name: string, max: number | undefined): ClientCounts {
  if (sharing === undefined) return new LocalClientCounts(max);
  let c = shared.get(name);
  if (c === undefined) shared.set(name, (c = new SharedClientCounts(sharing, name, max)));
  else c.setMax(max);
  return c;
}
