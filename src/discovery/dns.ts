/**
 * DNS service discovery: a backend entry that names a DNS name (`{ dns, port, type, refresh }`)
 * stands for every address the name resolves to. This owns the lookups and their timers and
 * keeps, per entry, the last set of addresses that resolved; `expand(config)` turns the
 * config's entries into the plain list of backends that reconcile (src/control/reconcile.ts)
 * makes the pool match, as a reload does. So a discovered backend gets its own health checks,
 * keeps its health and counters while its address stays in DNS, and one whose address leaves is
 * drained (no new traffic, in-flight requests finish), never cut.
 *
 * - Names: "<entry name>#<address>:<port>" (the entry's name defaults to the DNS name), stable
 *   across lookups, so reconcile matches them.
 * - A and AAAA give addresses, the entry gives the port. SRV gives targets with ports,
 *   priorities and weights, each target name resolved to its addresses (A) with the same
 *   resolver. Every priority is kept: each target becomes a backend with its record's priority,
 *   and the pool sends traffic to the best priority that has an available backend, the others
 *   being standbys (RFC 2782; src/pool/tiers.ts). Weights are mapped per priority onto the
 *   backends' 1..1000 weights (srvWeights below).
 * - Cadence: the next lookup comes after the shortest TTL of the answer, but no sooner than
 *   MIN_REFRESH_MS and no later than the entry's `refresh` (SRV answers carry no TTL through
 *   node:dns: `refresh`). Lookups of one entry never overlap.
 * - A failed lookup (a timeout, SERVFAIL, or no such name) keeps the last good set: an empty
 *   answer during a DNS outage must not take every backend out. The first failure and the
 *   recovery are logged, not every retry.
 * - The resolver is node:dns/promises' Resolver, on `dns.servers` when given (the system's
 *   otherwise), queried directly: fetch's own lookup caches for 30 s and would hide changes.
 */
import { Resolver } from "node:dns/promises";
import type { SrvRecord } from "node:dns";
import { isIP } from "node:net";
import type { BackendConfig, Config } from "../config/schema.ts";
import { parseBackendAddress } from "../config/address.ts";
import type { Logger } from "../log/logger.ts";
import type { DesiredBackend } from "../control/reconcile.ts";

/** The shortest time between lookups of one name, whatever its TTL says. */
export const MIN_REFRESH_MS = 1000;

/** One address a name resolved to. */
export interface Target {
  address: string;
  port: number;
  /** SRV records' weight (1..1000, see srvWeights); absent for A/AAAA, where the entry's weight applies. */
  weight?: number;
  /** SRV records' priority; absent for A/AAAA, where the entry's priority applies. */
  priority?: number;
}

/** A config entry with dns set, as validateConfig leaves it (type and refresh filled in). */
type DnsEntry = BackendConfig & { dns: string; name: string };

interface Lookup {
  targets: Target[];
  /** ms until the next lookup. */
  nextInMs: number;
}

interface EntryState {
  entry: DnsEntry;
  /** The last set that resolved; undefined until one did. */
  targets: Target[] | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  failing: boolean;
  /** The lookup in progress, so that stop() and configure() can wait for it. */
  running: Promise<void> | undefined;
}

export interface DnsDiscoveryOptions {
  logger: Logger;
  /** Called after a lookup changed an entry's set of addresses. */
  onChange: (lines: string[]) => void;
}

export class DnsDiscovery {
  private readonly entries = new Map<string, EntryState>();
  private resolver = new Resolver();
  /** The `dns` section the resolver was made from. */
  private settings = "";
  private stopped = false;

  constructor(private readonly opts: DnsDiscoveryOptions) {}

  /**
   * Follow the DNS entries among one pool's `backends`: new ones are looked up now (resolves when they have
   * answered or failed), dropped ones stop, and a changed `dns` section takes effect.
   */
  async configure(backends: readonly BackendConfig[], dns: Config["dns"]): Promise<void> {
    const settings = JSON.stringify(dns);
    if (settings !== this.settings) {
      this.settings = settings;
      this.resolver = new Resolver({ timeout: dns.timeout, tries: 2 });
      if (dns.servers.length > 0) this.resolver.setServers(dns.servers);
    }
    const wanted = new Map<string, DnsEntry>();
    for (const b of backends) if (b.dns !== undefined) wanted.set(keyOf(b as DnsEntry), b as DnsEntry);
    for (const [key, state] of this.entries) {
      if (!wanted.has(key)) {
        clearTimeout(state.timer);
        this.entries.delete(key);
      }
    }
    const first: Promise<void>[] = [];
    for (const [key, entry] of wanted) {
      const state = this.entries.get(key);
      if (state) {
        // Same name, type and port: its addresses stand; weight and the rest come from the entry.
        state.entry = entry;
        continue;
      }
      const fresh: EntryState = { entry, targets: undefined, timer: undefined, failing: false, running: undefined };
      this.entries.set(key, fresh);
      first.push(this.lookup(key, fresh, false));
    }
    await Promise.all(first);
  }

