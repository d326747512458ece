/**
 * Certificates from ACME for every listener with `tls.acme`: the one background loop that owns
 * ordering and renewal, started and stopped by the balancer (the process that owns the config;
 * with `workers`, the workers only serve).
 *
 * How an issued certificate reaches clients: the manager writes it to `acme.storage` (one file
 * per name, key and chain, renamed into place), and every listener serving that name reads the
 * same file through its TlsTermination, which watches it (tls/file-watch.ts) and hands the new
 * pair to new handshakes (socket engine: the name's context replaced; fetch engine: a new
 * Bun.serve beside the old). So one path serves one process, every worker, and every replica
 * sharing the store, and a renewal drops no connection.
 *
 * Per name: its file is made before any listener reads it (the stored certificate, or a
 * self-signed placeholder), then the name waits until it is due: at once for a placeholder,
 * else at two thirds of the certificate's lifetime (Let's Encrypt's advice for 90-day
 * certificates: renew with 30 days left). Ordering takes the name's lock in the store first, so
 * that replicas sharing it order a name once; the one that finds the lock held looks again
 * shortly, and finds the new certificate stored. A failed order keeps the certificate in
 * service and is tried again after a back-off with jitter (so that replicas, and names, spread).
 *
 * The CA may bring a renewal forward (ARI, RFC 9773: renewal-info.ts): for a certificate from
 * the CA, its suggested window is asked for when the name's turn comes and again as often as the
 * CA's Retry-After says; the name is then due at a random time in that window, or at two thirds
 * of the lifetime if that comes first. A CA without ARI is asked nothing; one that fails to
 * answer leaves the two-thirds rule alone in force.
 */
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log/logger.ts";
import { readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { orderCertificate, revokeCertificate, trustDirectoryCa, type OrderSettings } from "./order.ts";
import { placeholderPem } from "./placeholder.ts";
import { AcmeStore, type StoredCert } from "./store.ts";
import { pickInWindow, renewalWindow, replacesFor } from "./renewal-info.ts";
import { resolveEab } from "./eab.ts";

/** Renew when this much of the lifetime has passed. */
export const RENEW_AT = 2 / 3;
/** A lock held by another replica: look again this often (its order takes seconds). */
export const LOCK_RETRY_MS = 2_000;
/** A store that cannot be read is looked at again after this long (a shared volume coming back). */
const STORE_RETRY_MS = 30_000;
/** The first back-off after a failure, doubled per failure up to BACKOFF_MAX_MS. */
export const BACKOFF_MIN_MS = 5_000;
export const BACKOFF_MAX_MS = 3_600_000;
/** The CA's renewal window could not be read: ask again after this long. */
const ARI_RETRY_MS = 3_600_000;
/** setTimeout's limit is 2^31-1 ms (24.8 days); a longer wait is taken in steps. */
const MAX_TIMER_MS = 86_400_000;

/** Where a name is: waiting for its next due time (or a retry), or ordering now. */
type Phase = "waiting" | "ordering";

interface NameState {
  settings: OrderSettings;
  phase: Phase;
  timer: ReturnType<typeof setTimeout> | undefined;
  failures: number;
  /** The listener that asked for it, for the log. */
  field: string;
  /** The time chosen in the CA's renewal window (ARI) for the stored certificate with this fingerprint. */
  window: { fingerprint: string; at: number; start: number; end: number } | undefined;
  /** When to ask the CA for its window next (ms since the epoch); 0: at the name's next turn. */
  nextPoll: number;
  /**
   * The fingerprint of a certificate whose renewal failed with `replaces` in its order: later
   * tries go without (a CA may refuse a second order replacing one certificate, RFC 9773 §5).
   */
  unreplaceable: string | undefined;
  /** An operator asked to renew the certificate with this fingerprint now ("" for a placeholder or none): due at once. */
  forced: string | undefined;
  /** Why the last order failed, for an operator's request that waits on it. */
  lastError: string | undefined;
  /** The turn running now (asking the CA's window, taking the lock, ordering), if any: there is one at a time. */
  current: Promise<Turn> | undefined;
}

/** How one turn for a name ended. */
type Turn = "renewed" | "not-due" | "busy" | "failed" | "gone";

/** When `name` is due: two thirds of its lifetime, or earlier when the CA's window says so (or an operator asked for it now). */
function dueOf(s: NameState, c: StoredCert | undefined, now = Date.now()): number {
  if (s.forced !== undefined && s.forced === (c === undefined || c.placeholder ? "" : c.fingerprint)) return now;
  const own = renewalDue(c, now);
  return c !== undefined && s.window?.fingerprint === c.fingerprint ? Math.min(own, s.window.at) : own;
}

/** When a certificate is due for renewal (ms since the epoch); now for none or a placeholder. */
export function renewalDue(c: StoredCert | undefined, now = Date.now()): number {
  if (c === undefined || c.placeholder) return now;
  return c.notBefore + (c.notAfter - c.notBefore) * RENEW_AT;
}

/** A stored certificate's serial number, in hex as openssl and the CA's logs write it. */
function serialOf(pem: string): string {
  return new X509Certificate(pem).serialNumber.toLowerCase();
}

/** The wait after `failures` failures in a row: exponential, with ±50% jitter. */
export function backoff(failures: number, random = Math.random): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.max(0, failures - 1));
  return Math.round(base * (0.5 + random()));
}

