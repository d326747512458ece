/**
 * The one definition of every configuration option, its type and its default.
 * `check` prints the normalized output of this schema; the README's option table follows it.
 */
import * as v from "valibot";
import { parseDuration, parseSize } from "./units.ts";
import { POLICY_NAMES } from "../policy/names.ts";
import { HOP_BY_HOP } from "../proxy/headers.ts";
import { parseCidr } from "../proxy/cidr.ts";
import { listenHostProblem } from "./address.ts";
import { parseHostPort } from "../admin/hosts.ts";
import { HASH_KEY_HINT, HASH_KEY_PATTERN } from "../policy/hash-key.ts";

const DURATION_HINT = 'a duration like "250ms", "5s", "1m" or a number of milliseconds';
const SIZE_HINT = 'a size like "64KB", "128MB" or a number of bytes';

/** A duration in the file; milliseconds after parsing. */
const duration = v.pipe(
  v.union([v.string(), v.number()], `expected ${DURATION_HINT}`),
  v.check((x) => parseDuration(x) !== undefined, `expected ${DURATION_HINT}`),
  v.transform((x) => parseDuration(x)!),
);

/** A size in the file; bytes after parsing. */
const size = v.pipe(
  v.union([v.string(), v.number()], `expected ${SIZE_HINT}`),
  v.check((x) => parseSize(x) !== undefined, `expected ${SIZE_HINT}`),
  v.transform((x) => parseSize(x)!),
);

const port = v.pipe(
  v.number("expected a port number"),
  v.integer("expected an integer port"),
  v.minValue(0, "expected a port from 0 to 65535"),
  v.maxValue(65535, "expected a port from 0 to 65535"),
);

const host = v.pipe(v.string("expected a host name or address"), v.nonEmpty("expected a host name or address"));

/** Where a listener binds: checked here so that a typo names the field, not EINVAL from listen(). */
const listenHost = v.pipe(
  host,
  v.check((h) => listenHostProblem(h) === undefined, (issue) => `expected ${listenHostProblem(issue.input as string)}`),
);

/** An admin.allowedHosts entry: a name or address, with an optional port; IPv6 in brackets. */
const allowedHost = v.pipe(
  v.string("expected a host name"),
  v.check((h) => parseHostPort(h) !== undefined, 'expected a host name or address with an optional port, like "lb.example.com", "lb.example.com:443" or "[2001:db8::1]:8081"'),
);

/** A duration that must be more than zero: a timeout of 0 would fail every try at once. */
const positiveDuration = v.pipe(
  duration,
  v.minValue(1, "expected a duration of more than 0"),
);

/**
 * At least 100ms between probes of one backend. Below that the probes themselves are a load
 * (0 sent 8,436 probes in 10 s: a busy loop), and faster detection buys nothing: failures in
 * live traffic already reach passive health at once. HAProxy's default is 2s, as is ours.
 */
const MIN_CHECK_INTERVAL_MS = 100;
const checkInterval = v.pipe(
  duration,
  v.minValue(MIN_CHECK_INTERVAL_MS, `expected at least ${MIN_CHECK_INTERVAL_MS}ms between probes`),
);

const positiveInt = (what: string) =>
  v.pipe(v.number(`expected ${what}`), v.integer(`expected ${what}`), v.minValue(1, `expected ${what}`));

const status = v.pipe(
  v.number("expected an HTTP status code"),
  v.integer("expected an HTTP status code"),
  v.minValue(100, "expected an HTTP status code from 100 to 599"),
  v.maxValue(599, "expected an HTTP status code from 100 to 599"),
);

const EXPECT_STATUS = /^([1-5]xx|[1-5]\d\d(-[1-5]\d\d)?)$/;
/** "2xx", "200", "200-399", or a list of those and numbers; normalized to a list of strings. */
const expectStatus = v.pipe(
  v.union([v.string(), v.number(), v.array(v.union([v.string(), v.number()]))], 'expected a status class like "2xx", a code, a range "200-399" or a list of these'),
  v.transform((x) => (Array.isArray(x) ? x : [x]).map(String)),
  v.check((list) => list.length > 0 && list.every((s) => EXPECT_STATUS.test(s)), 'expected a status class like "2xx", a code, a range "200-399" or a list of these'),
);

