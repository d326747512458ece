/**
 * Health probes: one attempt each, bounded by its own timeout, reporting ok or a reason.
 * One small interface, one implementation per check type.
 */
import type { Backend } from "../pool/backend.ts";
import type { ResolvedCheck } from "./check.ts";
import { formatDuration } from "../config/units.ts";
import { describeNetworkError, errorCode, isLocalCode, refinedConnectError } from "../net/network-error.ts";
import { encodeProxyHeader } from "../net/proxy-protocol.ts";
import { H2Probe } from "./h2-probe.ts";
import { GrpcProbe } from "./grpc-probe.ts";

export interface ProbeResult {
  ok: boolean;
  /** "status 200", "status 503", "timeout after 1s", "connection refused", ... */
  detail: string;
  /**
   * The probe could not be made for want of the proxy's own resources (net/network-error.ts):
   * it says nothing about the backend, and the monitor counts it neither way.
   */
  local?: true;
}

export interface Probe {
  run(signal: AbortSignal): Promise<ProbeResult>;
}

export function createProbe(backend: Backend, check: ResolvedCheck): Probe {
  if (check.type === "tcp") return new TcpProbe(backend, check);
  if (check.type === "grpc") return new GrpcProbe(backend, check);
  // Asked at each run: a reload may turn the pool's proxyProtocol on or off without changing
  // the check (the backend's spec changes, the watch stays).
  const plain = new HttpProbe(backend, check);
  // Likewise its protocol: an HTTP/2 backend is checked over HTTP/2 (h2-probe.ts).
  let h2: H2Probe | undefined;
  let proxied: { version: "v1" | "v2"; probe: ProxiedHttpProbe } | undefined;
  return {
    run(signal) {
      if (backend.protocol !== "http1") return (h2 ??= new H2Probe(backend, check)).run(signal);
      const version = backend.upstream?.proxyProtocol;
      if (version === undefined) return plain.run(signal);
      if (proxied?.version !== version) proxied = { version, probe: new ProxiedHttpProbe(backend, check, version) };
      return proxied.probe.run(signal);
    },
  };
}

/** "2xx" / "200" / "200-399" entries compiled into one predicate, once. */
export function statusMatcher(expect: readonly string[]): (status: number) => boolean {
  const tests = expect.map((e): ((s: number) => boolean) => {
    if (/^[1-5]xx$/.test(e)) {
      const cls = Number(e[0]);
      return (s) => Math.floor(s / 100) === cls;
    }
    const [lo, hi = lo] = e.split("-").map(Number) as [number, number?];
    return (s) => s >= lo && s <= hi!;
  });
  return (s) => tests.some((t) => t(s));
}

/** Bodies are searched for `expectBody` within this many bytes; the rest is not read. */
export const EXPECT_BODY_LIMIT = 64 * 1024;

/** A failed probe, its reason in the words the log uses: "connection refused", "timeout after 1s". */
export function probeFailure(e: unknown, timeoutMs: number, signal: AbortSignal): ProbeResult {
  // The probe's own controller fired: its timer, or stop() (whose result nobody reads).
  if (signal.aborted) return { ok: false, detail: `timeout after ${formatDuration(timeoutMs)}` };
  const err = refinedConnectError(e);
  const detail = describeNetworkError(err);
  return isLocalCode(errorCode(err)) ? { ok: false, detail, local: true } : { ok: false, detail };
}

/** Up to `limit` bytes of a body as text; the rest is cancelled, not read. */
async function readUpTo(body: ReadableStream<Uint8Array> | null, limit: number): Promise<string> {
  if (body === null) return "";
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < limit) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    void reader.cancel().catch(() => {});
  }
  return new TextDecoder().decode(Buffer.concat(chunks).subarray(0, limit));
}

export class HttpProbe implements Probe {
  private readonly url: string;
  private readonly headers: Headers;
  private readonly matches: (status: number) => boolean;