/** One name the manager keeps, as /stats and /metrics show it. */
export interface AcmeNameFigures {
  name: string;
  /** The listener field that asked for it ("listen.tls.acme", "listeners.NAME.tls.acme"). */
  listener: string;
  /** What the store holds for it now: a certificate from the CA, the self-signed placeholder, or nothing readable. */
  serving: "issued" | "placeholder" | "unreadable";
  /** The issued certificate's end of validity (ISO 8601); null for a placeholder. */
  notAfter: string | null;
  /** When it is due for renewal: two thirds of its lifetime, or the CA's window (ARI) when earlier; at once for a placeholder. */
  renewAt: string | null;
  /** An order for it is under way in this process. */
  ordering: boolean;
  /** Orders that failed in a row; 0 after one succeeds. */
  failures: number;
  /** Orders this process completed for it (another replica's are not counted). */
  issued: number;
}

/** RFC 5280 §5.3.1 reasons a revocation may give: those RFC 8555 §7.6 lets an ACME client send. */
export const REVOCATION_REASONS = { unspecified: 0, keyCompromise: 1, affiliationChanged: 3, superseded: 4, cessationOfOperation: 5 } as const;
export type RevocationReason = keyof typeof REVOCATION_REASONS;

/** What an operator's renewal did (POST /api/acme/:name/renew, /revoke). */
export interface RenewReport {
  name: string;
  /** The certificate now in the store. */
  serial: string;
  notAfter: string;
  /** The one it replaced (none for a placeholder), and the reason it was revoked with, if it was. */
  replaced: { serial: string; revoked: RevocationReason | null } | null;
}

/** An operator's renewal that could not be done; the admin API answers with the code's status. */
export class AcmeRequestError extends Error {
  constructor(
    readonly code: "SY_UNKNOWN_CERTIFICATE" | "SY_ACME_BUSY" | "SY_ACME_RENEW_FAILED" | "SY_INVALID_REQUEST",
    message: string,
  ) {
    super(message);
  }
}

export class AcmeError extends Error {
  readonly code = "SY_ACME_STORAGE";
}

export class AcmeManager {
  private store: AcmeStore | undefined;
  private lease = 600_000;
  private readonly names = new Map<string, NameState>();
  private stopped = false;
  /** Orders wait for start(): the CA validates against listeners that must be up first. */
  /** Orders this process completed, by name: what the tests and the log count. */
  readonly issued = new Map<string, number>();

  constructor(private readonly logger: Logger) {}

