/**
 * The one definition of every configuration option: its type, its default and, in
 * v.description, its meaning. `check` prints the normalized output of this schema, and
 * docs/configuration.md is generated from it (`bun run docs`; a test fails when it is stale).
 */
import * as v from "valibot";
import { doc, duration, grpcStatusList, positiveDuration, size, statusCode as status, type OptionDoc } from "./option-schemas.ts";
import { POLICY_NAMES } from "./policy-names.ts";
import { HOP_BY_HOP } from "../http/headers.ts";
import { parseCidr } from "../net/cidr.ts";
import { listenHostProblem, parseHostPort } from "./address.ts";
import { HASH_KEY_HINT, HASH_KEY_PATTERN } from "../policy/hash-key.ts";
import { RouteSchema, type RouteConfig } from "../route/schema.ts";
import { RateLimitSettingsSchema } from "../guard/rate-limit-config.ts";
import { ACCESS_FIELDS } from "../log/access-fields.ts";
import { ONLY_HINT, parseOnly } from "../log/access-filter.ts";
import { TracingSchema } from "../tracing/config.ts";

export type { OptionDoc };

const port = v.pipe(
  v.number("expected a port number"),
  v.integer("expected an integer port"),
  v.minValue(0, "expected a port from 0 to 65535"),
  v.maxValue(65535, "expected a port from 0 to 65535"),
);

const host = v.pipe(v.string("expected a host name or address"), v.nonEmpty("expected a host name or address"), doc({ type: "host name or address" }));

/** Where a listener binds: checked here so that a typo names the field, not EINVAL from listen(). */
const listenHost = v.pipe(
  host,
  v.check((h) => listenHostProblem(h) === undefined, (issue) => `expected ${listenHostProblem(issue.input as string)}`),
);