/**
 * CIDR like "10.0.0.0/8", "::1/128", or a bare address, checked by the same parser that builds
 * the matchers (proxy/cidr.ts), so that what `check` accepts `serve` can start with.
 */
const cidr = v.pipe(
  v.string('expected a CIDR like "10.0.0.0/8" or an address'),
  v.check((x) => typeof parseCidr(x) !== "string", (issue) => `expected ${parseCidr(issue.input as string) as string}`),
);

/** RFC 9110 §5.1: a field name is a token (§5.6.2). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/**
 * Fields the proxy itself manages: hop-by-hop ones are removed anyway (RFC 9110 §7.6.1) and
 * Content-Length frames the message (RFC 9112 §6.2); an operator's rule must not touch them.
 */
const MANAGED = new Set<string>([...HOP_BY_HOP, "content-length"]);
const HEADER_NAME_HINT = "expected a header field name (letters, digits and !#$%&'*+-.^_`|~)";
const headerName = v.pipe(
  v.string(HEADER_NAME_HINT),
  v.regex(TOKEN, HEADER_NAME_HINT),
  v.check((n) => !MANAGED.has(n.toLowerCase()), `expected a header other than ${[...MANAGED].join(", ")}: the proxy manages framing and hop-by-hop fields itself`),
);
/** RFC 9110 §5.5: a field value is visible characters, spaces and tabs; never CR, LF or NUL. */
const headerValue = v.pipe(
  v.string("expected a header value string"),
  v.regex(/^[\t\x20-\x7e\x80-\xff]*$/, "expected a header value without control characters (CR, LF, NUL)"),
);

/** A PEM file: read when the config is checked and again on every reload (src/tls/). */
const pemFile = v.pipe(v.string("expected the path of a PEM file"), v.nonEmpty("expected the path of a PEM file"));

/** A DNS name a client may ask for (SNI, RFC 6066 §3): letters, digits, "-" and ".", or "*." before one. */
const SERVER_NAME = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;
const serverName = v.pipe(
  v.string("expected a DNS name"),
  v.regex(SERVER_NAME, 'expected a DNS name like "api.example.com" (or "*.example.com")'),
);

/**
 * TLS termination on the proxy listener: a default certificate, more chosen by the name the
 * client asks for (SNI), and the lowest protocol version accepted.
 */
const ListenTls = v.strictObject({
  cert: pemFile,
  key: pemFile,
  /** More certificates; each answers for its serverName, or for the DNS names in it when none is given. */
  sni: v.optional(
    v.array(v.strictObject({ serverName: v.optional(serverName), cert: pemFile, key: pemFile }), "expected a list of { serverName, cert, key }"),
    [],
  ),
  /** TLS 1.0 and 1.1 are never accepted (RFC 8996); "TLSv1.3" refuses 1.2 too. */
  minVersion: v.optional(v.picklist(["TLSv1.2", "TLSv1.3"], 'expected "TLSv1.2" or "TLSv1.3"'), "TLSv1.2"),
});

/** A backend's TLS (https:// backends): whom to trust, the name to check, or no check at all. */
const BackendTls = v.strictObject({
  /** CA certificates (PEM) to trust instead of the system's, e.g. a private CA. */
  ca: v.optional(pemFile),
  /** The name sent in SNI and checked against the certificate, when it is not the URL's host. */
  servername: v.optional(serverName),
  /** Accept any certificate: expired, self-signed, for another name. For tests only. */
  insecureSkipVerify: v.optional(v.boolean("expected true or false"), false),
});