  /**
   * Match the names to `config`: the store prepared, a file for every name (the stored
   * certificate or a placeholder) before any listener reads it, and each name scheduled. Names
   * no listener asks for any more are dropped (their files stay). Returns one line per change.
   */
  async sync(config: Config): Promise<string[]> {
    const lines: string[] = [];
    const wanted = new Map<string, { settings: OrderSettings; field: string }>();
    for (const l of config.listeners) {
      const a = l.tls?.acme;
      if (a === undefined) continue;
      const field = l.name === "default" ? "listen.tls.acme" : `listeners.${l.name}.tls.acme`;
      const dns01: OrderSettings["dns01"] = a.dns01 === undefined ? undefined : { command: a.dns01.command, timeoutMs: a.dns01.timeout, propagationDelayMs: a.dns01.propagationDelay };
      let eab: OrderSettings["eab"];
      if (a.eab !== undefined) {
        const { binding, problem } = resolveEab(a.eab);
        // Validation read the file; one gone since is said, and the account goes unbound (a CA that requires a binding refuses it, and says so).
        if (problem !== undefined) this.logger.error(`${field}.eab.hmacKeyFile: ${problem}`);
        eab = binding;
      }
      for (const name of a.domains ?? []) {
        if (!wanted.has(name)) wanted.set(name, { field, settings: { directory: a.directory, keyType: a.keyType, challenge: a.challenge, ...(a.email !== undefined ? { email: a.email } : {}), ...(eab !== undefined ? { eab } : {}), ...(dns01 !== undefined ? { dns01 } : {}), ...(a.preferredChain !== undefined ? { preferredChain: a.preferredChain } : {}) } });
      }
    }
    if (wanted.size === 0 || config.acme === undefined) {
      for (const name of [...this.names.keys()]) this.drop(name);
      return lines;
    }
    if (this.store?.dir !== config.acme.storage) {
      for (const name of [...this.names.keys()]) this.drop(name);
      this.store = new AcmeStore(config.acme.storage);
    }
    const store = this.store;
    this.lease = config.acme.lockLease;
    trustDirectoryCa(config.acme.directoryCa !== undefined ? readFileSync(config.acme.directoryCa, "utf8") : undefined);
    try {
      store.prepare();
      for (const [name, w] of wanted) {
        const stored = store.readCert(name);
        if (stored === undefined && store.writePlaceholderIfAbsent(name, await placeholderPem(name))) {
          this.logger.warn(`${w.field}: ${name} has no certificate yet: serving a self-signed placeholder until its order completes`);
        } else if (stored !== undefined && !this.names.has(name)) {
          this.logger.info(`${w.field}: ${name}: ${stored.placeholder ? "a placeholder is stored: ordering" : `stored certificate served, valid to ${new Date(stored.notAfter).toISOString()}`}`);
        }
      }
    } catch (e) {
      throw new AcmeError(`acme.storage: cannot write ${JSON.stringify(store.dir)}: ${(e as Error).message}`);
    }
    for (const name of [...this.names.keys()]) if (!wanted.has(name)) {
      this.drop(name);
      lines.push(`acme: ${name} is no longer ordered or renewed`);
    }
    for (const [name, w] of wanted) {
      const known = this.names.get(name);
      if (known !== undefined) {
        // Another CA: its window, if any, is asked for afresh.
        if (known.settings.directory !== w.settings.directory) {
          known.window = undefined;
          known.nextPoll = 0;
        }
        known.settings = w.settings;
        known.field = w.field;
        continue;
      }
      this.names.set(name, { settings: w.settings, field: w.field, phase: "waiting", timer: undefined, failures: 0, window: undefined, nextPoll: 0, unreplaceable: undefined, forced: undefined, lastError: undefined, current: undefined });
      lines.push(`acme: ${name} managed`);
      // Ordered by start(), once the reload that added it is in force (a refused one orders nothing).
    }
    return lines;
  }

