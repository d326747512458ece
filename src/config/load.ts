/**
 * Reading a config file: parse JSON/YAML/TOML by extension, accept the seed format's aliases,
 * validate against the one schema, and turn every problem into one line that names the field,
 * the bad value and what was expected.
 */
import { Resolver } from "node:dns/promises";
import { stat } from "node:fs/promises";
import { extname } from "node:path";
import { duplicateKeys } from "./duplicates.ts";
import * as v from "valibot";
import { ConfigSchema, DEFAULT_ACME_DIRECTORY, ListenTlsSchema, type Config, type ConfigInput, type ParsedConfig } from "./schema.ts";
import { routeProblems } from "../route/schema.ts";
import { resolveEab } from "../acme/eab.ts";
import { expandConfig, listenerPath, poolModes, rawListeners, rawPools, shapeProblems } from "./expand.ts";
import { isWildcardHost, parseBackendAddress } from "./address.ts";
import { HASH_KEY_HINT } from "../policy/hash-key.ts";
import { readPair, readPem, tlsProblems } from "../tls/certificates.ts";
import { routeHostNames } from "../acme/paths.ts";
import type { ErrorCode } from "../errors.ts";
import { routeTracingProblems } from "../tracing/config.ts";

export class ConfigError extends Error {
  readonly code = "SY_CONFIG_INVALID" satisfies ErrorCode;
  constructor(
    readonly problems: string[],
    readonly source = "config",
  ) {
    super(`${source}: ${problems.length} problem${problems.length === 1 ? "" : "s"}\n  - ${problems.join("\n  - ")}`);
  }
}

/**
 * Parse the text of a config file by its extension. Syntax errors and duplicate keys become a
 * ConfigError. TOML forbids duplicates and Bun's parser refuses them; YAML 1.2 (§3.2.1.1) and
 * JSON (RFC 8259 §4: names "SHOULD be unique") parsers silently keep the last, so a second
 * `retry:` block would quietly replace the first: duplicateKeys() finds them.
 */
export function parseConfigText(text: string, file: string): unknown {
  const ext = extname(file).slice(1).toLowerCase();
  const format = ext === "yml" ? "yaml" : ext;
  let parsed: unknown;
  try {
    if (format === "yaml") parsed = Bun.YAML.parse(text);
    else if (format === "toml") return Bun.TOML.parse(text);
    else if (format === "json") parsed = JSON.parse(text);
  } catch (e) {
    throw new ConfigError([`cannot parse ${ext.toUpperCase()}: ${(e as Error).message}`], file);
  }
  if (format === "yaml" || format === "json") {
    const duplicates = duplicateKeys(text, format);
    if (duplicates.length > 0) throw new ConfigError(duplicates, file);
    return parsed;
  }
  const what = ext ? `unknown file type ".${ext}"` : "no file extension";
  throw new ConfigError([`${what}: expected .json, .yaml, .yml or .toml to tell the format`], file);
}

/** Read and parse a config file without validating it (the CLI applies flags first). */
export async function readConfigFile(file: string): Promise<Record<string, unknown>> {
  let info;
  try {
    info = await stat(file);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new ConfigError([`file not found`], file);
    if (code === "EACCES") throw new ConfigError([`permission denied: cannot read the file`], file);
    throw new ConfigError([`cannot read: ${(e as Error).message}`], file);
  }
  if (info.isDirectory()) throw new ConfigError([`is a directory; expected a config file (.json, .yaml, .yml or .toml)`], file);
  let text: string;
  try {
    text = await Bun.file(file).text();
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new ConfigError([code === "EACCES" ? `permission denied: cannot read the file` : `cannot read: ${(e as Error).message}`], file);
  }
  const raw = parseConfigText(text, file);
  if (!isPlainObject(raw)) throw new ConfigError([`expected an object at the top level, got ${show(raw)}`], file);
  return raw;
}

export async function loadConfigFile(file: string): Promise<Config> {
  return validateConfig(await readConfigFile(file), file);
}

/**
 * The seed format ({"lb_port": 8000, "backends": [...]}) loads unchanged: its keys are mapped
 * onto ours before validation, so they never show up as unknown keys.
 */
function applyAliases(raw: unknown, problems: string[]): unknown {
  if (!isPlainObject(raw) || !("lb_port" in raw)) return raw;
  const { lb_port, ...rest } = raw;
  if (isPlainObject(rest.listen) && "port" in rest.listen) {
    problems.push(`lb_port: both "lb_port" and "listen.port" are set; keep one`);
    return rest;
  }
  return { ...rest, listen: { ...(isPlainObject(rest.listen) ? rest.listen : {}), port: lb_port } };
}

