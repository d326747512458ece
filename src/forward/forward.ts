/**
 * The forwarding loop both HTTP engines share: wait for an upstream slot, choose a backend,
 * apply the header rules, send one try through the engine's wire, decide on failure whether to
 * try another, and hand the response to the client. Selection, header rules, the retry
 * decision, passive health, stats and logging each live in their own module; this file only
 * sequences them. What differs between engines is the wire, in two halves: the UpstreamWire
 * (how a try reaches a backend, in the manner of Caddy's Transport) and the DownstreamWire
 * (how the answer reaches the client). The loop never knows which engine it has.
 *
 * The path of one request on the socket engine, file by file, in one direction:
 *
 * 1. engine/socket/engine.ts: Bun.listen accepts the connection and makes it a ClientConnection;
 *    the socket's `data` events go to it.
 * 2. engine/socket/client.ts: ClientConnection reads the head (scan.ts's fast path for a plain
 *    request, else llhttp.ts), checks it, and makes an Exchange, which is the ForwardRequest
 *    itself; a body goes into a RequestBody (request-body.ts). When the request is whole (or
 *    its body past retry.bufferBody) and first in line, it calls the Forwarder's start().
 * 3. forward/forward.ts (here): a Trip applies the header rules (headers.ts), waits for a slot
 *    (gate.ts), asks the pool for a backend (pool/pool.ts and its policy), takes the backend's
 *    Lease, arms the try's timer (timer-list.ts) and calls the UpstreamWire's send().
 * 4. engine/socket/upstream-wire.ts: takes an idle connection to that backend from the
 *    UpstreamPool, or dials one, builds the request head (bytes.ts) and hands it over.
 * 5. engine/socket/upstream.ts: UpstreamConn writes the head (and the body, whole or as it
 *    streams) through its Outbox (outbox.ts), reads the response head (scan.ts or llhttp.ts),
 *    and reports it to the Trip (TryReceiver.headReceived), or a failure (tryFailed). A
 *    response read whole goes back to the idle stack before the Trip even sees it.
 * 6. forward/forward.ts: the Trip counts the response, decides whether the status is retried,
 *    prepares the client's headers and calls the DownstreamWire's respond(). A failed try is
 *    retried from step 3 (retry.ts decides) or answered with an error (errors.ts) through
 *    the DownstreamWire's answer().
 * 7. engine/socket/client.ts: clientWire.respond has the Exchange write the head, with the
 *    body when it came whole, to the client; the rest of the body flows from UpstreamConn to
 *    the Exchange (ResponseSink) directly, the upstream socket paused while the client's is
 *    congested. When the body ends, the Exchange tells the Trip (BodyEnd.bodyEnded: the Lease
 *    is released, passive health hears of it, the access log is written) and the
 *    ClientConnection starts its next request.
 *
 * On the fetch engine (engine/fetch/engine.ts) steps 1-2 are Bun.serve and the handler, which reads
 * the body first (body.ts); steps 4-5 are one fetch() to the backend; step 7 returns a
 * Response that Bun.serve writes.
 */
import type { Backend, Lease } from "../pool/backend.ts";
import type { AccessEntry, AccessLog } from "../log/access.ts";
import type { RequestTrace } from "../tracing/span.ts";
import type { RequestTracer } from "../tracing/tracer.ts";
import { methodLabel, type TrafficStats } from "../stats/traffic.ts";
import { classifyNetworkError, describeNetworkError, errorCode, isLocalCode, refinedConnectError, type LocalCode } from "../net/network-error.ts";
import type { CidrMatcher } from "../net/cidr.ts";
import type { HeaderFields } from "../http/fields.ts";
import { toClientHeaders, toUpstreamHeaders, type OtherVersion } from "../http/headers.ts";
import { shouldRetry, type TryFailure } from "./retry.ts";
import type { HeaderVars } from "../route/header-rules.ts";
import type { InFlightLimit } from "../guard/in-flight.ts";
import { mirrorFields } from "./mirror.ts";
import { RoutedKind, refused, upstreamTargetOf, type MirrorRequest, type MirrorSink, type Destination, type RoutedAnswer, type RoutedForward, type Routed, type Router } from "./router.ts";
import type { RoutedRequest } from "./router.ts";
import { ClientFault, errorAnswer, messageFor, statusFor, type AnswerFormat, type ErrorAnswer, type ProxyAnswerCode, type ProxyErrorCode } from "../errors.ts";
import { grpcTimeoutMs, isGrpcCall } from "../http/grpc.ts";
import { AdmissionGate, Lane, type GateSlot, type Waiter } from "./gate.ts";
import { Cancel, type CancelListener } from "./cancel.ts";
import { TimerList, type TimerEntry } from "./timer-list.ts";
import { RecentFailures } from "../stats/recent-failures.ts";

/** What every request of one listener's forwarder shares; the per-route part is each request's Destination (router.ts). */
export interface ForwardOptions {
  /** Where each request goes: built once per config (router.ts). */
  router: Router;
  /** The listener's figures (every route's requests together). */
  traffic: TrafficStats;
  accessLog?: AccessLog;
  /** OpenTelemetry tracing (tracing/), absent when it is off. */
  tracer?: RequestTracer;
  /** The last failed requests (stats/recent-failures.ts), for the dashboard. */
  failures?: RecentFailures;
  trusted: CidrMatcher;
  preserveHost: boolean;
  /** Upstream requests in flight at once, over all backends (0: no bound). */
  upstreamConcurrency: number;
  /**
   * A request still waiting for its response head this many ms after taking an
   * upstreamConcurrency slot gives the slot to the next request in line and counts against
   * longWaitConcurrency instead (gate.ts: long-polls must not starve everything else).
   */
  longWaitAfter?: number;
  /** Such long waits in flight at once (0 or absent: they keep their slot). */
  longWaitConcurrency?: number;
  /**
   * Upstream requests whose body still streams from the client (not replayable), in flight at
   * once (0 or absent: no bound). They take no upstreamConcurrency slot: a client that dribbles
   * its body would hold one for as long as it likes, and a few dozen such clients would stop
   * every other request (the slow-upload attack of bench/attack.ts). Bounded apart, they can
   * only crowd out each other.
   */
  uploadConcurrency?: number;
}

