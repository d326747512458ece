/**
 * WebSocket proxying on the fetch engine. Bun.serve speaks WebSocket to the client and Bun's
 * client `WebSocket` speaks it to the backend; messages are passed between the two, with
 * backpressure both ways and close codes passed on.
 *
 * Order of events, chosen so that the backend is picked and retried like any request until
 * its 101 (the shared loop in forward/forward.ts does it): the loop's try dials the backend
 * (`dialWebSocket`, the UpstreamWire's send), and only when the backend has switched does the client get
 * its 101 (`server.upgrade`, the DownstreamWire's respond), carrying the subprotocol the backend chose.
 * A backend that refuses the handshake answers like any request (its status reaches the
 * client, or a retry). Messages the backend sends before the client's side is open are queued.
 *
 * Backpressure (Bun 1.4.5): `ServerWebSocket.send` returns -1 when its message had to be
 * queued; the backend's socket is then paused until the client's `drain`. Bun's client
 * WebSocket has no `drain` event, so while its `bufferedAmount` is over HIGH_WATER the client's
 * socket is paused and a timer owned by the bridge polls it down to LOW_WATER.
 *
 * Close codes go on as they came, except those that cannot be sent (RFC 6455 §7.4.1):
 * 1005 (no code) becomes 1000; a backend gone without a Close frame (1006) closes the client
 * with 1011; a client gone without one has its backend connection cut (the backend sees 1006).
 */
import type { Server, ServerWebSocket, WebSocket as BunWebSocket, WebSocketHandler } from "bun";
import type { Backend } from "../../pool/backend.ts";
import type { BodyEnd, UpstreamResponse } from "../../forward/forward.ts";
import type { Cancel, CancelListener } from "../../forward/cancel.ts";
import { NetworkError } from "../../net/network-error.ts";
import { errorResponse } from "../../errors.ts";
import { OpenWebSocket } from "../../pool/backend.ts";
import { sendableCode } from "../../http/ws-frames.ts";
import type { UpstreamTls } from "../../tls/upstream.ts";

/** Past this many bytes unsent to the backend the client is paused; resumed below LOW_WATER. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
const POLL_MS = 10;


type Message = string | Buffer;

/** One client WebSocket paired with one backend WebSocket. `ServerWebSocket.data` is this. */
export class Bridge {
  private client: ServerWebSocket<Bridge> | undefined;
  /** Backend messages that came before the client's side opened. */
  private early: Message[] = [];
  private earlyBytes = 0;
  /** The backend closed before the client's side opened: passed on once it does. */
  private backendGone: { code: number; reason: string } | undefined;
  private clientDone = false;
  private backendDone = false;
  private finished = false;
  private bytesOut = 0;
  private failure: { by: "client" | "backend"; detail: string } | undefined;
  private poll: ReturnType<typeof setInterval> | undefined;
  private end: BodyEnd | undefined;
  private open: OpenWebSocket | undefined;

  constructor(
    readonly upstream: BunWebSocket,
    readonly backend: Backend,
  ) {}

  /** The backend switched: from here its messages and close belong to this bridge. */
  listen(): void {
    this.upstream.onmessage = (e) => this.fromBackend(e.data as Message);
    this.upstream.onclose = (e) => this.backendClosed(e.code, e.reason);
    this.upstream.onerror = null;
  }

  /** The client was sent its 101: the loop's BodyEnd is told when the pair closes. */
  upgraded(end: BodyEnd): void {
    this.end = end;
    this.open = new OpenWebSocket(this.backend);
  }

  // ---- client side (Bun.serve's websocket handlers) ----

  clientOpen(ws: ServerWebSocket<Bridge>): void {
    this.client = ws;
    const early = this.early;
    this.early = [];
    this.earlyBytes = 0;
    for (const m of early) this.toClient(m);
    if (this.backendGone !== undefined) this.closeClient(this.backendGone.code, this.backendGone.reason);
    else this.upstream.resume();
  }

