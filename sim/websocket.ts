/**
 * The sim backend's `/ws` endpoint: a WebSocket echo server (RFC 6455) for proxy tests.
 *
 * - Every message comes back as it was sent (text as text, binary as binary).
 * - `!headers`: a text message with the handshake as the backend saw it, JSON
 *   `{name, path, protocol, headers}`.
 * - `!close CODE [REASON]`: the backend closes with that code.
 * - `?send=N&size=S`: on open, N bytes go to the client in binary messages of S bytes (default
 *   64 KiB), as fast as the client takes them (send's -1 waits for drain), then a text "done".
 * - The first subprotocol the client offers (Sec-WebSocket-Protocol) is accepted.
 */
import type { Server, ServerWebSocket, WebSocketHandler } from "bun";

export interface SimSocketData {
  name: string;
  path: string;
  headers: Record<string, string>;
  /** Bytes still to send for ?send=N, and the message size. */
  toSend: number;
  size: number;
  /** Open WebSockets of this backend, for `openSockets` and stop(). */
  open: Set<ServerWebSocket<SimSocketData>>;
  /** Told the close code and reason of each WebSocket that closes. */
  onClose: (code: number, reason: string) => void;
}

const MAX_SEND = 1024 ** 3;

/** Answer a /ws request: switch protocols, or 400 when it is no WebSocket handshake. */
export function upgradeToEcho(
  req: Request, url: URL, server: Server<SimSocketData>, name: string,
  open: Set<ServerWebSocket<SimSocketData>>, onClose: SimSocketData["onClose"],
): Response | undefined {
  const offered = req.headers.get("sec-websocket-protocol");
  const protocol = offered?.split(",")[0]?.trim();
  const send = Math.min(MAX_SEND, Math.max(0, Number(url.searchParams.get("send") ?? 0) || 0));
  const size = Math.max(1, Math.min(16 * 1024 * 1024, Number(url.searchParams.get("size") ?? 0) || 64 * 1024));
  const data: SimSocketData = { name, path: url.pathname + url.search, headers: Object.fromEntries(req.headers), toSend: send, size, open, onClose };
  const ok = server.upgrade(req, { data, headers: protocol ? { "sec-websocket-protocol": protocol } : undefined });
  return ok ? undefined : new Response("expected a WebSocket handshake\n", { status: 400 });
}

/** Write ?send bytes while the client takes them; resumed from drain. */
function pump(ws: ServerWebSocket<SimSocketData>): void {
  const d = ws.data;
  while (d.toSend > 0) {
    const n = Math.min(d.size, d.toSend);
    d.toSend -= n;
    const piece = new Uint8Array(n).fill(d.toSend & 0xff);
    const r = ws.send(piece);
    if (d.toSend === 0) ws.send("done");
    // -1: queued behind backpressure; wait for drain before writing more.
    if (r === -1) return;
    if (r === 0) return void ws.close(1011, "send dropped");
  }
}

export const echoHandlers: WebSocketHandler<SimSocketData> = {
  open(ws) {
    ws.data.open.add(ws);
    if (ws.data.toSend > 0) pump(ws);
  },
  drain(ws) {
    pump(ws);
  },
  message(ws, message) {
    if (typeof message === "string" && message.startsWith("!")) {
      if (message === "!headers") {
        ws.send(JSON.stringify({ name: ws.data.name, path: ws.data.path, protocol: ws.data.headers["sec-websocket-protocol"] ?? null, headers: ws.data.headers }));
        return;
      }
      const close = /^!close (\d{4})(?: (.*))?$/.exec(message);
      if (close) return void ws.close(Number(close[1]), close[2] ?? "");
    }
    ws.send(message);
  },
  close(ws, code, reason) {
    ws.data.open.delete(ws);
    ws.data.onClose(code, reason);
  },
};