/** One client request as an engine hands it to the loop. */
export interface ForwardRequest<Body> {
  readonly method: string;
  /** The request target exactly as received (origin-form): no decoding, no "//" folding. */
  readonly target: string;
  /** Where it goes, decided from the head (Forwarder.route): the target upstream is routed.upstreamTarget. */
  readonly routed: Routed;
  /** Changed in place by the header rules. */
  readonly headers: HeaderFields;
  readonly clientIp: string;
  readonly proto: "http" | "https";
  /** The version the request came in, when not 1.1 (Via, RFC 9110 §7.6.3). */
  readonly httpVersion?: OtherVersion;
  /** What only the engine reads: the body to send upstream, its own client-side state. */
  readonly own: Body;
  /** The body can be sent again (none, or read whole): a retry is possible. */
  readonly replayable: boolean;
  /**
   * Aborted when the client goes away, or with a ClientFault as the reason when it broke a
   * rule (a body too large or too slow): then the loop answers for the client, and no backend
   * is blamed.
   */
  readonly cancel: Cancel;
  /**
   * What the access log may ask of the client's side (common/combined, log.fields): read once,
   * when the request is logged and a chosen field needs it. Absent: "HTTP/1.1", "-".
   */
  details?(): RequestDetails;
}

/** The client side of a request, as the engine knows it, for the access log. */
export interface RequestDetails {
  /** The request line's version: "HTTP/1.1", "HTTP/1.0", "HTTP/2.0". */
  readonly protocol: string;
  /** Request body bytes received from the client. */
  readonly bytesIn: number;
  /** The client connection's TLS (the listener terminates it), when the engine can tell. */
  readonly tlsVersion?: string;
  readonly tlsCipher?: string;
}

/** A response head from a backend, the body still to come. */
export interface UpstreamResponse {
  readonly status: number;
  readonly headers: HeaderFields;
  /** The version it came in, when not 1.1 (Via, RFC 9110 §7.6.3). */
  readonly httpVersion?: OtherVersion;
  /** Throw the body away and give the connection back (or close it): the try is retried. */
  discard(): void;
}

/** Who broke off a body that was already flowing, and in the log's words what happened. */
export interface BodyFailure {
  by: "client" | "backend";
  detail: string;
}

/** Told exactly once when a response body is done: the bytes sent, and how it failed if it did. */
export interface BodyEnd {
  bodyEnded(bytes: number, failure?: BodyFailure): void;
}

/**
 * How a streamed request body is going, told by the wire to the try sending it (nginx's
 * semantics): while the body is being sent, only timeouts.send applies, between the backend
 * taking one piece and the next; the response-head timers (retry.perTryTimeout and the
 * retry.timeout deadline) start once the request is sent in full, so time spent sending a
 * large or slow upload counts toward neither. A wire that never calls these keeps the old
 * timing (the head timers run from the start of the try). Calls after the try ended are ignored.
 */
export interface SendProgress {
  /**
   * Something was handed to the backend's connection that it has not taken yet (the first
   * call: the connection and request head; then each piece of the body): timeouts.send runs.
   * The first call switches the try from the head timers to the send timer.
   */
  sendWaiting(): void;
  /** The backend took what it was given: timeouts.send stops until the next sendWaiting(). */
  sendTaken(): void;
  /** The request is sent in full: the wait for the response head starts now. */
  requestSent(): void;
}

/**
 * What a wire tells the try it was given. Callbacks, not a promise: a try then costs no
 * promise, no resolving functions and no microtask hop, and the socket engine hands over a
 * response head in the same turn as the read that completed it (docs/performance.md).
 */
export interface TryReceiver extends SendProgress {
  /**
   * The try has its connection: `reused` an idle one, else one just dialled (and, for TLS,
   * handshaken). For the access log's upstream_connect_time; a wire that cannot tell (fetch)
   * never calls it.
   */
  connected?(reused: boolean): void;
  /** The final response head arrived (its body may still be coming). */
  headReceived(res: UpstreamResponse): void;
  /** The try failed before a response head: a network error, or the try was given up. */
  tryFailed(e: unknown): void;
}

/**
 * The upstream half of an engine's wire: how one try reaches a backend (Caddy's Transport).
 * It reports back to the try, never to the client: the answer goes to the client through the
 * DownstreamWire, chosen by the loop.
 */
export interface UpstreamWire<Body> {
  /**
   * One try against `backend`: report the response head to `t.headReceived`, or a network
   * error (read by net/network-error.ts) to `t.tryFailed`, exactly once. When `cancel` fires
   * (the per-try timer, the deadline, the client leaving) the try is given up, its upstream
   * connection destroyed, and the failure reported. A wire may report before send returns.
   */
  send(backend: Backend, req: ForwardRequest<Body>, cancel: Cancel, t: TryReceiver): void;
  /** The request's body when it was read whole (null: it has none); undefined while it streams. For route mirrors. */
  wholeBody(req: ForwardRequest<Body>): Uint8Array | ArrayBuffer | null | undefined;
}

/** The downstream half of an engine's wire: how the answer reaches the client. */
export interface DownstreamWire<Body, Out> {
  /**
   * Answer the client with `res` (its headers already prepared). May reject before anything
   * reached the client (a small body read whole failed): the loop then counts a failed try.
   * `end` is told exactly once, when the body is done or broken off.
   */
  respond(req: ForwardRequest<Body>, res: UpstreamResponse, end: BodyEnd): Out | Promise<Out>;
  /** An answer the proxy makes itself (no backend, every try failed). */
  answer(req: ForwardRequest<Body>, a: ErrorAnswer): Out;
  /** The client has gone: nothing will be read. */
  gone(req: ForwardRequest<Body>): Out;
  /**
   * A fault of ours (a bug) broke the loop: answer 500 if nothing reached the client yet, else
   * cut the connection; must not throw. A wire without it (the fetch engine: Hono answers)
   * gets the error as the rejection of forward()'s promise. With it, that promise never
   * rejects, and start() may be used instead of forward().
   */
  internalError?(req: ForwardRequest<Body>, e: unknown): Out;
}

export interface Forwarder<Body, Out> {
  /** Where a request goes, from its head: engines call it before reading the body (router.ts). */
  route(req: RoutedRequest): Routed;
  /** Forward `req`: the promise settles with the wire's Out for it. */
  forward(req: ForwardRequest<Body>): Promise<Out>;
  /**
   * Forward `req` with nothing waiting for the Out: for a wire that writes every answer itself
   * and has internalError (the socket engine), so a request costs no promise at all.
   */
  start(req: ForwardRequest<Body>): void;
  /**
   * Count and log a request whose client left before it could be forwarded (mid-body), or
   * answer it when the client broke a rule (`req.cancel` aborted with a ClientFault).
   */
  abandoned(req: ForwardRequest<Body>): Out;
}