  /**
   * Start ordering: called once the listeners that answer the challenges are up (at start-up,
   * and after each reload, which may have added names and listeners). Names already scheduled
   * or ordering are left as they are.
   */
  start(): void {
    for (const [name, s] of this.names) if (s.phase === "waiting" && s.timer === undefined) this.scheduleDue(name);
  }

  private drop(name: string): void {
    const s = this.names.get(name);
    if (s?.timer !== undefined) clearTimeout(s.timer);
    this.names.delete(name);
  }

  /**
   * The name's next turn: when its stored certificate is due, or sooner when the CA's window is
   * to be asked for; a store that cannot be read is tried again later, never thrown from a timer.
   */
  private scheduleDue(name: string): void {
    const s = this.names.get(name);
    if (s === undefined) return;
    const now = Date.now();
    let due: number;
    try {
      const c = this.store!.readCert(name);
      due = dueOf(s, c, now);
      // A certificate from the CA: its window is asked for at its poll time.
      if (c !== undefined && !c.placeholder) due = Math.min(due, s.nextPoll);
    } catch (e) {
      this.logger.error(`acme: ${name}: SY_ACME_STORAGE: cannot read the stored certificate (${(e as Error).message}); looking again in ${STORE_RETRY_MS / 1000}s`);
      return this.schedule(name, STORE_RETRY_MS);
    }
    this.schedule(name, due - now);
  }

  /**
   * Ask the CA for the renewal window of the stored certificate (ARI), and choose a time in it.
   * Never throws: a CA that cannot answer leaves the two-thirds rule in force until next time.
   */
  private async pollWindow(name: string, s: NameState, c: StoredCert): Promise<void> {
    const now = Date.now();
    try {
      const w = await renewalWindow(s.settings.directory, c.pem);
      if (w === undefined) {
        // No ARI at this CA (or no CertID): ask again only when the directory may have changed.
        s.window = undefined;
        s.nextPoll = now + 24 * 3_600_000;
        return;
      }
      s.nextPoll = now + w.retryAfterMs;
      const same = s.window?.fingerprint === c.fingerprint && s.window.start === w.start && s.window.end === w.end;
      if (same) return;
      s.window = { fingerprint: c.fingerprint, at: pickInWindow(w), start: w.start, end: w.end };
      if (s.window.at < renewalDue(c)) {
        const why = w.explanationUrl !== undefined ? ` (${w.explanationUrl})` : "";
        this.logger.info(`${s.field}: ${name}: the CA's renewal window (ARI) is ${new Date(w.start).toISOString()} to ${new Date(w.end).toISOString()}${why}: renewing at ${new Date(Math.max(now, s.window.at)).toISOString()}, before two thirds of its lifetime`);
      }
    } catch (e) {
      s.nextPoll = now + ARI_RETRY_MS;
      this.logger.warn(`${s.field}: ${name}: SY_ACME_RENEWAL_INFO: cannot read the CA's renewal window (${(e as Error).message}); renewing at two thirds of the lifetime unless it answers; asking again in ${ARI_RETRY_MS / 60_000} min`);
    }
  }

  private schedule(name: string, delay: number): void {
    const s = this.names.get(name);
    if (s === undefined || this.stopped) return;
    if (s.timer !== undefined) clearTimeout(s.timer);
    s.phase = "waiting";
    const wait = Math.max(0, Math.min(delay, MAX_TIMER_MS));
    s.timer = setTimeout(() => {
      s.timer = undefined;
      void this.run(name, s);
    }, wait);
    s.timer.unref?.();
  }

  /**
   * One turn for `name`, from a timer: every error is caught here (a storage error, a lock that
   * cannot be taken, a CA that fails), logged and retried with back-off; one escaping would be an
   * unhandled rejection, which ends the process and all its traffic.
   */
  private async run(name: string, s: NameState): Promise<Turn> {
    if (this.stopped || this.names.get(name) !== s) return "gone";
    // A turn already running schedules the next one when it ends.
    if (s.current !== undefined) return "busy";
    const current = (s.current = this.turn(name, s).finally(() => (s.current = undefined)));
    return current;
  }