/** Validate a parsed config object. Returns the normalized config or throws with every problem. */
export const DEFAULT_DNS_REFRESH_MS = 10_000;

export function validateConfig(raw: unknown, source = "config"): Config {
  const problems: string[] = [];
  const input = applyAliases(raw, problems);
  if (!isPlainObject(input)) throw new ConfigError([`expected an object at the top level, got ${show(input)}`], source);

  const result = v.safeParse(ConfigSchema, input);
  if (!result.success) {
    for (const issue of result.issues) problems.push(...describeIssue(issue, input, []));
  }
  if (result.success) {
    const out = result.output as ParsedConfig;
    const pools = rawPools(input).map(([n]) => n);
    problems.push(...routeProblems(out.routes ?? [], pools));
    problems.push(...routeTracingProblems(out));
  }
  // valibot's strictObject reports only the first unknown key of an object; report them all.
  problems.push(...unknownKeys(input, [ConfigSchema], []));
  // Checks that span fields run on the raw input too, so that they are reported together with
  // the schema's problems rather than only after those are fixed.
  problems.push(...crossFieldProblems(input));
  if (problems.length > 0) throw new ConfigError(problems, source);

  const config = expandConfig(result.output as ParsedConfig, input);
  for (const pool of Object.values(config.pools)) {
    pool.backends.forEach((b, i) => {
      if (b.dns !== undefined) {
        // Discovered backends are named "<name>#<address>:<port>" after this (src/discovery/dns.ts).
        b.name ??= b.dns;
        b.type ??= "A";
        b.refresh ??= DEFAULT_DNS_REFRESH_MS;
        return;
      }
      b.name ??= `backend-${i + 1}`;
      b.url = parseBackendAddress(b.url!, pool.mode).href;
    });
  }
  return config;
}

function crossFieldProblems(input: Record<string, unknown>): string[] {
  const problems: string[] = shapeProblems(input);
  const modes = poolModes(input);
  for (const [name, pool, at] of rawPools(input)) {
    const mode = modes.get(name) ?? "http";
    const backends = Array.isArray(pool.backends) ? pool.backends : [];
    const where = at === "backends" ? "backends" : `${at}.backends`;
    problems.push(...backendListProblems(backends, where, mode));
    if (isPlainObject(pool.tls)) problems.push(...backendTlsProblems({ url: "https://pool", tls: pool.tls }, at, mode));
    // A pool's retry falls back to the top-level one field by field (config/expand.ts): the
    // per-try bound is checked on what the pool will run with.
    if (at !== "backends" && isPlainObject(pool.retry)) {
      const retry = { ...(isPlainObject(input.retry) ? input.retry : {}), ...pool.retry };
      const merged = v.safeParse(ConfigSchema.entries.retry, retry);
      if (merged.success && merged.output.perTryTimeout > merged.output.timeout) {
        problems.push(`${at}.retry.perTryTimeout: got ${show(retry.perTryTimeout ?? "5s")}, expected at most the pool's retry.timeout (${show(retry.timeout ?? "15s")})`);
      }
    }
    problems.push(...poolOptionProblems(at === "backends" ? "" : `${at}.`, { ...input, ...pool }, mode));
  }
  const listeners = rawListeners(input);
  const mode = listeners.some((l) => l.mode !== "tcp") ? "http" : "tcp";
  const timeouts = isPlainObject(input.timeouts) ? input.timeouts : {};
  const idle = v.safeParse(ConfigSchema.entries.timeouts, timeouts);
  if (mode === "http" && idle.success && idle.output.idle > 255_000) {
    problems.push(`timeouts.idle: got ${show(timeouts.idle)}, expected at most 255s in HTTP mode (Bun.serve's limit)`);
  }
  problems.push(...listenerClash(input, listeners));
  listeners.forEach((l, i) => problems.push(...listenTlsProblems(l, listenerPath(input, i), input)));
  problems.push(...eabClash(input, listeners));
  if (isPlainObject(input.acme) && typeof input.acme.directoryCa === "string" && input.acme.directoryCa !== "") readPem(input.acme.directoryCa, "CA certificate", problems, "acme.directoryCa");
  // Bun.serve verifies a client certificate but shows the handler nothing of it: the fetch
  // engine could neither pass the certificate on nor strip forged fields for a reason.
  if (input.engine === "fetch") {
    listeners.forEach((l, i) => {
      if (l.mode !== "tcp" && isPlainObject(l.tls) && l.tls.clientAuth !== undefined) {
        problems.push(`${listenerPath(input, i)}.tls.clientAuth: set with engine "fetch"; expected engine "socket" (Bun.serve verifies a client certificate but does not show it to the handler, so it cannot reach backends)`);
      }
      // Bun.serve chooses a certificate by server name alone and shows no ClientHello first.
      if (l.mode !== "tcp" && isPlainObject(l.tls) && isPlainObject(l.tls.acme) && l.tls.acme.challenge === "tls-alpn-01") {
        problems.push(`${listenerPath(input, i)}.tls.acme.challenge: got "tls-alpn-01" with engine "fetch"; expected "http-01", or engine "socket" (Bun.serve chooses a certificate by server name only, so it cannot answer the CA's acme-tls/1 handshakes apart from clients' of the same name)`);
      }
    });
  }
  if (isPlainObject(input.dns) && Array.isArray(input.dns.servers)) {
    input.dns.servers.forEach((server, i) => {
      if (typeof server !== "string" || server === "") return;
      try {
        // The resolver's own parser decides, so that what passes here is what it will use.
        new Resolver().setServers([server]);
      } catch {
        problems.push(`dns.servers[${i}]: got ${show(server)}, expected an address with an optional port, like "10.0.0.2", "127.0.0.1:5353" or "[::1]:53"`);
      }
    });
  }
  const retry = isPlainObject(input.retry) ? input.retry : {};
  const per = v.safeParse(ConfigSchema.entries.retry, retry);
  if (per.success && per.output.perTryTimeout > per.output.timeout) {
    problems.push(`retry.perTryTimeout: got ${show(retry.perTryTimeout)}, expected at most retry.timeout (${show(retry.timeout ?? "15s")})`);
  }
  return problems;
}

