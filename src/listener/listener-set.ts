/**
 * The proxy listeners of one process, kept matched to the config: apply() starts the listeners
 * a config adds, reconfigures the ones it keeps at the same address and mode, binds anew those
 * whose address or mode changed (the new one before the old one closes), and stops the ones it
 * drops, letting what they hold finish. One process and each worker (src/workers/) use this same
 * set, so both serve a config the same way.
 */
import type { Config, ListenerConfig } from "../config/schema.ts";
import type { Backend } from "../pool/backend.ts";
import type { TlsMaterial } from "../tls/certificates.ts";
import { TlsTermination } from "../tls/termination.ts";
import { HttpListener, largestBody } from "./http.ts";
import { TcpListener } from "./tcp.ts";
import type { Listener, ListenerContext } from "./listener.ts";

interface Entry {
  listener: Listener;
  /** Its certificates, read at start and again on every apply (a renewed pair is handed on). */
  tls: TlsTermination | undefined;
}

/**
 * The fields that, changed, need a new bind: the address, the mode, TLS on or off, and on the
 * fetch engine the options Bun.serve takes only when it listens (its idle timeout, the largest
 * body, HTTP/2); on a TLS listener, whether ALPN offers h2; for TCP, its pool. A new bind on the same port goes beside the old listener (SO_REUSEPORT), which then
 * stops accepting and finishes what it holds.
 */
function bindingOf(l: ListenerConfig, c: Config): string {
  const fetchFixed = c.engine === "fetch" && l.mode === "http" ? [c.timeouts.idle, largestBody(c), c.http2.enabled] : [];
  // ALPN's offer (h2 or not) is fixed when a TLS listener binds, on either engine.
  const alpn = l.mode === "http" && l.tls !== undefined && c.engine === "socket" ? [c.http2.enabled] : [];
  // A TCP listener's relays take its pool when they start (tcp/proxy.ts): a new pool, a new bind.
  const tcpPool = l.mode === "tcp" ? [l.pool ?? null] : [];
  return JSON.stringify([l.host, l.port, l.mode, l.tls !== undefined, c.engine, ...fetchFixed, ...alpn, ...tcpPool]);
}

export class ListenerSet {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly ctx: ListenerContext) {}

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
    try {
      lines.push(...(await this.match(config, prev, retired)));
    } finally {
      // Replaced or dropped listeners stop in the background (each finishes what it holds within
      // the grace), also when a later listener could not bind and the call fails.
      for (const l of retired) void l.stop(true, config.timeouts.shutdownGrace, false);
    }
    return lines;
  }

  private async match(config: Config, prev: Config | undefined, retired: Listener[]): Promise<string[]> {
    const lines: string[] = [];
    for (const lc of config.listeners) {
      const known = this.entries.get(lc.name);
      if (known !== undefined && prev !== undefined && bindingOf(known.listener.config, prev) === bindingOf(lc, config)) {
        if (known.tls !== undefined && lc.tls !== undefined) lines.push(...known.tls.reload(lc.tls).map((l) => (lc.name === "default" ? l : l.replace(/^listen\.tls/, `listeners.${lc.name}.tls`))));
        known.listener.reconfigure(config, lc);
        continue;
      }
      // Its certificate files are watched from now on: a renewal on disk reaches new handshakes.
      const field = lc.name === "default" ? "listen.tls" : `listeners.${lc.name}.tls`;
      const tls = lc.tls !== undefined ? new TlsTermination(lc.tls, { logger: this.ctx.logger, field }) : undefined;
      // The same address: bound anew beside the old one, on the port it holds (a configured 0 stays that port).
      const sameAddress = known !== undefined && known.listener.config.host === lc.host && known.listener.config.port === lc.port;
      let listener: Listener;
      try {
        listener = await this.start(config, sameAddress ? { ...lc, port: known!.listener.port } : lc, tls?.material);
      } catch (e) {
        tls?.stop();
        throw e;
      }
      tls?.onRenew((m, cause) => listener.renewTls(m, cause));
      this.entries.set(lc.name, { listener, tls });
      if (known !== undefined) {
        known.tls?.stop();
        retired.push(known.listener);
        lines.push(sameAddress ? `listener ${lc.name}: bound anew on ${listener.url}` : `listener ${lc.name}: moved to ${listener.url}`);
      } else if (prev !== undefined) {
        lines.push(`listener ${lc.name}: added on ${listener.url}`);
      }
    }
    const names = new Set(config.listeners.map((l) => l.name));
    for (const [name, e] of this.entries) {
      if (names.has(name)) continue;
      this.entries.delete(name);
      e.tls?.stop();
      retired.push(e.listener);
      lines.push(`listener ${name}: removed (its connections finish)`);
    }
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
    for (const e of this.entries.values()) e.tls?.stop();
    await Promise.all([...this.entries.values()].map((e) => e.listener.stop(graceful, grace, handover)));
  }
}