  fromClient(m: Message): void {
    if (this.backendDone) return;
    this.upstream.send(m);
    if (this.upstream.bufferedAmount > HIGH_WATER && this.poll === undefined) {
      this.client?.pause();
      this.poll = setInterval(() => {
        if (this.backendDone || this.upstream.bufferedAmount <= LOW_WATER) {
          clearInterval(this.poll);
          this.poll = undefined;
          if (!this.clientDone) this.client?.resume();
        }
      }, POLL_MS);
    }
  }

  clientDrain(): void {
    if (!this.backendDone) this.upstream.resume();
  }

  clientClosed(code: number, reason: string): void {
    if (this.clientDone) return;
    this.clientDone = true;
    this.stopPolling();
    if (!this.backendDone) {
      if (code === 1006) {
        // Gone without a Close frame: so is the backend's connection.
        this.failure ??= { by: "client", detail: "client connection lost" };
        this.upstream.terminate();
      } else {
        this.upstream.close(sendableCode(code), reason);
      }
    }
    this.settle();
  }

  // ---- backend side ----

  private fromBackend(m: Message): void {
    if (this.clientDone) return;
    if (this.client === undefined) {
      this.early.push(m);
      this.earlyBytes += typeof m === "string" ? m.length : m.byteLength;
      if (this.earlyBytes > HIGH_WATER) this.upstream.pause();
      return;
    }
    this.toClient(m);
  }

  private toClient(m: Message): void {
    const ws = this.client!;
    const r = ws.send(m);
    this.bytesOut += typeof m === "string" ? Buffer.byteLength(m) : m.byteLength;
    // -1: queued behind the client's backpressure; read no more from the backend until drain.
    if (r === -1) this.upstream.pause();
    else if (r === 0 && (typeof m === "string" ? m.length : m.byteLength) > 0) {
      // Dropped: past Bun's backpressureLimit. The stream is broken; end it.
      this.failure ??= { by: "client", detail: "client too slow: message dropped" };
      this.closeClient(1011, "client too slow");
      this.upstream.terminate();
    }
  }

  private backendClosed(code: number, reason: string): void {
    if (this.backendDone) return;
    this.backendDone = true;
    this.stopPolling();
    if (code === 1006 && !this.clientDone) this.failure ??= { by: "backend", detail: "backend connection lost" };
    if (!this.clientDone) {
      const why = code === 1006 ? "backend connection lost" : reason;
      if (this.client === undefined) this.backendGone = { code, reason: why };
      else this.closeClient(code, why);
    }
    this.settle();
  }

  private closeClient(code: number, reason: string): void {
    if (this.clientDone || this.client === undefined) return;
    this.client.close(sendableCode(code), reason);
  }

  private stopPolling(): void {
    if (this.poll !== undefined) clearInterval(this.poll);
    this.poll = undefined;
  }

  private settle(): void {
    if (!this.clientDone || !this.backendDone || this.finished) return;
    this.finished = true;
    this.open?.close();
    this.end?.bodyEnded(this.bytesOut, this.failure);
  }

  /** The client's side never opened (its upgrade failed): close the backend and report. */
  abandon(end: BodyEnd): void {
    this.clientDone = true;
    this.end = end;
    this.failure = { by: "client", detail: "client upgrade failed" };
    if (!this.backendDone) this.upstream.terminate();
    this.backendDone = true;
    this.settle();
  }
}

/** Bun.serve's `websocket` option for the proxy listener: every event goes to the socket's Bridge. */
export const bridgeHandlers: WebSocketHandler<Bridge> = {
  open: (ws) => ws.data.clientOpen(ws),
  message: (ws, m) => ws.data.fromClient(m),
  drain: (ws) => ws.data.clientDrain(),
  close: (ws, code, reason) => ws.data.clientClosed(code, reason),
  // Messages are passed on whole: Bun.serve's own limit (16 MiB) bounds one message; larger
  // ones close the connection with 1009 (RFC 6455 §7.4.1).
  perMessageDeflate: false,
};

/** A backend's answer to a WebSocket handshake: switched (101, with its bridge) or refused. */
export class WebSocketAnswer implements UpstreamResponse {
  constructor(
    readonly status: number,
    readonly headers: Headers,
    readonly bridge: Bridge | undefined,
  ) {}

