/**
 * `switchyard hash-password NAME [--argon2]`: reads a password from stdin and prints the users
 * file line for it, `NAME:HASH` (a route's basicAuth.usersFile). bcrypt by default, as htpasswd
 * -B writes it and every htpasswd reader knows; --argon2 for argon2id.
 */
import { parseArgs } from "node:util";

export const HASH_PASSWORD_HELP = `Usage: switchyard hash-password NAME [--argon2] [--cost N] < password

Reads a password from stdin (its first line; a trailing newline is not part of it) and prints
"NAME:HASH", a line for a basicAuth users file, e.g.
  printf '%s' "$PASSWORD" | switchyard hash-password alice >> /etc/switchyard/users
  --argon2    hash with argon2id instead of bcrypt
  --cost N    bcrypt's cost, 4-31 (default 10; each step doubles the work)
  --help      show this help`;

/** Exit codes: 0 printed, 2 bad usage or no password. */
export async function runHashPasswordCommand(argv: string[], stdin: () => Promise<string> = () => Bun.stdin.text()): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { argon2: { type: "boolean" }, cost: { type: "string" }, help: { type: "boolean" } }, strict: true, allowPositionals: true });
  } catch (e) {
    console.error(`switchyard hash-password: ${(e as Error).message}\n\n${HASH_PASSWORD_HELP}`);
    return 2;
  }
  const { values: flags, positionals } = parsed;
  if (flags.help) {
    console.log(HASH_PASSWORD_HELP);
    return 0;
  }
  const name = positionals[0];
  // RFC 7617 §2: a user-id with a colon cannot be sent; the file splits at the first colon too.
  if (positionals.length !== 1 || name === undefined || name === "" || name.includes(":") || /[\x00-\x1f\x7f]/.test(name)) {
    console.error(`switchyard hash-password: expected one user name without ":" or control characters\n\n${HASH_PASSWORD_HELP}`);
    return 2;
  }
  const cost = flags.cost === undefined ? 10 : Number(flags.cost);
  if (!Number.isInteger(cost) || cost < 4 || cost > 31) {
    console.error(`switchyard hash-password: --cost: got ${JSON.stringify(flags.cost)}, expected a whole number from 4 to 31`);
    return 2;
  }
  const text = await stdin();
  const line = text.split("\n")[0]!;
  const password = line.endsWith("\r") ? line.slice(0, -1) : line;
  if (password === "") {
    console.error("switchyard hash-password: expected a password on stdin, got none");
    return 2;
  }
  const hash = flags.argon2 ? await Bun.password.hash(password, { algorithm: "argon2id" }) : await Bun.password.hash(password, { algorithm: "bcrypt", cost: cost as 4 });
  console.log(`${name}:${hash}`);
  return 0;
}
