/**
 * acme.storage and the parts of ACME that need no CA (src/acme/): the lock replicas share
 * (exclusive, a stale lease taken over, a live one never), files at 0600, a placeholder never
 * written over a stored certificate, the renewal point and the back-off, and the config's
 * checks (each names the field and what was expected) and its names taken from routes.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AcmeStore } from "../../src/acme/store.ts";
import { certFile, lockFile } from "../../src/acme/paths.ts";
import { placeholderPem } from "../../src/acme/placeholder.ts";
import { backoff, BACKOFF_MAX_MS, BACKOFF_MIN_MS, renewalDue } from "../../src/acme/manager.ts";
import { http01Answer } from "../../src/acme/http01.ts";
import { validateConfig } from "../../src/config/load.ts";

const dir = mkdtempSync(join(tmpdir(), "switchyard-acme-store-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function store(name: string): AcmeStore {
  const s = new AcmeStore(join(dir, name));
  s.prepare();
  return s;
}

test("the lock: one holder at a time; released only by its holder; a stale lease is taken over, a live one never", () => {
  const a = store("lock");
  const b = new AcmeStore(a.dir);
  const release = a.lock("a.test", 60_000);
  expect(release).toBeDefined();
  expect(b.lock("a.test", 60_000)).toBeUndefined();
  expect(statSync(lockFile(a.dir, "a.test")).mode & 0o777).toBe(0o600);
  release!();
  const releaseB = b.lock("a.test", 60_000);
  expect(releaseB).toBeDefined();
  // a's release of a lock it no longer holds leaves b's alone.
  release!();
  expect(a.lock("a.test", 60_000)).toBeUndefined();
  releaseB!();
  // A holder that died: its lease ran out.
  writeFileSync(lockFile(a.dir, "a.test"), JSON.stringify({ owner: "dead:1", expires: Date.now() - 1 }));
  const takeover = b.lock("a.test", 60_000);
  expect(takeover).toBeDefined();
  expect(JSON.parse(readFileSync(lockFile(a.dir, "a.test"), "utf8")).owner).toBe(b.owner);
  takeover!();
});

test("a placeholder is written only where no certificate is, at 0600; the store tells it from an issued one", async () => {
  const s = store("placeholder");
  expect(s.writePlaceholderIfAbsent("a.test", await placeholderPem("a.test"))).toBe(true);
  expect(statSync(certFile(s.dir, "a.test")).mode & 0o777).toBe(0o600);
  expect(statSync(s.dir).mode & 0o777).toBe(0o700);
  const first = s.readCert("a.test")!;
  expect(first.placeholder).toBe(true);
  expect(s.writePlaceholderIfAbsent("a.test", await placeholderPem("a.test"))).toBe(false);
  expect(s.readCert("a.test")!.fingerprint).toBe(first.fingerprint);
  // Due at once: a placeholder, or nothing stored.
  expect(renewalDue(first, 1000)).toBe(1000);
  expect(renewalDue(undefined, 1000)).toBe(1000);
});

test("renewal at two thirds of the lifetime; back-off doubles from BACKOFF_MIN_MS with ±50% jitter, up to BACKOFF_MAX_MS", () => {
  const c = { pem: "", fingerprint: "", placeholder: false, notBefore: 0, notAfter: 90 * 86_400_000 };
  expect(renewalDue(c)).toBe(60 * 86_400_000);
  expect(backoff(1, () => 0)).toBe(BACKOFF_MIN_MS / 2);
  expect(backoff(1, () => 0.999999)).toBeCloseTo(BACKOFF_MIN_MS * 1.5, -1);
  expect(backoff(3, () => 0.5)).toBe(BACKOFF_MIN_MS * 4);
  expect(backoff(40, () => 0.5)).toBe(BACKOFF_MAX_MS);
});

test("HTTP-01 answers come from the store, for base64url tokens only", () => {
  const s = store("http01");
  s.setHttp01("tok_en-1", "tok_en-1.thumb");
  expect(http01Answer(s.dir, "/.well-known/acme-challenge/tok_en-1")).toBe("tok_en-1.thumb");
  expect(http01Answer(s.dir, "/.well-known/acme-challenge/other")).toBeUndefined();
  expect(http01Answer(s.dir, "/.well-known/acme-challenge/../accounts/x.key")).toBeUndefined();
  expect(http01Answer(undefined, "/.well-known/acme-challenge/tok_en-1")).toBeUndefined();
  s.removeHttp01("tok_en-1");
  expect(http01Answer(s.dir, "/.well-known/acme-challenge/tok_en-1")).toBeUndefined();
});

const backends = [{ url: "http://127.0.0.1:9" }];

test("config: names from the listener's exact route hosts; the store's files serve them by SNI", () => {
  const storage = join(dir, "cfg");
  const c = validateConfig({
    acme: { storage },
    listen: { port: 0, tls: { acme: { directory: "https://ca.example/dir" } } },
    backends,
    routes: [
      { name: "a", match: { host: ["a.example.com", "*.wild.example.com"] }, pool: "default" },
      { name: "b", match: { host: "B.example.com" }, pool: "default" },
      { name: "rest", match: {}, pool: "default" },
    ],
  });
  const tls = c.listeners[0]!.tls!;
  expect(tls.acme!.domains).toEqual(["a.example.com", "b.example.com"]);
  expect(tls.cert).toBe(certFile(storage, "a.example.com"));
  expect(tls.sni.map((s) => s.serverName)).toEqual(["a.example.com", "b.example.com"]);
  expect(c.acme!.lockLease).toBe(600_000);
});

/** The config error's message, or "accepted". */
function bad(cfg: Record<string, unknown>): string {
  try {
    validateConfig({ backends, ...cfg });
  } catch (e) {
    return (e as Error).message;
  }
  return "accepted";
}

