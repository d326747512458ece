/**
 * Health probes: one attempt each, bounded by its own timeout, reporting ok or a reason.
 * One small interface, one implementation per check type.
 */
import type { Backend } from "../pool/backend.ts";
import type { ResolvedCheck } from "./check.ts";
import { formatDuration } from "../config/units.ts";
import { describeNetworkError, errorCode, isLocalCode, refinedConnectError } from "../net/network-error.ts";

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
  return check.type === "tcp" ? new TcpProbe(backend, check) : new HttpProbe(backend, check);
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
function failure(e: unknown, timeoutMs: number, signal: AbortSignal): ProbeResult {
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
      return failure(e, this.check.timeout, signal);
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
            settle(failure(e, 0, signal));
          },
          connectError(_s, e) {
            settle(failure(e, 0, signal));
          },
        },
      }).then(
        (socket) => {
          // Connected only after the timeout fired: nobody waits for this socket any more.
          if (settled && signal.aborted) socket.terminate();
        },
        (e) => settle(failure(e, 0, signal)),
      );
    });
  }
}