/** An admin.allowedHosts entry: a name or address, with an optional port; IPv6 in brackets. */
const allowedHost = v.pipe(
  v.string("expected a host name"),
  v.check((h) => parseHostPort(h) !== undefined, 'expected a host name or address with an optional port, like "lb.example.com", "lb.example.com:443" or "[2001:db8::1]:8081"'),
  doc({ type: 'host name or address with an optional ":port"', plural: 'host names or addresses, each with an optional ":port"' }),
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

/** A whole number, 0 or more; `zero` says what 0 means ("no bound"). */
const wholeOrZero = (zero: string) =>
  v.pipe(v.number("expected a number"), v.integer("expected a whole number"), v.minValue(0, `expected 0 (${zero}) or more`));

const EXPECT_STATUS = /^([1-5]xx|[1-5]\d\d(-[1-5]\d\d)?)$/;
/** "2xx", "200", "200-399", or a list of those and numbers; normalized to a list of strings. */
const expectStatus = v.pipe(
  v.union([v.string(), v.number(), v.array(v.union([v.string(), v.number()]))], 'expected a status class like "2xx", a code, a range "200-399" or a list of these'),
  v.transform((x) => (Array.isArray(x) ? x : [x]).map(String)),
  v.check((list) => list.length > 0 && list.every((s) => EXPECT_STATUS.test(s)), 'expected a status class like "2xx", a code, a range "200-399" or a list of these'),
  doc({ type: 'status class ("2xx"), code (200), range ("200-399") or a list of these' }),
);

/**
 * CIDR like "10.0.0.0/8", "::1/128", or a bare address, checked by the same parser that builds
 * the matchers (net/cidr.ts), so that what `check` accepts `serve` can start with.
 */
const cidr = v.pipe(
  v.string('expected a CIDR like "10.0.0.0/8" or an address'),
  v.check((x) => typeof parseCidr(x) !== "string", (issue) => `expected ${parseCidr(issue.input as string) as string}`),
  doc({ type: "CIDR or address", plural: "CIDRs or addresses" }),
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
  doc({ type: "header name" }),
);
/** RFC 9110 §5.5: a field value is visible characters, spaces and tabs; never CR, LF or NUL. */
const headerValue = v.pipe(
  v.string("expected a header value string"),
  v.regex(/^[\t\x20-\x7e\x80-\xff]*$/, "expected a header value without control characters (CR, LF, NUL)"),
);

/** Let's Encrypt's production directory: `tls.acme.directory` when none is given. */
export const DEFAULT_ACME_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory";

/** An External Account Binding HMAC key as CAs show it: base64url (RFC 4648 §5), padding allowed. */
export const EAB_HMAC_KEY = /^[A-Za-z0-9_-]{16,}=*$/;
export const EAB_HMAC_KEY_EXPECTED = 'expected the base64url HMAC key the CA gave (at least 16 letters, digits, "-" or "_")';

/** A PEM file: read when the config is checked and again on every reload (src/tls/). */
const pemFile = v.pipe(v.string("expected the path of a PEM file"), v.nonEmpty("expected the path of a PEM file"), doc({ type: "path of a PEM file" }));

/** A DNS name a client may ask for (SNI, RFC 6066 §3): letters, digits, "-" and ".", or "*." before one. */
const SERVER_NAME = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;
const serverName = v.pipe(
  v.string("expected a DNS name"),
  v.regex(SERVER_NAME, 'expected a DNS name like "api.example.com" (or "*.example.com")'),
  doc({ type: "DNS name" }),
);

/**
 * TLS termination on the proxy listener: a default certificate, more chosen by the name the
 * client asks for (SNI), and the lowest protocol version accepted.
 */
export const ListenTlsSchema = v.optional(v.lazy(() => ListenTls));
const ListenTls = v.strictObject({
  cert: v.optional(v.pipe(pemFile, v.description("The certificate chain served by default. Required unless `acme` is set."), doc({ defaultText: "with `acme`: the certificate of its first name" }))),
  key: v.optional(v.pipe(pemFile, v.description("The private key of `cert`. Required with `cert`."), doc({ defaultText: "with `acme`: its key" }))),
  acme: v.optional(
    v.pipe(
      v.strictObject({
        email: v.optional(v.pipe(v.string("expected an email address"), v.email('expected an email address like "ops@example.com"'), v.description("The contact address of the ACME account (RFC 8555 §7.3): the CA writes there about expiry and incidents."), doc({ defaultText: "none" }))),
        directory: v.optional(
          v.pipe(v.string("expected an https:// URL"), v.url("expected an https:// URL"), v.startsWith("https://", "expected an https:// URL"), v.description("The ACME directory URL of the CA (RFC 8555 §7.1.1)."), doc({ type: "URL" })),
          DEFAULT_ACME_DIRECTORY,
        ),
        domains: v.optional(
          v.pipe(
            v.array(serverName, "expected a list of DNS names"),
            v.minLength(1, "expected at least one DNS name"),
            v.description("The names to get certificates for, one certificate each; the first is served to clients that send no name (SNI) or one not listed. A wildcard (`*.example.com`) needs `challenge: \"dns-01\"`."),
            doc({ type: "list of DNS names", defaultText: "the exact `match.host` names of this listener's routes (wildcards left out)" }),
          ),
        ),
        challenge: v.optional(
          v.pipe(
            v.picklist(["http-01", "tls-alpn-01", "dns-01"], 'expected "http-01", "tls-alpn-01" or "dns-01"'),
            v.description("How the CA checks that the names are ours. `http-01` (RFC 8555 §8.3): answered on port 80 by this listener's `httpRedirect` listener and every plain-HTTP listener, before routing. `tls-alpn-01` (RFC 8737): answered on this TLS listener itself, which the CA must reach on port 443 (no port 80 needed), from the store whichever replica ordered. Socket engine and TCP listeners (which read each ClientHello before TLS, and so tell the CA's `acme-tls/1` handshakes apart); refused with `engine: \"fetch\"`, whose Bun.serve chooses certificates by server name only. `dns-01` (RFC 8555 §8.4): a TXT record set by `dns01.command`; the only one that proves a wildcard name, and the CA need not reach the balancer at all."),
          ),
          "http-01",
        ),
        keyType: v.optional(
          v.pipe(v.picklist(["ecdsa-p256", "rsa2048"], 'expected "ecdsa-p256" or "rsa2048"'), v.description("The key type of the certificates (and of a new account key).")),
          "ecdsa-p256",
        ),
        dns01: v.optional(
          v.pipe(
            v.strictObject({
              command: v.pipe(
                v.array(v.pipe(v.string("expected a string"), v.nonEmpty("expected a non-empty string")), "expected a command as a list: [PROGRAM, ARG...]"),
                v.minLength(1, "expected a command as a list: [PROGRAM, ARG...]"),
                v.description("The program (and its first arguments) that sets and removes the TXT record, run without a shell as `COMMAND... present FQDN VALUE` and `COMMAND... cleanup FQDN VALUE` (FQDN like `_acme-challenge.example.com.`), as lego's `exec` provider calls it. Exit 0 once the record is set; anything else fails the order, with what it printed."),
                doc({ type: "list of strings" }),
              ),
              timeout: v.optional(v.pipe(positiveDuration, v.description("Time one call of the command may take; it is killed after.")), 120_000),
              propagationDelay: v.optional(v.pipe(duration, v.description("Wait after `present` before the CA is told to look: time for the record to reach the provider's name servers.")), 0),
            }),
            v.description("How DNS-01 sets its TXT records: required with `challenge: \"dns-01\"`."),
            doc({ defaultText: "none" }),
          ),
        ),
        preferredChain: v.optional(
          v.pipe(
            v.string("expected an issuer's common name"),
            v.nonEmpty("expected an issuer's common name"),
            v.description("When the CA offers more than one chain for a certificate (RFC 8555 §7.4.2, `Link: rel=\"alternate\"`), the one that has an issuer of this common name, closest to its root, e.g. \"ISRG Root X1\"; the CA's default chain when none has it."),
            doc({ defaultText: "the CA's default chain" }),
          ),
        ),
        eab: v.optional(
          v.pipe(
            v.strictObject({
              kid: v.pipe(v.string("expected the key ID the CA gave"), v.nonEmpty("expected the key ID the CA gave"), v.description("The key identifier the CA gave with the HMAC key.")),
              hmacKey: v.optional(
                v.pipe(
                  v.string("expected the HMAC key the CA gave"),
                  v.regex(EAB_HMAC_KEY, EAB_HMAC_KEY_EXPECTED),
                  v.description("The HMAC key the CA gave, base64url as the CA shows it, instead of `hmacKeyFile`. It shows in `switchyard check` and the admin `/config`: prefer `hmacKeyFile`."),
                ),
              ),
              hmacKeyFile: v.optional(
                v.pipe(v.string("expected a file path"), v.nonEmpty("expected a file path"), doc({ type: "file path" }), v.description("A file holding the HMAC key (its first line), instead of `hmacKey`; read at load and on every reload.")),
              ),
            }),
            v.check((e) => (e.hmacKey === undefined) !== (e.hmacKeyFile === undefined), "expected exactly one of hmacKey and hmacKeyFile"),
            v.description("External Account Binding (RFC 8555 §7.3.4): ties the ACME account to an account at the CA, which some CAs require before they register one (ZeroSSL, Google Trust Services, Sectigo). Used once, when the account for `directory` is registered; an account already in the store is used as it is. Every listener with the same `directory` shares one account, so they must give the same `eab` or none."),
            doc({ defaultText: "none" }),
          ),
        ),
      }),
      // RFC 8555 §7.1.3: only DNS-01 proves a wildcard name.
      v.forward(
        v.check((a) => a.challenge === "dns-01" || (a.domains ?? []).every((n) => !n.startsWith("*.")), 'expected exact names: a wildcard needs challenge "dns-01"'),
        ["domains"],
      ),
      v.forward(v.check((a) => (a.challenge === "dns-01") === (a.dns01 !== undefined), 'expected dns01: { command: [...] } with challenge "dns-01", and only then'), ["dns01"]),
      v.description("Get this listener's certificates from an ACME CA (RFC 8555: Let's Encrypt, ZeroSSL, a private step-ca...) and renew them by themselves, stored in `acme.storage`. A name with no certificate yet is served a self-signed placeholder until its order completes; a stored one is served at once at start-up. Instead of `cert`/`key` (`sni` may add more)."),
      doc({ defaultText: "none" }),
    ),
  ),
  sni: v.optional(
    v.pipe(
      v.array(
        v.strictObject({
          serverName: v.optional(v.pipe(serverName, v.description("The name (or `*.` wildcard) this certificate answers for."), doc({ defaultText: "the DNS names in the certificate" }))),
          cert: v.pipe(pemFile, v.description("The certificate chain.")),
          key: v.pipe(pemFile, v.description("Its private key.")),
        }),
        "expected a list of { serverName, cert, key }",
      ),
      v.description("More certificates, each chosen when a client asks for its `serverName` (SNI, RFC 6066 §3); the others get `cert`."),
    ),
    [],
  ),
  clientAuth: v.optional(
    v.pipe(
      v.strictObject({
        ca: v.pipe(pemFile, v.description("The CA certificates a client's certificate must chain to.")),
        mode: v.optional(
          v.pipe(v.picklist(["required", "optional"], 'expected "required" or "optional"'), v.description('`"required"`: a client without a valid certificate fails the handshake; `"optional"`: it is let in, and its requests carry no certificate fields.')),
          "required",
        ),
        subjectHeader: v.optional(
          v.pipe(headerName, v.description("A request field that carries the verified client certificate's subject to backends (e.g. `x-client-cert-subject`: `CN=alice,O=Example`). Removed from what clients send, so that none can forge it."), doc({ defaultText: "none" })),
        ),
        fingerprintHeader: v.optional(
          v.pipe(headerName, v.description("A request field that carries the verified client certificate's SHA-256 fingerprint (lower-case hex) to backends. Removed from what clients send."), doc({ defaultText: "none" })),
        ),
      }),
      v.description("Mutual TLS: ask clients for a certificate and verify it against `ca` (socket engine and TCP listeners; the fetch engine cannot pass the certificate on, and is refused). With a subject or fingerprint field named, backends learn who the client is."),
      doc({ defaultText: "none: clients are not asked for a certificate" }),
    ),
  ),
  /** TLS 1.0 and 1.1 are never accepted (RFC 8996). */
  minVersion: v.optional(
    v.pipe(v.picklist(["TLSv1.2", "TLSv1.3"], 'expected "TLSv1.2" or "TLSv1.3"'), v.description('The lowest TLS version accepted; `"TLSv1.3"` refuses 1.2 too. TLS 1.0 and 1.1 are never accepted (RFC 8996).')),
    "TLSv1.2",
  ),
});

/** A backend's TLS (https:// backends): whom to trust, the name to check, or no check at all. */
const BackendTls = v.strictObject({
  ca: v.optional(v.pipe(pemFile, v.description("CA certificates to trust instead of the system's, e.g. a private CA."), doc({ defaultText: "the system's CAs" }))),
  cert: v.optional(
    v.pipe(pemFile, v.description("A client certificate (chain) to present to the backend, for backends that require mutual TLS; with `key`. Read at start and on every reload."), doc({ defaultText: "none" })),
  ),
  key: v.optional(v.pipe(pemFile, v.description("The private key of `cert`."), doc({ defaultText: "none" }))),
  servername: v.optional(v.pipe(serverName, v.description("The name sent in SNI and checked against the backend's certificate."), doc({ defaultText: "the URL's host" }))),
  insecureSkipVerify: v.optional(
    v.pipe(v.boolean("expected true or false"), v.description("Accept any certificate: expired, self-signed, or for another name. For tests only.")),
    false,
  ),
});

/**
 * Fields shared by the global healthCheck and a backend's override. They have no schema
 * defaults, so that a backend's override can tell an unset field (the global one applies) from
 * a set one; health/check.ts fills the defaults in (CHECK_DEFAULTS, which a docs test compares
 * with the defaultValues here).
 */
const healthCheckFields = {
  type: v.optional(
    v.pipe(
      v.picklist(["http", "tcp", "grpc"], 'expected "http", "tcp" or "grpc"'),
      v.description('`"http"`: a request whose answer must match `expectStatus` (and `expectBody`); `"tcp"`: a connection must open; `"grpc"`: the gRPC health protocol (`grpc.health.v1.Health/Check` for `service`) over HTTP/2, cleartext to `http://` backends and TLS with ALPN `h2` to `https://` ones, healthy when the answer is `SERVING`.'),
      doc({ defaultText: '`"http"` when `path` is set, else `"tcp"`' }),
    ),
  ),
  service: v.optional(
    v.pipe(
      v.string("expected a gRPC service name"),
      v.maxLength(255, "expected a gRPC service name of at most 255 bytes"),
      v.description('The `grpc` check\'s service name (e.g. `"helloworld.Greeter"`); `""` asks about the server as a whole.'),
      doc({ defaultValue: "" }),
    ),
  ),
  path: v.optional(v.pipe(v.string(), v.startsWith("/", 'expected a path starting with "/"'), v.description("The HTTP check's request path."), doc({ defaultValue: "/health" }))),
  method: v.optional(v.pipe(v.picklist(["GET", "HEAD", "OPTIONS", "POST"], "expected GET, HEAD, OPTIONS or POST"), v.description("The HTTP check's request method."), doc({ defaultValue: "GET" }))),
  headers: v.optional(
    v.pipe(v.record(v.string(), v.string("expected a header value string")), v.description("Extra request header fields; a backend's own are merged with the global ones by name."), doc({ type: "object of header names and values" })),
  ),
  host: v.optional(v.pipe(host, v.description("The Host the HTTP check sends."), doc({ defaultText: "the backend's host" }))),
  port: v.optional(v.pipe(port, v.description("Probe this port instead of the backend's."), doc({ defaultText: "the backend's port" }))),
  interval: v.optional(
    v.pipe(checkInterval, v.description("Time between probes of one backend. Faster probes are a load of their own, and failures in live traffic reach passive health at once anyway."), doc({ defaultValue: 2000 })),
  ),
  timeout: v.optional(v.pipe(positiveDuration, v.description("Time one probe may take."), doc({ defaultValue: 1000 }))),
  rise: v.optional(v.pipe(positiveInt("a whole number of consecutive successes, at least 1"), v.description("Consecutive successes that bring a backend that is down back up."), doc({ defaultValue: 2 }))),
  fall: v.optional(v.pipe(positiveInt("a whole number of consecutive failures, at least 1"), v.description("Consecutive failures that take a backend that is up down."), doc({ defaultValue: 3 }))),
  expectStatus: v.optional(v.pipe(expectStatus, v.description("The statuses the HTTP check accepts."), doc({ defaultValue: ["2xx"] }))),
  expectBody: v.optional(v.pipe(v.string("expected a substring of the body"), v.description("A substring the HTTP check's response body must contain."))),
};

const HealthCheckOverride = v.pipe(
  v.union(
    [v.literal(false), v.strictObject(healthCheckFields)],
    "expected a health check object or false",
  ),
  v.description("This backend's own health check: fields that replace the global `healthCheck`'s (`headers` are merged by name), or `false` for no checks of this backend."),
  doc({ fieldsAt: "healthCheck", defaultText: "the global `healthCheck`" }),
);

const PolicyName = v.picklist(POLICY_NAMES, `expected one of ${POLICY_NAMES.join(", ")}`);

/** DNS record types discovery reads (src/discovery/dns.ts). */
export const DNS_TYPES = ["A", "AAAA", "SRV"] as const;

/** How the socket engine speaks to a backend (src/engine/h2/ for HTTP/2). */
export const UPSTREAM_PROTOCOLS = ["http1", "h2", "h2c"] as const;
export type UpstreamProtocol = (typeof UPSTREAM_PROTOCOLS)[number];
const UpstreamProtocol = v.picklist(UPSTREAM_PROTOCOLS, 'expected "http1", "h2" or "h2c"');

const Backend = v.strictObject({
  name: v.optional(
    v.pipe(v.string("expected a name"), v.nonEmpty("expected a non-empty name"), v.description("A unique name, used in logs, stats, metrics and the admin API."), doc({ defaultText: '`"backend-N"` for the N-th entry; with `dns`, the DNS name' })),
  ),
  /** An entry gives either url or dns (checked in load.ts). */
  url: v.optional(
    v.pipe(
      v.string("expected a URL"),
      v.nonEmpty("expected a URL"),
      v.description("The backend's address: `http://` or `https://` host, optional port and base path in HTTP mode; `tcp://host:port` or `host:port` in TCP mode."),
      doc({ type: "URL", defaultText: "required, unless `dns` is given" }),
    ),
  ),
  dns: v.optional(
    v.pipe(host, v.description('Instead of `url`: a DNS name, looked up at start-up and again as `refresh` and the answer\'s TTL say; every address becomes a backend of its own, named `"<name>#<address>:<port>"`, with its own health.')),
  ),
  port: v.optional(v.pipe(port, v.minValue(1, "expected a port from 1 to 65535"), v.description("With `dns` and type A or AAAA: the port of every address (SRV records carry their own)."))),
  type: v.optional(
    v.pipe(v.picklist(DNS_TYPES, 'expected "A", "AAAA" or "SRV"'), v.description("With `dns`: the record type. SRV records give ports, priorities and weights (RFC 2782)."), doc({ defaultValue: "A" })),
  ),
  refresh: v.optional(
    v.pipe(positiveDuration, v.description("With `dns`: the longest time between lookups; a shorter TTL in the answer, down to 1s, wins."), doc({ defaultValue: 10_000 })),
  ),
  scheme: v.optional(
    v.pipe(v.picklist(["http", "https"], 'expected "http" or "https"'), v.description("With `dns`, in HTTP mode: the scheme of the discovered addresses."), doc({ defaultValue: "http" })),
  ),
  weight: v.optional(
    v.pipe(v.number("expected a weight"), v.integer("expected an integer weight"), v.minValue(1, "expected a weight of at least 1"), v.maxValue(1000, "expected a weight of at most 1000"), v.description("The backend's share of traffic relative to the others; every policy uses it (least-connections compares in-flight ÷ weight).")),
    1,
  ),
  /** Failover tiers are composed in src/pool/tiers.ts. */
  priority: v.optional(
    v.pipe(v.number("expected a priority"), v.integer("expected an integer priority"), v.minValue(0, "expected a priority of at least 0"), v.maxValue(65535, "expected a priority of at most 65535"), v.description("Failover tier, as an SRV record's priority (RFC 2782): lower is preferred, and a backend of a higher number is a standby that takes traffic only while no backend of the best tier present is available. SRV entries take it from the records."), doc({ defaultValue: 0 })),
  ),
  maxConnections: v.optional(
    v.pipe(v.number(), v.integer(), v.minValue(0, "expected 0 (no limit) or more"), v.description("Requests (HTTP) or connections (TCP) in flight at once; a full backend is not available and is skipped. `0`: no limit.")),
    0,
  ),
  disabled: v.optional(v.pipe(v.boolean("expected true or false"), v.description("Start drained: the backend takes no new traffic until it is enabled (admin API or `ctl enable`).")), false),
  healthCheck: v.optional(HealthCheckOverride),
  statsPath: v.optional(
    v.pipe(v.string(), v.startsWith("/", 'expected a path starting with "/"'), v.description("Path of the backend's own stats JSON (uptime, memory), polled for the admin `/stats` page.")),
  ),
  tls: v.optional(
    v.pipe(BackendTls, v.description("For `https://` backends: whom to trust, the name to check, or no check at all; for requests, WebSockets and health checks alike.")),
  ),
  protocol: v.optional(
    v.pipe(UpstreamProtocol, v.description("This backend's `protocol`, over its pool's."), doc({ defaultText: "its pool's `protocol`" })),
  ),
});

const BackendList = v.pipe(v.array(Backend, "expected a list of backends"), v.minLength(1, "expected at least one backend"));

/** Every option but pools, listeners and routes: those are added below, built from these. */
const BaseSchema = v.strictObject({
  mode: v.optional(v.pipe(v.picklist(["http", "tcp"], 'expected "http" or "tcp"'), v.description('`"http"`: a layer-7 proxy of HTTP requests; `"tcp"`: a layer-4 relay of connections.')), "http"),
  listen: v.optional(
    v.pipe(
      v.strictObject({
        host: v.optional(v.pipe(listenHost, v.description("The address the proxy listens on.")), "0.0.0.0"),
        port: v.optional(v.pipe(port, v.description("The port the proxy listens on; `0` picks a free one.")), 8000),
        /** Certificates are re-read on every reload (src/tls/). */
        tls: v.optional(v.pipe(ListenTls, v.description("Terminate TLS on the proxy listener (HTTP and TCP mode). The PEM files are read again on every reload."), doc({ defaultText: "none: plain HTTP or TCP" }))),
        httpRedirect: v.optional(
          v.pipe(
            v.strictObject({
              host: v.optional(v.pipe(listenHost, v.description("The address of the redirecting listener."), doc({ defaultText: "`listen.host`" }))),
              port: v.pipe(port, v.description("Its port, e.g. 80.")),
            }),
            v.description("HTTP mode with `listen.tls`: a plain-HTTP listener that answers every request with a `308` redirect to the same target over HTTPS."),
          ),
        ),
      }),
      v.description("Where the proxy listens."),
    ),
    {},
  ),
  admin: v.optional(
    v.pipe(
      v.union(
        [
          v.literal(false),
          v.strictObject({
            host: v.optional(v.pipe(listenHost, v.description("The address the admin listener binds.")), "127.0.0.1"),
            port: v.optional(v.pipe(port, v.description("Its port; it may not be the proxy's.")), 8081),
            /** The check against DNS rebinding is in admin/hosts.ts. */
            allowedHosts: v.optional(
              v.pipe(v.array(allowedHost, "expected a list of host names"), v.description("`Host` names the admin listener answers besides its own: localhost, 127.0.0.1, [::1], its configured host and, on a wildcard address, the machine's name and interface addresses. A name without a port means the admin port. Any other `Host` gets `403` (a guard against DNS rebinding).")),
              [],
            ),
            token: v.optional(
              v.pipe(v.string("expected a token string"), v.minLength(16, "expected a token of at least 16 characters"), v.description("Bearer token required for changes through `/api`; at least 16 characters."), doc({ defaultText: "none: `/api` changes are refused unless `tokenFile` or `$SWITCHYARD_ADMIN_TOKEN` gives a token" })),
            ),
            tokenFile: v.optional(
              v.pipe(v.string("expected a file path"), v.nonEmpty("expected a file path"), doc({ type: "file path" }), v.description("A file of tokens, one a line: `TOKEN` or `NAME TOKEN` (the name is logged with each change); read at start and on every reload.")),
            ),
          }),
        ],
        "expected an object with host, port, allowedHosts, token and tokenFile, or false",
      ),
      v.description("The admin listener: dashboard, `/stats`, `/metrics`, `/events` and the `/api` that changes a running balancer. `false` turns it off."),
    ),
    {},
  ),
  strategy: v.optional(v.pipe(PolicyName, v.description("The selection policy that picks a backend for each request (HTTP) or connection (TCP).")), "least-connections"),
  backends: v.optional(
    v.pipe(
      BackendList,
      v.description("The backends of the pool named `default` (the single-pool form; with `pools`, each pool lists its own): each entry is one backend given by `url`, or a DNS name (`dns`) whose addresses become backends."),
      doc({ defaultText: "required, unless `pools` is given" }),
    ),
  ),
  protocol: v.optional(
    v.pipe(
      UpstreamProtocol,
      v.description('How requests reach the backends (socket engine): `"http1"`, HTTP/1.1 on pooled keep-alive connections; `"h2"`, HTTP/2 over TLS negotiated by ALPN (`https://` backends only; a backend that does not select `h2` fails the try); `"h2c"`, cleartext HTTP/2 by prior knowledge (`http://` backends only). HTTP/2 backends get `limits.h2SessionsPerBackend` connections each, every one carrying up to `limits.h2StreamsPerSession` requests at once, and each request still picks its backend on its own. Health checks speak the same protocol. Not with `engine: "fetch"` yet.'),
    ),
    "http1",
  ),
  /** Why the socket engine is the default: docs/forwarding.md, "Engines". */
  engine: v.optional(
    v.pipe(v.picklist(["fetch", "socket"], 'expected "fetch" or "socket"'), v.description('HTTP mode\'s data path: `"socket"` parses HTTP/1.1 on Bun\'s own sockets with pooled upstream keep-alive, and keeps pipelining, repeated fields, trailers and the request target as the client sent them; `"fetch"` uses Bun.serve and fetch, which change those. Every decision above the wire is the same.')),
    "socket",
  ),
  hash: v.optional(
    v.pipe(
      v.strictObject({
        key: v.pipe(
          v.string(`expected ${HASH_KEY_HINT}`),
          v.regex(HASH_KEY_PATTERN, `expected ${HASH_KEY_HINT}`),
          v.description('What a request is hashed on: `"header:NAME"`, `"cookie:NAME"`, `"ip"` (the peer\'s address; the only key in TCP mode) or `"path"` (without the query). A request without the header or cookie is spread evenly.'),
          doc({ type: '`"header:NAME"`, `"cookie:NAME"`, `"ip"` or `"path"`' }),
        ),
      }),
      v.description("The consistent-hash strategy's key; required by it and refused with any other."),
    ),
  ),
  sticky: v.optional(
    v.pipe(
      v.strictObject({
        cookie: v.pipe(
          v.string("expected a cookie name"),
          v.regex(TOKEN, "expected a cookie name (letters, digits and !#$%&'*+-.^_`|~)"),
          v.description("The name of the cookie that pins a client to the backend that answered it."),
          doc({ type: "cookie name" }),
        ),
        /** Why a built-in secret is the default, and what it allows: policy/sticky.ts. */
        secret: v.optional(
          v.pipe(v.string("expected a secret string"), v.minLength(16, "expected a secret of at least 16 characters"), v.description("The HMAC key that makes cookie values unguessable. Without it a fixed built-in key is used: values stay opaque, but whoever knows the backend names could compute them."), doc({ defaultText: "built in" })),
        ),
      }),
      v.description("Sticky sessions beside any strategy (HTTP mode): a cookie names the backend that answered, and later requests carrying it go there while it is available."),
      doc({ defaultText: "none: off" }),
    ),
  ),
  peakEwma: v.optional(
    v.pipe(
      v.strictObject({
        decay: v.optional(
          v.pipe(positiveDuration, v.description("τ of the response-time average: how fast a slow response is forgotten, and an avoided backend starts to look cheap again.")),
          1000,
        ),
      }),
      v.description("The peak-ewma strategy's settings."),
    ),
    {},
  ),
  /** The supervisor and its workers: src/workers/. */
  workers: v.optional(
    v.pipe(
      v.union(
        [v.literal("auto"), v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(64))],
        'expected a whole number of workers from 1 to 64, or "auto" (the cores this process may use)',
      ),
      v.description('Processes that serve the proxy port; `"auto"`: the cores this process may use. With 1 this process serves alone; with more, it keeps the backends\' state, health checks and the admin port, and the workers share the proxy port.'),
    ),
    1,
  ),
  retry: v.optional(
    v.pipe(
      v.strictObject({
        attempts: v.optional(v.pipe(positiveInt("a whole number of tries, at least 1"), v.description("Tries in total for one request, each on a different backend while another is available.")), 3),
        perTryTimeout: v.optional(
          v.pipe(positiveDuration, v.description("Time one try may wait for its response head; counted from when the request has been sent in full.")),
          5000,
        ),
        timeout: v.optional(
          v.pipe(positiveDuration, v.description("Time all tries together may take to produce a response head, not counting time spent sending a streamed request body.")),
          15000,
        ),
        onStatus: v.optional(v.pipe(v.array(status, "expected a list of status codes"), v.description("Backend answers that count as a failed try, to be retried.")), [502, 503, 504]),
        nonIdempotent: v.optional(
          v.pipe(v.boolean("expected true or false"), v.description("Also retry non-idempotent methods (POST, PATCH) after a reset, a timeout or an `onStatus` answer, which RFC 9110 §9.2.2 advises against.")),
          false,
        ),
        onGrpcStatus: v.optional(
          v.pipe(grpcStatusList, v.description("gRPC calls (content-type `application/grpc`) answered with one of these statuses in the response head (a Trailers-Only answer, e.g. `UNAVAILABLE` from a server shutting down) are tried again on another backend. gRPC has no idempotency flag, so naming a status here vouches that its calls may be sent twice: they are retried whatever `nonIdempotent` says. A status that comes in the trailers, after the answer has begun, is passed on."), doc({ defaultText: "none" })),
          [],
        ),
        bufferBody: v.optional(
          v.pipe(size, v.description("Request bodies up to this size are kept so that they can be sent again; a larger body is streamed, and its request is not retried. With the fetch engine, this much of every body is read before the request goes upstream.")),
          64 * 1024,
        ),
        /** Finagle's and Linkerd's retry budget: the rule in forward/retry.ts, the counts in pool/retry-budget.ts. */
        budget: v.optional(
          v.pipe(
            v.union(
              [
                v.literal(false),
                v.strictObject({
                  percent: v.optional(
                    v.pipe(v.number("expected a percentage from 0 to 100"), v.minValue(0, "expected a percentage from 0 to 100"), v.maxValue(100, "expected a percentage from 0 to 100"), v.description("Retries allowed over any 10s, as a share of the requests.")),
                    20,
                  ),
                  minRetriesPerSecond: v.optional(
                    v.pipe(v.number("expected a number of retries per second, 0 or more"), v.minValue(0, "expected a number of retries per second, 0 or more"), v.description("Retries allowed whatever the traffic, per second of the 10s window, so that a quiet pool can still retry.")),
                    3,
                  ),
                }),
              ],
              "expected { percent, minRetriesPerSecond } or false (no budget)",
            ),
            v.description("The retry budget (HTTP mode): over any 10s, retries are at most `percent` of the requests plus `minRetriesPerSecond` per second. A pool that fails everything then gets about 1 + percent/100 tries per request (1.2 at 20%), not `retry.attempts`; a burst (a backend dying with requests in flight) is paid for by the window's credit. Past the budget a request keeps its last failure. `false`: no budget."),
          ),
          {},
        ),
      }),
      v.description("Retries of a failed try on another backend, and the time limits of the tries."),
    ),
    {},
  ),
  timeouts: v.optional(
    v.pipe(
      v.strictObject({
        /** Bun.serve's limit of 255s is checked in load.ts, as it depends on mode. */
        idle: v.optional(
          v.pipe(duration, v.description("Idle time allowed between bytes on a client connection, or in either direction on a TCP relay. HTTP mode: at most 255s (Bun.serve's limit).")),
          60_000,
        ),
        send: v.optional(
          v.pipe(duration, v.description("A streamed request body: how long the backend may leave a piece of it untaken (between two writes, as nginx's `proxy_send_timeout`; not for the whole body). While a body is being sent only this applies on the backend side; `retry.perTryTimeout` and `retry.timeout` count from when it is sent in full. `0`: no bound.")),
          60_000,
        ),
        connect: v.optional(v.pipe(positiveDuration, v.description("Time to open a backend connection (TCP mode and the socket engine).")), 5000),
        header: v.optional(
          v.pipe(duration, v.description("Socket engine: a request head must arrive in full within this time, or the client gets `408` and the connection is closed (slow-loris).")),
          10_000,
        ),
        upstreamIdle: v.optional(
          v.pipe(duration, v.description("Socket engine: an idle kept-alive backend connection is closed after this long. Keep it below the backends' own keep-alive timeout (Node's default is 5s), so that the proxy, not the backend, closes idle connections and a request never races a backend's close.")),
          4000,
        ),
        shutdownGrace: v.optional(
          v.pipe(duration, v.description("On SIGINT or SIGTERM, how long in-flight requests (and TCP relays) may run on before what is left is closed.")),
          10_000,
        ),
      }),
      v.description("Time limits on connections, apart from the tries' own (`retry`)."),
    ),
    {},
  ),
  rateLimit: v.optional(RateLimitSettingsSchema),
  limits: v.optional(
    v.pipe(
      v.strictObject({
        maxBodySize: v.optional(v.pipe(size, v.description("Larger request bodies get `413`, chunked ones too.")), 128 * 1024 * 1024),
        /** Bun 1.4 drops Content-Length whenever a response body is a stream (oven-sh/bun#10507). */
        responseBuffer: v.optional(
          v.pipe(size, v.description("Fetch engine: response bodies with a Content-Length up to this size are read whole before being sent on (nginx's `proxy_buffers`); larger or unknown-length bodies stream, and reach the client chunked. `0` streams all.")),
          64 * 1024,
        ),
        /** The figure matches the 64 idle connections Bun's fetch keeps per process. */
        upstreamConcurrency: v.optional(
          v.pipe(wholeOrZero("no bound"), v.description("Fetch engine: upstream requests in flight at once over all backends; the rest wait in arrival order (until `retry.timeout`). The default matches the 64 idle connections Bun's fetch keeps, so that upstream connections are reused rather than churned. `0`: no bound.")),
          64,
        ),
        uploadConcurrency: v.optional(
          v.pipe(wholeOrZero("no bound"), v.description("Fetch engine: upstream requests whose body is still streaming from the client (larger than `retry.bufferBody`) in flight at once. They take no `upstreamConcurrency` slot, so slow uploaders cannot hold the slots other requests need; the rest wait in arrival order. `0`: no bound.")),
          64,
        ),
        /** The reasons are in forward/gate.ts. */
        longWaitAfter: v.optional(
          v.pipe(positiveDuration, v.description("Fetch engine: a request still waiting for its response head this long after taking an `upstreamConcurrency` slot (a long-poll, a slow backend) gives the slot to the next request in line, when one waits, and counts against `longWaitConcurrency` instead, so that long-polls cannot hold every slot.")),
          500,
        ),
        longWaitConcurrency: v.optional(
          v.pipe(wholeOrZero("long waits keep their slot"), v.description("Fetch engine: such long waits in flight at once. With the two bounds above (64 + 64 + 128) it stays within the 256 requests Bun's fetch runs at once, so a long-poll never queues an ordinary request inside fetch. With this lane full, or at `0`, a long wait keeps its slot.")),
          128,
        ),
        maxHeaderSize: v.optional(
          v.pipe(size, v.description("Largest request head (request line and fields); larger gets `431`. Socket engine: response heads from a backend too. Fetch engine: Bun keeps one such limit per process, so it applies to every Bun.serve listener of the process, the admin listener's included.")),
          64 * 1024,
        ),
        maxUriLength: v.optional(v.pipe(size, v.description("Socket engine: longest request target; longer gets `414`.")), 8 * 1024),
        maxConnections: v.optional(
          v.pipe(positiveInt("a whole number of connections, at least 1"), v.description("Socket engine: client connections open at once; one more is answered `503` and closed.")),
          10_000,
        ),
        maxConnectionsPerClient: v.optional(
          v.pipe(
            positiveInt("a whole number of connections, at least 1"),
            v.description("Client connections one client address may hold open to one listener at once (each listener counts its own; HAProxy's `sc_conn_cur`, nginx's `limit_conn`). The address is the one a PROXY header names on a listener with `proxyProtocol: true`, else the peer's. One more is refused: the socket engine answers `429` (`SY_TOO_MANY_CLIENT_CONNECTIONS`) with `Retry-After: 1` and closes it; a TCP listener closes it before dialling a backend. A reload changes it for new connections; open ones stay counted. With `workers`, the workers count together (shared memory): the bound is the balancer's. Socket engine and TCP listeners: refused with `engine: \"fetch\"` for HTTP listeners."),
            doc({ defaultText: "no bound" }),
          ),
        ),
        upstreamKeepalive: v.optional(
          v.pipe(wholeOrZero("no keep-alive"), v.description("Socket engine: idle connections kept per backend for reuse; `0`: none.")),
          128,
        ),
        h2SessionsPerBackend: v.optional(
          v.pipe(positiveInt("a whole number of connections, at least 1"), v.description("Socket engine, `protocol: \"h2\"` or `\"h2c\"` backends: HTTP/2 connections opened to each backend at most. A request takes the least busy one with a free stream; a new one is opened only when all are full. More than one, so that one connection's flow-control window, its single TCP stream (head-of-line loss) and its GOAWAY do not stall everything, but few, since each stream is multiplexed anyway. Past the cap, a request waits for a free stream until its timeouts run out.")),
          4,
        ),
        h2StreamsPerSession: v.optional(
          v.pipe(positiveInt("a whole number of streams, at least 1"), v.description("Socket engine, HTTP/2 backends: requests in flight at once on one connection, at most; the backend's own `SETTINGS_MAX_CONCURRENT_STREAMS` lowers it.")),
          128,
        ),
        maxPipeline: v.optional(
          v.pipe(positiveInt("a whole number, at least 1"), v.description("Socket engine: requests a client may pipeline ahead of the one being answered; past it, reading pauses.")),
          32,
        ),
      }),
      v.description("Size and concurrency limits of the HTTP data path."),
    ),
    {},
  ),
  http2: v.optional(
    v.pipe(
      v.strictObject({
        enabled: v.optional(
          v.pipe(v.boolean("expected true or false"), v.description("Take HTTP/2 from clients: by prior knowledge on plain listeners (a connection that opens with the HTTP/2 preface), and by ALPN (`h2`, then `http/1.1`) on TLS listeners. `false`: HTTP/1.1 only (the preface is answered `505` on the socket engine, ALPN offers nothing). A reload that turns it on or off binds TLS listeners (and the fetch engine's) anew beside the old ones, which finish what they hold; the socket engine's limits below reach new connections. Fetch engine: Bun.serve's own HTTP/2, with Bun's own limits (the options below are the socket engine's), and no gRPC (Bun's fetch cannot read a backend's trailers).")),
          true,
        ),
        maxConcurrentStreams: v.optional(
          v.pipe(positiveInt("a whole number of streams, at least 1"), v.maxValue(2 ** 31 - 1, "expected at most 2147483647 streams"), v.description("Streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS, RFC 9113 §5.1.2); one more is refused with `REFUSED_STREAM`.")),
          100,
        ),
        maxHeaderListSize: v.optional(
          v.pipe(size, v.description("Largest request field list (SETTINGS_MAX_HEADER_LIST_SIZE, RFC 9113 §6.5.2: names and values decoded, plus 32 bytes a field)."), doc({ defaultText: "`limits.maxHeaderSize`" })),
        ),
        initialWindowSize: v.optional(
          v.pipe(positiveInt("a window size in bytes, at least 1"), v.maxValue(2 ** 31 - 1, "expected at most 2147483647 bytes (RFC 9113 §6.5.2)"), v.description("Flow-control window of each request stream (SETTINGS_INITIAL_WINDOW_SIZE): how much of a request body a client may send before the proxy has passed it on.")),
          65_535,
        ),
        maxHeaderListPairs: v.optional(
          v.pipe(positiveInt("a whole number of fields, at least 4"), v.minValue(4, "expected at least 4 fields"), v.description("Fields (pseudo-headers included) in one request head; past it the stream is reset.")),
          128,
        ),
        maxOutstandingPings: v.optional(
          v.pipe(positiveInt("a whole number of pings, at least 1"), v.description("PINGs from a client not yet acknowledged; past it the session ends (a PING flood).")),
          10,
        ),
        maxSettings: v.optional(
          v.pipe(positiveInt("a whole number of settings, at least 1"), v.description("Settings in one SETTINGS frame from a client.")),
          32,
        ),
        maxSessionRejectedStreams: v.optional(
          v.pipe(positiveInt("a whole number of streams, at least 1"), v.description("Streams refused on one connection (over `maxConcurrentStreams`) before the session is ended with `ENHANCE_YOUR_CALM`.")),
          100,
        ),
        maxSessionInvalidFrames: v.optional(
          v.pipe(positiveInt("a whole number of frames, at least 1"), v.description("Invalid frames from a client before its session ends.")),
          1000,
        ),
        maxResetsPerSecond: v.optional(
          v.pipe(positiveInt("a whole number of streams, at least 1"), v.description("Streams a client may reset before they were answered, a second on average, in bursts of up to as many (rapid reset, CVE-2023-44487); past it the session ends with `ENHANCE_YOUR_CALM`.")),
          200,
        ),
      }),
      v.description("HTTP/2 from clients (docs/http2.md). Backends are reached as their pool says, whatever the client spoke."),
      doc({ defaultText: "each field's own default" }),
    ),
    {},
  ),
  log: v.optional(
    v.pipe(
      v.strictObject({
        access: v.optional(v.pipe(v.boolean("expected true or false"), v.description("One access-log line per request (HTTP), on stdout or in `file`.")), true),
        format: v.optional(
          v.pipe(
            v.picklist(["text", "json", "common", "combined"], 'expected "text", "json", "common" or "combined"'),
            v.description('`"text"`, `"json"` (one JSON object a line), or the Apache/nginx `"common"` and `"combined"` formats byte for byte (docs/forwarding.md).'),
          ),
          "text",
        ),
        file: v.optional(
          v.pipe(
            v.string("expected the path of a file"),
            v.nonEmpty("expected the path of a file"),
            v.description("Append the access log to this file instead of stdout (created if missing). SIGUSR1 reopens it, for logrotate's `postrotate kill -USR1`. With `workers`, every worker appends to it; lines never interleave."),
            doc({ type: "path of a file", defaultText: "stdout" }),
          ),
        ),
        fields: v.optional(
          v.pipe(
            v.array(v.picklist(ACCESS_FIELDS, `expected a field name: ${ACCESS_FIELDS.join(", ")}`), "expected a list of field names"),
            v.minLength(1, "expected at least one field name"),
            v.description(`The fields of a \`text\` or \`json\` line, in this order, after the time: any of ${ACCESS_FIELDS.map((f) => `\`${f}\``).join(", ")} (docs/forwarding.md says what each holds). Absent: the line of docs/forwarding.md's first example.`),
            doc({ type: "list of field names", defaultText: "the default line" }),
          ),
        ),
        only: v.optional(
          v.pipe(
            v.string(ONLY_HINT),
            v.check((x) => parseOnly(x) !== undefined, ONLY_HINT),
            v.description('Log only some requests: `"errors"` (status 500 or above, or any line with an SY_ code), `"slower:500ms"` (took at least that long), `"sample:0.1"` (each request with that probability). Decided before the line is built.'),
            doc({ type: "filter", defaultText: "every request" }),
          ),
        ),
        maxBuffer: v.optional(
          v.pipe(
            size,
            v.minValue(4096, "expected at least 4KB"),
            v.description("Access-log lines waiting to be written, at most (about this many bytes); past it lines are dropped and counted (`accessLogDropped` in /stats, `switchyard_access_log_dropped_total`), never waited for."),
            // Left unset (the code fills it in) so that a config without it prints as before.
            doc({ defaultValue: "1MB" }),
          ),
        ),
      }),
      v.check((l) => l.fields === undefined || l.format === "text" || l.format === "json", "expected fields only with format \"text\" or \"json\" (common and combined are fixed)"),
      v.description("The access log (docs/forwarding.md)."),
    ),
    {},
  ),
  tracing: v.optional(TracingSchema),
  trustedProxies: v.optional(
    v.pipe(v.array(cidr, "expected a list of CIDRs"), v.description("Peers whose `X-Forwarded-*` and `X-Real-IP` fields are kept (`X-Forwarded-For` appended to). From any other peer they are replaced, and `Forwarded` is removed. Also the only peers a listener with `proxyProtocol: true` takes a PROXY header from.")),
    [],
  ),
  responseHeaders: v.optional(
    v.pipe(
      v.strictObject({
        remove: v.optional(v.pipe(v.array(headerName, "expected a list of header names"), v.description('Response fields removed, e.g. `["server", "x-powered-by"]`.')), []),
        set: v.optional(
          v.pipe(v.record(headerName, headerValue, "expected an object of header names and values"), v.description('Response fields set, replacing the backend\'s, e.g. `{ "server": "switchyard" }`.'), doc({ type: "object of header names and values" })),
          {},
        ),
      }),
      v.check(
        (r) => !Object.keys(r.set).some((n) => r.remove.some((m) => m.toLowerCase() === n.toLowerCase())),
        "expected each header in either remove or set, not both (set already replaces)",
      ),
      v.description("Response header fields removed or replaced before the client sees them (nginx's `proxy_hide_header`, HAProxy's `http-response del-header`/`set-header`), e.g. to hide a backend's `Server`. Applied last, after `Via` and `X-Request-Id` are added. A name may be in `remove` or `set`, not both."),
    ),
    {},
  ),
  preserveHost: v.optional(v.pipe(v.boolean("expected true or false"), v.description("Send the client's `Host` to the backend; `false` sends the backend's own host.")), true),
  healthCheck: v.optional(
    v.pipe(
      v.union([v.literal(false), v.strictObject(healthCheckFields)], "expected a health check object or false"),
      v.description("Active health checks of every backend, which a backend's own `healthCheck` may override; the default `{}` is a TCP connect every 2s. `false` turns them off (for the backends without their own)."),
    ),
    {},
  ),
  passive: v.optional(
    v.pipe(
      v.strictObject({
        consecutiveFailures: v.optional(
          v.pipe(v.number(), v.integer(), v.minValue(0), v.description("Consecutive failed tries (a 5xx, a refused or reset connection, a timeout) before a backend is ejected; `0` turns this ejection off.")),
          5,
        ),
        baseEjectionTime: v.optional(
          v.pipe(duration, v.description("An ejection lasts this × n, where n grows by one with each ejection of the backend and shrinks by one for every such time without one.")),
          30_000,
        ),
        maxEjectionTime: v.optional(v.pipe(duration, v.description("The longest one ejection lasts.")), 300_000),
        maxEjectedPercent: v.optional(
          v.pipe(v.number(), v.minValue(0, "expected 0 to 100"), v.maxValue(100, "expected 0 to 100"), v.description("At most this share of the backends is out through passive health (ejected, or down after a refused connection) at once; it never takes the last available one.")),
          50,
        ),
        readmitAfter: v.optional(
          v.pipe(duration, v.description("Without active checks, a backend marked down by a refused connection is let back in after this long.")),
          10_000,
        ),
        interval: v.optional(
          v.pipe(duration, v.minValue(100, "expected at least 100ms between sweeps"), v.description("Time between sweeps of `successRate` and `failurePercentage` (Envoy's interval).")),
          10_000,
        ),
        successRate: v.optional(
          v.pipe(
            v.union([
              v.literal(false),
              v.strictObject({
                minimumHosts: v.optional(v.pipe(positiveInt("a whole number of backends, at least 1"), v.description("Backends with enough tries needed for a sweep to eject any.")), 5),
                requestVolume: v.optional(v.pipe(positiveInt("a whole number of tries, at least 1"), v.description("Tries in an interval for a backend to count.")), 100),
                stdevFactor: v.optional(
                  v.pipe(v.number("expected a number"), v.integer("expected thousandths, a whole number"), v.minValue(0, "expected 0 or more (thousandths: 1900 is 1.9 standard deviations)"), v.description("How far below the mean a success rate must fall, in thousandths of a standard deviation (1900: 1.9).")),
                  1900,
                ),
              }),
            ], "expected a success-rate object or false"),
            v.description("Envoy's success-rate outlier detection, on by default with Envoy's defaults: among the backends with at least `requestVolume` tries in an interval, when there are at least `minimumHosts` of them, those whose success rate is below mean − stdev × `stdevFactor` / 1000 are ejected. `false` turns it off."),
          ),
          {},
        ),
        failurePercentage: v.optional(
          v.pipe(
            v.union([
              v.literal(false),
              v.strictObject({
                threshold: v.optional(v.pipe(v.number("expected a percentage"), v.minValue(0, "expected 0 to 100"), v.maxValue(100, "expected 0 to 100"), v.description("The share of failed tries, in %, at which a backend is ejected.")), 85),
                minimumHosts: v.optional(v.pipe(positiveInt("a whole number of backends, at least 1"), v.description("Backends with enough tries needed for a sweep to eject any.")), 5),
                requestVolume: v.optional(v.pipe(positiveInt("a whole number of tries, at least 1"), v.description("Tries in an interval for a backend to count.")), 50),
              }),
            ], "expected a failure-percentage object or false"),
            v.description("Envoy's failure-percentage outlier detection, off by default as in Envoy (`{}` turns it on with its defaults): among the backends with at least `requestVolume` tries in an interval, when there are at least `minimumHosts` of them, those whose failures are at least `threshold` % of their tries are ejected."),
          ),
          false,
        ),
      }),
      v.description("Passive health: ejection of backends that fail live traffic, as Envoy's outlier detection. A failed try is a 5xx or no answer (refused, reset, timed out, a body cut short)."),
    ),
    {},
  ),
  panicThreshold: v.optional(
    v.pipe(v.number("expected a percentage"), v.minValue(0, "expected 0 to 100"), v.maxValue(100, "expected 0 to 100"), v.description("Envoy's healthy panic threshold, in %: when fewer than this share of the backends in service (not drained, not forced down) are healthy and not ejected, requests are balanced over all of those in service, healthy or not, rather than refused or piled on the few left. `0` turns panic mode off.")),
    50,
  ),
  slowStart: v.optional(v.pipe(duration, v.description("A backend that comes back ramps its share of traffic up linearly over this time; `0` turns it off.")), 0),
  dns: v.optional(
    v.pipe(
      v.strictObject({
        servers: v.optional(
          v.pipe(v.array(v.pipe(v.string("expected a server address"), v.nonEmpty("expected a server address")), "expected a list of DNS servers"), v.description('DNS servers, as `"host"` or `"host:port"` (IPv6 in brackets), e.g. `"10.0.0.2"`, `"127.0.0.1:5353"`, `"[::1]:53"`.'), doc({ type: "list of server addresses", defaultText: "`[]`: the system's resolvers (/etc/resolv.conf)" })),
          [],
        ),
        timeout: v.optional(v.pipe(positiveDuration, v.description("Time one lookup may take; a lookup is tried twice.")), 2000),
      }),
      v.description("The resolver DNS discovery (`backends[].dns`) uses."),
    ),
    {},
  ),
  acme: v.optional(
    v.pipe(
      v.strictObject({
        storage: v.pipe(
          v.string("expected a directory path"),
          v.nonEmpty("expected a directory path"),
          v.description("The directory that holds the ACME account key and each name's key and certificate (files at mode 0600). Replicas may share it (a network filesystem): a name is ordered by one replica at a time, under a lock file with a lease, and every replica serves what is stored."),
          doc({ type: "directory path" }),
        ),
        directoryCa: v.optional(v.pipe(pemFile, v.description("CA certificates to trust for the ACME directory instead of the system's: a private ACME server (step-ca, pebble)."), doc({ defaultText: "the system's CAs" }))),
        lockLease: v.optional(v.pipe(positiveDuration, v.description("How long a replica's lock on a name's order holds; a lock older than this (its replica died) is taken over.")), 600_000),
      }),
      v.description("Where certificates from ACME (`tls.acme`) are kept, shared by every listener that uses ACME."),
      doc({ defaultText: "none: required when a listener sets `tls.acme`" }),
    ),
  ),
});

