/**
 * Helpers for the admin tests: a balancer with its admin port in front of sim backends, a
 * traffic loop, a server-sent-events client, and a strict parser of the Prometheus text
 * exposition format.
 */
import { startRig, testEngine, type TestRig } from "../helpers/balancer.ts";
import { startBalancer, type Balancer } from "../../src/balancer.ts";
import { validateConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { startCluster, type SimCluster } from "../../sim/cluster.ts";
import { waitFor } from "../helpers/wait.ts";

export interface Stack extends TestRig {
  adminUrl: string;
}

/**
 * `count` sims behind a balancer with its admin port, fast HTTP health checks (so a sim set
 * down shows within a few hundred ms) and the sims' /stats as statsPath.
 */
export async function startStack(count = 3, config: Record<string, unknown> = {}): Promise<Stack> {
  const rig = await startRig(count, (cluster) => ({
    admin: { host: "127.0.0.1", port: 0 },
    log: { access: false },
    healthCheck: { path: "/health", interval: "150ms", timeout: "500ms", fall: 1, rise: 1 },
    backends: cluster.backends.map((b) => ({ name: b.name, url: b.url, statsPath: "/stats" })),
    ...config,
  }));
  if (rig.balancer.adminUrl === undefined) {
    await rig.stop();
    throw new Error("the admin port did not start");
  }
  return { ...rig, adminUrl: rig.balancer.adminUrl };
}

export interface PoolsStack {
  lb: Balancer;
  /** Sims behind the pool api (2) and the pool web (3; the third is for tests that add one). */
  api: SimCluster;
  web: SimCluster;
  adminUrl: string;
  stop(): Promise<void>;
}

export const POOLS_TOKEN = "pools-test-token-0123456789";

/**
 * Three pools and three routes in front of real sims, with the admin port and a token: pools
 * api (b1, b2; round-robin), web (b1, "edge/1": a name shared with api, and one with "/" in it)
 * and shadow (one backend on a closed port, a mirror's only pool, down once probed); routes
 * api (host api.example.com, path /v1, stripped), maint (pathExact /maint, respond 503) and
 * site (everything else to web, mirrored to shadow). Resolves once shadow's backend is down.
 */
export async function startPoolsStack(): Promise<PoolsStack> {
  const api = await startCluster({ count: 2, basePort: 0, namePrefix: "api-" });
  const web = await startCluster({ count: 3, basePort: 0, namePrefix: "web-" });
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const closed = probe.port;
  probe.stop(true);
  const lb = await startBalancer(
    validateConfig({
      ...testEngine(),
      admin: { host: "127.0.0.1", port: 0, token: POOLS_TOKEN },
      log: { access: false },
      healthCheck: { path: "/health", interval: "150ms", timeout: "500ms", fall: 1, rise: 1 },
      listeners: [{ name: "main", host: "127.0.0.1", port: 0 }],
      pools: {
        api: { strategy: "round-robin", backends: [{ name: "b1", url: api.backends[0]!.url }, { name: "b2", url: api.backends[1]!.url }] },
        web: { backends: [{ name: "b1", url: web.backends[0]!.url }, { name: "edge/1", url: web.backends[1]!.url }] },
        shadow: { backends: [{ name: "s1", url: `http://127.0.0.1:${closed}` }] },
      },
      routes: [
        { name: "api", match: { host: "api.example.com", path: "/v1" }, pool: "api", rewrite: { stripPrefix: "/v1" } },
        { name: "maint", match: { pathExact: "/maint" }, respond: { status: 503, body: "down for maintenance" } },
        { name: "site", pool: "web", mirror: { pool: "shadow", percent: 100 } },
      ],
    }),
    { env: {}, logger: memoryLogger() },
  );
  const stop = async () => {
    await lb.stop(false);
    await api.stop();
    await web.stop();
  };
  try {
    await waitFor(() => lb.pools.get("shadow")!.pool.availableCount() === 0, "the shadow pool's backend to be down", 3000);
  } catch (e) {
    await stop();
    throw e;
  }
  return { lb, api, web, adminUrl: lb.adminUrl!, stop };
}

/** Sends requests through `url` from `concurrency` loops until stopped; counts what came back. */
export function traffic(url: string, concurrency = 2): { sent: () => number; stop: () => Promise<void> } {
  let running = true;
  let sent = 0;
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      try {
        const res = await fetch(url);
        await res.arrayBuffer();
        sent++;
      } catch {
        await Bun.sleep(5);
      }
    }
  });
  return {
    sent: () => sent,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Server-sent events (https://html.spec.whatwg.org/multipage/server-sent-events.html)

export interface SseEvent {
  event: string;
  data: string;
  id: string | undefined;
}

export interface SseClient {
  readonly status: number;
  readonly headers: Headers;
  /** The last `retry:` value seen, ms. */
  readonly retry: number | undefined;
  /** The next event; rejects after `timeoutMs`. */
  next(timeoutMs?: number): Promise<SseEvent>;
  close(): Promise<void>;
}

/** A minimal EventSource-style reader over fetch, parsing the stream as the spec does. */
export async function sseConnect(url: string): Promise<SseClient> {
  const controller = new AbortController();
  const res = await fetch(url, { headers: { accept: "text/event-stream" }, signal: controller.signal });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const queue: SseEvent[] = [];
  let buffer = "";
  let data: string[] = [];
  let event = "";
  let id: string | undefined;
  let retry: number | undefined;

  const feedLine = (line: string) => {
    if (line === "") {
      if (data.length > 0) queue.push({ event: event || "message", data: data.join("\n"), id });
      data = [];
      event = "";
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") event = value;
    else if (field === "id") id = value;
    else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
  };

  const pump = async (deadline: number): Promise<void> => {
    while (queue.length === 0) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error("timed out waiting for an event");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const chunk = await Promise.race([
        reader.read(),
        new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), left))),
      ]);
      clearTimeout(timer);
      if (chunk === "timeout") throw new Error("timed out waiting for an event");
      if (chunk.done) throw new Error("the event stream ended");
      buffer += chunk.value;
      // Lines end with CRLF, LF or CR.
      const parts = buffer.split(/\r\n|\n|\r/);
      buffer = parts.pop() ?? "";
      for (const line of parts) feedLine(line);
    }
  };

  return {
    status: res.status,
    headers: res.headers,
    get retry() {
      return retry;
    },
    async next(timeoutMs = 3000) {
      await pump(performance.now() + timeoutMs);
      return queue.shift()!;
    },
    async close() {
      controller.abort();
      await reader.cancel().catch(() => {});
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format)

export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
  timestamp?: number;
}

