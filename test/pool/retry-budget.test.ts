/** The pool's retry budget at run time: a 10 s window of requests and retries, refusals counted. */
import { describe, expect, test } from "bun:test";
import { RetryBudget } from "../../src/pool/retry-budget.ts";
import { LocalPool } from "../../src/pool/pool.ts";
import { createPolicy } from "../../src/policy/policy.ts";

const DEFAULT = { percent: 20, minRetriesPerSecond: 3 } as const;
const T0 = 1_000_000; // ms, on any clock that only moves forward (the proxy uses performance.now())

/** Admit retries at `at` until the budget refuses; how many went. */
function drain(budget: RetryBudget, at: number): number {
  let n = 0;
  while (budget.admit(DEFAULT, at)) n++;
  return n;
}

describe("RetryBudget", () => {
  test("a quiet pool has the floor: 30 retries in a window with no requests, then refusals, each counted", () => {
    const budget = new RetryBudget();
    expect(budget.left(DEFAULT, T0)).toBe(30);
    expect(drain(budget, T0)).toBe(30);
    expect(budget.exhausted).toBe(1);
    expect(budget.admit(DEFAULT, T0 + 500)).toBe(false);
    expect([budget.exhausted, budget.left(DEFAULT, T0 + 500)]).toEqual([2, 0]);
  });

  test("each request earns a fifth of a retry", () => {
    const budget = new RetryBudget();
    drain(budget, T0);
    for (let i = 0; i < 4; i++) budget.request(T0);
    expect(budget.admit(DEFAULT, T0)).toBe(false);
    budget.request(T0);
    expect(budget.admit(DEFAULT, T0)).toBe(true);
    for (let i = 0; i < 100; i++) budget.request(T0 + 200);
    expect(drain(budget, T0 + 200)).toBe(20);
    expect(budget.window(T0 + 200)).toEqual({ requests: 105, retries: 51 });
  });

  test("what is older than 10 s is forgotten, second by second", () => {
    const budget = new RetryBudget();
    for (let i = 0; i < 50; i++) budget.request(T0); // second 1000
    expect(drain(budget, T0)).toBe(40);
    for (let i = 0; i < 50; i++) budget.request(T0 + 5000); // second 1005
    expect(drain(budget, T0 + 5000)).toBe(10);
    // At second 1009 both are in the window; at 1010 the first second has left it.
    expect(budget.window(T0 + 9999)).toEqual({ requests: 100, retries: 50 });
    expect(budget.window(T0 + 10_000)).toEqual({ requests: 50, retries: 10 });
    expect(budget.left(DEFAULT, T0 + 10_000)).toBe(30);
    // Long quiet: everything is forgotten at once.
    expect(budget.window(T0 + 60_000)).toEqual({ requests: 0, retries: 0 });
    expect(budget.left(DEFAULT, T0 + 60_000)).toBe(30);
  });

  test("a clock reading from before the newest second counts in the newest", () => {
    const budget = new RetryBudget();
    budget.request(T0 + 3000);
    budget.request(T0);
    expect(budget.window(T0 + 3000)).toEqual({ requests: 2, retries: 0 });
  });

  test("a long storm: every request wants two retries for a minute; retries stay 20% of requests plus 3 a second", () => {
    const budget = new RetryBudget();
    let requests = 0;
    let retries = 0;
    for (let ms = 0; ms < 60_000; ms += 10) {
      budget.request(T0 + ms);
      requests++;
      for (let k = 0; k < 2; k++) if (budget.admit(DEFAULT, T0 + ms)) retries++;
    }
    expect(requests).toBe(6000);
    // 60 s touch at most 7 windows of 10 s (the clock need not start on a whole second).
    expect(retries).toBeLessThanOrEqual(0.2 * requests + 3 * 70);
    expect(retries).toBeGreaterThanOrEqual(0.2 * requests);
    expect(budget.exhausted).toBe(2 * requests - retries);
  });

  test("false: no budget, every retry admitted, none refused", () => {
    const budget = new RetryBudget();
    for (let i = 0; i < 1000; i++) expect(budget.admit(false, T0)).toBe(true);
    expect(budget.exhausted).toBe(0);
    expect(budget.left(false, T0)).toBe(Infinity);
  });

  test("the workers' refusals (setRemote) add to the figure, never to what this process decides", () => {
    const budget = new RetryBudget();
    budget.setRemote(7);
    expect(budget.exhausted).toBe(7);
    expect(budget.left(DEFAULT, T0)).toBe(30);
    budget.admit({ percent: 0, minRetriesPerSecond: 0 }, T0);
    expect(budget.exhausted).toBe(8);
  });
});

test("a pool owns one retry budget, kept as long as the pool", () => {
  const pool = new LocalPool(createPolicy("round-robin"), [{ name: "a", url: "http://127.0.0.1:1" }]);
  const budget = pool.retryBudget;
  expect(budget).toBeInstanceOf(RetryBudget);
  pool.setPolicy(createPolicy("random"));
  pool.add({ name: "b", url: "http://127.0.0.1:2" });
  expect(pool.retryBudget).toBe(budget);
});