/** The grpc-status of a gRPC call's Trailers-Only answer, when `retryOn` lists it. */
function grpcRetryStatus(res: UpstreamResponse, req: ForwardRequest<unknown>, retryOn: ReadonlySet<number>): number | undefined {
  const v = res.headers.get("grpc-status");
  if (v === null || !isGrpcCall(req.headers)) return undefined;
  const n = Number(v);
  return retryOn.has(n) ? n : undefined;
}

/** Why a try's cancel fired. */
const enum Why {
  None = 0,
  PerTry = 1,
  Deadline = 2,
  Client = 3,
  /** timeouts.send: the backend stopped taking the request body. */
  Send = 4,
}

/**
 * Where a request is on its way through the loop (Trip.step). Every try goes Between -> Sent
 * -> Reported -> Between (endTry), and the request ends Finished; only attempt(), the wire's
 * two reports, endTry(), finish() and crash() change it.
 */
const enum Step {
  /** No try in flight: waiting for a gate slot, choosing a backend, or deciding after a try. */
  Between = 0,
  /** A try is with the upstream wire, which has not reported yet: its report is heard, any other ignored. */
  Sent = 1,
  /**
   * The wire reported (a head being answered with, or a failure being weighed): the try still
   * holds its in-flight slot, its timers and the client listener until endTry().
   */
  Reported = 2,
  /** The request's way is over: the answer is out (its body may still flow: see Trip.ended). */
  Finished = 3,
}

/** How one try ended. */
const enum Outcome {
  Answered = 0,
  Failed = 1,
  ClientGone = 2,
}

/** What every request of one forwarder shares: built once from the config. */
interface Shared<Body, Out> {
  readonly opts: ForwardOptions;
  /** Where tries go (a backend) and where answers go (the client). */
  readonly upstream: UpstreamWire<Body>;
  readonly downstream: DownstreamWire<Body, Out>;
  readonly gate: AdmissionGate;
  /** The gate of requests whose body streams from the client (uploadConcurrency). */
  readonly uploads: AdmissionGate;
  /**
   * Every try's response-head timer (timer-list.ts): one setTimeout, not one per try. Two
   * lists, because a list's insertion is O(1) only while its deadlines come in order: tries
   * armed with the whole retry.perTryTimeout (nearly all) in one, tries whose timer is the
   * request's overall deadline, cut short (retries late in a request), in the other. Mixed in
   * one list, each of those would walk back past every try armed since, O(in flight) apiece
   * in just the retry storm a failing backend causes.
   */
  readonly timers: TimerList;
  readonly deadlines: TimerList;
  /** The access log prints the client's Host, User-Agent or Referer (kept before the header rules run). */
  readonly clientHeaders: boolean;
  /** The access log prints the upstream connect time: measured only then. */
  readonly timings: boolean;
}

export function createForwarder<Body, Out>(opts: ForwardOptions, upstream: UpstreamWire<Body>, downstream: DownstreamWire<Body, Out>): Forwarder<Body, Out> {
  // Work done once, not per request.
  const shared: Shared<Body, Out> = {
    opts, upstream, downstream,
    gate: new AdmissionGate(opts.upstreamConcurrency, { after: opts.longWaitAfter ?? 0, limit: opts.longWaitConcurrency ?? 0 }),
    uploads: new AdmissionGate(opts.uploadConcurrency ?? 0),
    timers: new TimerList(),
    deadlines: new TimerList(),
    clientHeaders: opts.accessLog?.needs.clientHeaders ?? false,
    timings: opts.accessLog?.needs.timings ?? false,
  };
  const router = opts.router;
  return {
    route: (req) => router.route(req),
    forward: (req) => new Promise<Out>((resolve, reject) => new Trip(shared, req, resolve, reject).start()),
    start: (req) => new Trip(shared, req).start(),
    abandoned: (req) => new Trip(shared, req).clientGone(),
  };
}

function onSendTimer(t: { sendTimerFired(): void }): void {
  t.sendTimerFired();
}

/**
 * One request's way through the loop. A class rather than closures or an async function: a
 * request allocates this object and its tries' Cancels, every step is a method shared by all
 * requests, and the steps are called straight from the wire's events (TryReceiver), with no
 * promise between them. The loop is: next() waits for a slot, entered() chooses, attempt()
 * sends, headReceived()/tryFailed() hear back, tryOver() releases and decides again.
 */