export interface Family {
  name: string;
  type: MetricType;
  help: string | undefined;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<MetricType>(["counter", "gauge", "histogram", "summary", "untyped"]);

export class ExpositionError extends Error {
  constructor(line: number, message: string, text: string) {
    super(`line ${line}: ${message}: ${JSON.stringify(text)}`);
  }
}

/**
 * Parses the text format and rejects anything the spec does not allow: bad names, bad label
 * escapes, duplicate labels or series, a TYPE after its samples or given twice, a family whose
 * lines are not one group, histogram samples other than _bucket/_sum/_count, buckets without
 * `le`, not ascending or not cumulative, a missing +Inf bucket or one that differs from _count.
 */
export function parseExposition(text: string): Map<string, Family> {
  if (text.length > 0 && !text.endsWith("\n")) throw new Error("the exposition must end with a line feed");
  const families = new Map<string, Family>();
  const closed = new Set<string>();
  let current: Family | undefined;
  const seen = new Set<string>();
  const lines = text.split("\n");
  lines.pop();

  const enter = (name: string, n: number, line: string): Family => {
    if (current?.name === name) return current;
    if (closed.has(name) || families.has(name)) throw new ExpositionError(n, `the lines of family ${name} are not one group`, line);
    if (current) closed.add(current.name);
    current = { name, type: "untyped", help: undefined, samples: [] };
    families.set(name, current);
    return current;
  };

  lines.forEach((line, i) => {
    const n = i + 1;
    if (line.trim() === "") return;
    if (line.startsWith("#")) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest = ""] = m;
      if (!METRIC_NAME.test(name!)) throw new ExpositionError(n, "bad metric name", line);
      const fam = enter(name!, n, line);
      if (kind === "HELP") {
        if (fam.help !== undefined) throw new ExpositionError(n, "a second HELP", line);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ""))) throw new ExpositionError(n, "bad escape in HELP", line);
        fam.help = rest.replace(/\\(\\|n)/g, (_, c: string) => (c === "n" ? "\n" : "\\"));
      } else {
        const type = rest.trim() as MetricType;
        if (!TYPES.has(type)) throw new ExpositionError(n, "unknown TYPE", line);
        if (fam.samples.length > 0) throw new ExpositionError(n, "TYPE after samples", line);
        if (fam.type !== "untyped" || seen.has(`type:${name}`)) throw new ExpositionError(n, "a second TYPE", line);
        seen.add(`type:${name}`);
        fam.type = type;
      }
      return;
    }
    const sample = parseSampleLine(line, n);
    // Which family does the sample belong to?
    let familyName = sample.name;
    if (current && current.name !== sample.name && (current.type === "histogram" || current.type === "summary")) {
      const suffixes = current.type === "histogram" ? ["_bucket", "_sum", "_count"] : ["_sum", "_count"];
      if (suffixes.some((s) => sample.name === current!.name + s)) familyName = current.name;
    }
    const fam = enter(familyName, n, line);
    if (fam.type === "histogram" && !["_bucket", "_sum", "_count"].some((s) => sample.name === fam.name + s)) {
      throw new ExpositionError(n, `histogram ${fam.name} has a sample that is not _bucket, _sum or _count`, line);
    }
    if (fam.type === "histogram" && sample.name.endsWith("_bucket") && sample.labels.le === undefined) {
      throw new ExpositionError(n, "a bucket without le", line);
    }
    if (fam.type === "counter" && !(sample.value >= 0)) throw new ExpositionError(n, "a negative or NaN counter", line);
    const key = sample.name + JSON.stringify(Object.entries(sample.labels).sort());
    if (seen.has(key)) throw new ExpositionError(n, "a duplicate series", line);
    seen.add(key);
    fam.samples.push(sample);
  });

  for (const fam of families.values()) if (fam.type === "histogram") checkHistogram(fam);
  return families;
}