test("config: what is wrong is named, with what was expected", () => {
  expect(bad({ listen: { port: 0, tls: { acme: { domains: ["a.test"] } } } })).toContain("listen.tls.acme: set without acme.storage; expected a top-level acme: { storage: DIRECTORY }");
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: {} } } })).toContain("listen.tls.acme.domains: missing, and no route of this listener matches an exact host");
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: { domains: ["*.a.test"] } } } })).toContain('listen.tls.acme.domains: got ["*.a.test"], expected exact names: a wildcard needs challenge "dns-01"');
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: { domains: ["a.test"], directory: "http://ca.example/dir" } } } })).toContain("expected an https:// URL");
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: { domains: ["a.test"], keyType: "dsa" } } } })).toContain('expected "ecdsa-p256" or "rsa2048"');
  expect(bad({ listen: { port: 0, tls: {} } })).toContain("listen.tls: neither cert and key nor acme; expected cert and key files, or acme");
  expect(bad({ listen: { port: 0, tls: { cert: "/x.pem" } } })).toContain("listen.tls.key: missing; expected both cert and key");
  expect(bad({ acme: { storage: dir, directoryCa: "/nonexistent/ca.pem" }, listen: { port: 0, tls: { acme: { domains: ["a.test"] } } } })).toContain("acme.directoryCa: cannot read");
});

test("config: tls.acme.eab, a key ID and a base64url HMAC key, the same for every listener of one directory; the key never shown", () => {
  const eab = { kid: "kid-1", hmacKey: "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W" };
  const acme = (extra: Record<string, unknown>) => ({ domains: ["a.test"], ...extra });
  const c = validateConfig({ acme: { storage: dir }, listen: { port: 0, tls: { acme: acme({ eab }) } }, backends });
  expect(c.listeners[0]!.tls!.acme!.eab).toEqual(eab);
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: acme({ eab: { kid: "kid-1", hmacKey: "not base64url!" } }) } } })).toContain(
    'listen.tls.acme.eab.hmacKey: got "not base64url!", expected the base64url HMAC key the CA gave',
  );
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: acme({ eab: { kid: "", hmacKey: eab.hmacKey } }) } } })).toContain("listen.tls.acme.eab.kid");
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: acme({ eab: { hmacKey: eab.hmacKey } }) } } })).toContain("listen.tls.acme.eab.kid");
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: acme({ eab: { kid: "kid-1" } }) } } })).toContain("listen.tls.acme.eab: got {\"kid\":\"kid-1\"}, expected exactly one of hmacKey and hmacKeyFile");
  // Kept in a file: its first line, checked at load; a bad one is said without showing it.
  const keyFile = join(dir, "eab.key");
  writeFileSync(keyFile, `${eab.hmacKey}\n`);
  const fromFile = validateConfig({ acme: { storage: dir }, listen: { port: 0, tls: { acme: acme({ eab: { kid: "kid-1", hmacKeyFile: keyFile } }) } }, backends });
  expect(fromFile.listeners[0]!.tls!.acme!.eab).toEqual({ kid: "kid-1", hmacKeyFile: keyFile });
  writeFileSync(keyFile, "secret but not base64url!\n");
  const badFile = bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: acme({ eab: { kid: "kid-1", hmacKeyFile: keyFile } }) } } });
  expect(badFile).toContain(`listen.tls.acme.eab.hmacKeyFile: "${keyFile}": expected the base64url HMAC key the CA gave`);
  expect(badFile).not.toContain("secret but");
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: acme({ eab: { kid: "kid-1", hmacKeyFile: join(dir, "nope") } }) } } })).toContain("listen.tls.acme.eab.hmacKeyFile: cannot read");
  // One account per directory: two listeners of one directory bind it alike, or neither does.
  const two = (second: Record<string, unknown>) => bad({
    acme: { storage: dir },
    listeners: [{ name: "one", port: 0, tls: { acme: acme({ eab }) } }, { name: "two", port: 0, tls: { acme: { domains: ["b.test"], ...second } } }],
  });
  const clash = two({ eab: { kid: "kid-2", hmacKey: eab.hmacKey } });
  expect(clash).toContain('listeners[1].tls.acme.eab: got kid "kid-2", unlike listeners[0].tls.acme.eab for the same directory https://acme-v02.api.letsencrypt.org/directory');
  expect(clash).not.toContain(eab.hmacKey);
  expect(two({})).toContain("listeners[1].tls.acme.eab: got none, unlike listeners[0].tls.acme.eab");
  expect(two({ eab: { kid: "kid-1", hmacKey: "A".repeat(32) } })).toContain('got kid "kid-1", unlike');
  expect(two({ eab })).toBe("accepted");
  // Another directory is another account.
  expect(two({ directory: "https://ca.example/dir" })).toBe("accepted");
});