/** A pool's, a listener's or a route's name: it appears in logs, metrics labels and `pool/backend`. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const NAME_HINT = 'a name of letters, digits, "_", "." and "-" (up to 63, starting with a letter or digit)';
export const entityName = (what: string) =>
  v.pipe(v.string(`expected ${what}: ${NAME_HINT}`), v.regex(NAME, `expected ${what}: ${NAME_HINT}`), doc({ type: `${what}` }));

const B = BaseSchema.entries;

/**
 * A pool's own value of a top-level option: the same schema without its default, so that load.ts
 * can tell an option the pool leaves unset (the top-level value applies) from one it sets.
 */
function inPool<T extends v.GenericSchema>(key: string, entry: v.OptionalSchema<T, unknown>, nested: boolean) {
  return v.optional(
    v.pipe(
      entry.wrapped,
      v.description(`This pool's \`${key}\`${nested ? ", field by field over the top-level one" : ""}.`),
      doc({ ...(nested ? { fieldsAt: key } : {}), defaultText: `the top-level \`${key}\`` }),
    ),
  );
}

const TimeoutEntries = B.timeouts.wrapped.entries;
const LimitEntries = B.limits.wrapped.entries;

/** The options that belong to a group of backends: everything a pool may set for itself. */
const PoolSchema = v.strictObject({
  backends: v.pipe(BackendList, v.description("The pool's backends, as the top-level `backends`."), doc({ fieldsAt: "backends" })),
  strategy: inPool("strategy", B.strategy, false),
  hash: inPool("hash", B.hash as unknown as v.OptionalSchema<v.GenericSchema, unknown>, true),
  sticky: inPool("sticky", B.sticky as unknown as v.OptionalSchema<v.GenericSchema, unknown>, true),
  peakEwma: inPool("peakEwma", B.peakEwma, true),
  retry: inPool("retry", B.retry, true),
  healthCheck: inPool("healthCheck", B.healthCheck, true),
  passive: inPool("passive", B.passive, true),
  panicThreshold: inPool("panicThreshold", B.panicThreshold, false),
  slowStart: inPool("slowStart", B.slowStart, false),
  protocol: inPool("protocol", B.protocol, false),
  timeouts: v.optional(
    v.pipe(
      v.strictObject({
        connect: v.optional(TimeoutEntries.connect.wrapped),
        upstreamIdle: v.optional(TimeoutEntries.upstreamIdle.wrapped),
        send: v.optional(TimeoutEntries.send.wrapped),
      }),
      v.description("This pool's backend-side time limits (`connect`, `upstreamIdle`, `send`), each as the top-level `timeouts` field of that name, which applies where one is not given."),
    ),
  ),
  limits: v.optional(
    v.pipe(
      v.strictObject({ upstreamKeepalive: v.optional(LimitEntries.upstreamKeepalive.wrapped) }),
      v.description("This pool's `upstreamKeepalive`, as the top-level `limits.upstreamKeepalive`, which applies where it is not given."),
    ),
  ),
  proxyProtocol: v.optional(
    v.pipe(
      v.picklist(["v1", "v2"], 'expected "v1" or "v2"'),
      v.description(
        "Send a PROXY protocol header of this version (HAProxy's `send-proxy` / `send-proxy-v2`) as the first bytes of every new connection to this pool's backends, naming the client's address and the address it connected to, for backends that accept it (HAProxy `accept-proxy`, nginx `proxy_protocol`); `http://` and `tcp://` backends only (the header would have to precede a TLS handshake). HTTP health checks of the pool send a `LOCAL` header. TCP listeners, and HTTP on the socket engine, where an upstream connection then carries one client's requests only (it is reused only for requests from the same client address). Not with `engine: \"fetch\"` (Bun's fetch writes the connection's first bytes itself).",
      ),
      doc({ defaultText: "none" }),
    ),
  ),
  tls: v.optional(
    v.pipe(
      BackendTls,
      v.description("TLS for this pool's `https://` backends (whom to trust, the name to check), as a backend's own `tls`, for each backend that gives none."),
      doc({ defaultText: "none: each backend's own, or the system's CAs" }),
    ),
  ),
}, "expected a pool: an object with backends and the pool's own options");

