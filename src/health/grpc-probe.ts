/**
 * The `grpc` health check: the standard gRPC health protocol (grpc/doc/health-checking.md),
 * `grpc.health.v1.Health/Check` with the configured `service` ("" asks about the server as a
 * whole), over HTTP/2: cleartext by prior knowledge for http:// backends, TLS with ALPN h2 for
 * https:// ones (the backend's own CA and name, as requests reach it). The backend is healthy
 * when the call ends with grpc-status 0 and the answer says SERVING.
 *
 * One session per probe, closed after it: a probe every two seconds costs one handshake, and a
 * dead backend or a wedged session cannot carry over from one probe to the next.
 *
 * The messages are small enough to write and read by hand (protobuf encoding):
 * HealthCheckRequest is `string service = 1`, HealthCheckResponse `ServingStatus status = 1`
 * (UNKNOWN 0, SERVING 1, NOT_SERVING 2, SERVICE_UNKNOWN 3).
 */
import http2 from "node:http2";
import type { Backend } from "../pool/backend.ts";
import type { ResolvedCheck } from "./check.ts";
import type { Probe, ProbeResult } from "./probe.ts";
import { formatDuration } from "../config/units.ts";
import { describeNetworkError, refinedConnectError } from "../net/network-error.ts";
import { h2TlsOptions } from "../tls/upstream.ts";

const PATH = "/grpc.health.v1.Health/Check";
const SERVING_STATUS = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"] as const;
/** An answer larger than this is not a HealthCheckResponse: the probe fails rather than read on. */
const MAX_ANSWER = 4096;

/** A length-prefixed gRPC message (PROTOCOL-HTTP2.md): flag 0 (not compressed), length, bytes. */
export function grpcFrame(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

/** HealthCheckRequest { service }: field 1, wire type 2 (length-delimited). */
export function healthRequest(service: string): Uint8Array {
  const name = new TextEncoder().encode(service);
  if (name.length === 0) return new Uint8Array(0);
  return new Uint8Array([0x0a, ...varint(name.length), ...name]);
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

/** The ServingStatus of a HealthCheckResponse message, or undefined if it is not one. */
export function servingStatus(message: Uint8Array): number | undefined {
  // Absent field 1 is its default, UNKNOWN (proto3). Other fields are skipped as the wire type says.
  let i = 0;
  let status = 0;
  while (i < message.length) {
    const key = message[i++]!;
    const field = key >> 3;
    const wire = key & 7;
    if (wire === 0) {
      let v = 0;
      let shift = 0;
      for (;;) {
        if (i >= message.length || shift > 28) return undefined;
        const b = message[i++]!;
        v |= (b & 0x7f) << shift;
        if ((b & 0x80) === 0) break;
        shift += 7;
      }
      if (field === 1) status = v;
    } else if (wire === 2) {
      if (i >= message.length) return undefined;
      const len = message[i++]!;
      if (len > 0x7f) return undefined;
      i += len;
    } else return undefined;
  }
  return i === message.length ? status : undefined;
}

export class GrpcProbe implements Probe {
  private readonly authority: string;
  private readonly options: http2.SecureClientSessionOptions;
  private readonly request: Uint8Array;

  constructor(
    backend: Backend,
    private readonly check: ResolvedCheck,
  ) {
    const u = new URL(backend.url);
    if (check.port !== undefined) u.port = String(check.port);
    this.authority = `${u.protocol === "https:" ? "https:" : "http:"}//${u.host}`;
    // As requests reach it: ALPN h2, the same CA, client certificate, name and verification.
    this.options = h2TlsOptions(backend.tls, u);
    this.request = grpcFrame(healthRequest(check.service));
  }

  run(signal: AbortSignal): Promise<ProbeResult> {
    const timeout = `timeout after ${formatDuration(this.check.timeout)}`;
    if (signal.aborted) return Promise.resolve({ ok: false, detail: timeout });
    return new Promise<ProbeResult>((resolve) => {
      let session: http2.ClientHttp2Session;
      try {
        session = http2.connect(this.authority, this.options);
      } catch (e) {
        // A refusal made at once (bad options, no descriptor): the probe fails, saying why.
        return resolve({ ok: false, detail: describeNetworkError(refinedConnectError(e)) });
      }
      let settled = false;
      const settle = (r: ProbeResult) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener("abort", onAbort);
        session.destroy();
        resolve(r);
      };
      const onAbort = () => settle({ ok: false, detail: timeout });
      signal.addEventListener("abort", onAbort, { once: true });
      session.on("error", (e) => settle({ ok: false, detail: describeNetworkError(refinedConnectError(e)) }));
      // Closed by the backend before an answer (a server that is not HTTP/2, or shutting down): down now, not at the timeout.
      session.on("close", () => settle({ ok: false, detail: "the connection closed before an answer" }));

      const headers: http2.OutgoingHttpHeaders = {
        ":method": "POST",
        ":path": PATH,
        "content-type": "application/grpc",
        te: "trailers",
        "user-agent": "switchyard-health-check",
        ...this.check.headers,
      };
      if (this.check.host !== undefined) headers[":authority"] = this.check.host;
      const stream = session.request(headers);
      stream.on("error", (e) => settle({ ok: false, detail: describeNetworkError(refinedConnectError(e)) }));
      let status = 0;
      let grpcStatus: string | undefined;
      let grpcMessage: string | undefined;
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on("response", (h) => {
        status = Number(h[":status"]);
        // A Trailers-Only answer carries grpc-status in the head.
        if (h["grpc-status"] !== undefined) grpcStatus = String(h["grpc-status"]);
        if (h["grpc-message"] !== undefined) grpcMessage = String(h["grpc-message"]);
      });
      stream.on("trailers", (h) => {
        if (h["grpc-status"] !== undefined) grpcStatus = String(h["grpc-status"]);
        if (h["grpc-message"] !== undefined) grpcMessage = String(h["grpc-message"]);
      });
      stream.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER) return settle({ ok: false, detail: `an answer over ${MAX_ANSWER} bytes` });
        chunks.push(chunk);
      });
      stream.on("end", () => settle(this.verdict(status, grpcStatus, grpcMessage, Buffer.concat(chunks))));
      stream.end(this.request);
    });
  }

  private verdict(status: number, grpcStatus: string | undefined, grpcMessage: string | undefined, body: Buffer): ProbeResult {
    if (status !== 200) return { ok: false, detail: `status ${status}` };
    if (grpcStatus === undefined) return { ok: false, detail: "no grpc-status" };
    if (grpcStatus !== "0") return { ok: false, detail: `grpc-status ${grpcStatus}${grpcMessage ? ` (${percentDecoded(grpcMessage)})` : ""}` };
    // One message: flag, length, bytes.
    if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) return { ok: false, detail: "not one uncompressed HealthCheckResponse" };
    const serving = servingStatus(body.subarray(5));
    if (serving === undefined) return { ok: false, detail: "not a HealthCheckResponse" };
    const name = SERVING_STATUS[serving] ?? `status ${serving}`;
    return { ok: serving === 1, detail: name };
  }
}

/** grpc-message as sent, percent-decoded where that is valid (a backend may send it malformed). */
function percentDecoded(m: string): string {
  try {
    return decodeURIComponent(m);
  } catch {
    return m;
  }
}