function parseSampleLine(line: string, n: number): Sample {
  let i = 0;
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (!nameMatch) throw new ExpositionError(n, "bad metric name", line);
  const name = nameMatch[0];
  i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === "{") {
    i++;
    for (;;) {
      if (line[i] === "}") {
        i++;
        break;
      }
      const ln = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
      if (!ln) throw new ExpositionError(n, "bad label name", line);
      const labelName = ln[0];
      if (!LABEL_NAME.test(labelName) || labelName.startsWith("__")) throw new ExpositionError(n, "reserved or bad label name", line);
      i += labelName.length;
      if (line[i] !== "=" || line[i + 1] !== '"') throw new ExpositionError(n, 'expected =" after a label name', line);
      i += 2;
      let value = "";
      for (;;) {
        const c = line[i];
        if (c === undefined) throw new ExpositionError(n, "unterminated label value", line);
        if (c === "\\") {
          const e = line[i + 1];
          if (e === "\\") value += "\\";
          else if (e === '"') value += '"';
          else if (e === "n") value += "\n";
          else throw new ExpositionError(n, "bad escape in a label value", line);
          i += 2;
          continue;
        }
        if (c === '"') {
          i++;
          break;
        }
        value += c;
        i++;
      }
      if (labelName in labels) throw new ExpositionError(n, "a duplicate label", line);
      labels[labelName] = value;
      if (line[i] === ",") i++;
      else if (line[i] !== "}") throw new ExpositionError(n, "expected , or } after a label", line);
    }
  }
  const rest = line.slice(i);
  const m = /^[ \t]+(\S+)(?:[ \t]+(-?\d+))?[ \t]*$/.exec(rest);
  if (!m) throw new ExpositionError(n, "expected a value (and an optional timestamp)", line);
  const value = parseValue(m[1]!);
  if (value === undefined) throw new ExpositionError(n, "bad value", line);
  return { name, labels, value, ...(m[2] ? { timestamp: Number(m[2]) } : {}) };
}

function parseValue(s: string): number | undefined {
  if (s === "NaN") return NaN;
  if (s === "+Inf" || s === "Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return undefined;
  return Number(s);
}

function checkHistogram(fam: Family): void {
  const groups = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of fam.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const g = groups.get(key) ?? { buckets: [] };
    groups.set(key, g);
    if (s.name.endsWith("_bucket")) {
      const bound = parseValue(le!);
      if (bound === undefined || Number.isNaN(bound)) throw new Error(`${fam.name}: bad le ${JSON.stringify(le)}`);
      g.buckets.push([bound, s.value]);
    } else if (s.name.endsWith("_sum")) g.sum = s.value;
    else g.count = s.value;
  }
  for (const [key, g] of groups) {
    const where = `${fam.name}${key}`;
    if (g.sum === undefined || g.count === undefined) throw new Error(`${where}: missing _sum or _count`);
    const last = g.buckets[g.buckets.length - 1];
    if (last === undefined || last[0] !== Infinity) throw new Error(`${where}: the last bucket is not le="+Inf"`);
    if (last[1] !== g.count) throw new Error(`${where}: +Inf bucket ${last[1]} differs from _count ${g.count}`);
    for (let i = 1; i < g.buckets.length; i++) {
      if (!(g.buckets[i]![0] > g.buckets[i - 1]![0])) throw new Error(`${where}: buckets not in ascending le`);
      if (g.buckets[i]![1] < g.buckets[i - 1]![1]) throw new Error(`${where}: bucket counts are not cumulative`);
    }
  }
}

/** The one sample of `family` whose labels include `labels`; throws when there is not exactly one. */
export function sampleOf(families: Map<string, Family>, family: string, labels: Record<string, string> = {}, name = family): Sample {
  const fam = families.get(family);
  if (!fam) throw new Error(`no family ${family}`);
  const found = fam.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length !== 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]!;
}