/** One pool's backends: each a url or a dns entry, addresses of the pool's kind, names unique in the pool. */
function backendListProblems(backends: unknown[], at: string, mode: "http" | "tcp"): string[] {
  const problems: string[] = [];
  const names = new Map<string, number>();
  backends.forEach((b, i) => {
    if (!isPlainObject(b)) return;
    problems.push(...dnsEntryProblems(b, `${at}[${i}]`));
    if (typeof b.url === "string" && b.url !== "") {
      try {
        parseBackendAddress(b.url, mode);
      } catch (e) {
        problems.push(`${at}[${i}].url: got ${show(b.url)}, expected ${(e as Error).message}`);
      }
    }
    problems.push(...backendTlsProblems(b, `${at}[${i}]`, mode));
    const name = typeof b.name === "string" ? b.name : typeof b.dns === "string" ? b.dns : `backend-${i + 1}`;
    const first = names.get(name);
    if (first !== undefined) problems.push(`${at}[${i}].name: got ${show(name)}, expected a unique name (${at}[${first}] has it)`);
    else names.set(name, i);
  });
  return problems;
}

/**
 * The options of one pool that depend on each other or on its kind; `input` is the pool's
 * options over the top-level ones, as written, and `at` the prefix its own are named by.
 */
function poolOptionProblems(at: string, input: Record<string, unknown>, mode: "http" | "tcp"): string[] {
  const problems: string[] = [];
  const strategy = input.strategy ?? "least-connections";
  if (strategy === "consistent-hash" && input.hash === undefined) {
    problems.push(`${at}hash: missing; "strategy": "consistent-hash" needs "hash": { "key": ${HASH_KEY_HINT} }`);
  }
  if (input.hash !== undefined && strategy !== "consistent-hash") {
    problems.push(`${at}hash: set, but strategy is ${show(strategy)}; expected "strategy": "consistent-hash" (hash is used by no other strategy)`);
  }
  if (mode === "tcp") {
    const key = isPlainObject(input.hash) ? input.hash.key : undefined;
    if (typeof key === "string" && key !== "ip") {
      problems.push(`${at}hash.key: got ${show(key)}, expected "ip" in TCP mode (a TCP connection has no headers, cookies or path)`);
    }
    if (input.sticky !== undefined) problems.push(`${at}sticky: set in TCP mode; expected it only in HTTP mode (it works by cookie)`);
  }
  return problems;
}

