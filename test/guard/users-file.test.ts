/** The basic-auth users file: htpasswd lines of bcrypt or argon2 hashes; problems name the line. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseUsers, readUsersFile } from "../../src/guard/users-file.ts";

const BCRYPT_B = await Bun.password.hash("pw", { algorithm: "bcrypt", cost: 4 });
const BCRYPT_Y = BCRYPT_B.replace(/^\$2b\$/, "$2y$");
const ARGON = await Bun.password.hash("pw", { algorithm: "argon2id", memoryCost: 1024, timeCost: 1 });

describe("parseUsers", () => {
  test("bcrypt ($2y$, $2b$) and argon2id lines; comments, blank lines and CRLF skipped", () => {
    const { users, problems } = parseUsers(`# admins\r\nalice:${BCRYPT_Y}\r\n\r\nbob:${BCRYPT_B}\ncarol:${ARGON}\n`);
    expect(problems).toEqual([]);
    expect(users.map((u) => u.name)).toEqual(["alice", "bob", "carol"]);
    expect(users[0]!.hash).toBe(BCRYPT_Y);
  });

  test("Bun.password.verify reads $2y$ and $2a$ as they are", async () => {
    expect(await Bun.password.verify("pw", BCRYPT_Y)).toBe(true);
    expect(await Bun.password.verify("pw", BCRYPT_B.replace(/^\$2b\$/, "$2a$"))).toBe(true);
    expect(await Bun.password.verify("nope", BCRYPT_Y)).toBe(false);
  });

  test("lines it cannot read are named by number, with what is wrong", () => {
    const { users, problems } = parseUsers(["alice:$apr1$abc$def", "no colon here", `bob:${BCRYPT_B}`, `bob:${ARGON}`, "carol:{SHA}abc=", "dave:$2b$10$short"].join("\n"));
    expect(users.map((u) => u.name)).toEqual(["bob"]);
    expect(problems).toEqual([
      'line 1: user "alice": expected a bcrypt ($2y$, $2b$, $2a$) or argon2 hash, got an Apache MD5 ($apr1$) hash; make one with "switchyard hash-password alice"',
      'line 2: expected "name:hash"',
      'line 4: user "bob" is already on line 3',
      'line 5: user "carol": expected a bcrypt ($2y$, $2b$, $2a$) or argon2 hash, got a SHA-1 ({SHA}) hash; make one with "switchyard hash-password carol"',
      'line 6: user "dave": expected a bcrypt ($2y$, $2b$, $2a$) or argon2 hash, got a malformed bcrypt hash; make one with "switchyard hash-password dave"',
    ]);
  });

  test("readUsersFile names the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-users-"));
    const file = join(dir, "users");
    writeFileSync(file, "x:plain\n");
    expect(readUsersFile(file).problems[0]).toStartWith(`${JSON.stringify(file)} line 1: user "x"`);
    expect(readUsersFile(join(dir, "none")).problems).toEqual([`cannot read ${JSON.stringify(join(dir, "none"))}: file not found`]);
  });
});