  constructor(
    private readonly backend: Backend,
    private readonly check: ResolvedCheck,
  ) {
    const u = new URL(backend.url);
    if (check.port !== undefined) u.port = String(check.port);
    // A TCP-mode backend (tcp://) that speaks HTTP on its check port is probed over plain http.
    const scheme = u.protocol === "https:" ? "https:" : "http:";
    this.url = `${scheme}//${u.host}${check.path}`;
    this.headers = new Headers(check.headers);
    if (check.host !== undefined) this.headers.set("host", check.host);
    this.headers.set("user-agent", "switchyard-health-check");
    this.matches = statusMatcher(check.expectStatus);
  }

  async run(signal: AbortSignal): Promise<ProbeResult> {
    try {
      const res = await fetch(this.url, {
        method: this.check.method,
        headers: this.headers,
        signal,
        redirect: "manual",
        // HTTPS backends are checked as requests reach them: same CA, name and verification.
        tls: this.backend.tls,
        // A fresh connection each time would test the accept path too, but probes on pooled
        // connections cost the backend less; a dead backend fails either way.
      });
      const ok = this.matches(res.status);
      if (!ok) {
        void res.body?.cancel().catch(() => {});
        return { ok, detail: `status ${res.status}` };
      }
      if (this.check.expectBody !== undefined) {
        const text = await readUpTo(res.body, EXPECT_BODY_LIMIT);
        if (!text.includes(this.check.expectBody)) return { ok: false, detail: `status ${res.status}, body lacks "${this.check.expectBody}"` };
      } else {
        void res.body?.cancel().catch(() => {});
      }
      return { ok: true, detail: `status ${res.status}` };
    } catch (e) {
      return probeFailure(e, this.check.timeout, signal);
    }
  }
}

export class TcpProbe implements Probe {
  private readonly hostname: string;
  private readonly port: number;

  constructor(
    backend: Backend,
    private readonly check: ResolvedCheck,
  ) {
    this.hostname = backend.url.hostname.replace(/^\[|\]$/g, "");
    const defaultPort = backend.url.protocol === "https:" ? 443 : 80;
    this.port = check.port ?? (Number(backend.url.port) || defaultPort);
  }

  run(signal: AbortSignal): Promise<ProbeResult> {
    if (signal.aborted) return Promise.resolve({ ok: false, detail: `timeout after ${formatDuration(this.check.timeout)}` });
    return new Promise((resolve) => {
      let settled = false;
      const settle = (r: ProbeResult) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener("abort", onAbort);
        resolve(r);
      };
      const onAbort = () => settle({ ok: false, detail: `timeout after ${formatDuration(this.check.timeout)}` });
      signal.addEventListener("abort", onAbort, { once: true });
      Bun.connect({
        hostname: this.hostname,
        port: this.port,
        socket: {
          open(socket) {
            // Connected is all a TCP check asks; close at once so the backend keeps no socket.
            socket.end();
            settle({ ok: true, detail: "connected" });
          },
          data() {},
          error(_s, e) {
            settle(probeFailure(e, 0, signal));
          },
          connectError(_s, e) {
            settle(probeFailure(e, 0, signal));
          },
        },
      }).then(
        (socket) => {
          // Connected only after the timeout fired: nobody waits for this socket any more.
          if (settled && signal.aborted) socket.terminate();
        },
        (e) => settle(probeFailure(e, 0, signal)),
      );
    });
  }
}

/**
 * An HTTP check of a backend whose pool sends PROXY headers (pools.*.proxyProtocol): such a
 * backend (HAProxy `accept-proxy`, nginx `proxy_protocol`) wants the header first on every
 * connection, so the check cannot go through fetch. It sends a v2 LOCAL (v1 UNKNOWN) header,
 * which says the connection is the proxy's own and names no client (doc/proxy-protocol.txt
 * §2.2; HAProxy sends its checks to `send-proxy` servers with a header too), then one request
 * with Connection: close, and reads the status line, and the body for `expectBody`.
 */
export class ProxiedHttpProbe implements Probe {
  private readonly hostname: string;
  private readonly port: number;
  private readonly request: Uint8Array;
  private readonly matches: (status: number) => boolean;

