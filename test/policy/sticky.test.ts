import { describe, expect, test } from "bun:test";
import { StickySessions } from "../../src/policy/sticky.ts";
import { LocalPool } from "../../src/pool/pool.ts";
import { createPolicy } from "../../src/policy/policy.ts";

function pool(): LocalPool {
  return new LocalPool(createPolicy("round-robin"), [
    { name: "backend-1", url: "http://10.0.0.1:8080" },
    { name: "backend-2", url: "http://10.0.0.2:8080" },
  ]);
}

const cookie = (value: string) => new Headers({ cookie: `other=1; route=${value}` });

describe("sticky sessions", () => {
  test("the cookie names a backend opaquely: neither its name nor its address", () => {
    const p = pool();
    const s = new StickySessions(p, { cookie: "route" });
    for (const b of p.backends) {
      const header = s.setCookie(b);
      expect(header).toMatch(/^route=[A-Za-z0-9_-]{22}; Path=\/; HttpOnly; SameSite=Lax$/);
      expect(header).not.toContain(b.name);
      expect(header).not.toContain(b.url.host);
    }
    expect(s.token(p.backends[0]!)).not.toBe(s.token(p.backends[1]!));
    // Over HTTPS the browser is told never to send it in the clear.
    expect(s.setCookie(p.backends[0]!, true)).toBe(`${s.setCookie(p.backends[0]!)}; Secure`);
  });

  test("a cookie read back names the backend that set it; unknown or absent cookies name none", () => {
    const p = pool();
    const s = new StickySessions(p, { cookie: "route" });
    const [a, b] = p.backends;
    expect(s.pinned(cookie(s.token(a!)))).toBe(a!);
    expect(s.pinned(cookie(s.token(b!)))).toBe(b!);
    expect(s.pinned(cookie("forged"))).toBeUndefined();
    expect(s.pinned(new Headers())).toBeUndefined();
  });

  test("replicas and restarts with the same secret agree; another secret gives other cookies", () => {
    const one = new StickySessions(pool(), { cookie: "route", secret: "a shared secret of enough length" });
    const two = new StickySessions(pool(), { cookie: "route", secret: "a shared secret of enough length" });
    const other = new StickySessions(pool(), { cookie: "route", secret: "another secret of enough length" });
    const builtIn = new StickySessions(pool(), { cookie: "route" });
    const b = pool().backends[0]!;
    expect(one.token(b)).toBe(two.token(b));
    expect(other.token(b)).not.toBe(one.token(b));
    expect(builtIn.token(b)).not.toBe(one.token(b));
    // A cookie from one replica names the same backend in the other.
    const p2 = pool();
    const s2 = new StickySessions(p2, { cookie: "route", secret: "a shared secret of enough length" });
    expect(s2.pinned(cookie(one.token(b)))!.name).toBe(b.name);
  });

  test("a backend removed from the pool is no longer named; one added is", () => {
    const p = pool();
    const s = new StickySessions(p, { cookie: "route" });
    const token = s.token(p.backends[1]!);
    expect(s.pinned(cookie(token))).toBe(p.backends[1]!);
    p.remove("backend-2");
    expect(s.pinned(cookie(token))).toBeUndefined();
    const c = p.add({ name: "backend-3", url: "http://10.0.0.3:8080" });
    expect(s.pinned(cookie(s.token(c)))).toBe(c);
  });
});
