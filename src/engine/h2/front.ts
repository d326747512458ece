/**
 * HTTP/2 for one socket-engine listener: a node:http2 server object that is never listened on,
 * only given connections (its "connection" event, through the Duplex of connection.ts). It
 * holds the settings every new session gets; a reload makes a new one, so new limits apply to
 * new sessions while sessions already open keep theirs.
 */
import http2 from "node:http2";
import type { ServerHttp2Session } from "node:http2";
import type { ClientConnection, TakenOver } from "../socket/client.ts";
import { H2Connection, type H2Limits } from "./connection.ts";

/** The `http2` options as the engine takes them (config/schema.ts documents each). */
export interface H2Settings {
  maxConcurrentStreams: number;
  maxHeaderListSize: number;
  initialWindowSize: number;
  maxHeaderListPairs: number;
  maxOutstandingPings: number;
  maxSettings: number;
  maxSessionRejectedStreams: number;
  maxSessionInvalidFrames: number;
  maxResetsPerSecond: number;
}

export class H2Front {
  private server: http2.Http2Server;
  /** The connection whose session the server is making (its "session" event is synchronous). */
  private adopting: H2Connection | undefined;
  private resetsPerSecond: number;

  constructor(
    settings: H2Settings,
    private limits: H2Limits,
  ) {
    this.server = this.makeServer(settings);
    this.resetsPerSecond = settings.maxResetsPerSecond;
  }

  /** Take `c` over; `first` is what was read of it (the preface at least, on a plain listener). */
  readonly takeover = (c: ClientConnection, first: Uint8Array): TakenOver => {
    const h = new H2Connection(c, this.limits, this.resetsPerSecond);
    this.adopting = h;
    try {
      this.server.emit("connection", h.duplex);
    } finally {
      this.adopting = undefined;
    }
    h.data(first);
    return h;
  };

  reconfigure(settings: H2Settings, limits: H2Limits): void {
    this.server = this.makeServer(settings);
    this.resetsPerSecond = settings.maxResetsPerSecond;
    this.limits = limits;
  }

  private makeServer(o: H2Settings): http2.Http2Server {
    const server = http2.createServer({
      // SETTINGS sent to every client (RFC 9113 §6.5.2). More concurrent streams than
      // advertised are refused with REFUSED_STREAM (§5.1.2).
      settings: {
        maxConcurrentStreams: o.maxConcurrentStreams,
        maxHeaderListSize: o.maxHeaderListSize,
        initialWindowSize: o.initialWindowSize,
        // No server push: a proxy has nothing to push, and RFC 9113 §8.4 lets a server never push.
        enablePush: false,
      },
      // Bounds node:http2 enforces on a peer (Bun 1.4.5 reads these in its native frame parser).
      maxHeaderListPairs: o.maxHeaderListPairs,
      maxOutstandingPings: o.maxOutstandingPings,
      maxSettings: o.maxSettings,
      maxSessionRejectedStreams: o.maxSessionRejectedStreams,
      maxSessionInvalidFrames: o.maxSessionInvalidFrames,
    } as http2.ServerOptions);
    server.on("session", (session: ServerHttp2Session) => this.adopting?.bind(session));
    return server;
  }
}