  discard(): void {
    this.bridge?.upstream.terminate();
  }

  /** Give the client its 101 and hand both sides to the bridge; a refusal goes as it came, bodiless. */
  respond(request: Request, server: Server<unknown>, end: BodyEnd): Response {
    const bridge = this.bridge;
    if (bridge === undefined) {
      end.bodyEnded(0);
      return new Response(null, { status: this.status, headers: this.headers });
    }
    bridge.upgraded(end);
    const headers: Record<string, string> = {};
    this.headers.forEach((v, k) => (headers[k] = v));
    if (!(server as Server<Bridge>).upgrade(request, { data: bridge, headers })) {
      bridge.abandon(end);
      return errorResponse("SY_BAD_REQUEST", "Bun.serve could not upgrade this request to a WebSocket", { headers: { connection: "close" } });
    }
    // Bun ignores what the handler returns after a successful upgrade.
    return new Response(null);
  }
}

/** Request fields Bun's WebSocket client writes itself for the backend's handshake. */
const OWN_FIELDS = new Set(["sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol", "upgrade", "connection"]);

/**
 * One try: dial the backend's WebSocket with the client's fields (after the header rules) and
 * subprotocols. Resolves with its 101, or with the status it refused the handshake with;
 * rejects with a network error (refused, reset, TLS) that the loop reads like any other.
 */
export function dialWebSocket(backend: Backend, target: string, headers: Headers, cancel: Cancel, tls?: UpstreamTls): Promise<WebSocketAnswer> {
  const scheme = backend.url.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${backend.url.host}${backend.basePath}${target}`;
  const fields: Record<string, string> = {};
  headers.forEach((v, k) => {
    if (!OWN_FIELDS.has(k)) fields[k] = v;
  });
  const protocols = (headers.get("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim()).filter((p) => p !== "");
  return new Promise<WebSocketAnswer>((resolve, reject) => {
    if (cancel.aborted) return reject(new NetworkError("ABORT_ERR", "request abandoned"));
    const ws = new WebSocket(url, {
      headers: fields,
      protocols,
      // Each hop negotiates its own compression; messages are passed on decoded.
      perMessageDeflate: false,
      ...(tls !== undefined && scheme === "wss:" ? { tls } : {}),
    } as unknown as string[]) as unknown as BunWebSocket;
    let settled = false;
    const onCancel: CancelListener = {
      onCancel: () => {
        if (settled) return;
        settled = true;
        ws.terminate();
        reject(new NetworkError("ABORT_ERR", "request abandoned"));
      },
    };
    cancel.on(onCancel);
    const done = () => {
      settled = true;
      cancel.off(onCancel);
    };
    ws.onopen = () => {
      if (settled) return void ws.terminate();
      done();
      // Messages wait in the socket until the client's side is open (Bridge.clientOpen resumes).
      ws.pause();
      const bridge = new Bridge(ws, backend);
      bridge.listen();
      const h = new Headers();
      if (ws.protocol !== "") h.set("sec-websocket-protocol", ws.protocol);
      resolve(new WebSocketAnswer(101, h, bridge));
    };
    ws.onerror = (e) => {
      if (settled) return;
      done();
      const message = (e as ErrorEvent).message ?? "";
      // "Expected 101 status code: 403": the backend answered, and not with a switch.
      const refused = /Expected 101 status code: (\d{3})/.exec(message);
      if (refused) return resolve(new WebSocketAnswer(Number(refused[1]), new Headers({ "content-length": "0" }), undefined));
      const code = ((e as ErrorEvent).error as { code?: string } | undefined)?.code ?? /\b(E[A-Z]{3,}|[A-Z_]*CERT[A-Z_]*)\b/.exec(message)?.[1] ?? "ECONNRESET";
      reject(new NetworkError(code, message));
    };
    ws.onclose = () => {
      if (settled) return;
      done();
      reject(new NetworkError("ECONNRESET", "backend closed during the WebSocket handshake"));
    };
  });
}