/** The pool options a pool may set for itself; the top-level ones are their defaults. */
export const POOL_OPTIONS = ["strategy", "hash", "sticky", "peakEwma", "retry", "healthCheck", "passive", "panicThreshold", "slowStart", "protocol"] as const;

const ListenerSchema = v.strictObject({
  name: v.pipe(entityName("a listener name"), v.description("A unique name, used in logs, metrics and the admin API.")),
  host: v.optional(v.pipe(listenHost, v.description("The address it listens on.")), "0.0.0.0"),
  port: v.pipe(port, v.description("Its port; `0` picks a free one.")),
  mode: v.optional(v.pipe(v.picklist(["http", "tcp"], 'expected "http" or "tcp"'), v.description('`"http"`: requests go through `routes`; `"tcp"`: connections are relayed to `pool`, or to the pool of the route whose `match.sni` names the server the client asks for.')), "http"),
  tls: v.optional(v.pipe(ListenTls, v.description("Terminate TLS on this listener, as `listen.tls`."), doc({ defaultText: "none" }))),
  httpRedirect: v.optional(
    v.pipe(
      v.strictObject({
        host: v.optional(v.pipe(listenHost, v.description("The address of the redirecting listener."), doc({ defaultText: "this listener's `host`" }))),
        port: v.pipe(port, v.description("Its port, e.g. 80.")),
      }),
      v.description("With `tls`, in HTTP mode: a plain-HTTP listener that answers every request with a `308` redirect to this one."),
    ),
  ),
  routes: v.optional(
    v.pipe(
      v.array(entityName("a route name"), "expected a list of route names"),
      v.minLength(1, "expected at least one route name"),
      v.description("HTTP: only these routes serve this listener, in the order of `routes`. TCP: the SNI routes (`match.sni`) it chooses among."),
      doc({ defaultText: "HTTP: every route without `match.sni`; TCP: every route with it, unless `pool` is given" }),
    ),
  ),
  pool: v.optional(v.pipe(entityName("a pool name"), v.description("TCP: the pool every connection goes to (or the one for a client whose server name no SNI route takes)."))),
  proxyProtocol: v.optional(
    v.pipe(
      v.boolean("expected true or false"),
      v.description(
        "Every connection starts with a PROXY protocol header (v1 or v2, HAProxy's `accept-proxy`), as an L4 balancer in front (HAProxy `send-proxy`, AWS NLB, ...) sends it; from then on the client's address is the one the header names: in logs, `X-Forwarded-For`, `hash.key: ip` and route matches on `clientIp`. Accepted only from peers in `trustedProxies` (a connection from any other peer is closed at once, before a byte is read), and it must arrive whole within `timeouts.header` and 4 KiB (v1: 107 bytes), else the connection is closed. A v2 `LOCAL` header (the proxy's own health check) keeps the peer's address. Socket engine and TCP listeners only: Bun.serve (`engine: \"fetch\"`) gives no access to a connection's bytes before HTTP. With `tls` the header comes before the handshake, as HAProxy's `send-proxy` sends it to an `ssl` server (the listener reads it, then the ClientHello: src/tls/hello-first.ts); a TCP listener that passes TLS through by SNI takes it too.",
      ),
    ),
    false,
  ),
});

