import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import { ConfigError, closest, loadConfigFile, validateConfig } from "../../src/config/load.ts";
import { cidrMatcher } from "../../src/net/cidr.ts";
import { parseDuration, parseSize } from "../../src/config/units.ts";

const dir = mkdtempSync(join(tmpdir(), "switchyard-config-"));
const write = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
const problems = (raw: unknown): string[] => {
  try {
    validateConfig(raw);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error("expected the config to be rejected");
};

describe("units", () => {
  test.each([["250ms", 250], ["5s", 5000], ["1m", 60_000], ["1.5s", 1500], ["2h", 7_200_000], [750, 750], ["100", 100]])("duration %p = %p ms", (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });
  test.each(["5x", "", "-1s", "s", "1 minute"])("bad duration %p", (input) => expect(parseDuration(input)).toBeUndefined());
  test.each([["64KB", 65_536], ["128MB", 134_217_728], ["1GB", 1_073_741_824], ["512", 512], [2048, 2048], ["1.5KB", 1536]])("size %p = %p bytes", (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });
  test.each(["64XB", "-1", "MB"])("bad size %p", (input) => expect(parseSize(input)).toBeUndefined());
});

describe("defaults and normalization", () => {
  test("a minimal config gets every default", () => {
    const c = validateConfig({ backends: [{ url: "http://127.0.0.1:5001" }] });
    expect(c.listen).toEqual({ host: "0.0.0.0", port: 8000 });
    expect(c.admin).toEqual({ host: "127.0.0.1", port: 8081, allowedHosts: [] });
    expect(c.strategy).toBe("least-connections");
    expect(c.retry).toEqual({
      attempts: 3, perTryTimeout: 5000, timeout: 15000, onStatus: [502, 503, 504], nonIdempotent: false, onGrpcStatus: [], bufferBody: 65536,
      budget: { percent: 20, minRetriesPerSecond: 3 },
    });
    expect(c.timeouts).toEqual({ idle: 60_000, send: 60_000, connect: 5000, header: 10_000, upstreamIdle: 4000, shutdownGrace: 10_000 });
    expect(c.engine).toBe("socket");
    expect(c.limits.maxBodySize).toBe(128 * 1024 * 1024);
    expect(c.limits.uploadConcurrency).toBe(64);
    expect(c.log).toEqual({ access: true, format: "text" });
    expect(c.pools.default!.backends[0]).toMatchObject({ name: "backend-1", url: "http://127.0.0.1:5001/", weight: 1 });
  });

  test("the full example config loads as written", () => {
    const c = validateConfig({
      listen: { host: "0.0.0.0", port: 8000 },
      admin: { host: "127.0.0.1", port: 8081 },
      strategy: "least-connections",
      backends: [{ name: "backend-1", url: "http://127.0.0.1:5001", weight: 1 }],
      retry: { attempts: 3, perTryTimeout: "5s", timeout: "15s", onStatus: [502, 503, 504] },
      timeouts: { idle: "60s" },
      limits: { maxBodySize: "128MB" },
      log: { access: true, format: "text" },
    });
    expect(c.retry.perTryTimeout).toBe(5000);
  });

  test("the seed's own format loads unchanged", async () => {
    const seed = await Bun.file(new URL("../../../shared/seeds/000_0f483f30c7f77c64.txt", import.meta.url)).text().catch(() => "");
    const json = seed ? seed.slice(seed.indexOf('{\n  "lb_port"'), seed.indexOf("```", seed.indexOf('"lb_port"'))) : "";
    const text = json || `{"lb_port": 8000, "backends": [{"name": "backend-1", "url": "http://localhost:5001"}]}`;
    const c = validateConfig(JSON.parse(text));
    expect(c.listen.port).toBe(8000);
    expect(c.pools.default!.backends[0]!.name).toBe("backend-1");
    expect(c.pools.default!.backends[0]!.url).toBe("http://localhost:5001/");
  });

  test("YAML and TOML files load by extension; the same config in each", async () => {
    const yaml = write("c.yaml", "listen:\n  port: 9000\nbackends:\n  - url: http://127.0.0.1:5001\n    weight: 2\nretry:\n  timeout: 20s\n");
    const toml = write("c.toml", 'listen = { port = 9000 }\nretry = { timeout = "20s" }\n[[backends]]\nurl = "http://127.0.0.1:5001"\nweight = 2\n');
    const json = write("c.json", JSON.stringify({ listen: { port: 9000 }, backends: [{ url: "http://127.0.0.1:5001", weight: 2 }], retry: { timeout: "20s" } }));
    const [a, b, c] = await Promise.all([loadConfigFile(yaml), loadConfigFile(toml), loadConfigFile(json)]);
    expect(a).toEqual(c);
    expect(b).toEqual(c);
    expect(c.listen.port).toBe(9000);
  });

  test("tcp mode accepts host:port and tcp:// backends", () => {
    const c = validateConfig({ mode: "tcp", backends: [{ url: "127.0.0.1:6379" }, { url: "tcp://localhost:6380" }] });
    expect(c.pools.default!.backends.map((b) => b.url)).toEqual(["tcp://127.0.0.1:6379", "tcp://localhost:6380"]);
  });
});

describe("errors", () => {
  test("panic mode and outlier detection: defaults, and each wrong value named with what was expected", () => {
    const c = validateConfig({ backends: [{ url: "http://127.0.0.1:5001" }] });
    expect(c.panicThreshold).toBe(50);
    expect(c.passive).toMatchObject({ interval: 10_000, successRate: { minimumHosts: 5, requestVolume: 100, stdevFactor: 1900 }, failurePercentage: false });
    expect(validateConfig({ backends: [{ url: "http://127.0.0.1:5001" }], passive: { failurePercentage: {}, successRate: false } }).passive)
      .toMatchObject({ successRate: false, failurePercentage: { threshold: 85, minimumHosts: 5, requestVolume: 50 } });
    const p = problems({
      backends: [{ url: "http://127.0.0.1:5001" }],
      panicThreshold: 150,
      passive: { interval: "10ms", successRate: { stdevFactor: -1, minimumHosts: 0 }, failurePercentage: { threshold: "x" } },
    });
    expect(p).toEqual([
      "passive.interval: got \"10ms\", expected at least 100ms between sweeps",
      "passive.successRate.minimumHosts: got 0, expected a whole number of backends, at least 1",
      "passive.successRate.stdevFactor: got -1, expected 0 or more (thousandths: 1900 is 1.9 standard deviations)",
      "passive.failurePercentage.threshold: got \"x\", expected a percentage",
      "panicThreshold: got 150, expected 0 to 100",
    ]);
    expect(problems({ backends: [{ url: "http://127.0.0.1:5001" }], passive: { successRate: true } })).toEqual(["passive.successRate: got true, expected a success-rate object or false"]);
  });

  test("every problem at once, each naming field, value and expectation", () => {
    const p = problems({
      listen: { port: 70000 },
      strategy: "fastest",
      backends: [{ url: "ftp://x" }, { url: "http://127.0.0.1:5002", weight: -1 }],
      retry: { perTryTimeout: "5x" },
      limits: { maxBodySize: "lots" },
    });
    expect(p).toContain('listen.port: got 70000, expected a port from 0 to 65535');
    expect(p.find((x) => x.startsWith("strategy:"))).toBe('strategy: got "fastest", expected one of least-connections, round-robin, weighted-round-robin, random, power-of-two, consistent-hash, peak-ewma');
    expect(p).toContain('backends[0].url: got "ftp://x", expected an http(s) URL with a host, like "http://127.0.0.1:5001"');
    expect(p).toContain("backends[1].weight: got -1, expected a weight of at least 1");
    expect(p).toContain('retry.perTryTimeout: got "5x", expected a duration like "250ms", "5s", "1m" or a number of milliseconds');
    expect(p).toContain('limits.maxBodySize: got "lots", expected a size like "64KB", "128MB" or a number of bytes');
    expect(p.length).toBe(6);
  });

  test("unknown keys are errors, with a did-you-mean when close", () => {
    const p = problems({ lisen: { port: 1 }, backends: [{ url: "http://a", wieght: 2 }], retry: { atempts: 2 }, healthCheck: { intervall: "1s" }, zzzzzz: 1 });
    expect(p).toContain('lisen: unknown option; did you mean "listen"?');
    expect(p).toContain('backends[0].wieght: unknown option; did you mean "weight"?');
    expect(p).toContain('retry.atempts: unknown option; did you mean "attempts"?');
    expect(p).toContain('healthCheck.intervall: unknown option; did you mean "interval"?');
    expect(p.find((x) => x.startsWith("zzzzzz:"))).toMatch(/^zzzzzz: unknown option \(known: mode, listen, admin, strategy, backends/);
  });

  test("backend names are unique; URLs need a host; at least one backend", () => {
    expect(problems({ backends: [{ name: "a", url: "http://x:1" }, { name: "a", url: "http://x:2" }] })).toEqual([
      'backends[1].name: got "a", expected a unique name (backends[0] has it)',
    ]);
    expect(problems({ backends: [{ url: "http://" }] })[0]).toStartWith('backends[0].url: got "http://"');
    expect(problems({ backends: [] })).toEqual(["backends: got [], expected at least one backend"]);
    expect(problems({})).toEqual(["backends: missing; give the backends (one pool), or pools"]);
    expect(problems({ mode: "tcp", backends: [{ url: "127.0.0.1" }] })[0]).toContain("with a port");
  });

  test("timeouts.idle is capped at 255s in HTTP mode only", () => {
    expect(problems({ backends: [{ url: "http://x" }], timeouts: { idle: "5m" } })).toEqual([
      'timeouts.idle: got "5m", expected at most 255s in HTTP mode (Bun.serve\'s limit)',
    ]);
    expect(validateConfig({ mode: "tcp", backends: [{ url: "x:1" }], timeouts: { idle: "5m" } }).timeouts.idle).toBe(300_000);
  });

  test("every example config in examples/ is valid", async () => {
    for (const file of new Bun.Glob("*.{json,yaml,toml}").scanSync(new URL("../../examples/", import.meta.url).pathname)) {
      await loadConfigFile(new URL(`../../examples/${file}`, import.meta.url).pathname);
    }
  });

  test("policies: consistent-hash needs hash.key; hash only with it; sticky and peakEwma checked", () => {
    const backends = [{ url: "http://127.0.0.1:5001" }];
    expect(problems({ strategy: "consistent-hash", backends })).toEqual([
      'hash: missing; "strategy": "consistent-hash" needs "hash": { "key": "header:NAME", "cookie:NAME", "ip" or "path" }',
    ]);
    expect(problems({ strategy: "consistent-hash", hash: { key: "header:" }, backends })).toEqual([
      'hash.key: got "header:", expected "header:NAME", "cookie:NAME", "ip" or "path"',
    ]);
    expect(problems({ strategy: "round-robin", hash: { key: "ip" }, backends })).toEqual([
      'hash: set, but strategy is "round-robin"; expected "strategy": "consistent-hash" (hash is used by no other strategy)',
    ]);
    expect(problems({ sticky: { cookie: "bad name" }, backends })).toEqual([
      `sticky.cookie: got "bad name", expected a cookie name (letters, digits and !#$%&'*+-.^_\`|~)`,
    ]);
    expect(problems({ sticky: { cookie: "route", secret: "short" }, backends })).toEqual([
      'sticky.secret: got "short", expected a secret of at least 16 characters',
    ]);
    expect(problems({ sticky: {}, backends })).toEqual(["sticky.cookie: missing; this option is required"]);
    expect(problems({ peakEwma: { decay: 0 }, backends })).toEqual(["peakEwma.decay: got 0, expected a duration of more than 0"]);
    expect(problems({ mode: "tcp", strategy: "consistent-hash", hash: { key: "path" }, sticky: { cookie: "route" }, backends: [{ url: "127.0.0.1:6379" }] })).toEqual([
      'hash.key: got "path", expected "ip" in TCP mode (a TCP connection has no headers, cookies or path)',
      "sticky: set in TCP mode; expected it only in HTTP mode (it works by cookie)",
    ]);
    const ok = validateConfig({ strategy: "consistent-hash", hash: { key: "cookie:uid" }, sticky: { cookie: "route" }, peakEwma: { decay: "2s" }, backends });
    expect(ok.hash).toEqual({ key: "cookie:uid" });
    expect(ok.sticky).toEqual({ cookie: "route" });
    expect(ok.peakEwma).toEqual({ decay: 2000 });
    expect(validateConfig({ backends }).peakEwma).toEqual({ decay: 1000 });
  });

  test("perTryTimeout may not exceed timeout", () => {
    expect(problems({ backends: [{ url: "http://x" }], retry: { perTryTimeout: "20s", timeout: "10s" } })).toEqual([
      'retry.perTryTimeout: got "20s", expected at most retry.timeout ("10s")',
    ]);
  });

  test("syntax errors and unknown file types name the file", async () => {
    await expect(loadConfigFile(write("bad.json", "{ nope"))).rejects.toThrow(/bad\.json.*cannot parse JSON/s);
    await expect(loadConfigFile(write("c.ini", "x=1"))).rejects.toThrow(/unknown file type "\.ini"/);
    await expect(loadConfigFile(join(dir, "missing.json"))).rejects.toThrow(/file not found/);
  });

  test("responseHeaders: header names are tokens, values single-line, managed fields refused", () => {
    const ok = validateConfig({ backends: [{ url: "http://x" }], responseHeaders: { remove: ["Server"], set: { "X-Frame-Options": "DENY" } } });
    expect(ok.responseHeaders).toEqual({ remove: ["Server"], set: { "X-Frame-Options": "DENY" } });
    expect(validateConfig({ backends: [{ url: "http://x" }] }).responseHeaders).toEqual({ remove: [], set: {} });
    const p = problems({
      backends: [{ url: "http://x" }],
      responseHeaders: { remove: ["bad name", "Transfer-Encoding"], set: { "X-A": "1\r\nSet-Cookie: x=1", "Content-Length": "0" }, hide: [] },
    });
    expect(p).toContain(`responseHeaders.remove[0]: got "bad name", expected a header field name (letters, digits and !#$%&'*+-.^_\`|~)`);
    expect(p.find((x) => x.startsWith("responseHeaders.remove[1]:"))).toContain('got "Transfer-Encoding", expected a header other than connection');
    expect(p.find((x) => x.startsWith("responseHeaders.set.X-A:"))).toContain("expected a header value without control characters");
    expect(p.find((x) => x.startsWith("responseHeaders.set.Content-Length:"))).toContain("the proxy manages framing and hop-by-hop fields");
    expect(p).toContain("responseHeaders.hide: unknown option (known: remove, set)");
    expect(problems({ backends: [{ url: "http://x" }], responseHeaders: { remove: ["server"], set: { Server: "switchyard" } } })).toEqual([
      'responseHeaders: got {"remove":["server"],"set":{"Server":"switchyard"}}, expected each header in either remove or set, not both (set already replaces)',
    ]);
  });

  test("closest() suggests only near misses", () => {
    expect(closest("stratgy", ["strategy", "listen"])).toBe("strategy");
    expect(closest("banana", ["strategy", "listen"])).toBeUndefined();
  });
});

/** What `check` accepts, `serve` can start with (one validation for both); zero timeouts and clashes refused. */
describe("one validation for check and serve", () => {
  const withBackend = (extra: Record<string, unknown>) => ({ backends: [{ url: "http://127.0.0.1:5001" }], ...extra });

  test("trustedProxies: prefix lengths per family, octets 0-255, IPv6 forms", () => {
    const good = ["10.0.0.0/8", "0.0.0.0/0", "192.168.1.7", "::1", "::/0", "2001:db8::/32", "::ffff:10.0.0.0/104", "fe80::1%eth0/64", "1:2:3:4:5:6:7:8/128", "::1.2.3.4"];
    expect(validateConfig(withBackend({ trustedProxies: good })).trustedProxies).toEqual(good);
    expect(() => cidrMatcher(good)).not.toThrow();
    const p = problems(withBackend({ trustedProxies: ["10.0.0.0/99", "999.1.1.1", "::1/129", "10.0.0.0/", "1::2::3", "010.0.0.1", "10.0.0.0/8/1", "1:2:3:4:5:6:7:8:9", "10.0.0.0/08", ""] }));
    expect(p).toEqual([
      'trustedProxies[0]: got "10.0.0.0/99", expected a prefix length of 0-32 for IPv4',
      'trustedProxies[1]: got "999.1.1.1", expected an IPv4 address (four numbers 0-255) or CIDR like "127.0.0.1" or "10.0.0.0/8"',
      'trustedProxies[2]: got "::1/129", expected a prefix length of 0-128 for IPv6',
      'trustedProxies[3]: got "10.0.0.0/", expected a prefix length of 0-32 after "/" for IPv4',
      'trustedProxies[4]: got "1::2::3", expected an IPv6 address or CIDR like "::1" or "2001:db8::/32"',
      'trustedProxies[5]: got "010.0.0.1", expected an IPv4 address (four numbers 0-255) or CIDR like "127.0.0.1" or "10.0.0.0/8"',
      'trustedProxies[6]: got "10.0.0.0/8/1", expected a prefix length of 0-32 after "/" for IPv4',
      'trustedProxies[7]: got "1:2:3:4:5:6:7:8:9", expected an IPv6 address or CIDR like "::1" or "2001:db8::/32"',
      'trustedProxies[8]: got "10.0.0.0/08", expected a prefix length of 0-32 after "/" for IPv4',
      'trustedProxies[9]: got "", expected an IPv4 address (four numbers 0-255) or CIDR like "127.0.0.1" or "10.0.0.0/8"',
    ]);
  });

  test("health check interval at least 100ms, timeouts more than 0, in both modes and per backend", () => {
    expect(problems(withBackend({ healthCheck: { interval: 0, timeout: "0ms" }, retry: { timeout: 0, perTryTimeout: "0s" }, timeouts: { connect: 0 } }))).toEqual([
      'retry.perTryTimeout: got "0s", expected a duration of more than 0',
      "retry.timeout: got 0, expected a duration of more than 0",
      "timeouts.connect: got 0, expected a duration of more than 0",
      "healthCheck.interval: got 0, expected at least 100ms between probes",
      'healthCheck.timeout: got "0ms", expected a duration of more than 0',
    ]);
    expect(problems({ mode: "tcp", backends: [{ url: "127.0.0.1:6379", healthCheck: { interval: "50ms" } }] })).toEqual([
      'backends[0].healthCheck.interval: got "50ms", expected at least 100ms between probes',
    ]);
    expect(validateConfig(withBackend({ healthCheck: { interval: "100ms" } })).healthCheck).toMatchObject({ interval: 100 });
  });

  test("retry.budget: on by default, an object of percent and minRetriesPerSecond, or false; each field named when wrong", () => {
    expect(validateConfig(withBackend({ retry: { budget: { percent: 50 } } })).retry.budget).toEqual({ percent: 50, minRetriesPerSecond: 3 });
    expect(validateConfig(withBackend({ retry: { budget: { minRetriesPerSecond: 0.5 } } })).retry.budget).toEqual({ percent: 20, minRetriesPerSecond: 0.5 });
    expect(validateConfig(withBackend({ retry: { budget: false } })).retry.budget).toBe(false);
    expect(problems(withBackend({ retry: { budget: { percent: 120, minRetriesPerSecond: -1 } } }))).toEqual([
      "retry.budget.percent: got 120, expected a percentage from 0 to 100",
      "retry.budget.minRetriesPerSecond: got -1, expected a number of retries per second, 0 or more",
    ]);
    expect(problems(withBackend({ retry: { budget: true } }))).toEqual(["retry.budget: got true, expected { percent, minRetriesPerSecond } or false (no budget)"]);
    expect(problems(withBackend({ retry: { budget: { minRetries: 3 } } }))).toEqual([
      "retry.budget.minRetries: unknown option (known: percent, minRetriesPerSecond)",
    ]);
  });

  test("listen.host and admin.host: an IP address or a host name, named when wrong", () => {
    expect(problems(withBackend({ listen: { host: "999.1.1.1" }, admin: { host: "[::1]" } }))).toEqual([
      'listen.host: got "999.1.1.1", expected an IPv4 address of four numbers 0-255, like "0.0.0.0" or "127.0.0.1"',
      'admin.host: got "[::1]", expected an IPv6 address without brackets, like "::1"',
    ]);
    expect(problems(withBackend({ mode: "tcp", backends: [{ url: "127.0.0.1:1" }], listen: { host: "foo bar" }, admin: { host: "::g" } }))).toEqual([
      'listen.host: got "foo bar", expected an IP address or a host name (letters, digits, "-" and "."), like "0.0.0.0", "::" or "localhost"',
      'admin.host: got "::g", expected an IPv6 address like "::" or "::1"',
    ]);
    for (const host of ["0.0.0.0", "::", "::1", "127.0.0.1", "localhost", "lb-1.internal.example"]) {
      expect(validateConfig(withBackend({ listen: { host, port: 8000 }, admin: false })).listen.host).toBe(host);
    }
  });

  test("the admin port may not be the proxy port on the same or a wildcard host", () => {
    const clash = 'admin.port: got 8000, expected a port other than listen.port (8000, on "0.0.0.0"): the admin listener on "127.0.0.1" cannot share it';
    expect(problems(withBackend({ listen: { port: 8000 }, admin: { port: 8000 } }))).toEqual([clash]);
    expect(problems({ mode: "tcp", backends: [{ url: "127.0.0.1:6379" }], listen: { port: 8000 }, admin: { port: 8000 } })).toEqual([clash]);
    expect(problems(withBackend({ lb_port: 8081 }))[0]).toStartWith("admin.port: got 8081, expected a port other than listen.port (8081");
    expect(problems(withBackend({ listen: { host: "127.0.0.1", port: 9000 }, admin: { host: "::", port: 9000 } }))).toHaveLength(1);
    // Different addresses, ephemeral ports, no admin: fine.
    expect(() => validateConfig(withBackend({ listen: { host: "127.0.0.1", port: 9000 }, admin: { host: "127.0.0.2", port: 9000 } }))).not.toThrow();
    expect(() => validateConfig(withBackend({ listen: { host: "0.0.0.0", port: 9000 }, admin: { host: "::1", port: 9000 } }))).not.toThrow();
    expect(() => validateConfig(withBackend({ listen: { port: 0 }, admin: { port: 0 } }))).not.toThrow();
    expect(() => validateConfig(withBackend({ listen: { port: 8081 }, admin: false }))).not.toThrow();
  });
});

test("admin.allowedHosts: names or addresses with an optional port", () => {
  const ok = validateConfig({ backends: [{ url: "http://x" }], admin: { allowedHosts: ["lb.example.com", "lb.example.com:443", "[2001:db8::1]:8081", "10.0.0.5"] } });
  expect(ok.admin && ok.admin.allowedHosts).toEqual(["lb.example.com", "lb.example.com:443", "[2001:db8::1]:8081", "10.0.0.5"]);
  expect(problems({ backends: [{ url: "http://x" }], admin: { allowedHosts: ["http://lb.example.com", "2001:db8::1", "lb:99999"] } })).toEqual([
    'admin.allowedHosts[0]: got "http://lb.example.com", expected a host name or address with an optional port, like "lb.example.com", "lb.example.com:443" or "[2001:db8::1]:8081"',
    'admin.allowedHosts[1]: got "2001:db8::1", expected a host name or address with an optional port, like "lb.example.com", "lb.example.com:443" or "[2001:db8::1]:8081"',
    'admin.allowedHosts[2]: got "lb:99999", expected a host name or address with an optional port, like "lb.example.com", "lb.example.com:443" or "[2001:db8::1]:8081"',
  ]);
});

describe("reading config files", () => {
  test("a directory is reported as one, not as a missing file", async () => {
    const sub = join(dir, "conf.d.json");
    mkdirSync(sub, { recursive: true });
    await expect(loadConfigFile(sub)).rejects.toThrow(/conf\.d\.json.*is a directory; expected a config file/s);
    await expect(loadConfigFile(join(dir, "nope", "x.json"))).rejects.toThrow(/file not found/);
  });

  test("YAML duplicate keys are refused with the key path and both lines", async () => {
    const file = write("dup.yaml", [
      "listen:",
      "  port: 8000",
      "backends:",
      "  - url: http://127.0.0.1:5001",
      "    weight: 2",
      "    weight: 3",
      "retry:",
      "  attempts: 2",
      "retry:",
      "  attempts: 5",
    ].join("\n"));
    const e = await loadConfigFile(file).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).problems).toEqual([
      "backends[0].weight: duplicate key (lines 5 and 6); each key may appear once",
      "retry: duplicate key (lines 7 and 9); each key may appear once",
    ]);
    expect((e as ConfigError).message).toContain("dup.yaml");
  });

  test("YAML: quoted keys, merge keys and block scalars are read right", async () => {
    const yaml = [
      "backends:",
      "  - url: http://127.0.0.1:5001",
      "    healthCheck: &check",
      "      path: /health",
      "      expectBody: |",
      "        ok: 1",
      "        ok: 1",
      "  - url: http://127.0.0.1:5002",
      "    healthCheck:",
      "      <<: *check",
      "      path: /ready",
      '"strategy": round-robin',
    ].join("\n");
    const c = await loadConfigFile(write("merge.yaml", yaml));
    expect(c.pools.default!.backends[1]!.healthCheck).toMatchObject({ path: "/ready", expectBody: "ok: 1\nok: 1\n" });
    expect(c.strategy).toBe("round-robin");
    const quoted = write("quoted.yaml", "backends:\n  - url: http://127.0.0.1:5001\nstrategy: random\n'strategy': round-robin\n");
    await expect(loadConfigFile(quoted)).rejects.toThrow(/strategy: duplicate key \(lines 3 and 4\)/);
  });

  test("JSON duplicate keys are refused too; TOML's parser refuses them itself", async () => {
    const json = write("dup.json", '{\n  "backends": [{"url": "http://127.0.0.1:5001"}],\n  "note": "a \\"strategy\\": here",\n  "strategy": "random",\n  "strategy": "round-robin"\n}');
    await expect(loadConfigFile(json)).rejects.toThrow(/strategy: duplicate key \(lines 4 and 5\)/);
    const toml = write("dup.toml", 'strategy = "random"\nstrategy = "round-robin"\n[[backends]]\nurl = "http://127.0.0.1:5001"\n');
    await expect(loadConfigFile(toml)).rejects.toThrow(/cannot parse TOML.*strategy/s);
  });
});