/** Fields shared by the global healthCheck and a backend's override. */
const healthCheckFields = {
  type: v.optional(v.picklist(["http", "tcp"], 'expected "http" or "tcp"')),
  path: v.optional(v.pipe(v.string(), v.startsWith("/", 'expected a path starting with "/"'))),
  method: v.optional(v.picklist(["GET", "HEAD", "OPTIONS", "POST"], "expected GET, HEAD, OPTIONS or POST")),
  headers: v.optional(v.record(v.string(), v.string("expected a header value string"))),
  host: v.optional(host),
  port: v.optional(port),
  interval: v.optional(checkInterval),
  timeout: v.optional(positiveDuration),
  rise: v.optional(positiveInt("a whole number of consecutive successes, at least 1")),
  fall: v.optional(positiveInt("a whole number of consecutive failures, at least 1")),
  expectStatus: v.optional(expectStatus),
  expectBody: v.optional(v.string("expected a substring of the body")),
};

const HealthCheckOverride = v.union(
  [v.literal(false), v.strictObject(healthCheckFields)],
  "expected a health check object or false",
);

const PolicyName = v.picklist(POLICY_NAMES, `expected one of ${POLICY_NAMES.join(", ")}`);

/** DNS record types discovery reads (src/discovery/dns.ts). */
export const DNS_TYPES = ["A", "AAAA", "SRV"] as const;

const Backend = v.strictObject({
  name: v.optional(v.pipe(v.string("expected a name"), v.nonEmpty("expected a non-empty name"))),
  /** The backend's address; an entry gives either url or dns (checked in load.ts). */
  url: v.optional(v.pipe(v.string("expected a URL"), v.nonEmpty("expected a URL"))),
  /**
   * DNS discovery: a name whose records are re-resolved on a timer; each address becomes a
   * backend named "<name>#<address>:<port>" with its own health (src/discovery/dns.ts).
   */
  dns: v.optional(host),
  /** With dns and type A or AAAA: the port of every address (SRV records carry their own). */
  port: v.optional(v.pipe(port, v.minValue(1, "expected a port from 1 to 65535"))),
  /** With dns: "A" (default), "AAAA" or "SRV" (ports, priorities and weights from the records). */
  type: v.optional(v.picklist(DNS_TYPES, 'expected "A", "AAAA" or "SRV"')),
  /** With dns: the longest time between lookups (default 10s); a shorter record TTL, down to 1s, wins. */
  refresh: v.optional(positiveDuration),
  /** With dns, HTTP mode: "http" (default) or "https" for the discovered addresses. */
  scheme: v.optional(v.picklist(["http", "https"], 'expected "http" or "https"')),
  weight: v.optional(
    v.pipe(v.number("expected a weight"), v.integer("expected an integer weight"), v.minValue(1, "expected a weight of at least 1"), v.maxValue(1000, "expected a weight of at most 1000")),
    1,
  ),
  /**
   * Failover tier, as an SRV record's priority (RFC 2782): lower is preferred; a backend of a
   * higher number is a standby that takes traffic only while no backend of the best tier
   * present is available (src/pool/tiers.ts). Absent means 0. SRV entries take it from the
   * records.
   */
  priority: v.optional(
    v.pipe(v.number("expected a priority"), v.integer("expected an integer priority"), v.minValue(0, "expected a priority of at least 0"), v.maxValue(65535, "expected a priority of at most 65535")),
  ),
  /** Requests (HTTP) or connections (TCP) in flight at once; 0 means no limit. A full backend is not available. */
  maxConnections: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0, "expected 0 (no limit) or more")), 0),
  /** Start drained: takes no new traffic until enabled. */
  disabled: v.optional(v.boolean("expected true or false"), false),
  healthCheck: v.optional(HealthCheckOverride),
  /** Path of the backend's own stats JSON (uptime, memory), polled for the admin /stats page. */
  statsPath: v.optional(v.pipe(v.string(), v.startsWith("/", 'expected a path starting with "/"'))),
  /** https:// backends: CA, server name, or no verification (requests, WebSockets and health checks). */
  tls: v.optional(BackendTls),
});