class Trip<Body, Out> implements CancelListener, BodyEnd, TryReceiver, TimerEntry, GateSlot {
  private readonly started = performance.now();
  private readonly time = Date.now();
  private readonly requestId: string;
  /** Where the request goes (router.ts); undefined when the proxy answers it itself. */
  private readonly dest: Destination | undefined;
  /** The route's in-flight bound this request holds a slot of, until it is over (releaseSlot). */
  private holding: InFlightLimit | undefined = undefined;
  /** The route's header-rule placeholders, made when first needed (vars()). */
  private placeholders: HeaderVars | undefined = undefined;
  private readonly tried: Backend[] = [];
  private exclude: Set<Backend> | undefined;
  /** Moved later by the time a streamed body took to send (SendProgress). */
  private deadline: number;
  /** The deadline is the client's (grpc-timeout, shorter than retry.timeout): its running out blames no backend. */
  private clientDeadline = false;
  private readonly rewriteHost: boolean;
  /** The hash key (consistent-hash) and the backend a sticky cookie names, if any. */
  private readonly key: string | undefined;
  private readonly pinned: Backend | undefined;
  /** A body still arriving from the client waits in its own line (uploadConcurrency). */
  private readonly gate: AdmissionGate;
  // The slot of `gate` held (GateSlot): left exactly once per turn (leaveGate).
  slotLane: Lane = Lane.None;
  slotAt = 0;
  slotPrev: GateSlot | undefined = undefined;
  slotNext: GateSlot | undefined = undefined;
  slotWaiter: Waiter | undefined = undefined;
  // The current try.
  private backend: Backend | undefined;
  private lease: Lease | undefined;
  private tryCancel: Cancel | undefined;
  private tryStarted = 0;
  /**
   * The current try's connect and response-head times from its start, ms (-1: not known), for
   * the access log: connect measured only when the log asks (Shared.timings), the head time is
   * the one backend.stats counts anyway.
   */
  private connectMs = -1;
  private firstByteMs = -1;
  /** Host, User-Agent and Referer as the client sent them, kept only when the access log prints them. */
  private clientHost: string | undefined = undefined;
  private userAgent: string | undefined = undefined;
  private referer: string | undefined = undefined;
  /** The pool's retry budget said yes to the retry about to start (admitRetry). */
  private retryAdmitted = false;
  /** Where the request is in the loop (Step). */
  private step = Step.Between;
  // The response-head timer, linked into the forwarder's TimerList (TimerEntry).
  timerAt = 0;
  timerPrev: TimerEntry | undefined = undefined;
  timerNext: TimerEntry | undefined = undefined;
  timerListed = false;
  /** The head timer is the overall deadline cut short, in the `deadlines` list (armHeadTimer). */
  private perTryShort = false;
  // Sending a streamed body (SendProgress): only between sendWaiting() and requestSent().
  private sendStarted = 0;
  /** When the backend was last given something it has not taken; 0 when it has taken all. */
  private waitingSince = 0;
  private sendTimer: ReturnType<typeof setTimeout> | undefined;
  private why = Why.None;
  private status = 0;
  /**
   * The current response's body has ended (bodyEnded): beside `step`, since it may end before
   * the loop has finished with the head (a small body) or long after (a stream).
   */
  private ended = false;
  // How the last try ended, when it did not answer.
  private out: Out | undefined;
  private failure: TryFailure | undefined;
  /** The last try failed for want of the proxy's own resources (net/network-error.ts). */
  private local: LocalCode | undefined;
  private detail = "";
  /** The request's trace id when tracing is on (W3C traceparent, read or made: tracing/tracer.ts). */
  traceId: string | undefined = undefined;
  /** Its spans when the request is recorded (sampled); undefined otherwise, and then tracing costs nothing more. */
  private readonly trace: RequestTrace | undefined;

  constructor(
    private readonly s: Shared<Body, Out>,
    private readonly req: ForwardRequest<Body>,
    /** forward()'s promise, settled with the Out; absent for start() and abandoned(). */
    private readonly resolve?: (out: Out) => void,
    private readonly reject?: (e: unknown) => void,
  ) {
    const headers = req.headers;
    this.requestId = headers.get("x-request-id") ?? crypto.randomUUID();
    if (s.clientHeaders) {
      // Before the header rules run and before a try sets the backend's Host.
      this.clientHost = headers.get("host") ?? undefined;
      this.userAgent = headers.get("user-agent") ?? undefined;
      this.referer = headers.get("referer") ?? undefined;
    }
    // Read before the route's header rules run: the context as the client sent it.
    this.trace = s.opts.tracer?.begin(req, this.requestId, this, req.routed.kind === RoutedKind.Forward ? req.routed.dest.traceThreshold : undefined);
    this.gate = req.replayable ? s.gate : s.uploads;
    const routed = req.routed;
    if (routed.kind !== RoutedKind.Forward) {
      // Answered by the proxy itself (answerLocally): no backend, no header rules.
      this.dest = undefined;
      this.deadline = this.started;
      this.key = undefined;
      this.pinned = undefined;
      this.rewriteHost = false;
      return;
    }
    const dest = (this.dest = routed.dest);
    const target = dest.target;
    const limit = this.timeLimit(dest);
    this.deadline = this.started + limit;
    // The deadline is the client's own (grpc-timeout), not the operator's: a try it cuts short
    // says nothing about the backend (else a client could get healthy backends ejected).
    this.clientDeadline = limit < dest.retry.timeout;
    // Affinity is read from the request as the client sent it, before the header rules run.
    this.key = target.hashKey?.(headers, req.target, req.clientIp);
    this.pinned = target.sticky?.pinned(headers);
    this.rewriteHost = toUpstreamHeaders(headers, { clientIp: req.clientIp, proto: req.proto, requestId: this.requestId, version: req.httpVersion }, s.opts);
    dest.requestHeaders?.apply(headers, this.vars(dest));
  }

  /**
   * What a route's header rules put in their placeholders: made when a rule first needs them,
   * once per request. `{host}` is the table's reading of Host (it reads it whenever a rule uses it).
   */
  private vars(dest: Destination): HeaderVars {
    const req = this.req;
    return (this.placeholders ??= { client_ip: req.clientIp, host: (req.routed as RoutedForward).host ?? "", request_id: this.requestId, route: dest.route });
  }

  log(status: number, bytes: number, error?: ProxyErrorCode): void {
    // Logged once, when the request is over: its in-flight slot is given back.
    this.releaseSlot();
    if (this.trace !== undefined) {
      const routed = this.req.routed;
      this.trace.end(status, this.tried.length, routed.kind === RoutedKind.Forward ? routed.dest.route : routed.route, this.dest?.target.name, error);
    }
    if (RecentFailures.isFailure(status, error)) this.recordFailure(status, error);
    const log = this.s.opts.accessLog;
    if (log === undefined) return;
    const now = performance.now();
    const durationMs = now - this.started;
    // log.only, before anything is built for the line.
    if (!log.admits(status, durationMs, error)) return;
    const req = this.req;
    const routed = req.routed;
    const e: AccessEntry = {
      time: this.time, client: req.clientIp, method: req.method, path: req.target, status, bytes, durationMs,
      backends: this.tried.map((b) => b.name), attempts: this.tried.length, requestId: this.requestId, error,
      route: routed.kind === RoutedKind.Forward ? routed.dest.route : routed.route,
      pool: this.dest?.target.name,
      traceId: this.traceId,
    };
    const needs = log.needs;
    if (needs.clientHeaders) {
      e.host = this.clientHost;
      e.userAgent = this.userAgent;
      e.referer = this.referer;
    }
    if (needs.timings) {
      if (this.connectMs >= 0) e.upstreamConnectMs = this.connectMs;
      if (this.firstByteMs >= 0) {
        e.upstreamFirstByteMs = this.firstByteMs;
        // The answering try, from its start to the end of its body (now).
        e.upstreamMs = now - this.tryStarted;
      }
    }
    if (needs.connection) {
      const d = req.details?.();
      if (d !== undefined) {
        e.protocol = d.protocol;
        e.bytesIn = d.bytesIn;
        e.tlsVersion = d.tlsVersion;
        e.tlsCipher = d.tlsCipher;
      }
    }
    log.write(e);
  }