  private async turn(name: string, s: NameState): Promise<Turn> {
    const store = this.store!;
    let release: (() => void) | undefined;
    let renewing: { fingerprint: string; replaces: string | undefined } | undefined;
    // Unless this turn orders: another replica stored a new certificate between the first look and the lock.
    let outcome: Turn = "not-due";
    try {
      const current = store.readCert(name);
      if (current !== undefined && !current.placeholder && s.nextPoll <= Date.now()) {
        await this.pollWindow(name, s, current);
        if (this.stopped || this.names.get(name) !== s) return "gone";
      }
      if (dueOf(s, store.readCert(name)) > Date.now()) {
        this.scheduleDue(name);
        return "not-due";
      }
      release = store.lock(name, this.lease);
      // Another replica is ordering it: look again, and find its certificate stored.
      if (release === undefined) {
        this.schedule(name, LOCK_RETRY_MS * (0.5 + Math.random()));
        return "busy";
      }
      s.phase = "ordering";
      // It may have been stored between the first look and the lock.
      const before = store.readCert(name);
      if (dueOf(s, before) <= Date.now()) {
        const started = performance.now();
        if (before !== undefined && !before.placeholder) {
          renewing = { fingerprint: before.fingerprint, replaces: s.unreplaceable === before.fingerprint ? undefined : await replacesFor(s.settings.directory, before.pem) };
        }
        const issued = await orderCertificate(store, name, s.settings, renewing?.replaces);
        if (this.stopped || this.names.get(name) !== s) return "gone";
        store.writeCert(name, issued.key, issued.chain);
        this.issued.set(name, (this.issued.get(name) ?? 0) + 1);
        // The new certificate's window is asked for at its first turn.
        s.window = undefined;
        s.nextPoll = 0;
        const now = store.readCert(name);
        s.failures = 0;
        s.forced = undefined;
        s.lastError = undefined;
        this.logger.info(`${s.field}: ${name}: certificate ${before === undefined || before.placeholder ? "issued" : "renewed"} in ${Math.round(performance.now() - started)}ms, valid to ${now === undefined ? "?" : new Date(now.notAfter).toISOString()}; new handshakes get it`);
        outcome = "renewed";
      }
    } catch (e) {
      if (this.stopped) return "gone";
      s.failures++;
      s.lastError = (e as Error).message;
      const wait = backoff(s.failures);
      if (renewing?.replaces !== undefined) s.unreplaceable = renewing.fingerprint;
      const without = renewing?.replaces !== undefined ? ", without naming the certificate it replaces" : "";
      this.logger.error(`${s.field}: ${name}: SY_ACME_ORDER_FAILED: ${(e as Error).message}; the certificate in service stays; trying again in ${Math.round(wait / 1000)}s${without} (failure ${s.failures})`);
      this.schedule(name, wait);
      return "failed";
    } finally {
      try {
        release?.();
      } catch (e) {
        this.logger.error(`acme: ${name}: SY_ACME_STORAGE: cannot release the order lock (${(e as Error).message}); it lapses with its lease`);
      }
    }
    this.scheduleDue(name);
    return outcome;
  }

