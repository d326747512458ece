/**
 * TLS termination as the balancer runs it: the certificates read at start, handed to the proxy
 * listener, and read again on every reload; when a file changed (a renewed certificate), the
 * new ones go to every listener that registered for them. Reading errors never reach here on a
 * reload: validation reads the same files first and refuses the reload with its problems.
 */
import type { ListenTlsConfig, TlsMaterial } from "./certificates.ts";
import { readTlsMaterial, sameMaterial } from "./certificates.ts";

export class TlsTermination {
  private current: TlsMaterial;
  private readonly listeners: ((m: TlsMaterial) => void)[] = [];

  constructor(cfg: ListenTlsConfig) {
    this.current = readTlsMaterial(cfg);
  }

  get material(): TlsMaterial {
    return this.current;
  }

  /** Told the new certificates whenever a reload finds them changed. */
  onRenew(fn: (m: TlsMaterial) => void): void {
    this.listeners.push(fn);
  }

  /** A reload: read the files again; returns what changed, in the log's words. */
  reload(cfg: ListenTlsConfig): string[] {
    const next = readTlsMaterial(cfg);
    if (sameMaterial(this.current, next)) return [];
    this.current = next;
    for (const fn of this.listeners) fn(next);
    return [`listen.tls: certificates re-read (default valid to ${next.default.validTo}${next.sni.length > 0 ? `, ${next.sni.length} server name${next.sni.length === 1 ? "" : "s"}` : ""})`];
  }
}
