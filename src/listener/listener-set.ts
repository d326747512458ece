/**
 * The proxy listeners of one process, kept matched to the config: apply() starts the listeners
 * a config adds, reconfigures the ones it keeps at the same address and mode, binds anew those
 * whose address or mode changed (the new one before the old one closes), and stops the ones it
 * drops, letting what they hold finish. One process and each worker (src/workers/) use this same
 * set, so both serve a config the same way.
 */
import type { Config, ListenerConfig } from "../config/schema.ts";
import type { Backend } from "../pool/backend.ts";
import { readTlsMaterial, type TlsMaterial } from "../tls/certificates.ts";
import { TlsTermination } from "../tls/termination.ts";
import { HttpListener } from "./http.ts";
import { TcpListener } from "./tcp.ts";
import type { Listener, ListenerContext } from "./listener.ts";

interface Entry {
  listener: Listener;
  /** Its certificates, read at start and again on every apply (a renewed pair is handed on). */
  tls: TlsTermination | undefined;
}

/** The fields that, changed, need a new bind: the address, the mode, TLS on or off. */
function bindingOf(l: ListenerConfig): string {
  return JSON.stringify([l.host, l.port, l.mode, l.tls !== undefined]);
}

/** Whether `a` and `b` bind the same way (a listener changed only in what it serves keeps its socket). */
export function sameBinding(a: ListenerConfig, b: ListenerConfig): boolean {
  return bindingOf(a) === bindingOf(b);
}

export class ListenerSet {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly ctx: ListenerContext,
    /** Read certificates here (one process) or take them as the config says (a worker reads its own the same way). */
    private readonly engineOf: (config: Config) => Config["engine"] = (c) => c.engine,
  ) {}

  get all(): readonly Listener[] {
    return [...this.entries.values()].map((e) => e.listener);
  }

  get(name: string): Listener | undefined {
    return this.entries.get(name)?.listener;
  }

  /**
   * Match the running listeners to `config`. Returns one line per change. A listener that
   * cannot bind fails the call: at start-up that stops the start; on a reload the listeners
   * already changed stay as they are and the error says which one failed.
   */
  async apply(config: Config, prev?: Config): Promise<string[]> {
    const lines: string[] = [];
    const retired: Listener[] = [];
    for (const lc of config.listeners) {
      const known = this.entries.get(lc.name);
      if (known !== undefined && bindingOf(known.listener.config) === bindingOf(lc) && (prev === undefined || this.engineOf(prev) === this.engineOf(config))) {
        if (known.tls !== undefined && lc.tls !== undefined) lines.push(...known.tls.reload(lc.tls).map((l) => l.replace(/^listen\.tls/, `listeners.${lc.name}.tls`)));
        known.listener.reconfigure(config, lc);
        continue;
      }
      const tls = lc.tls !== undefined ? new TlsTermination(lc.tls) : undefined;
      const listener = await this.start(config, lc, tls?.material);
      tls?.onRenew((m) => listener.renewTls(m));
      this.entries.set(lc.name, { listener, tls });
      if (known !== undefined) {
        retired.push(known.listener);
        lines.push(`listener ${lc.name}: moved to ${listener.url}`);
      } else if (prev !== undefined) {
        lines.push(`listener ${lc.name}: added on ${listener.url}`);
      }
    }
    const names = new Set(config.listeners.map((l) => l.name));
    for (const [name, e] of this.entries) {
      if (names.has(name)) continue;
      this.entries.delete(name);
      retired.push(e.listener);
      lines.push(`listener ${name}: removed (its connections finish)`);
    }
    // Stopped in the background: each finishes what it holds within the grace.
    for (const l of retired) void l.stop(true, config.timeouts.shutdownGrace, false);
    return lines;
  }

  private start(config: Config, lc: ListenerConfig, tls: TlsMaterial | undefined): Promise<Listener> {
    return lc.mode === "tcp" ? TcpListener.start(config, lc, this.ctx, tls) : HttpListener.start(config, lc, this.ctx, tls);
  }

  closeIdle(backend: Backend): void {
    for (const e of this.entries.values()) e.listener.closeIdle(backend);
  }

  closeListeners(): void {
    for (const e of this.entries.values()) e.listener.closeListener();
  }

  async stop(graceful: boolean, grace: number, handover: boolean): Promise<void> {
    await Promise.all([...this.entries.values()].map((e) => e.listener.stop(graceful, grace, handover)));
  }
}

/** A listener's certificates, read as a worker reads them (it has no TlsTermination to follow). */
export function tlsOf(lc: ListenerConfig): TlsMaterial | undefined {
  return lc.tls !== undefined ? readTlsMaterial(lc.tls) : undefined;
}
