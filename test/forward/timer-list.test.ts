/**
 * The forwarder's one-timer list of response-head timers (src/forward/timer-list.ts): entries
 * fire in deadline order whatever order they were armed in, a removed entry never fires, an
 * entry armed while others fire is kept, and the list ends empty.
 */
import { expect, test } from "bun:test";
import { TimerList, type TimerEntry } from "../../src/forward/timer-list.ts";

class Entry implements TimerEntry {
  timerAt = 0;
  timerPrev: TimerEntry | undefined;
  timerNext: TimerEntry | undefined;
  timerListed = false;
  firedAt = -1;
  constructor(
    readonly name: string,
    private readonly log: string[],
    private readonly then?: () => void,
  ) {}
  timerFired(): void {
    this.firedAt = performance.now();
    this.log.push(this.name);
    this.then?.();
  }
}

/** Until `cond` holds, checked every few ms, for at most `ms`. */
async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond() && performance.now() < end) await Bun.sleep(2);
}

test("entries fire in deadline order, not in the order they were armed, and none early", async () => {
  const list = new TimerList();
  const log: string[] = [];
  const now = performance.now();
  const delays: [string, number][] = [["c", 60], ["a", 20], ["d", 80], ["b", 40], ["a2", 20]];
  const entries = delays.map(([n]) => new Entry(n, log));
  delays.forEach(([, ms], i) => list.add(entries[i]!, now, ms));
  expect(list.size).toBe(5);
  await until(() => log.length === 5);
  expect(log).toEqual(["a", "a2", "b", "c", "d"]);
  delays.forEach(([, ms], i) => expect(entries[i]!.firedAt).toBeGreaterThanOrEqual(now + ms));
  expect(list.size).toBe(0);
});

test("a removed entry never fires; removing twice or re-adding is safe", async () => {
  const list = new TimerList();
  const log: string[] = [];
  const now = performance.now();
  const [a, b, c] = ["a", "b", "c"].map((n) => new Entry(n, log));
  list.add(a!, now, 10);
  list.add(b!, now, 20);
  list.add(c!, now, 30);
  list.remove(a!);
  list.remove(a!);
  // Re-armed later than c: moved, not listed twice.
  list.add(b!, now, 40);
  expect(list.size).toBe(2);
  await until(() => log.length === 2);
  await Bun.sleep(30);
  expect(log).toEqual(["c", "b"]);
});

test("an entry armed from a firing one is kept, even when it is due before the rest", async () => {
  const list = new TimerList();
  const log: string[] = [];
  const late = new Entry("late", log);
  const retry = new Entry("retry", log);
  const first = new Entry("first", log, () => list.add(retry, performance.now(), 5));
  const now = performance.now();
  list.add(first, now, 10);
  list.add(late, now, 200);
  await until(() => log.length === 3);
  expect(log).toEqual(["first", "retry", "late"]);
  expect(retry.firedAt).toBeLessThan(late.firedAt);
});

test("an entry armed from a firing one, due after the rest, does not delay them", async () => {
  const list = new TimerList();
  const log: string[] = [];
  const later = new Entry("later", log);
  const mid = new Entry("mid", log);
  const first = new Entry("first", log, () => list.add(later, performance.now(), 400));
  const now = performance.now();
  list.add(first, now, 10);
  list.add(mid, now, 40);
  await until(() => log.length === 2);
  expect(log).toEqual(["first", "mid"]);
  expect(mid.firedAt).toBeLessThan(now + 300);
  list.remove(later);
});

test("the earliest entry removed (the usual case) leaves the next to fire on time", async () => {
  const list = new TimerList();
  const log: string[] = [];
  const now = performance.now();
  const gone = new Entry("gone", log);
  const next = new Entry("next", log);
  list.add(gone, now, 10);
  list.add(next, now, 30);
  list.remove(gone);
  await until(() => log.length === 1);
  expect(log).toEqual(["next"]);
  expect(next.firedAt).toBeGreaterThanOrEqual(now + 30);
  expect(next.firedAt).toBeLessThan(now + 1000);
});