/** A backend entry gives url or dns; port, type, refresh and scheme belong to dns. */
function dnsEntryProblems(b: Record<string, unknown>, at: string): string[] {
  const hasUrl = b.url !== undefined;
  const hasDns = b.dns !== undefined;
  if (!hasUrl && !hasDns) return [`${at}.url: missing; this option is required (or dns, for DNS discovery)`];
  if (hasUrl && hasDns) return [`${at}: got both url and dns, expected one: a fixed address or a name to discover`];
  const dnsOnly = ["port", "type", "refresh", "scheme"].filter((k) => b[k] !== undefined);
  if (hasUrl) return dnsOnly.map((k) => `${at}.${k}: only with dns (DNS discovery); a url entry takes none`);
  const type = b.type ?? "A";
  if ((type === "A" || type === "AAAA") && b.port === undefined) {
    return [`${at}.port: missing; an ${type} record gives addresses, not ports: give the port they listen on`];
  }
  const problems: string[] = [];
  if (type === "SRV" && b.port !== undefined) problems.push(`${at}.port: got ${show(b.port)}, expected none: SRV records carry their ports`);
  if (type === "SRV" && b.priority !== undefined) problems.push(`${at}.priority: got ${show(b.priority)}, expected none: SRV records carry their priorities`);
  return problems;
}

/**
 * A listener's tls: every certificate and key file readable, each key the certificate's (read
 * now, so that `check` finds what `serve` would). httpRedirect needs HTTPS to redirect to, and
 * a port of its own. `at`: how the listener is named ("listen" or "listeners[i]").
 */
function listenTlsProblems(l: Record<string, unknown>, at: string, input: Record<string, unknown>): string[] {
  const tlsIn = v.safeParse(ListenTlsSchema, l.tls);
  const tls = l.tls !== undefined && tlsIn.success ? tlsIn.output : undefined;
  const problems: string[] = [];
  if (tls !== undefined && tls.acme === undefined && (tls.cert === undefined || tls.key === undefined)) {
    problems.push(tls.cert === undefined && tls.key === undefined ? `${at}.tls: neither cert and key nor acme; expected cert and key files, or acme to get them from a CA` : `${at}.tls.${tls.cert === undefined ? "cert" : "key"}: missing; expected both cert and key`);
  } else if (tls !== undefined && tls.acme === undefined) {
    problems.push(...tlsProblems({ ...tls, cert: tls.cert!, key: tls.key! }).map((p) => p.replace(/^listen\.tls/, `${at}.tls`)));
  } else if (tls?.acme !== undefined) {
    problems.push(...acmeProblems(l, tls, at, input));
  }
  const redirect = l.httpRedirect;
  if (isPlainObject(redirect)) {
    if (l.mode !== "tcp" && l.tls === undefined) problems.push(`${at}.httpRedirect: set without ${at}.tls; expected it only when the proxy listens over HTTPS`);
    if (typeof redirect.port === "number" && redirect.port !== 0 && redirect.port === l.port) problems.push(`${at}.httpRedirect.port: got ${redirect.port}, expected a port other than ${at}.port`);
  }
  return problems;
}

/**
 * tls.acme: a store to keep the certificates in, names to order, and the files it names besides
 * readable. The certificates themselves may not exist yet (placeholders serve until then).
 */
function acmeProblems(l: Record<string, unknown>, tls: NonNullable<v.InferOutput<typeof ListenTlsSchema>>, at: string, input: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (!isPlainObject(input.acme)) problems.push(`${at}.tls.acme: set without acme.storage; expected a top-level acme: { storage: DIRECTORY } to keep the account and certificates in`);
  if ((tls.cert === undefined) !== (tls.key === undefined)) problems.push(`${at}.tls.${tls.cert === undefined ? "cert" : "key"}: missing; expected both cert and key, or neither (acme's first name is the default)`);
  if (tls.cert !== undefined && tls.key !== undefined) readPair(tls.cert, tls.key, `${at}.tls`, problems);
  tls.sni.forEach((e, i) => readPair(e.cert, e.key, `${at}.tls.sni[${i}]`, problems));
  if (tls.clientAuth !== undefined) readPem(tls.clientAuth.ca, "CA certificate", problems, `${at}.tls.clientAuth.ca`);
  // A hook that cannot run would fail every order, found only when one is due: said now.
  const program = tls.acme!.dns01?.command[0];
  if (program !== undefined && Bun.which(program) === null) {
    problems.push(`${at}.tls.acme.dns01.command[0]: got ${show(program)}, expected an executable program (a path, or a name on PATH)`);
  }
  if (tls.acme!.eab?.hmacKeyFile !== undefined) {
    const { problem } = resolveEab(tls.acme!.eab);
    if (problem !== undefined) problems.push(`${at}.tls.acme.eab.hmacKeyFile: ${problem}`);
  }
  if (tls.acme!.domains === undefined) {
    if (l.mode === "tcp") problems.push(`${at}.tls.acme.domains: missing on a TCP listener; expected the names to get certificates for (a TCP listener has no Host routes to take them from)`);
    else {
      const routes = Array.isArray(input.routes) ? input.routes.filter(isPlainObject).map((r) => ({ name: String(r.name), match: isPlainObject(r.match) ? (r.match as { host?: string | string[]; sni?: unknown }) : {} })) : [];
      const only = Array.isArray(l.routes) ? l.routes.map(String) : undefined;
      if (routeHostNames(routes, only).length === 0) problems.push(`${at}.tls.acme.domains: missing, and no route of this listener matches an exact host; expected domains: [NAME, ...] or routes with match.host`);
    }
  }
  return problems;
}

