import type { Backend } from "../pool/backend.ts";
import type { SelectionPolicy } from "../pool/selection.ts";
import { WeightedRoundRobin } from "./weighted-round-robin.ts";

/**
 * Points on the ring per unit of weight. The share of keys a backend owns varies by about
 * 1/sqrt(points) of its ideal share: 256 points keep that near 6%, so when one of N backends
 * leaves, close to 1/N of the keys move, well inside 1/N + 5%.
 */
const POINTS_PER_WEIGHT = 256;
/** Bound on the ring's size (2 MB with its owner array) whatever the weights. */
const MAX_POINTS = 1 << 18;

/** A 32-bit hash that is the same in every process and release: replicas agree on the ring. */
export function hash32(s: string): number {
  return Bun.hash.xxHash32(s);
}

/**
 * A hash ring with virtual nodes (Karger et al.; ketama, as nginx's `hash ... consistent`):
 * every member owns POINTS_PER_WEIGHT × weight points, at the hashes of "name#i"; a key belongs
 * to the first point at or after its own hash that is owned by a candidate.
 *
 * Why a ring and not Maglev: the ring is built over the pool's members, available or not, and
 * rebuilt only when the members change (added, removed, or reweighted by a reload). Availability is handled by walking on past
 * points whose owner is not a candidate, which gives exactly the assignment of a ring rebuilt
 * over the available backends: when a backend leaves only its own keys move (to the backends
 * after its points), and when it returns exactly those keys come back. The same walk serves a
 * retry (the excluded backend is skipped, the next one on the ring is deterministic) and a
 * full backend, without ever rebuilding per request. Maglev would need a table rebuild on
 * every availability change, and moves somewhat more than the minimum when it does; its O(1)
 * lookup matters for thousands of backends, not for the ~10-comparison binary search here.
 *
 * The position of a point depends on the backend's name, not its address: replicas with the
 * same config agree, and moving a backend to a new address keeps its keys.
 *
 * Requests without a key (the header or cookie absent) go by smooth weighted round-robin: they
 * have no affinity to keep, so they are spread evenly, weights respected.
 */
export class ConsistentHash implements SelectionPolicy {
  readonly name = "consistent-hash";
  private readonly fallback = new WeightedRoundRobin();
  private ring = new HashRing([]);
  /** mark[i] === epoch when ring member i is a candidate in the current pick. */
  private mark = new Uint32Array(0);
  private epoch = 0;

  membersChanged(members: readonly Backend[]): void {
    this.ring = new HashRing(members);
    this.mark = new Uint32Array(members.length);
    this.epoch = 0;
  }

  pick(candidates: readonly Backend[], key?: string): Backend {
    if (key === undefined || candidates.length === 1) return this.fallback.pick(candidates);
    const ring = this.ring;
    // Mark the candidates by their member index: the walk below then tests membership with
    // one array read, allocating nothing.
    if (++this.epoch === 0xffffffff) {
      this.mark.fill(0);
      this.epoch = 1;
    }
    const epoch = this.epoch;
    let marked = 0;
    for (const b of candidates) {
      const i = ring.index.get(b);
      if (i !== undefined) {
        this.mark[i] = epoch;
        marked++;
      }
    }
    // Candidates the ring does not know (a pool that never announced its members): no ring.
    if (marked === 0) return this.fallback.pick(candidates);
    return ring.members[ring.owner(hash32(key), this.mark, epoch)]!;
  }
}

export class HashRing {
  /** Point hashes, ascending. */
  private readonly points: Uint32Array;
  /** owners[i]: the member index owning points[i]. */
  private readonly owners: Uint32Array;
  readonly index = new Map<Backend, number>();

  constructor(readonly members: readonly Backend[]) {
    members.forEach((b, i) => this.index.set(b, i));
    let totalWeight = 0;
    for (const b of members) totalWeight += b.weight;
    const scale = Math.min(POINTS_PER_WEIGHT, MAX_POINTS / Math.max(1, totalWeight));
    const counts = members.map((b) => Math.max(1, Math.round(b.weight * scale)));
    const total = counts.reduce((a, c) => a + c, 0);
    // hash × 2^20 + member index fits a double exactly (2^52): one native numeric sort orders
    // the points and carries their owners along. Ties (equal hashes) go to the lower index.
    const packed = new Float64Array(total);
    let k = 0;
    members.forEach((b, i) => {
      for (let p = 0; p < counts[i]!; p++) packed[k++] = hash32(`${b.name}#${p}`) * 0x100000 + i;
    });
    packed.sort();
    this.points = new Uint32Array(total);
    this.owners = new Uint32Array(total);
    for (let j = 0; j < total; j++) {
      const v = packed[j]!;
      this.points[j] = Math.floor(v / 0x100000);
      this.owners[j] = v % 0x100000;
    }
  }

  /** Points on the ring. */
  get size(): number {
    return this.points.length;
  }

  /**
   * The member owning hash `h`: the first point at or after `h` (wrapping) whose owner is
   * marked with `epoch`. The caller guarantees at least one member is marked.
   */
  owner(h: number, mark: Uint32Array, epoch: number): number {
    const points = this.points;
    const n = points.length;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    for (let step = 0; step < n; step++) {
      const o = this.owners[(lo + step) % n]!;
      if (mark[o] === epoch) return o;
    }
    throw new Error("hash ring: no marked member");
  }
}
