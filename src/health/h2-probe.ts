/**
 * The HTTP check of a backend spoken to over HTTP/2 (`protocol: "h2"` or `"h2c"`): the same
 * request as HttpProbe's (method, path, headers, Host as `:authority`, expected status and
 * body), on a connection of the backend's own protocol, since an h2c backend may speak no
 * HTTP/1.1 at all and Bun's fetch speaks no h2c. One connection per probe, closed after it:
 * it tests the accept path too, and no session outlives the watch that asked for it.
 */
import http2, { type ClientHttp2Session, type SecureClientSessionOptions } from "node:http2";
import type { Backend } from "../pool/backend.ts";
import type { ResolvedCheck } from "./check.ts";
import { EXPECT_BODY_LIMIT, probeFailure, statusMatcher, type Probe, type ProbeResult } from "./probe.ts";
import { NetworkError } from "../net/network-error.ts";
import { h2TlsOptions } from "../tls/upstream.ts";

export class H2Probe implements Probe {
  private readonly origin: string;
  private readonly headers: http2.OutgoingHttpHeaders;
  private readonly matches: (status: number) => boolean;
  private readonly options: SecureClientSessionOptions;

  constructor(
    private readonly backend: Backend,
    private readonly check: ResolvedCheck,
  ) {
    const u = new URL(backend.url);
    if (check.port !== undefined) u.port = String(check.port);
    this.origin = `${u.protocol}//${u.host}`;
    const headers: http2.OutgoingHttpHeaders = {};
    // Names lower-cased (RFC 9113 §8.2); Host is `:authority` (§8.3.1).
    for (const [k, v] of Object.entries(check.headers)) if (k.toLowerCase() !== "host") headers[k.toLowerCase()] = v;
    Object.assign(headers, {
      ":method": check.method, ":path": check.path, ":authority": check.host ?? u.host, "user-agent": "switchyard-health-check",
    });
    this.headers = headers;
    this.matches = statusMatcher(check.expectStatus);
    // As requests reach it: ALPN h2, the same CA, client certificate, name and verification.
    this.options = h2TlsOptions(backend.tls, u);
  }

  run(signal: AbortSignal): Promise<ProbeResult> {
    return new Promise<ProbeResult>((resolve) => {
      let session: ClientHttp2Session | undefined;
      let done = false;
      const settle = (r: ProbeResult) => {
        if (done) return;
        done = true;
        signal.removeEventListener("abort", onAbort);
        session?.destroy();
        resolve(r);
      };
      const fail = (e: unknown) => settle(probeFailure(e, this.check.timeout, signal));
      const onAbort = () => fail(new NetworkError("ABORT_ERR", "aborted"));
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort);
      try {
        session = http2.connect(this.origin, this.options);
      } catch (e) {
        return fail(e);
      }
      session.on("error", fail);
      session.on("close", () => fail(new NetworkError("ECONNRESET", "connection closed before a response head")));
      session.on("connect", () => {
        if (this.backend.tls !== undefined && session!.alpnProtocol !== "h2") return fail(new NetworkError("ERR_H2_NOT_NEGOTIATED", "no h2 in ALPN"));
      });
      const stream = session.request(this.headers, { endStream: true });
      stream.on("error", fail);
      stream.on("response", (h) => {
        const status = Number(h[":status"]);
        if (!this.matches(status)) return settle({ ok: false, detail: `status ${status}` });
        const expect = this.check.expectBody;
        if (expect === undefined) return settle({ ok: true, detail: `status ${status}` });
        const chunks: Buffer[] = [];
        let size = 0;
        const judge = () => {
          const text = new TextDecoder().decode(Buffer.concat(chunks).subarray(0, EXPECT_BODY_LIMIT));
          settle(text.includes(expect) ? { ok: true, detail: `status ${status}` } : { ok: false, detail: `status ${status}, body lacks "${expect}"` });
        };
        stream.on("data", (c: Buffer) => {
          chunks.push(c);
          size += c.length;
          if (size >= EXPECT_BODY_LIMIT) judge();
        });
        stream.on("end", judge);
      });
    });
  }
}