/**
 * tls.acme.eab: one account per directory in a store, so the listeners that name one directory
 * must bind it to the same external account (or all to none).
 */
function eabClash(input: Record<string, unknown>, listeners: Record<string, unknown>[]): string[] {
  const first = new Map<string, { at: string; eab: string }>();
  const problems: string[] = [];
  listeners.forEach((l, i) => {
    const a = isPlainObject(l.tls) && isPlainObject(l.tls.acme) ? l.tls.acme : undefined;
    if (a === undefined) return;
    const directory = typeof a.directory === "string" ? a.directory : DEFAULT_ACME_DIRECTORY;
    const at = `${listenerPath(input, i)}.tls.acme.eab`;
    // Compared whole; said by its key ID only (the HMAC key is a secret).
    const eab = JSON.stringify(a.eab ?? null);
    const said = isPlainObject(a.eab) ? `kid ${show(a.eab.kid)}` : "none";
    const seen = first.get(directory);
    if (seen === undefined) first.set(directory, { at, eab });
    else if (seen.eab !== eab) problems.push(`${at}: got ${said}, unlike ${seen.at} for the same directory ${directory}; expected the same binding there (one account per directory), or none on both`);
  });
  return problems;
}

/** backends[i].tls: only for https:// backends in HTTP mode, and its CA file readable. */
function backendTlsProblems(b: Record<string, unknown>, at: string, mode: "http" | "tcp"): string[] {
  if (!isPlainObject(b.tls)) return [];
  const where = `${at}.tls`;
  if (mode === "tcp") return [`${where}: set in TCP mode; expected it only for https:// backends in HTTP mode`];
  if (typeof b.url === "string" && !/^https:\/\//i.test(b.url)) return [`${where}: set for ${show(b.url)}; expected an https:// URL (tls applies to HTTPS backends)`];
  const problems: string[] = [];
  if (typeof b.tls.ca === "string" && b.tls.ca !== "") readPem(b.tls.ca, "CA certificate", problems, `${where}.ca`);
  const { cert, key } = b.tls;
  if ((cert === undefined) !== (key === undefined)) problems.push(`${where}: ${cert === undefined ? "key" : "cert"} set alone; expected cert and key together (a client certificate and its private key)`);
  else if (typeof cert === "string" && typeof key === "string" && cert !== "" && key !== "") readPair(cert, key, where, problems);
  return problems;
}

/**
 * Two listeners on one port would fail to bind ("address already in use") at start; say so
 * now, naming both fields. Port 0 asks for an ephemeral port and never clashes. A wildcard
 * ("0.0.0.0", "::") clashes with any host of its family; "::" is dual-stack on Linux, so it
 * clashes with IPv4 hosts too.
 */
function listenerClash(input: Record<string, unknown>, listeners: Record<string, unknown>[]): string[] {
  const admin = v.safeParse(ConfigSchema.entries.admin, input.admin);
  const bound: { at: string; host: string; port: number }[] = [];
  const hostOf = (x: unknown) => (typeof x === "string" ? x : "0.0.0.0");
  listeners.forEach((l, i) => {
    const at = listenerPath(input, i);
    const port = typeof l.port === "number" ? l.port : at === "listen" ? 8000 : 0;
    bound.push({ at: `${at}.port`, host: hostOf(l.host), port });
    if (isPlainObject(l.httpRedirect) && typeof l.httpRedirect.port === "number") {
      bound.push({ at: `${at}.httpRedirect.port`, host: hostOf(l.httpRedirect.host ?? l.host), port: l.httpRedirect.port });
    }
  });
  if (admin.success && admin.output !== false) bound.push({ at: "admin.port", host: admin.output.host, port: admin.output.port });
  const v6 = (h: string) => h.includes(":");
  const clash = (a: string, b: string) => a === b || a === "::" || b === "::" || (isWildcardHost(a) && !v6(b)) || (isWildcardHost(b) && !v6(a));
  const problems: string[] = [];
  for (let j = 1; j < bound.length; j++) {
    const b = bound[j]!;
    if (b.port === 0) continue;
    const first = bound.slice(0, j).find((a) => a.port === b.port && clash(a.host, b.host));
    const which = b.at === "admin.port" ? "the admin listener" : "a listener";
    if (first) problems.push(`${b.at}: got ${b.port}, expected a port other than ${first.at} (${first.port}, on ${show(first.host)}): ${which} on ${show(b.host)} cannot share it`);
  }
  return problems;
}

/** `prefix`: the path of the union this issue came from (a union's sub-issues are relative to it). */
function describeIssue(issue: v.BaseIssue<unknown>, input: unknown, prefix: (string | number)[]): string[] {
  const keys = [...prefix, ...(issue.path ?? []).map((p) => p.key as string | number)];
  const where = formatPath(keys) || "(top level)";
  if (issue.type === "union" && issue.issues) {
    // "an object or false" given an object with a bad field: report the field, not the union.
    const deeper = issue.issues.filter((i) => (i.path?.length ?? 0) > 0);
    if (deeper.length > 0) return deeper.flatMap((i) => describeIssue(i, input, keys));
  }
  // Unknown keys are reported by unknownKeys(), all of them.
  if (issue.type === "strict_object" && issue.expected === "never") return [];
  if (issue.type === "strict_object" && issue.received === "undefined") {
    return [`${where}: missing; this option is required`];
  }
  // A record's key that is refused (a pool's name) is shown, not the value under it.
  const last = issue.path?.at(-1);
  const raw = last?.origin === "key" ? last.key : valueAt(input, keys);
  const got = raw === undefined ? "nothing" : show(raw);
  const message = issue.message.startsWith("Invalid") ? `expected ${issue.expected}` : issue.message;
  return [`${where}: got ${got}, ${message}`];
}

/**
 * Every key of `value` that the schema nodes at this path do not define, with a did-you-mean
 * for near misses, recursing into known objects and lists.
 */
function unknownKeys(value: unknown, schemas: unknown[], path: (string | number)[]): string[] {
  const nodes = schemas.flatMap(unwrap);
  if (Array.isArray(value)) {
    const items = nodes.flatMap((n) => (n.item ? [n.item] : []));
    return items.length ? value.flatMap((x, i) => unknownKeys(x, items, [...path, i])) : [];
  }
  if (!isPlainObject(value)) return [];
  const objects = nodes.filter((n) => n.entries);
  // Not an object here, or a free-form record (health check headers): nothing to check.
  if (objects.length === 0 || nodes.some((n) => n.type === "record")) return [];
  const known = [...new Set(objects.flatMap((n) => Object.keys(n.entries!)))];
  return Object.keys(value).flatMap((key) => {
    const entry = objects.flatMap((n) => (key in n.entries! ? [n.entries![key]] : []));
    if (entry.length > 0) return unknownKeys(value[key], entry, [...path, key]);
    const hint = closest(key, known);
    const where = formatPath([...path, key]);
    return [`${where}: unknown option${hint ? `; did you mean "${hint}"?` : ` (known: ${known.join(", ")})`}`];
  });
}

type SchemaNode = { type?: string; wrapped?: unknown; options?: unknown[]; item?: unknown; entries?: Record<string, unknown> };
function unwrap(schema: unknown): SchemaNode[] {
  const node = schema as SchemaNode;
  if (node.wrapped) return unwrap(node.wrapped);
  if (node.options) return node.options.flatMap(unwrap);
  return [node];
}

/** The known key nearest to a typo, if it is close enough to be a likely intent. */
export function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

function formatPath(keys: (string | number)[]): string {
  return keys.map((k, i) => (typeof k === "number" ? `[${k}]` : i === 0 ? k : `.${k}`)).join("");
}

function valueAt(input: unknown, keys: (string | number)[]): unknown {
  let x: unknown = input;
  for (const k of keys) x = x != null && typeof x === "object" ? (x as Record<string | number, unknown>)[k] : undefined;
  return x;
}

function show(x: unknown): string {
  const s = JSON.stringify(x);
  return s === undefined ? String(x) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

export type { Config, ConfigInput };