  /** A failed request into the recent-failures list: only failures pay for the record. */
  private recordFailure(status: number, error: ProxyErrorCode | undefined): void {
    const failures = this.s.opts.failures;
    if (failures === undefined) return;
    const routed = this.req.routed;
    failures.add({
      time: new Date(this.time).toISOString(), method: this.req.method, target: this.req.target, status,
      ...(error !== undefined ? { error } : {}),
      ...(this.detail !== "" ? { reason: this.detail } : {}),
      route: routed.kind === RoutedKind.Forward ? routed.dest.route : routed.route,
      ...(this.dest !== undefined ? { pool: this.dest.target.name } : {}),
      backends: this.tried.map((b) => b.name), tries: this.tried.length, requestId: this.requestId,
      ...(this.traceId !== undefined ? { traceId: this.traceId } : {}),
    });
  }

  /** Count one of the proxy's own error codes in the listener's figures and the route's. */
  private countError(code: ProxyErrorCode): void {
    this.s.opts.traffic.proxyErrors[code]++;
    const routed = this.req.routed;
    const route = routed.kind === RoutedKind.Forward ? routed.dest.traffic : routed.traffic;
    if (route !== undefined) route.proxyErrors[code]++;
  }

  /** Count an answer in the listener's figures and the route's. */
  private record(status: number): void {
    const ms = performance.now() - this.started;
    this.s.opts.traffic.record(this.req.method, status, ms);
    const routed = this.req.routed;
    (routed.kind === RoutedKind.Forward ? routed.dest.traffic : routed.traffic)?.record(this.req.method, status, ms);
  }

  /**
   * How long the request may wait for its answer's head: retry.timeout, or a gRPC call's own
   * deadline (grpc-timeout) when that is shorter: past it the client has given up, and a try
   * still running is wasted.
   */
  private timeLimit(dest: Destination): number {
    const limit = dest.retry.timeout;
    if (!this.grpc) return limit;
    const t = grpcTimeoutMs(this.req.headers);
    return t !== undefined && t < limit ? t : limit;
  }

  /** Whether the request is a gRPC call (content-type application/grpc), read once. */
  private grpcCall: boolean | undefined;
  private get grpc(): boolean {
    return (this.grpcCall ??= isGrpcCall(this.req.headers));
  }

  /** How the proxy's own answers to this request are made: gRPC calls get gRPC statuses. */
  private get format(): AnswerFormat {
    return this.grpc ? "grpc" : "json";
  }

  private fail(code: ProxyAnswerCode, detail?: string): Out {
    this.countError(code);
    const a = errorAnswer(code, messageFor(code, detail), { requestId: this.requestId, format: this.format });
    // A gRPC answer goes out as HTTP 200 (its status is grpc-status); figures, logs, traces and
    // the failures list count the status the code stands for.
    const status = statusFor(code);
    this.record(status);
    this.log(status, 0, code);
    return this.s.downstream.answer(this.req, a);
  }

  clientGone(): Out {
    // The client broke a rule (a body too large, too slow): answered, but never a backend's fault.
    const reason = this.req.cancel.reason;
    if (reason instanceof ClientFault) return this.fail(reason.code, reason.message);
    this.countError("SY_CLIENT_ABORTED");
    this.record(499);
    this.log(499, 0, "SY_CLIENT_ABORTED");
    return this.s.downstream.gone(this.req);
  }

  /** Begin: the loop's first turn. */
  start(): void {
    try {
      const routed = this.req.routed;
      if (routed.kind === RoutedKind.Answer) return this.finish(this.answerLocally(routed));
      // The route's bound of requests in flight per client, then its late guards (src/guard/).
      const inFlight = routed.dest.guards.inFlight;
      if (inFlight !== undefined) {
        const refusal = inFlight.admit(this.req.clientIp);
        if (refusal !== undefined) return this.finish(this.answerLocally(refused(refusal, routedRuntime(routed.dest))));
        this.holding = inFlight;
      }
      if (routed.dest.guards.late.length > 0) return this.guard(0);
      this.next();
    } catch (e) {
      this.crash(e);
    }
  }

  /** A route's redirect or fixed response, a guard's refusal, or the proxy's own error (no route, a path refused). */
  private answerLocally(routed: RoutedAnswer): Out {
    if (this.req.cancel.aborted) return this.clientGone();
    const a = routed.answer;
    if (a === undefined) return this.fail(routed.code!, routed.detail);
    if (routed.code !== undefined) this.countError(routed.code);
    // A refusal (not a route's redirect or fixed response) to a gRPC call, in gRPC's terms.
    const asGrpc = routed.code !== undefined && this.format === "grpc";
    const answer: ErrorAnswer = asGrpc
      ? errorAnswer(routed.code!, messageFor(routed.code!), { requestId: this.requestId, format: "grpc", headers: a.headers })
      : { status: a.status, headers: { ...a.headers, "x-request-id": this.requestId }, body: a.body };
    // Counted as the refusal it is (the HTTP answer's status), not as the gRPC answer's 200.
    const status = asGrpc ? a.status : answer.status;
    this.record(status);
    this.log(status, answer.body.length, routed.code);
    return this.s.downstream.answer(this.req, answer);
  }

  /**
   * Run the route's late guards from `i` on, then the first turn of the loop; a refusal is
   * answered for the route. A guard that waits (an auth service, a shared limit) resumes this
   * when it has decided; a client gone meanwhile is counted as gone.
   */
  private guard(i: number): void {
    const dest = this.dest!;
    const late = dest.guards.late;
    for (; i < late.length; i++) {
      const verdict = late[i]!.check(this.req);
      if (verdict instanceof Promise) {
        const next = i + 1;
        verdict.then(
          (r) => {
            try {
              if (this.req.cancel.aborted) return this.finish(this.clientGone());
              if (r !== undefined) return this.finish(this.answerLocally(refused(r, routedRuntime(dest))));
              this.guard(next);
            } catch (e) {
              this.crash(e);
            }
          },
          (e: unknown) => this.crash(e),
        );
        return;
      }
      if (verdict !== undefined) return this.finish(this.answerLocally(refused(verdict, routedRuntime(dest))));
    }
    this.next();
  }

