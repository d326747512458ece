/** `switchyard hash-password`: a users file line from a password on stdin, as a user runs it. */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { parseUsers } from "../../src/guard/users-file.ts";

const CLI = join(import.meta.dir, "../../src/cli.ts");

async function run(stdin: string, ...args: string[]) {
  const p = Bun.spawn([process.execPath, CLI, "hash-password", ...args], { stdin: new TextEncoder().encode(stdin), stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

describe("switchyard hash-password", () => {
  test("bcrypt by default: prints name:hash, which the users file reads and the password verifies", async () => {
    const r = await run("s3cret\n", "alice", "--cost", "4");
    expect(r.code).toBe(0);
    const { users, problems } = parseUsers(r.stdout);
    expect(problems).toEqual([]);
    expect(users[0]!.name).toBe("alice");
    expect(users[0]!.hash).toStartWith("$2b$04$");
    expect(await Bun.password.verify("s3cret", users[0]!.hash)).toBe(true);
  });

  test("--argon2: argon2id", async () => {
    const r = await run("s3cret", "bob", "--argon2");
    expect(r.code).toBe(0);
    const { users } = parseUsers(r.stdout);
    expect(users[0]!.hash).toStartWith("$argon2id$");
    expect(await Bun.password.verify("s3cret", users[0]!.hash)).toBe(true);
  });

  test("bad usage exits 2 and says why", async () => {
    expect((await run("pw", "a:b")).stderr).toContain('without ":"');
    expect((await run("pw")).code).toBe(2);
    expect((await run("", "alice")).stderr).toContain("expected a password on stdin");
    expect((await run("pw", "alice", "--cost", "99")).stderr).toContain("--cost: got \"99\"");
    const help = await run("", "--help");
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: switchyard hash-password");
  });
});
