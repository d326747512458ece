/**
 * Files a route's guards read: a basic-auth users file, a jwt secret.
 *
 * A basic-auth users file: htpasswd lines "name:hash", one user a line, with a bcrypt
 * ($2y$, $2b$, $2a$) or argon2 ($argon2id$, $argon2i$, $argon2d$) hash, which is what
 * `Bun.password.verify` checks (it reads all of these as they are: no "$2y$" → "$2b$" mapping
 * is needed). Blank lines and lines starting with "#" are skipped.
 *
 * Read when the config is validated (so `switchyard check` and a refused reload name the file
 * and line) and again when the route's guards are built, on every load and reload.
 */
import { readFileSync } from "node:fs";

export interface UserEntry {
  readonly name: string;
  readonly hash: string;
}

const BCRYPT = /^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$/;
const ARGON2 = /^\$argon2(id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/;

/** What a hash in another htpasswd form is, for the message that refuses it. */
function otherForm(hash: string): string {
  if (hash.startsWith("$apr1$")) return "an Apache MD5 ($apr1$) hash";
  if (hash.startsWith("{SHA}")) return "a SHA-1 ({SHA}) hash";
  if (hash.startsWith("$1$")) return "an MD5-crypt ($1$) hash";
  if (hash.startsWith("$5$") || hash.startsWith("$6$")) return "a SHA-crypt hash";
  if (hash.startsWith("$2")) return "a malformed bcrypt hash";
  if (hash.startsWith("$argon2")) return "a malformed argon2 hash";
  return hash === "" ? "no hash" : "a hash in no form Switchyard reads (crypt or plain text?)";
}

/** Parse a users file's text; problems name the line ("line 3: ..."). */
export function parseUsers(text: string): { users: UserEntry[]; problems: string[] } {
  const users: UserEntry[] = [];
  const problems: string[] = [];
  const seen = new Map<string, number>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    const n = i + 1;
    if (line.trim() === "" || line.startsWith("#")) return;
    const colon = line.indexOf(":");
    if (colon <= 0) {
      problems.push(`line ${n}: expected "name:hash"`);
      return;
    }
    const name = line.slice(0, colon);
    const hash = line.slice(colon + 1).trim();
    // RFC 7617 §2: the user-id cannot hold a colon (it is split at the first); controls are refused there too.
    if (/[\x00-\x1f\x7f]/.test(name)) {
      problems.push(`line ${n}: expected a user name without control characters`);
      return;
    }
    if (!BCRYPT.test(hash) && !ARGON2.test(hash)) {
      problems.push(`line ${n}: user "${name}": expected a bcrypt ($2y$, $2b$, $2a$) or argon2 hash, got ${otherForm(hash)}; make one with "switchyard hash-password ${name}"`);
      return;
    }
    const first = seen.get(name);
    if (first !== undefined) {
      problems.push(`line ${n}: user "${name}" is already on line ${first}`);
      return;
    }
    seen.set(name, n);
    users.push({ name, hash });
  });
  return { users, problems };
}

export function readText(path: string): { text?: string; problem?: string } {
  try {
    return { text: readFileSync(path, "utf8") };
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why = code === "ENOENT" ? "file not found" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "is a directory" : (e as Error).message;
    return { problem: `cannot read ${JSON.stringify(path)}: ${why}` };
  }
}

/**
 * A secret kept in a file (a jwt route's secretFile), so that it is not in the config, which
 * `switchyard check` prints: its first line, at least 32 bytes (RFC 7518 §3.2).
 */
export function readSecretFile(path: string): { secret?: Uint8Array; problem?: string } {
  const { text, problem } = readText(path);
  if (text === undefined) return { problem };
  const line = text.split("\n")[0]!.replace(/\r$/, "");
  const secret = new TextEncoder().encode(line);
  if (secret.length < 32) return { problem: `${JSON.stringify(path)}: expected a secret of at least 32 bytes on its first line (RFC 7518 §3.2), got ${secret.length}` };
  return { secret };
}

/** Read and parse a users file; problems start with the file's name. */
export function readUsersFile(path: string): { users: UserEntry[]; problems: string[] } {
  const { text, problem } = readText(path);
  if (text === undefined) return { users: [], problems: [problem!] };
  const { users, problems } = parseUsers(text);
  return { users, problems: problems.map((p) => `${JSON.stringify(path)} ${p}`) };
}
