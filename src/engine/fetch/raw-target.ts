/**
 * Requests whose target begins with "//" (fetch engine). Bun's fetch (1.4.5) sends
 * "http://b//evil.example/x" as "GET /evil.example/x": it folds the leading slashes, though the
 * URL's path is "//evil.example/x", and a backend would answer for another resource than the
 * one asked for (RFC 9112 §3.2.1: the origin-form is sent as it is). Bun's node:http client
 * sends the path as given, so these requests, and only these (they are rare), go through it.
 * It adds neither User-Agent nor Accept, and its connection is not pooled (Connection: close):
 * a cost paid by rare requests only.
 *
 * The answer is made into a Response like fetch's, so that the rest of the engine is the same.
 */
import http from "node:http";
import https from "node:https";
import { Readable } from "node:stream";
import type { UpstreamTls } from "../../tls/upstream.ts";

/** True for a path fetch would change: one that begins with "//". */
export function foldedByFetch(path: string): boolean {
  return path.charCodeAt(0) === 47 && path.charCodeAt(1) === 47;
}

export interface RawTargetInit {
  method: string;
  headers: Headers;
  body: ReadableStream<Uint8Array> | Uint8Array | ArrayBuffer | null;
  signal: AbortSignal;
  tls: UpstreamTls | undefined;
}

/** Send `path` to `origin` exactly as written; resolves with the response head, as fetch does. */
export function sendRawTarget(origin: string, path: string, init: RawTargetInit): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    const url = new URL(origin);
    const https_ = url.protocol === "https:";
    const headers: Record<string, string> = {};
    init.headers.forEach((value, name) => {
      headers[name] = value;
    });
    const options: https.RequestOptions = {
      host: url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname,
      port: url.port || (https_ ? 443 : 80),
      method: init.method,
      path,
      headers,
      agent: false,
      ...(https_ && init.tls !== undefined
        ? { ca: init.tls.ca, cert: init.tls.cert, key: init.tls.key, servername: init.tls.serverName ?? url.hostname, rejectUnauthorized: init.tls.rejectUnauthorized }
        : {}),
    };
    const req = (https_ ? https : http).request(options, (m) => {
      const status = m.statusCode ?? 502;
      const fields = new Headers();
      const raw = m.rawHeaders;
      for (let i = 0; i + 1 < raw.length; i += 2) fields.append(raw[i]!, raw[i + 1]!);
      // RFC 9110 §6.4.1, §9.3.2: these carry no content, and a Response may not have one.
      const bodiless = init.method === "HEAD" || status === 204 || status === 205 || status === 304;
      if (bodiless) m.resume();
      resolve(new Response(bodiless ? null : (Readable.toWeb(m) as unknown as ReadableStream<Uint8Array>), { status, statusText: m.statusMessage ?? "", headers: fields }));
    });
    const abort = () => req.destroy(Object.assign(new Error("The operation was aborted."), { name: "AbortError" }));
    if (init.signal.aborted) abort();
    else init.signal.addEventListener("abort", abort, { once: true });
    req.on("error", reject);
    req.on("close", () => init.signal.removeEventListener("abort", abort));
    const body = init.body;
    if (body === null) req.end();
    else if (body instanceof ReadableStream) void pump(body, req);
    else req.end(body instanceof ArrayBuffer ? new Uint8Array(body) : body);
  });
}

/** Copy a streamed body to the request, waiting for the socket to drain. */
async function pump(body: ReadableStream<Uint8Array>, req: http.ClientRequest): Promise<void> {
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!req.write(value)) await drainedOrClosed(req);
      if (req.destroyed) {
        await reader.cancel().catch(() => {});
        return;
      }
    }
    req.end();
  } catch (e) {
    req.destroy(e instanceof Error ? e : new Error(String(e)));
  }
}

function drainedOrClosed(req: http.ClientRequest): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      req.off("drain", done);
      req.off("close", done);
      resolve();
    };
    req.on("drain", done);
    req.on("close", done);
  });
}