  /**
   * Renew `name` now, at an operator's request, and with `revoke`, then revoke the certificate it
   * replaced (RFC 8555 §7.6) with that reason: the new one is in service before the old one is
   * revoked, so no client meets a revoked certificate. Resolves once done; rejects with why. A
   * failed order keeps being tried with back-off, as any order.
   */
  async renew(name: string, revoke?: RevocationReason): Promise<RenewReport> {
    const s = this.names.get(name);
    const store = this.store;
    if (s === undefined || store === undefined) {
      throw new AcmeRequestError("SY_UNKNOWN_CERTIFICATE", `no certificate from ACME is named ${JSON.stringify(name)} (names: ${[...this.names.keys()].join(", ") || "none"})`);
    }
    // A turn that is only looking (the CA's window, whether it is due) is waited for; an order is not.
    while (s.current !== undefined) {
      if (s.phase === "ordering") throw new AcmeRequestError("SY_ACME_BUSY", `an order for ${name} is under way; its outcome is logged`);
      await s.current.catch(() => {});
    }
    if (this.stopped || this.names.get(name) !== s) throw new AcmeRequestError("SY_ACME_RENEW_FAILED", "the balancer is stopping, or the name was dropped by a reload");
    const before = store.readCert(name);
    const issuedBefore = before !== undefined && !before.placeholder ? before : undefined;
    if (revoke !== undefined && issuedBefore === undefined) throw new AcmeRequestError("SY_INVALID_REQUEST", `${name} has no certificate from the CA to revoke: a placeholder serves it`);
    if (s.timer !== undefined) clearTimeout(s.timer);
    s.timer = undefined;
    s.forced = issuedBefore?.fingerprint ?? "";
    this.logger.info(`${s.field}: ${name}: renewing now, as asked${revoke !== undefined ? `; then revoking the certificate it replaces (${revoke})` : ""}`);
    const turn = await this.run(name, s);
    if (turn === "busy") {
      s.forced = undefined;
      throw new AcmeRequestError("SY_ACME_BUSY", `another replica sharing the store is ordering ${name}; the certificate it stores is served here too`);
    }
    if (turn === "failed") throw new AcmeRequestError("SY_ACME_RENEW_FAILED", `${s.lastError ?? "the order failed"}; the certificate in service stays, and the order is tried again with back-off`);
    if (turn === "gone") throw new AcmeRequestError("SY_ACME_RENEW_FAILED", "the balancer is stopping, or the name was dropped by a reload");
    // "renewed", or another replica stored a new one between the look and the lock: either way, a new certificate.
    const after = store.readCert(name)!;
    let revoked: RevocationReason | null = null;
    if (revoke !== undefined && issuedBefore !== undefined) {
      try {
        await revokeCertificate(store, s.settings, issuedBefore.pem, REVOCATION_REASONS[revoke]);
      } catch (e) {
        throw new AcmeRequestError("SY_ACME_RENEW_FAILED", `${name} was renewed (serial ${serialOf(after.pem)}), but the CA refused to revoke serial ${serialOf(issuedBefore.pem)}: ${(e as Error).message}`);
      }
      revoked = revoke;
      this.logger.info(`${s.field}: ${name}: revoked serial ${serialOf(issuedBefore.pem)} (${revoke}); serial ${serialOf(after.pem)} serves`);
    }
    return {
      name, serial: serialOf(after.pem), notAfter: new Date(after.notAfter).toISOString(),
      replaced: issuedBefore === undefined ? null : { serial: serialOf(issuedBefore.pem), revoked },
    };
  }

  /** Every name kept, in the order they were added, read from the store now (/stats, /metrics). */
  figures(): AcmeNameFigures[] {
    const store = this.store;
    if (store === undefined) return [];
    const now = Date.now();
    return [...this.names].map(([name, s]) => {
      let c: StoredCert | undefined;
      let readable = true;
      try {
        c = store.readCert(name);
      } catch {
        readable = false;
      }
      const issued = c !== undefined && !c.placeholder;
      return {
        name, listener: s.field,
        serving: !readable || c === undefined ? "unreadable" : issued ? "issued" : "placeholder",
        notAfter: issued ? new Date(c!.notAfter).toISOString() : null,
        renewAt: readable ? new Date(Math.max(now, dueOf(s, c, now))).toISOString() : null,
        ordering: s.phase === "ordering", failures: s.failures, issued: this.issued.get(name) ?? 0,
      };
    });
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.names.values()) if (s.timer !== undefined) clearTimeout(s.timer);
  }
}