  /**
   * A pool's backends as reconcile takes them: url entries as they are, each DNS entry
   * replaced by one backend per address it last resolved to, in the config's order.
   */
  expand(backends: readonly BackendConfig[], mode: "http" | "tcp"): DesiredBackend[] {
    const out: DesiredBackend[] = [];
    for (const b of backends) {
      if (b.dns === undefined) {
        out.push(b as DesiredBackend);
        continue;
      }
      const entry = b as DnsEntry;
      const targets = this.entries.get(keyOf(entry))?.targets ?? [];
      const { dns: _dns, port: _port, type: _type, refresh: _refresh, scheme, ...rest } = entry;
      for (const t of targets) {
        const hostPort = `${isIP(t.address) === 6 ? `[${t.address}]` : t.address}:${t.port}`;
        const url = parseBackendAddress(mode === "tcp" ? `tcp://${hostPort}` : `${scheme ?? "http"}://${hostPort}`, mode).href;
        out.push({ ...rest, name: `${entry.name}#${hostPort}`, url, weight: t.weight ?? entry.weight, priority: t.priority ?? entry.priority });
      }
    }
    return out;
  }

  /** Cancel every timer and wait for lookups in progress; nothing runs afterwards. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.entries.values()) clearTimeout(s.timer);
    // Outstanding queries end now (rejected, and ignored as stopped).
    this.resolver.cancel();
    await Promise.all([...this.entries.values()].map((s) => s.running));
  }

  private lookup(key: string, state: EntryState, announce: boolean): Promise<void> {
    const run = (async () => {
      const entry = state.entry;
      const what = `dns ${entry.dns} (${entry.type})`;
      let nextInMs = entry.refresh!;
      try {
        const found = await this.resolve(entry);
        nextInMs = found.nextInMs;
        if (state.failing) this.opts.logger.info(`${what}: resolves again (${found.targets.length} addresses)`);
        state.failing = false;
        const before = state.targets;
        state.targets = found.targets;
        const lines = describeChange(entry.name, before, found.targets);
        if (announce && lines.length > 0 && this.entries.get(key) === state && !this.stopped) this.opts.onChange(lines);
      } catch (e) {
        if (this.stopped) return;
        const code = (e as { code?: string }).code ?? (e as Error).message;
        if (!state.failing) {
          const kept = state.targets ? `keeping the last ${state.targets.length} addresses` : "no addresses yet";
          this.opts.logger.warn(`${what}: lookup failed: ${code}; ${kept}; retrying every ${Math.round(entry.refresh! / 1000)}s`);
        }
        state.failing = true;
      }
      if (this.stopped || this.entries.get(key) !== state) return;
      state.timer = setTimeout(() => void this.lookup(key, state, true), nextInMs);
    })();
    state.running = run;
    void run.finally(() => {
      if (state.running === run) state.running = undefined;
    });
    return run;
  }

  private async resolve(entry: DnsEntry): Promise<Lookup> {
    const refresh = entry.refresh!;
    const bound = (ttlSeconds: number) => Math.min(refresh, Math.max(MIN_REFRESH_MS, ttlSeconds * 1000));
    if (entry.type === "SRV") {
      // RFC 2782: a Target of "." means the service is decidedly not available there.
      const records = (await this.resolver.resolveSrv(entry.dns)).filter((r) => r.name !== "" && r.name !== ".");
      if (records.length === 0) throw Object.assign(new Error("no SRV records"), { code: "ENODATA" });
      const weights = new Map<SrvRecord, number>();
      for (const priority of new Set(records.map((r) => r.priority))) {
        const tier = records.filter((r) => r.priority === priority);
        srvWeights(tier.map((r) => r.weight)).forEach((w, i) => weights.set(tier[i]!, w));
      }
      const targets: Target[] = [];
      let ttl = Infinity;
      for (const r of records) {
        const t = { port: r.port, weight: weights.get(r)!, priority: r.priority };
        if (isIP(r.name)) {
          targets.push({ address: r.name, ...t });
          continue;
        }
        for (const a of await this.resolver.resolve4(r.name, { ttl: true })) {
          targets.push({ address: a.address, ...t });
          ttl = Math.min(ttl, a.ttl);
        }
      }
      return { targets: sorted(merged(targets)), nextInMs: ttl === Infinity ? refresh : bound(ttl) };
    }
    const answers = entry.type === "AAAA" ? await this.resolver.resolve6(entry.dns, { ttl: true }) : await this.resolver.resolve4(entry.dns, { ttl: true });
    if (answers.length === 0) throw Object.assign(new Error("no addresses"), { code: "ENODATA" });
    const ttl = Math.min(...answers.map((a) => a.ttl));
    return { targets: sorted(answers.map((a) => ({ address: a.address, port: entry.port! }))), nextInMs: bound(ttl) };
  }
}

/** An entry is the same entry across reloads while its name, type, port and scheme are. */
function keyOf(e: DnsEntry): string {
  return `${e.name} ${e.type} ${e.dns} ${e.port ?? ""} ${e.scheme ?? ""}`;
}

/** Best priority first (the dashboard lists them so), then by address and port. */
function sorted(targets: Target[]): Target[] {
  return targets.sort((a, b) =>
    (a.priority ?? 0) !== (b.priority ?? 0) ? (a.priority ?? 0) - (b.priority ?? 0) : a.address === b.address ? a.port - b.port : a.address < b.address ? -1 : 1,
  );
}

/**
 * One target per address and port (a backend's name is its address and port): two records
 * that lead to the same one (two names for one host, or one host at two priorities) make one
 * backend, at the best of their priorities, with the weights of that priority added up (each
 * record is a share of the traffic, RFC 2782), at most 1000.
 */
function merged(targets: Target[]): Target[] {
  const byAddress = new Map<string, Target>();
  for (const t of targets) {
    const key = `${t.address} ${t.port}`;
    const seen = byAddress.get(key);
    if (seen === undefined || t.priority! < seen.priority!) byAddress.set(key, { ...t });
    else if (t.priority === seen.priority) seen.weight = Math.min(1000, seen.weight! + t.weight!);
  }
  return [...byAddress.values()];
}

/**
 * One priority's SRV weights (0..65535) as backend weights (1..1000), in the same proportions,
 * as nearly as integers allow. RFC 2782 (the Weight field): larger weights get a
 * proportionately higher chance; "in the presence of records containing weights greater than
 * 0, records with weight 0 should have a very small chance of being selected", and weight 0
 * alone means no preference. So:
 * - all 0: each 1 (an even share);
 * - none 0 and none above 1000: as they are;
 * - otherwise the positive weights are scaled so that the largest is (about) 1000 (by a whole
 *   factor when they fit, which keeps their ratios exact) and a 0 becomes 1: the smallest
 *   share a backend weight can have, at most 1/1000 of the largest.
 */
export function srvWeights(weights: readonly number[]): number[] {
  const max = Math.max(...weights);
  if (max === 0) return weights.map(() => 1);
  const hasZero = weights.includes(0);
  if (!hasZero && max <= 1000) return [...weights];
  const factor = max <= 1000 ? Math.floor(1000 / max) : 1000 / max;
  return weights.map((w) => (w === 0 ? 1 : Math.min(1000, Math.max(1, Math.round(w * factor)))));
}

function describeChange(name: string, before: Target[] | undefined, after: Target[]): string[] {
  const at = (t: Target) => `${t.address}:${t.port}`;
  const terms = (t: Target) => `${t.priority !== undefined ? ` priority ${t.priority}` : ""}${t.weight ? ` weight ${t.weight}` : ""}`;
  const was = new Map((before ?? []).map((t) => [at(t), terms(t)]));
  const now = new Map(after.map((t) => [at(t), terms(t)]));
  const lines: string[] = [];
  for (const [a, t] of now) {
    const old = was.get(a);
    // The same address with a new priority or weight is the same backend, changed in place.
    if (old === undefined) lines.push(`${name}: ${a}${t} appeared`);
    else if (old !== t) lines.push(`${name}: ${a}${old} now${t}`);
  }
  for (const [a, t] of was) if (!now.has(a)) lines.push(`${name}: ${a}${t} gone`);
  return lines;
}
