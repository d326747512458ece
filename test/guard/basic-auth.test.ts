/** BasicAuthGuard: RFC 7617 credentials against bcrypt and argon2 hashes, off the event loop, with a bounded cache of successes. */
import { describe, expect, spyOn, test } from "bun:test";
import { GuardState } from "../../src/guard/build.ts";
import { BasicAuthGuard } from "../../src/guard/basic-auth.ts";
import type { GuardRequest, Refusal } from "../../src/guard/guard.ts";
import { VerdictCache } from "../../src/guard/verdict-cache.ts";

const users = [
  { name: "alice", hash: (await Bun.password.hash("wonderland", { algorithm: "bcrypt", cost: 4 })).replace(/^\$2b\$/, "$2y$") },
  { name: "bob", hash: await Bun.password.hash("pässwörd", { algorithm: "argon2id", memoryCost: 1024, timeCost: 1 }) },
];
const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`, "utf8").toString("base64")}`;
const req = (authorization?: string): GuardRequest => ({ method: "GET", target: "/", headers: new Headers(authorization ? { authorization } : {}), clientIp: "127.0.0.1" });
const verdict = async (g: BasicAuthGuard, authorization?: string): Promise<Refusal | undefined> => g.check(req(authorization));

describe("BasicAuthGuard", () => {
  const g = new BasicAuthGuard({ users, realm: "staff" });

  test("no credentials, another scheme or a malformed value: 401 with the challenge", async () => {
    for (const h of [undefined, "Bearer abc", "Basic", "Basic bm9jb2xvbg=="]) {
      const r = await verdict(g, h);
      expect(r?.code).toBe("SY_AUTH_REQUIRED");
      expect(r?.answer.status).toBe(401);
      expect(r?.answer.headers["www-authenticate"]).toBe('Basic realm="staff", charset="UTF-8"');
    }
  });

  test("the right password passes, for bcrypt ($2y$) and argon2id, UTF-8 included; the scheme is case-insensitive", async () => {
    expect(await verdict(g, basic("alice", "wonderland"))).toBeUndefined();
    expect(await verdict(g, basic("bob", "pässwörd"))).toBeUndefined();
    expect(await verdict(g, `bAsIc ${Buffer.from("alice:wonderland").toString("base64")}`)).toBeUndefined();
  });

  test("a wrong password, an unknown name, or another user's password: 401", async () => {
    expect((await verdict(g, basic("alice", "wrong")))?.code).toBe("SY_AUTH_REQUIRED");
    expect((await verdict(g, basic("mallory", "wonderland")))?.code).toBe("SY_AUTH_REQUIRED");
    expect((await verdict(g, basic("bob", "wonderland")))?.code).toBe("SY_AUTH_REQUIRED");
    // An unknown name is checked against a real hash too: its verdict is a promise like a known one's.
    expect(g.check(req(basic("mallory", "x")))).toBeInstanceOf(Promise);
  });

  test("a success is remembered: the same credentials again are decided at once; failures never are", async () => {
    const fresh = new BasicAuthGuard({ users, realm: "r" });
    expect(fresh.check(req(basic("alice", "wonderland")))).toBeInstanceOf(Promise);
    expect(await fresh.check(req(basic("alice", "wonderland")))).toBeUndefined();
    expect(fresh.check(req(basic("alice", "wonderland")))).toBeUndefined();
    expect(fresh.cached).toBe(1);
    await fresh.check(req(basic("alice", "bad")));
    expect(fresh.check(req(basic("alice", "bad")))).toBeInstanceOf(Promise);
    expect(fresh.cached).toBe(1);
  });

  test("simultaneous checks of the same credentials share one hash", async () => {
    const fresh = new BasicAuthGuard({ users, realm: "r" });
    const verify = spyOn(Bun.password, "verify");
    try {
      const verdicts = Array.from({ length: 6 }, () => fresh.check(req(basic("alice", "wonderland"))));
      expect(verdicts.every((v) => v instanceof Promise)).toBe(true);
      expect(await Promise.all(verdicts)).toEqual(Array(6).fill(undefined));
      expect(verify).toHaveBeenCalledTimes(1);
    } finally {
      verify.mockRestore();
    }
    const wrong = Array.from({ length: 3 }, () => fresh.check(req(basic("alice", "x"))));
    expect((await Promise.all(wrong)).map((r) => r?.code)).toEqual(Array(3).fill("SY_AUTH_REQUIRED"));
  });

  test("an empty users file refuses everyone, still at the cost of a hash", async () => {
    const none = new BasicAuthGuard({ users: [], realm: "r" });
    const v = none.check(req(basic("alice", "wonderland")));
    expect(v).toBeInstanceOf(Promise);
    expect((await v)?.code).toBe("SY_AUTH_REQUIRED");
  });
});