export const ConfigSchema = v.strictObject({
  ...BaseSchema.entries,
  pools: v.optional(
    v.pipe(
      v.record(entityName("a pool name"), PoolSchema, "expected an object of pool names and pools"),
      v.description("Named groups of backends, each with its own policy, health checks, retries and time limits; the top-level values of those options are every pool's defaults. Routes and TCP listeners name the pool they send to. The single-pool form (top-level `backends`) is the pool `default`. A pool's `proxyProtocol: \"v1\" | \"v2\"` (default none) sends a PROXY protocol header to its backends first on every new connection (HAProxy's `send-proxy` / `send-proxy-v2`), naming the client: TCP listeners, and HTTP on the socket engine (an upstream connection then serves one client only; refused with `engine: \"fetch\"`)."),
      doc({ type: "object of pool names and pools", defaultText: "`{ default: ... }` from the top-level `backends`" }),
    ),
  ),
  listeners: v.optional(
    v.pipe(
      v.array(ListenerSchema, "expected a list of listeners"),
      v.minLength(1, "expected at least one listener"),
      v.description("Where the proxy listens: each listener its own address, port, mode and certificates. Without it, `listen` and `mode` make the one listener `default`."),
      doc({ defaultText: "one listener `default` from `listen` and `mode`" }),
    ),
  ),
  routes: v.optional(
    v.pipe(
      v.array(RouteSchema, "expected a list of routes"),
      v.description("HTTP: the ordered list of routes; the first whose `match` holds takes the request, and a request no route takes gets `404` (`SY_NO_ROUTE`). TCP listeners use the routes with `match.sni`."),
      doc({ defaultText: "one route `default` to the only pool" }),
    ),
  ),
});

