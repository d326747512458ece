/**
 * TLS termination as the balancer runs it: the certificates read at start, handed to the proxy
 * listener, and read again on every reload and whenever their files change on disk (a renewal by
 * certbot, cert-manager or anything that replaces the files: tls/file-watch.ts); when they
 * changed, the new ones go to every listener that registered for them, for new handshakes.
 *
 * On a reload, reading errors never reach here: validation reads the same files first and
 * refuses the reload with its problems. When the files change by themselves, a pair that does
 * not read (a truncated file, a key that is not the certificate's, one of the two written and
 * not yet the other) keeps the certificates in service, and the problem is logged once per
 * change of the files.
 */
import type { ListenTlsConfig, TlsMaterial } from "./certificates.ts";
import { readTlsMaterial, sameMaterial, TlsError } from "./certificates.ts";
import { FileWatch } from "./file-watch.ts";
import type { Logger } from "../log/logger.ts";

export class TlsTermination {
  private current: TlsMaterial;
  private cfg: ListenTlsConfig;
  private readonly listeners: ((m: TlsMaterial) => void)[] = [];
  private readonly files: FileWatch | undefined;

  /** `watch`: follow the files on disk, logging what happens to `logger` under `field` ("listen.tls"). */
  constructor(cfg: ListenTlsConfig, watch?: { logger: Logger; field: string }) {
    this.cfg = cfg;
    this.current = readTlsMaterial(cfg);
    if (watch !== undefined) {
      const { logger, field } = watch;
      this.files = new FileWatch(
        pathsOf(cfg),
        () => this.filesChanged(logger, field),
        (e) => logger.warn(`${field}: cannot watch the certificate files (${(e as Error).message}); they are still checked every few seconds`),
      );
    }
  }

  get material(): TlsMaterial {
    return this.current;
  }

  /** Told the new certificates whenever a reload or a change of the files brings different ones. */
  onRenew(fn: (m: TlsMaterial) => void): void {
    this.listeners.push(fn);
  }

  /** A reload: read the files again (and watch the ones it names); returns what changed, in the log's words. */
  reload(cfg: ListenTlsConfig): string[] {
    const next = readTlsMaterial(cfg);
    this.cfg = cfg;
    this.files?.watch(pathsOf(cfg));
    return this.take(next) ? [`listen.tls: certificates re-read (${describe(next)})`] : [];
  }

  private filesChanged(logger: Logger, field: string): void {
    let next: TlsMaterial;
    try {
      next = readTlsMaterial(this.cfg, field);
    } catch (e) {
      if (!(e instanceof TlsError)) throw e;
      logger.error(`${field}: the certificate files changed but do not read as a pair; the certificates in service stay: ${e.problems.join("; ")}`);
      return;
    }
    if (this.take(next)) logger.info(`${field}: certificate files changed: new handshakes get them (${describe(next)})`);
  }

  /** Put `next` in service if it differs; whether it did. */
  private take(next: TlsMaterial): boolean {
    if (sameMaterial(this.current, next)) return false;
    this.current = next;
    for (const fn of this.listeners) fn(next);
    return true;
  }

  stop(): void {
    this.files?.stop();
  }
}

function pathsOf(cfg: ListenTlsConfig): string[] {
  return [cfg.cert, cfg.key, ...cfg.sni.flatMap((s) => [s.cert, s.key]), ...(cfg.clientAuth !== undefined ? [cfg.clientAuth.ca] : [])];
}

function describe(m: TlsMaterial): string {
  return `default valid to ${m.default.validTo}${m.sni.length > 0 ? `, ${m.sni.length} server name${m.sni.length === 1 ? "" : "s"}` : ""}`;
}
