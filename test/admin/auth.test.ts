/** Admin tokens: where they come from, their names, and how a bad source is reported. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveTokens, AdminAuth } from "../../src/admin/auth.ts";
import { ConfigError } from "../../src/config/load.ts";

const dir = mkdtempSync(join(tmpdir(), "switchyard-auth-"));

describe("admin tokens", () => {
  test("from admin.token, a token file (named lines, comments) and the environment, all at once", async () => {
    const file = join(dir, "tokens");
    writeFileSync(file, "# operators\nalice aaaaaaaaaaaaaaaaaaaa\n\nbbbbbbbbbbbbbbbbbbbb\n");
    const tokens = await resolveTokens({ token: "cccccccccccccccccccc", tokenFile: file }, { SWITCHYARD_ADMIN_TOKEN: "dddddddddddddddddddd" });
    expect(tokens.map((t) => t.name)).toEqual(["admin.token", "alice", "tokenFile", "SWITCHYARD_ADMIN_TOKEN"]);
    const auth = new AdminAuth(tokens);
    expect(auth.verify("Bearer aaaaaaaaaaaaaaaaaaaa")).toEqual({ ok: true, name: "alice" });
    expect(auth.verify("bearer dddddddddddddddddddd")).toEqual({ ok: true, name: "SWITCHYARD_ADMIN_TOKEN" });
    expect(auth.verify("Bearer aaaaaaaaaaaaaaaaaaab")).toMatchObject({ ok: false, status: 401 });
    expect(auth.verify("Basic aaaaaaaaaaaaaaaaaaaa")).toMatchObject({ ok: false, status: 401 });
  });

  test("a missing, empty or weak token source is a config error naming it", async () => {
    const problems = async (admin: { token?: string; tokenFile?: string }, env = {}) => {
      try {
        await resolveTokens(admin, env);
      } catch (e) {
        if (e instanceof ConfigError) return e.problems;
        throw e;
      }
      throw new Error("expected a ConfigError");
    };
    expect((await problems({ tokenFile: join(dir, "nope") }))[0]).toMatch(/^admin\.tokenFile: cannot read ".*nope" \(ENOENT\), expected a readable file/);
    const empty = join(dir, "empty");
    writeFileSync(empty, "# nothing here\n");
    expect(await problems({ tokenFile: empty })).toEqual([`admin.tokenFile: ${JSON.stringify(empty)} holds no token, expected one token per line`]);
    const weak = join(dir, "weak");
    writeFileSync(weak, "bob short\n");
    expect(await problems({ tokenFile: weak })).toEqual(["admin.tokenFile: line 1: got a token of 5 characters, expected at least 16"]);
    expect(await problems({}, { SWITCHYARD_ADMIN_TOKEN: "x" })).toEqual(["SWITCHYARD_ADMIN_TOKEN: got a token of 1 characters, expected at least 16"]);
  });
});