  constructor(
    backend: Backend,
    private readonly check: ResolvedCheck,
    version: "v1" | "v2",
  ) {
    const u = backend.url;
    this.hostname = u.hostname.replace(/^\[|\]$/g, "");
    this.port = check.port ?? (Number(u.port) || 80);
    const fields: Record<string, string> = {};
    for (const [k, v] of Object.entries(check.headers)) fields[k.toLowerCase()] = v;
    fields.host = check.host ?? (check.port !== undefined ? `${u.hostname}:${check.port}` : u.host);
    fields["user-agent"] = "switchyard-health-check";
    fields.connection = "close";
    const head = `${check.method} ${check.path} HTTP/1.1\r\n${Object.entries(fields).map(([k, v]) => `${k}: ${v}\r\n`).join("")}\r\n`;
    // A non-IP source gives the LOCAL / UNKNOWN form: "the proxy's own connection".
    const header = encodeProxyHeader(version === "v1" ? 1 : 2, { address: "", port: 0 }, { address: "", port: 0 });
    this.request = Buffer.concat([header, Buffer.from(head, "latin1")]);
    this.matches = statusMatcher(check.expectStatus);
  }

  run(signal: AbortSignal): Promise<ProbeResult> {
    const { check } = this;
    const timedOut: ProbeResult = { ok: false, detail: `timeout after ${formatDuration(check.timeout)}` };
    if (signal.aborted) return Promise.resolve(timedOut);
    return new Promise((resolve) => {
      let settled = false;
      let socket: { terminate(): void } | undefined;
      let text = "";
      let unsent = this.request;
      const settle = (r: ProbeResult) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener("abort", onAbort);
        socket?.terminate();
        resolve(r);
      };
      const onAbort = () => settle(timedOut);
      signal.addEventListener("abort", onAbort, { once: true });
      // What has come so far decides, or not yet; `final`: nothing more will come.
      const evaluate = (final: boolean): void => {
        const headEnd = text.indexOf("\r\n\r\n");
        if (headEnd === -1) {
          if (final) settle({ ok: false, detail: "connection closed before a response head" });
          return;
        }
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
        if (m === null) return settle({ ok: false, detail: "not an HTTP/1.1 response" });
        const status = Number(m[1]);
        if (status < 200) {
          // An interim response (100, 103): the final one follows.
          text = text.slice(headEnd + 4);
          return evaluate(final);
        }
        if (!this.matches(status)) return settle({ ok: false, detail: `status ${status}` });
        const expectBody = check.expectBody;
        if (expectBody === undefined) return settle({ ok: true, detail: `status ${status}` });
        const body = text.slice(headEnd + 4);
        if (body.includes(expectBody)) return settle({ ok: true, detail: `status ${status}` });
        if (final || body.length >= EXPECT_BODY_LIMIT) settle({ ok: false, detail: `status ${status}, body lacks "${expectBody}"` });
      };
      const write = (s: { write(b: Uint8Array): number }) => {
        const n = s.write(unsent);
        if (n > 0) unsent = unsent.subarray(n);
      };
      // Plain TCP: a pool with proxyProtocol has no https:// backends (refused at load).
      Bun.connect({
        hostname: this.hostname,
        port: this.port,
        socket: {
          open: (s) => write(s),
          drain: (s) => {
            if (unsent.length > 0) write(s);
          },
          data: (_s, d) => {
            text += Buffer.from(d).toString("latin1");
            // Bounded: a head and EXPECT_BODY_LIMIT of body decide; more is not read.
            evaluate(text.length > 2 * EXPECT_BODY_LIMIT);
          },
          close: () => evaluate(true),
          error: (_s, e) => settle(probeFailure(e, 0, signal)),
          connectError: (_s, e) => settle(probeFailure(e, 0, signal)),
        },
      }).then(
        (s) => {
          socket = s;
          if (settled) s.terminate();
        },
        (e) => settle(probeFailure(e, 0, signal)),
      );
    });
  }
}