  /** The request's way is over: `out` is the wire's answer to it. */
  private finish(out: Out): void {
    this.step = Step.Finished;
    this.resolve?.(out);
  }

  /** Give back the request's slot of its route's in-flight bound (limits.maxInFlightPerClient), once. */
  private releaseSlot(): void {
    const held = this.holding;
    if (held === undefined) return;
    this.holding = undefined;
    held.release(this.req.clientIp);
  }

  /**
   * A fault of ours (a bug, not the backend's or the client's) broke the loop: give back what
   * the try held, then let the client's wire answer (DownstreamWire.internalError) or reject forward()'s promise.
   */
  private crash(e: unknown): void {
    this.releaseSlot();
    if (this.step === Step.Finished) throw e;
    if (this.step !== Step.Between) this.endTry(false);
    this.leaveGate();
    const downstream = this.s.downstream;
    if (downstream.internalError !== undefined) return this.finish(downstream.internalError(this.req, e));
    this.step = Step.Finished;
    if (this.reject === undefined) throw e;
    this.reject(e);
  }

  private leaveGate(): void {
    if (this.slotLane !== Lane.None) this.gate.leave(this);
  }

  /** One turn of the loop: wait for an upstream slot before choosing, so the choice sees current load. */
  private next(): void {
    const entered = this.gate.enter(this.deadline - performance.now(), this);
    if (entered === true) return this.entered();
    this.s.opts.traffic.queued++;
    // A client that leaves while its request waits takes it out of the queue at once.
    const cancel = this.req.cancel;
    const withdraw: CancelListener = { onCancel: () => this.gate.withdraw(this) };
    cancel.on(withdraw);
    entered.then((ok) => {
      cancel.off(withdraw);
      try {
        if (ok) this.entered();
        else if (cancel.aborted) this.finish(this.clientGone());
        else this.finish(this.fail("SY_QUEUE_TIMEOUT", `no upstream slot within ${this.dest!.retry.timeout}ms`));
      } catch (e) {
        this.crash(e);
      }
    });
  }

  /** Holding a slot: choose a backend and try it. */
  private entered(): void {
    const traffic = this.s.opts.traffic;
    const pool = this.dest!.target.pool;
    if (this.req.cancel.aborted) return this.leaveWith(this.clientGone());
    // Only a retry needs the set of backends already tried (a first try allocates none).
    if (this.tried.length > 0) this.exclude ??= new Set(this.tried);
    const backend = pool.pick(this.exclude, this.key, this.pinned);
    if (backend === undefined) return this.leaveWith(this.fail("SY_NO_BACKEND"));
    let mirror: MirrorSink | undefined;
    let copy: MirrorRequest | undefined;
    if (this.tried.length > 0) {
      traffic.retries++;
      backend.stats.countRetry();
      this.retryAdmitted = false;
    } else {
      // Each request earns its pool a share of a retry (retry.budget).
      pool.retryBudget.request(this.started);
      // Route `mirror`: the copy's fields are taken before the try sets a Host of its own; it
      // goes out once the client's own try is under way, so that it never delays it.
      mirror = (this.req.routed as RoutedForward).mirror;
      if (mirror !== undefined) copy = this.mirrorCopy();
    }
    this.tried.push(backend);
    this.exclude?.add(backend);
    this.attempt(backend);
    if (copy !== undefined) mirror!.send(copy);
  }

  /** Route `mirror`: the copy for the mirror's pool (forward/mirror.ts); none of a request whose body streams. */
  private mirrorCopy(): MirrorRequest | undefined {
    const req = this.req;
    const body = this.s.upstream.wholeBody(req);
    if (body === undefined) return undefined;
    return {
      method: req.method, target: upstreamTargetOf(req), headers: mirrorFields(req.headers, this.rewriteHost),
      body: body instanceof ArrayBuffer ? new Uint8Array(body) : body, clientIp: req.clientIp,
    };
  }

  private leaveWith(out: Out): void {
    this.leaveGate();
    this.finish(out);
  }

  private mayRetry(failure: TryFailure): boolean {
    const retry = this.dest!.retry;
    return shouldRetry({
      failure, method: this.req.method, tries: this.tried.length, maxTries: retry.attempts,
      // A streamed body may be partly read by the failed try, even on a connect failure:
      // only a buffered body (or none) can be sent again.
      replayableBody: this.req.replayable,
      retryNonIdempotent: retry.nonIdempotent,
      timeLeft: this.deadline - performance.now(),
    });
  }

  /**
   * The pool's retry budget allows one more retry (retry.budget); refused, the pool counts an
   * exhaustion and the request keeps its last failure. Asked last, once every other reason to
   * retry has said yes, and once per retry: a status retry admitted in answer() is not asked
   * for again when tryOver() decides.
   */
  private admitRetry(): boolean {
    if (this.retryAdmitted) return true;
    const { target, retry } = this.dest!;
    this.retryAdmitted = target.pool.retryBudget.admit(retry.budget, performance.now());
    // Said in the answer and the log when the failure is ours to answer (a status passes through).
    if (!this.retryAdmitted) this.detail += "; not retried: the pool's retry budget is spent";
    return this.retryAdmitted;
  }

  /** The response-head timer: the per-try timeout, or what is left of the deadline if less. */
  private armHeadTimer(now: number): void {
    const perTryTimeout = this.dest!.retry.perTryTimeout;
    const perTry = Math.min(perTryTimeout, this.deadline - now);
    this.disarmHeadTimer();
    this.perTryShort = perTry < perTryTimeout;
    (this.perTryShort ? this.s.deadlines : this.s.timers).add(this, now, perTry);
  }

  /** Take the response-head timer out of whichever list holds it (nothing if none does). */
  private disarmHeadTimer(): void {
    if (this.timerListed) (this.perTryShort ? this.s.deadlines : this.s.timers).remove(this);
  }

  /** A try is in flight (sent, or reported and not yet over): SendProgress is heard. */
  private get inTry(): boolean {
    return this.step === Step.Sent || this.step === Step.Reported;
  }

  sendWaiting(): void {
    if (!this.inTry) return;
    const now = performance.now();
    if (this.sendStarted === 0) {
      // Sending a body: the head timers wait until it is sent (requestSent).
      this.sendStarted = now;
      this.disarmHeadTimer();
    }
    this.waitingSince = now;
    const limit = this.dest!.sendTimeout;
    if (limit > 0 && this.sendTimer === undefined) this.sendTimer = setTimeout(onSendTimer, limit, this);
  }