export type ConfigInput = v.InferInput<typeof ConfigSchema>;
export type ParsedConfig = v.InferOutput<typeof ConfigSchema>;
type Parsed = ParsedConfig;
export type BackendConfig = NonNullable<Parsed["backends"]>[number];
export type HealthCheckConfig = Parsed["healthCheck"];

/** One pool after load.ts filled the top-level defaults in: nothing left unset. */
export interface PoolConfig {
  readonly name: string;
  /** Which listeners it serves: "tcp" when a TCP listener sends to it (its backends are tcp://). */
  readonly mode: "http" | "tcp";
  backends: BackendConfig[];
  strategy: Parsed["strategy"];
  hash: Parsed["hash"];
  sticky: Parsed["sticky"];
  peakEwma: Parsed["peakEwma"];
  retry: Parsed["retry"];
  healthCheck: Parsed["healthCheck"];
  passive: Parsed["passive"];
  panicThreshold: number;
  slowStart: number;
  /** How its backends are spoken to, where a backend gives no `protocol` of its own. */
  protocol: UpstreamProtocol;
  timeouts: Pick<Parsed["timeouts"], "connect" | "upstreamIdle" | "send">;
  limits: Pick<Parsed["limits"], "upstreamKeepalive">;
  /** The pool's default backend TLS (already given to each https:// backend without its own). */
  tls?: BackendConfig["tls"];
  /** The PROXY protocol header sent first on every new backend connection; none when absent. */
  proxyProtocol?: "v1" | "v2";
}

type ParsedListener = v.InferOutput<typeof ListenerSchema>;
/** `tls` as the listeners take it: with `acme`, load.ts has filled `cert`, `key` and `sni` in with the files of `acme.storage` (src/acme/paths.ts). */
export type ListenerTls = Omit<NonNullable<ParsedListener["tls"]>, "cert" | "key"> & { cert: string; key: string };
export type ListenerConfig = Omit<ParsedListener, "tls"> & { tls?: ListenerTls };

/**
 * A config as the rest of the program reads it: `pools`, `listeners` and `routes` always set
 * (load.ts expands the single-pool form), and no top-level `backends` left.
 */
export type Config = Omit<Parsed, "pools" | "listeners" | "routes" | "backends"> & {
  pools: Record<string, PoolConfig>;
  listeners: ListenerConfig[];
  routes: RouteConfig[];
};

export type HealthCheckFields = v.InferOutput<v.ObjectSchema<typeof healthCheckFields, undefined>>;