test("config: tls.acme.challenge tls-alpn-01 is refused with engine fetch, naming the field and value; taken with the socket engine and on TCP listeners", () => {
  const alpn = { domains: ["a.test"], challenge: "tls-alpn-01" };
  const refusal = 'listen.tls.acme.challenge: got "tls-alpn-01" with engine "fetch"; expected "http-01", or engine "socket"';
  expect(bad({ engine: "fetch", acme: { storage: dir }, listen: { port: 0, tls: { acme: alpn } } })).toContain(refusal);
  // Named by its listener when there are several.
  expect(bad({ engine: "fetch", acme: { storage: dir }, listeners: [{ name: "plain", port: 0 }, { name: "secure", port: 0, tls: { acme: alpn } }] })).toContain(
    'listeners[1].tls.acme.challenge: got "tls-alpn-01" with engine "fetch"',
  );
  // http-01 (the default) stays fine with the fetch engine.
  expect(bad({ engine: "fetch", acme: { storage: dir }, listen: { port: 0, tls: { acme: { domains: ["a.test"] } } } })).toBe("accepted");
  const socket = validateConfig({ engine: "socket", acme: { storage: dir }, listen: { port: 0, tls: { acme: alpn } }, backends });
  expect(socket.listeners[0]!.tls!.acme!.challenge).toBe("tls-alpn-01");
  expect(validateConfig({ engine: "socket", acme: { storage: dir }, listen: { port: 0, tls: { acme: { domains: ["a.test"] } } }, backends }).listeners[0]!.tls!.acme!.challenge).toBe("http-01");
  // A TCP listener reads the ClientHello itself whatever the engine.
  for (const engine of ["fetch", "socket"]) {
    const tcp = validateConfig({ engine, mode: "tcp", acme: { storage: dir }, listen: { port: 0, tls: { acme: alpn } }, backends: [{ url: "tcp://127.0.0.1:9" }] });
    expect(tcp.listeners[0]!.tls!.acme!.challenge).toBe("tls-alpn-01");
  }
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: { domains: ["a.test"], challenge: "dns-02" } } } })).toContain(
    'listen.tls.acme.challenge: got "dns-02", expected "http-01", "tls-alpn-01" or "dns-01"',
  );
});

test("config: dns-01 takes wildcards and needs dns01.command; dns01 without dns-01 is refused", () => {
  const hook = { command: ["/bin/sh", "/etc/switchyard/dns-hook.sh"] };
  const c = validateConfig({ acme: { storage: dir }, listen: { port: 0, tls: { acme: { domains: ["*.a.test", "a.test"], challenge: "dns-01", dns01: hook } } }, backends });
  expect(c.listeners[0]!.tls!.acme!.dns01).toEqual({ command: hook.command, timeout: 120_000, propagationDelay: 0 });
  // Served from the store by name, the wildcard's file without its "*".
  expect(c.listeners[0]!.tls!.sni.map((e) => [e.serverName, e.cert.split("/").at(-1)])).toEqual([["*.a.test", "wildcard_.a.test.pem"], ["a.test", "a.test.pem"]]);
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: { domains: ["*.a.test"], challenge: "dns-01" } } } })).toContain(
    'listen.tls.acme.dns01: got nothing, expected dns01: { command: [...] } with challenge "dns-01", and only then',
  );
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: { domains: ["a.test"], dns01: hook } } } })).toContain("listen.tls.acme.dns01: got {");
  // The program must be there to run, a path or a name on PATH: found at load, not when an order is due.
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: { domains: ["a.test"], challenge: "dns-01", dns01: { command: ["/etc/switchyard/dns-hook.sh"] } } } } })).toContain(
    'listen.tls.acme.dns01.command[0]: got "/etc/switchyard/dns-hook.sh", expected an executable program (a path, or a name on PATH)',
  );
  expect(validateConfig({ acme: { storage: dir }, listen: { port: 0, tls: { acme: { domains: ["a.test"], challenge: "dns-01", dns01: { command: ["sh", "-c", "true"] } } } }, backends }).listeners[0]!.tls!.acme!.dns01!.command[0]).toBe("sh");
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: { domains: ["a.test"], challenge: "dns-01", dns01: { command: [] } } } } })).toContain(
    "listen.tls.acme.dns01.command: got [], expected a command as a list: [PROGRAM, ARG...]",
  );
  expect(bad({ acme: { storage: dir }, listen: { port: 0, tls: { acme: { domains: ["a.test"], challenge: "dns-01", dns01: { command: "hook.sh" } } } } })).toContain(
    'listen.tls.acme.dns01.command: got "hook.sh", expected a command as a list: [PROGRAM, ARG...]',
  );
});