  sendTaken(): void {
    // The timer is left to fire and look (one timer per try, not one per piece of body).
    this.waitingSince = 0;
  }

  requestSent(): void {
    if (!this.inTry || this.sendStarted === 0) return;
    if (this.sendTimer !== undefined) {
      clearTimeout(this.sendTimer);
      this.sendTimer = undefined;
    }
    this.waitingSince = 0;
    const now = performance.now();
    // Time spent sending counts toward neither head timer.
    this.deadline += now - this.sendStarted;
    this.sendStarted = 0;
    this.armHeadTimer(now);
  }

  /** From the send timer: fail the try if the backend has left a piece untaken for timeouts.send. */
  sendTimerFired(): void {
    this.sendTimer = undefined;
    if (!this.inTry || this.waitingSince === 0) return;
    const left = this.waitingSince + this.dest!.sendTimeout - performance.now();
    if (left > 0) {
      this.sendTimer = setTimeout(onSendTimer, left, this);
      return;
    }
    this.why = Why.Send;
    this.tryCancel?.abort();
  }

  /** From the wire (TryReceiver): the try has its connection. */
  connected(reused: boolean): void {
    if (this.step !== Step.Sent) return;
    if (reused) this.connectMs = 0;
    else if (this.s.timings) this.connectMs = performance.now() - this.tryStarted;
  }

  /** From the try's timer (TimerEntry): the per-try timeout or the overall deadline ran out. */
  timerFired(): void {
    this.why = this.perTryShort ? Why.Deadline : Why.PerTry;
    this.tryCancel?.abort();
  }

  /** From the client's cancel: it left, or broke a rule. */
  onCancel(): void {
    this.why = Why.Client;
    this.tryCancel?.abort();
  }

  /**
   * One try against one backend. The in-flight slot, the timer and the client listener are
   * released when the try is over (endTry), unless the response took them over: then
   * bodyEnded does. The wire's report may come before send() returns, so nothing follows it.
   */
  private attempt(backend: Backend): void {
    const req = this.req;
    this.lease = backend.acquire();
    backend.stats.countRequest();
    this.backend = backend;
    this.ended = false;
    this.why = Why.None;
    this.tryStarted = performance.now();
    this.connectMs = -1;
    this.firstByteMs = -1;
    const cancel = (this.tryCancel = new Cancel());
    this.armHeadTimer(this.tryStarted);
    this.step = Step.Sent;
    this.sendStarted = 0;
    this.waitingSince = 0;
    req.cancel.on(this);
    if (this.rewriteHost) req.headers.set("host", backend.url.host);
    if (this.trace !== undefined) {
      const dest = this.dest!;
      this.trace.tryStarted(backend, this.tried.length, dest.route, dest.target.name, req.method, upstreamTargetOf(req), req.headers);
    }
    this.s.upstream.send(backend, req, cancel, this);
  }

  /** From the wire (TryReceiver): the try failed before a response head. */
  tryFailed(e: unknown): void {
    if (this.step !== Step.Sent) return;
    this.step = Step.Reported;
    try {
      this.tryOver(this.failed(e, ""), false);
    } catch (e2) {
      this.crash(e2);
    }
  }

  /** From the wire (TryReceiver): the response head. */
  headReceived(res: UpstreamResponse): void {
    if (this.step !== Step.Sent) return;
    this.step = Step.Reported;
    try {
      this.answer(res);
    } catch (e) {
      this.crash(e);
    }
  }

  private answer(res: UpstreamResponse): void {
    const downstream = this.s.downstream;
    const dest = this.dest!;
    const { passive, sticky, pool } = dest.target;
    const req = this.req;
    const backend = this.backend!;
    const status = (this.status = res.status);
    this.trace?.tryAnswered(status);
    // A 5xx counts against the backend at once; a success only once its body has arrived
    // whole (bodyEnded): otherwise a backend that breaks off every body would clear its own
    // failure count with each head and never be ejected.
    if (status >= 500) passive.succeeded(backend, status);
    const firstByteMs = (this.firstByteMs = performance.now() - this.tryStarted);
    backend.stats.countResponse(methodLabel(req.method), status, firstByteMs);

    // Refused by the budget, the backend's own answer goes to the client: the last failure.
    // A retry needs somewhere to go (else the backend's own answer is the better one to give),
    // and the budget is asked last, so that it counts only retries that will be tried.
    if (dest.retryOn.has(status) && this.mayRetry({ kind: "status", status }) && pool.routableCount() > 0 && this.admitRetry()) {
      res.discard();
      this.failure = { kind: "status", status };
      this.local = undefined;
      this.detail = `status ${status}`;
      return this.tryOver(Outcome.Failed, false);
    }
    // A gRPC call answered Trailers-Only (grpc-status in the head) with a status the route
    // retries: nothing of the answer has reached the client yet.
    if (dest.retryOnGrpc.size > 0 && status === 200) {
      const grpc = grpcRetryStatus(res, req, dest.retryOnGrpc);
      if (grpc !== undefined && this.mayRetry({ kind: "grpc", status: grpc }) && pool.routableCount() > 0 && this.admitRetry()) {
        res.discard();
        this.failure = { kind: "grpc", status: grpc };
        this.local = undefined;
        this.detail = `grpc-status ${grpc}`;
        return this.tryOver(Outcome.Failed, false);
      }
    }
    toClientHeaders(res.headers, this.requestId, dest, res.httpVersion);
    dest.routeResponseHeaders?.apply(res.headers, this.vars(dest));
    // A session that is new, or whose backend could not take it, is pinned to this one.
    if (sticky !== undefined && backend !== this.pinned) res.headers.append("set-cookie", sticky.setCookie(backend, req.proto === "https"));
    // A split that chose a side for a new client keeps it there (route splitBy.cookie).
    const routed = req.routed as RoutedForward;
    if (routed.setCookie !== undefined) res.headers.append("set-cookie", routed.setCookie);
    let r: Out | Promise<Out>;
    try {
      r = downstream.respond(req, res, this);
    } catch (e) {
      // Nothing reached the client yet: a failed try like any other.
      return this.tryOver(this.failed(e, " while reading the body"), false);
    }
    if (!(r instanceof Promise)) return this.answered(r);
    r.then(
      (out) => {
        try {
          this.answered(out);
        } catch (e) {
          this.crash(e);
        }
      },
      (e) => {
        try {
          this.tryOver(this.failed(e, " while reading the body"), false);
        } catch (e2) {
          this.crash(e2);
        }
      },
    );
  }