export const ConfigSchema = v.strictObject({
  /** "http" (layer 7, default) or "tcp" (layer 4). */
  mode: v.optional(v.picklist(["http", "tcp"], 'expected "http" or "tcp"'), "http"),
  listen: v.optional(
    v.strictObject({
      host: v.optional(listenHost, "0.0.0.0"),
      port: v.optional(port, 8000),
      /** Terminate TLS here (HTTP and TCP mode): certificates re-read on every reload. */
      tls: v.optional(ListenTls),
      /** HTTP mode with tls: a plain-HTTP listener that redirects every request to HTTPS (308). */
      httpRedirect: v.optional(v.strictObject({ host: v.optional(listenHost), port })),
    }),
    {},
  ),
  admin: v.optional(
    v.union(
      [
        v.literal(false),
        v.strictObject({
          host: v.optional(listenHost, "127.0.0.1"),
          port: v.optional(port, 8081),
          /**
           * Host names (or name:port) the admin listener answers besides its own: localhost,
           * 127.0.0.1, [::1], its configured host, and on a wildcard address the machine's name
           * and interface addresses. Anything else gets 403 (admin/hosts.ts: DNS rebinding).
           */
          allowedHosts: v.optional(v.array(allowedHost, "expected a list of host names"), []),
          /** Bearer token for changes through /api (see src/admin/auth.ts); at least 16 characters. */
          token: v.optional(v.pipe(v.string("expected a token string"), v.minLength(16, "expected a token of at least 16 characters"))),
          /** A file with one token per line, "TOKEN" or "NAME TOKEN"; read at start and on every reload. */
          tokenFile: v.optional(v.pipe(v.string("expected a file path"), v.nonEmpty("expected a file path"))),
        }),
      ],
      "expected an object with host, port, allowedHosts, token and tokenFile, or false",
    ),
    {},
  ),
  strategy: v.optional(PolicyName, "least-connections"),
  backends: v.pipe(v.array(Backend, "expected a list of backends"), v.minLength(1, "expected at least one backend")),
  /**
   * HTTP mode's data path: "socket" (HTTP/1.1 parsed on Bun's own sockets, pooled upstream
   * keep-alive) or "fetch" (Bun.serve + fetch). Both share every decision above the wire. The
   * socket engine is the default: it keeps pipelining, repeated fields, trailers' framing and the
   * target as the client sent them, where Bun.serve and fetch change them (README, "Engines").
   */
  engine: v.optional(v.picklist(["fetch", "socket"], 'expected "fetch" or "socket"'), "socket"),
  /** consistent-hash only (and required by it): what a request's key is read from. */
  hash: v.optional(
    v.strictObject({
      key: v.pipe(v.string(`expected ${HASH_KEY_HINT}`), v.regex(HASH_KEY_PATTERN, `expected ${HASH_KEY_HINT}`)),
    }),
  ),
  /** Sticky sessions beside any strategy (HTTP mode): a cookie naming the backend that answered. */
  sticky: v.optional(
    v.strictObject({
      cookie: v.pipe(v.string("expected a cookie name"), v.regex(TOKEN, "expected a cookie name (letters, digits and !#$%&'*+-.^_`|~)")),
      /** The HMAC key that makes cookie values unguessable; see policy/sticky.ts. */
      secret: v.optional(v.pipe(v.string("expected a secret string"), v.minLength(16, "expected a secret of at least 16 characters"))),
    }),
  ),
  peakEwma: v.optional(
    v.strictObject({
      /** τ of the response-time average: how fast a peak is forgotten and an idle backend looks cheap again. */
      decay: v.optional(positiveDuration, 1000),
    }),
    {},
  ),
  /**
   * Processes that serve the proxy port (src/workers/): a whole number, or "auto" for the cores
   * this process may use. 1 (default): this process serves alone. More: this process owns the
   * backends' state, health and the admin port, and that many workers share the proxy port.
   */
  workers: v.optional(
    v.union(
      [v.literal("auto"), v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(64))],
      'expected a whole number of workers from 1 to 64, or "auto" (the cores this process may use)',
    ),
    1,
  ),
  retry: v.optional(
    v.strictObject({
      attempts: v.optional(positiveInt("a whole number of tries, at least 1"), 3),
      perTryTimeout: v.optional(positiveDuration, 5000),
      timeout: v.optional(positiveDuration, 15000),
      onStatus: v.optional(v.array(status, "expected a list of status codes"), [502, 503, 504]),
      /** Retry resets, timeouts and onStatus answers for non-idempotent methods too (RFC 9110 §9.2.2 says don't). */
      nonIdempotent: v.optional(v.boolean("expected true or false"), false),
      /** Request bodies up to this size are buffered so that they can be sent again. */
      bufferBody: v.optional(size, 64 * 1024),
      /**
       * On by default: over any 10 s, retries are at most `percent` of the requests, plus
       * `minRetriesPerSecond` for every second so that a quiet pool can still retry (Finagle's
       * and Linkerd's retry budget). A pool that fails everything then gets about
       * 1 + percent/100 tries per client request (1.2 at 20%), not retry.attempts; a burst
       * (a backend dying with requests in flight) is paid for by the credit of the window.
       * Past it, a request keeps its last failure. false: no budget.
       */
      budget: v.optional(
        v.union(
          [
            v.literal(false),
            v.strictObject({
              percent: v.optional(
                v.pipe(v.number("expected a percentage from 0 to 100"), v.minValue(0, "expected a percentage from 0 to 100"), v.maxValue(100, "expected a percentage from 0 to 100")),
                20,
              ),
              minRetriesPerSecond: v.optional(
                v.pipe(v.number("expected a number of retries per second, 0 or more"), v.minValue(0, "expected a number of retries per second, 0 or more")),
                3,
              ),
            }),
          ],
          "expected { percent, minRetriesPerSecond } or false (no budget)",
        ),
        {},
      ),
    }),
    {},
  ),
  timeouts: v.optional(
    v.strictObject({
      /**
       * Idle time allowed between bytes on a client connection, or either way on a TCP relay.
       * HTTP mode: at most 255s, Bun.serve's limit (checked in load.ts, as it depends on mode).
       */
      idle: v.optional(duration, 60_000),
      /**
       * A streamed request body: how long the backend may leave a piece of it untaken (between
       * two writes, as nginx's proxy_send_timeout; not for the whole body). While a body is
       * being sent only this applies on the backend side; retry.perTryTimeout and
       * retry.timeout count from the moment the request is sent in full. 0: no bound.
       */
      send: v.optional(duration, 60_000),
      /** Time to open a backend connection (TCP mode and the socket engine). */
      connect: v.optional(positiveDuration, 5000),
      /** Socket engine: a request head must arrive in full within this time, or 408 and close (slow-loris). */
      header: v.optional(duration, 10_000),
      /**
       * Socket engine: an idle kept-alive upstream connection is closed after this long. Keep it
       * below the backends' own keep-alive timeouts (Node's default is 5s) so that we, not they,
       * close idle connections and a request never races a backend's close.
       */
      upstreamIdle: v.optional(duration, 4000),
      /** On SIGINT/SIGTERM, in-flight requests get this long to finish. */
      shutdownGrace: v.optional(duration, 10_000),
    }),
    {},
  ),
  limits: v.optional(
    v.strictObject({
      /** Larger request bodies get 413 (Bun.serve's maxRequestBodySize, chunked bodies too). */
      maxBodySize: v.optional(size, 128 * 1024 * 1024),
      /**
       * Response bodies with a Content-Length up to this size are read whole before being sent
       * on (nginx's proxy_buffers); larger or unknown-length bodies stream. 0 streams all.
       * Streamed bodies reach the client chunked: Bun 1.4 drops Content-Length whenever a
       * response body is a stream (oven-sh/bun#10507).
       */
      responseBuffer: v.optional(size, 64 * 1024),
      /**
       * Upstream requests in flight at once, over all backends; the rest wait in arrival order
       * (until retry.timeout). Matches the 64 idle connections Bun's fetch keeps per process,
       * so that upstream connections are reused rather than churned. 0 means no bound.
       */
      upstreamConcurrency: v.optional(v.pipe(v.number("expected a number"), v.integer("expected a whole number"), v.minValue(0, "expected 0 (no bound) or more")), 64),
      /**
       * Fetch engine: upstream requests whose body is still streaming from the client (larger
       * than retry.bufferBody), in flight at once; they take no upstreamConcurrency slot, so
       * slow uploaders cannot hold the slots other requests need. Together the two stay under
       * the 256 requests Bun's fetch runs at once (more queue inside fetch, for every request).
       * 0 means no bound.
       */
      uploadConcurrency: v.optional(v.pipe(v.number("expected a number"), v.integer("expected a whole number"), v.minValue(0, "expected 0 (no bound) or more")), 64),
      /**
       * Fetch engine: a request still waiting for its response head this long after taking an
       * upstreamConcurrency slot (a long-poll, a slow backend) gives the slot to the next
       * request in line, when one waits, and counts against longWaitConcurrency instead: 64
       * long-polls would otherwise hold every slot and push every other request into
       * SY_QUEUE_TIMEOUT. Reasons in proxy/gate.ts.
       */
      longWaitAfter: v.optional(positiveDuration, 500),
      /**
       * Fetch engine: such long waits in flight at once. With upstreamConcurrency and
       * uploadConcurrency (64 + 64 + 128) it stays within the 256 requests Bun's fetch runs at
       * once, so a long-poll never queues an ordinary request inside fetch. 0: a long wait
       * keeps its slot.
       */
      longWaitConcurrency: v.optional(v.pipe(v.number("expected a number"), v.integer("expected a whole number"), v.minValue(0, "expected 0 (long waits keep their slot) or more")), 128),
      /** Socket engine: largest request head (request line and fields); larger gets 431. */
      maxHeaderSize: v.optional(size, 64 * 1024),
      /** Socket engine: longest request target; longer gets 414. */
      maxUriLength: v.optional(size, 8 * 1024),
      /** Socket engine: client connections open at once; more are answered 503 and closed. */
      maxConnections: v.optional(positiveInt("a whole number of connections, at least 1"), 10_000),
      /** Socket engine: idle upstream connections kept per backend. */
      upstreamKeepalive: v.optional(v.pipe(v.number("expected a number"), v.integer("expected a whole number"), v.minValue(0, "expected 0 (no keep-alive) or more")), 128),
      /** Socket engine: requests a client may pipeline ahead of the one being answered. */
      maxPipeline: v.optional(positiveInt("a whole number, at least 1"), 32),
    }),
    {},
  ),
  log: v.optional(
    v.strictObject({
      access: v.optional(v.boolean("expected true or false"), true),
      format: v.optional(v.picklist(["text", "json"], 'expected "text" or "json"'), "text"),
    }),
    {},
  ),
  /** Peers whose X-Forwarded-For is kept and appended to; from anyone else it is replaced. */
  trustedProxies: v.optional(v.array(cidr, "expected a list of CIDRs"), []),
  /**
   * Response headers removed or replaced before the client sees them (nginx's
   * proxy_hide_header, HAProxy's http-response del-header/set-header), e.g. to hide a
   * backend's Server and X-Powered-By. Applied last, after Via and X-Request-Id are added.
   */
  responseHeaders: v.optional(
    v.pipe(
      v.strictObject({
        remove: v.optional(v.array(headerName, "expected a list of header names"), []),
        set: v.optional(v.record(headerName, headerValue, "expected an object of header names and values"), {}),
      }),
      v.check(
        (r) => !Object.keys(r.set).some((n) => r.remove.some((m) => m.toLowerCase() === n.toLowerCase())),
        "expected each header in either remove or set, not both (set already replaces)",
      ),
    ),
    {},
  ),
  /** Keep the client's Host header (default) or send the backend's host. */
  preserveHost: v.optional(v.boolean("expected true or false"), true),
  healthCheck: v.optional(
    v.union([v.literal(false), v.strictObject(healthCheckFields)], "expected a health check object or false"),
    {},
  ),
  passive: v.optional(
    v.strictObject({
      /** Consecutive 5xx or gateway failures before a backend is ejected; 0 turns ejection off. */
      consecutiveFailures: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), 5),
      baseEjectionTime: v.optional(duration, 30_000),
      maxEjectionTime: v.optional(duration, 300_000),
      maxEjectedPercent: v.optional(v.pipe(v.number(), v.minValue(0, "expected 0 to 100"), v.maxValue(100, "expected 0 to 100")), 50),
      /** Without active probes, a backend marked down by a refused connection is re-admitted after this long. */
      readmitAfter: v.optional(duration, 10_000),
      /** Time between sweeps of success rate and failure percentage (Envoy's interval). */
      interval: v.optional(v.pipe(duration, v.minValue(100, "expected at least 100ms between sweeps")), 10_000),
      /**
       * Envoy's success-rate outlier detection, on by default with Envoy's defaults: among the
       * backends with at least requestVolume tries in an interval, when there are at least
       * minimumHosts of them, eject those whose success rate is below mean − stdev ×
       * stdevFactor / 1000. false turns it off.
       */
      successRate: v.optional(
        v.union([
          v.literal(false),
          v.strictObject({
            minimumHosts: v.optional(positiveInt("a whole number of backends, at least 1"), 5),
            requestVolume: v.optional(positiveInt("a whole number of tries, at least 1"), 100),
            stdevFactor: v.optional(v.pipe(v.number("expected a number"), v.integer("expected thousandths, a whole number"), v.minValue(0, "expected 0 or more (thousandths: 1900 is 1.9 standard deviations)")), 1900),
          }),
        ], "expected a success-rate object or false"),
        {},
      ),
      /**
       * Envoy's failure-percentage outlier detection, off by default as in Envoy: among the
       * backends with at least requestVolume tries in an interval, when there are at least
       * minimumHosts of them, eject those whose failures are at least threshold % of their tries.
       */
      failurePercentage: v.optional(
        v.union([
          v.literal(false),
          v.strictObject({
            threshold: v.optional(v.pipe(v.number("expected a percentage"), v.minValue(0, "expected 0 to 100"), v.maxValue(100, "expected 0 to 100")), 85),
            minimumHosts: v.optional(positiveInt("a whole number of backends, at least 1"), 5),
            requestVolume: v.optional(positiveInt("a whole number of tries, at least 1"), 50),
          }),
        ], "expected a failure-percentage object or false"),
        false,
      ),
    }),
    {},
  ),
  /**
   * Envoy's healthy panic threshold, a percentage: when fewer than this share of the backends in
   * service (not drained, not forced down) are healthy and not ejected, requests are balanced
   * over all of those in service, healthy or not, rather than refused or piled on the few left.
   * 0 turns panic mode off.
   */
  panicThreshold: v.optional(v.pipe(v.number("expected a percentage"), v.minValue(0, "expected 0 to 100"), v.maxValue(100, "expected 0 to 100")), 50),
  /** A backend that comes back ramps its share of traffic up linearly over this time; 0 turns it off. */
  slowStart: v.optional(duration, 0),
  /** The resolver DNS discovery uses: servers as "host" or "host:port" (default: the system's, /etc/resolv.conf). */
  dns: v.optional(
    v.strictObject({
      servers: v.optional(v.array(v.pipe(v.string("expected a server address"), v.nonEmpty("expected a server address")), "expected a list of DNS servers"), []),
      /** One lookup's time limit. */
      timeout: v.optional(positiveDuration, 2000),
    }),
    {},
  ),
});

export type ConfigInput = v.InferInput<typeof ConfigSchema>;
export type Config = v.InferOutput<typeof ConfigSchema>;
export type BackendConfig = Config["backends"][number];
export type HealthCheckFields = v.InferOutput<v.ObjectSchema<typeof healthCheckFields, undefined>>;