describe("VerdictCache", () => {
  test("bounded: the oldest entry goes first", () => {
    const c = new VerdictCache<true>(2, 1000);
    c.set("a", true, 0);
    c.set("b", true, 0);
    c.set("c", true, 0);
    expect(c.size).toBe(2);
    expect(c.get("a", 1)).toBeUndefined();
    expect(c.get("c", 1)).toBe(true);
  });
  test("an entry lives ttl and no longer", () => {
    const c = new VerdictCache<true>(8, 1000);
    c.set("a", true, 0);
    expect(c.get("a", 999)).toBe(true);
    expect(c.get("a", 1000)).toBeUndefined();
    expect(c.size).toBe(0);
  });
});

describe("failed attempts per client (basicAuth.failures)", () => {
  test("past the budget a client gets 429 without its password being checked; another client is not affected; a success does not count", async () => {
    const hash = await Bun.password.hash("right", { algorithm: "bcrypt", cost: 4 });
    const state = new GuardState();
    const failures = state.authFailures("admin", "2/h", 2);
    const g = new BasicAuthGuard({ users: [{ name: "ann", hash }], realm: "r", failures });
    const ask = (ip: string, password: string) =>
      Promise.resolve(g.check({ method: "GET", target: "/", clientIp: ip, headers: new Headers({ authorization: `Basic ${btoa(`ann:${password}`)}` }) }));
    expect(await ask("10.0.0.1", "right")).toBeUndefined();
    expect((await ask("10.0.0.1", "wrong"))?.code).toBe("SY_AUTH_REQUIRED");
    expect((await ask("10.0.0.1", "wrong"))?.code).toBe("SY_AUTH_REQUIRED");
    const limited = await ask("10.0.0.1", "right");
    expect(limited?.code).toBe("SY_RATE_LIMITED");
    expect(limited?.answer.headers["retry-after"]).toBeDefined();
    expect(await ask("10.0.0.2", "right")).toBeUndefined();
    // Kept across a reload while the rate stays; a new rate starts afresh.
    expect(state.authFailures("admin", "2/h", 2)).toBe(failures);
    expect(state.authFailures("admin", "3/h", 2)).not.toBe(failures);
  });
});

test("with a failure limit, guesses sent together are hashed at most two at a time per client", async () => {
  const hash = await Bun.password.hash("right", { algorithm: "bcrypt", cost: 4 });
  const g = new BasicAuthGuard({ users: [{ name: "ann", hash }], realm: "r", failures: new GuardState().authFailures("r", "100/h", 100) });
  const verify = spyOn(Bun.password, "verify");
  try {
    const guesses = Array.from({ length: 10 }, (_, i) =>
      Promise.resolve(g.check({ method: "GET", target: "/", clientIp: "10.0.0.9", headers: new Headers({ authorization: `Basic ${btoa(`ann:guess${i}`)}` }) })),
    );
    const codes = (await Promise.all(guesses)).map((r) => r?.code);
    expect(verify).toHaveBeenCalledTimes(2);
    expect(codes.filter((c) => c === "SY_RATE_LIMITED")).toHaveLength(8);
    expect(codes.filter((c) => c === "SY_AUTH_REQUIRED")).toHaveLength(2);
  } finally {
    verify.mockRestore();
  }
});