  /** The client has its answer (the body may still be flowing: then bodyEnded releases the try). */
  private answered(out: Out): void {
    const handedOff = !this.ended;
    this.record(this.status);
    this.out = out;
    this.tryOver(Outcome.Answered, handedOff);
  }

  /** A try is over: release what it held and the gate's slot, then answer, retry or give up. */
  private tryOver(outcome: Outcome, handedOff: boolean): void {
    this.endTry(handedOff);
    if (this.trace !== undefined && outcome !== Outcome.Answered) this.trace.tryFailed(this.tryErrorType(outcome));
    // Held until the head (and a buffered body) is in; a streamed body does not hold it,
    // so long downloads and event streams cannot starve the gate.
    this.leaveGate();
    if (outcome === Outcome.Answered) return this.finish(this.out!);
    if (outcome === Outcome.ClientGone) return this.finish(this.clientGone());
    const dest = this.dest!;
    if (this.why === Why.Deadline) return this.finish(this.fail("SY_UPSTREAM_TIMEOUT", `no response head within ${this.timeLimit(dest)}ms`));
    const failure = this.failure!;
    // The budget is asked last, so that it counts only retries about to be tried (one may still
    // end waiting at the gate or finding no backend: it counts, as it was a retry wanted).
    if (this.mayRetry(failure) && dest.target.pool.routableCount() > 0 && this.admitRetry()) return this.next();
    this.finish(this.fail(this.local !== undefined ? "SY_LOCAL_RESOURCES" : failure.kind === "timeout" ? "SY_UPSTREAM_TIMEOUT" : "SY_UPSTREAM_FAILED", this.detail));
  }

  /** The span's `error.type` of a try that did not answer: low-cardinality, as the conventions ask. */
  private tryErrorType(outcome: Outcome): string {
    if (outcome === Outcome.ClientGone) return "client_aborted";
    if (this.why === Why.Deadline || this.why === Why.PerTry || this.why === Why.Send) return "timeout";
    const f = this.failure;
    if (f === undefined) return "_OTHER";
    if (f.kind === "status") return String(f.status);
    if (f.kind === "grpc") return `grpc_status_${f.status}`;
    return this.local ?? f.kind;
  }

  private endTry(handedOff: boolean): void {
    // From here only idle timeouts apply to the body: a long download or an event stream
    // is never cut by the retry timeouts.
    this.step = Step.Between;
    this.disarmHeadTimer();
    if (this.sendTimer !== undefined) {
      clearTimeout(this.sendTimer);
      this.sendTimer = undefined;
    }
    if (!handedOff) {
      this.req.cancel.off(this);
      this.lease!.release();
    }
  }

  private failed(e: unknown, stage: string): Outcome {
    const why = this.why;
    if (why === Why.Client || this.req.cancel.aborted) return Outcome.ClientGone;
    const backend = this.backend!;
    const passive = this.dest!.target.passive;
    const timedOut = why === Why.PerTry || why === Why.Deadline || why === Why.Send;
    if (!timedOut) {
      const err = refinedConnectError(e);
      const code = errorCode(err);
      if (isLocalCode(code)) {
        // The proxy's own shortage (descriptors, ports, its resolver): never the backend's
        // fault, so passive health hears nothing. Nothing was sent: as safe to retry as a refusal.
        this.s.opts.traffic.localErrors[code]++;
        this.local = code;
        this.failure = { kind: "connect" };
        this.detail = describeNetworkError(err) + stage;
        return Outcome.Failed;
      }
    }
    const kind = timedOut ? "timeout" : classifyNetworkError(e);
    const failure: TryFailure = { kind: kind === "timeout" || kind === "connect" || kind === "refused" ? kind : "reset" };
    this.failure = failure;
    this.local = undefined;
    this.detail =
      (why === Why.Send
        ? `the backend took no request body for ${this.dest!.sendTimeout}ms`
        : timedOut ? "timed out waiting for the response head" : describeTry(failure.kind, e)) + stage;
    // The client's own deadline ran out (grpc-timeout): not the backend's failure.
    if (why === Why.Deadline && this.clientDeadline) return Outcome.Failed;
    backend.stats.countProxyError();
    // A refused stream (HTTP/2) came from a live backend, overloaded or going away: it counts
    // as a failure toward consecutiveFailures, never as a refused connection's ejection at once.
    if (failure.kind === "connect") passive.connectFailed(backend, this.detail);
    else passive.failed(backend, this.detail);
    return Outcome.Failed;
  }

  /** The response body is done (BodyEnd): release the slot and log, blaming whoever broke it. */
  bodyEnded(bytes: number, failure?: BodyFailure): void {
    if (this.ended) return;
    this.ended = true;
    this.req.cancel.off(this);
    this.lease!.release();
    if (failure?.by === "backend") {
      // The head went out with the backend's status, but the body did not arrive whole:
      // the backend's fault, and it counts against its health (never a client's abort).
      const backend = this.backend!;
      backend.stats.countProxyError();
      this.countError("SY_UPSTREAM_TRUNCATED");
      this.dest!.target.passive.failed(backend, `${failure.detail} in the response body`);
      this.log(this.status, bytes, "SY_UPSTREAM_TRUNCATED");
    } else if (failure?.by === "client") {
      this.log(this.status, bytes, "SY_CLIENT_ABORTED");
    } else {
      if (this.status < 500) this.dest!.target.passive.succeeded(this.backend!, this.status);
      this.log(this.status, bytes);
    }
  }
}

/** The log's words for a failed try: "connection failed (ECONNREFUSED)", "connection reset (ECONNRESET)". */
function describeTry(kind: TryFailure["kind"], e: unknown): string {
  if (kind === "refused") return describeNetworkError(e);
  return kind === "connect" ? `connection failed (${errorCode(e) ?? "refused"})` : `connection reset (${errorCode(e) ?? "closed"})`;
}

/** What a refusal in the loop is answered for: the route (its body limits no longer matter). */
function routedRuntime(dest: Destination): { name: string; traffic: Destination["traffic"]; maxBodySize: number; bufferBody: number } {
  return { name: dest.route, traffic: dest.traffic, maxBodySize: 0, bufferBody: 0 };
}
