/**
 * The schema of one route (config `routes[]`): what it matches, what it does, and how it changes
 * the request. The config schema (src/config/schema.ts) takes `RouteSchema` as the item of
 * `routes`; docs/configuration.md is generated from the descriptions here as from the rest.
 *
 * Checks that need the whole config (a pool that does not exist, a name used twice) are in
 * `routeProblems`; what deserves a warning only (a route an earlier one hides, a pool no route
 * uses) is in `routeWarnings`.
 */
import * as v from "valibot";
import { doc, duration as durationSchema, grpcStatusList, positiveDuration as duration, size, statusCode } from "../config/option-schemas.ts";
import { HOP_BY_HOP } from "../http/headers.ts";
import { RouteRateLimitSchema } from "../guard/rate-limit-config.ts";
import { RouteTracingSchema } from "../tracing/config.ts";
import { parseCidr } from "../net/cidr.ts";
import { HASH_KEY_HINT, HASH_KEY_PATTERN } from "../policy/hash-key.ts";
import { headerTemplateProblem } from "./header-rules.ts";
import { parseRate, RATE_HINT } from "../guard/rate-limit-config.ts";
import { isRefusal, normalizePath } from "./normalize.ts";
import { compileRegex, highestGroupRef } from "./regex.ts";
import { parseTemplate, REDIRECT_PLACEHOLDERS } from "./template.ts";
import { readSecretFile, readUsersFile } from "../guard/users-file.ts";


/** Route and pool names: they appear in metrics labels, logs and cookies, so token-ish. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const NAME_HINT = "a name of letters, digits, '-', '_' and '.' (starting with a letter or digit)";
const name = (what: string) => v.pipe(v.string(`expected ${what}`), v.regex(NAME, `expected ${what}: ${NAME_HINT}`));
const poolName = v.pipe(name("a pool name"), doc({ type: "pool name" }));

/** One value or a non-empty list of them; a list after parsing. */
function oneOrMany<T extends v.GenericSchema<string, string>>(item: T, what: string, plural: string) {
  return v.pipe(
    v.union([item, v.pipe(v.array(item, `expected ${what} or a list of ${plural}`), v.minLength(1, `expected at least one of ${plural}`))], `expected ${what} or a list of ${plural}`),
    v.transform((x): string[] => (Array.isArray(x) ? x : [x])),
  );
}

/**
 * A Host to match: a DNS name, "*." before one (any deeper name, never the name itself: as
 * nginx's and Envoy's), an IPv4 address or an IPv6 one in brackets. No port: the port is
 * ignored when matching (a Host of "a.example.com:8443" matches "a.example.com").
 */
const HOST_PATTERN = /^(\*\.)?[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$|^\[[0-9a-f:.]+\]$/i;
const hostPattern = v.pipe(
  v.string("expected a host name"),
  v.check((h) => !/:\d+$/.test(h) || h.startsWith("["), "expected a host name without a port: the port is ignored when matching"),
  v.regex(HOST_PATTERN, 'expected a host name like "api.example.com", a wildcard like "*.example.com", an IPv4 address or an IPv6 address in brackets'),
  doc({ type: "host name or `*.` wildcard", plural: "host names or `*.` wildcards" }),
);

/** A DNS name a TLS client asks for (RFC 6066 §3), or "*." before one. */
const SERVER_NAME = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;
const serverName = v.pipe(v.string("expected a DNS name"), v.regex(SERVER_NAME, 'expected a DNS name like "a.example.com" (or "*.example.com")'), doc({ type: "DNS name", plural: "DNS names" }));

/** A path in a match or a rewrite: it must be in the normal form requests are matched in. */
const normalPath = (what: string) =>
  v.pipe(
    v.string(`expected ${what} starting with "/"`),
    v.startsWith("/", `expected ${what} starting with "/"`),
    v.check((p) => {
      const n = normalizePath(p);
      return !isRefusal(n) && n === p;
    }, (issue) => {
      const n = normalizePath(issue.input as string);
      return isRefusal(n)
        ? `expected ${what} that a request could carry; this one would be refused: ${n.refused}`
        : `expected ${what} in normal form, as requests are matched after normalization (RFC 3986 §6.2.2): write "${n}"`;
    }),
    v.regex(/^[^?#\s]*$/, `expected ${what} without "?", "#" or spaces`),
  );

const regex = (what: string) =>
  v.pipe(
    v.string(`expected ${what}`),
    v.check((p) => typeof compileRegex(p) !== "string", (issue) => `expected ${compileRegex(issue.input as string) as string}`),
    doc({ type: "regular expression (RE2 syntax)" }),
  );

/** RFC 9110 §5.6.2 token: field names and methods. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Methods are case-sensitive (RFC 9110 §9.1): "get" would never match a GET, so it is refused. */
const STANDARD_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
const method = v.pipe(
  v.string("expected a method"),
  v.regex(TOKEN, "expected a method name (a token, e.g. GET)"),
  v.check((m) => m === m.toUpperCase() || !STANDARD_METHODS.includes(m.toUpperCase()), (issue) => `expected "${(issue.input as string).toUpperCase()}": methods are case-sensitive (RFC 9110 §9.1)`),
  doc({ type: "method", plural: "methods" }),
);

/**
 * Fields the proxy manages itself: hop-by-hop ones are removed anyway (RFC 9110 §7.6.1) and
 * Content-Length frames the message (RFC 9112 §6.2); an operator's rule must not touch them.
 * The same rule as the top-level responseHeaders' (src/config/schema.ts).
 */
const MANAGED = new Set<string>([...HOP_BY_HOP, "content-length"]);
const HEADER_NAME_HINT = "expected a header field name (letters, digits and !#$%&'*+-.^_`|~)";
const headerName = v.pipe(
  v.string(HEADER_NAME_HINT),
  v.regex(TOKEN, HEADER_NAME_HINT),
  v.check((n) => !MANAGED.has(n.toLowerCase()), `expected a header other than ${[...MANAGED].join(", ")}: the proxy manages framing and hop-by-hop fields itself`),
  doc({ type: "header name" }),
);
/** Any header may be matched on, managed ones included. */
const matchHeaderName = v.pipe(v.string(HEADER_NAME_HINT), v.regex(TOKEN, HEADER_NAME_HINT));
/** RFC 9110 §5.5: visible characters, spaces and tabs; never CR, LF or NUL. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const headerValue = v.pipe(v.string("expected a header value string"), v.regex(HEADER_VALUE, "expected a header value without control characters (CR, LF, NUL)"));
const headerTemplate = v.pipe(
  headerValue,
  v.check((t) => headerTemplateProblem(t) === undefined, (issue) => `expected ${headerTemplateProblem(issue.input as string)}`),
);

const cidr = v.pipe(
  v.string('expected a CIDR like "10.0.0.0/8" or an address'),
  v.check((x) => typeof parseCidr(x) !== "string", (issue) => `expected ${parseCidr(issue.input as string) as string}`),
  doc({ type: "CIDR or address", plural: "CIDRs or addresses" }),
);

/** A duration that may be 0 (timeouts.send: no bound). */
const anyDuration = durationSchema;
const Match = v.strictObject({
  host: v.optional(
    v.pipe(oneOrMany(hostPattern, "a host name", "host names"), v.description('The request\'s `Host`, case-insensitive and without its port: an exact name, or `"*.example.com"` for any name below example.com (not example.com itself). One or a list.'), doc({ type: "host name or `*.` wildcard, or a list of them" })),
  ),
  path: v.optional(
    v.pipe(normalPath("a path"), v.description('A path prefix on segment boundaries: `/api` matches `/api`, `/api/` and `/api/x`, never `/apix`; `/api/` matches `/api/` and `/api/x` only. Matched on the normalized path (RFC 3986 §6.2.2: `%41` read as `A`, dot segments removed), which is also the path sent on.'), doc({ type: "path" })),
  ),
  pathExact: v.optional(v.pipe(normalPath("a path"), v.description("The whole path, exactly (after normalization; the query is not part of it)."), doc({ type: "path" }))),
  pathRegex: v.optional(
    v.pipe(regex("a regular expression"), v.description("A regular expression the normalized path must match (anywhere: anchor it with `^` and `$`). RE2 syntax, run in linear time; lookaround and backreferences, which need backtracking, are refused."))),
  method: v.optional(v.pipe(oneOrMany(method, "a method", "methods"), v.description("The request method, or a list; case-sensitive (RFC 9110 §9.1)."), doc({ type: "method or a list of methods" }))),
  headers: v.optional(
    v.pipe(
      v.record(
        matchHeaderName,
        v.union([headerValue, v.boolean(), v.strictObject({ regex: regex("a regular expression") })], 'expected a value, true (present), false (absent) or { regex: "..." }'),
        "expected an object of header names and conditions",
      ),
      v.description('Request header fields: a string is an exact value, `true` present, `false` absent, `{ regex: "..." }` a pattern the value must match (RE2). Several lines of one name are matched joined with ", ".'),
      doc({ type: "object of header names and conditions" }),
    ),
  ),
  query: v.optional(
    v.pipe(
      v.record(v.pipe(v.string(), v.nonEmpty("expected a parameter name")), v.union([v.string(), v.literal(true)], "expected a value or true (present)"), "expected an object of query parameter names and conditions"),
      v.description("Query parameters (as decoded from the query string): a string is an exact value (of any of the parameter's occurrences), `true` present."),
      doc({ type: "object of parameter names and conditions" }),
    ),
  ),
  clientIp: v.optional(v.pipe(oneOrMany(cidr, "a CIDR", "CIDRs"), v.description("The client's address (the peer, or as trustedProxies allow) is in one of these CIDRs."), doc({ type: "CIDR or a list of CIDRs" }))),
  sni: v.optional(
    v.pipe(oneOrMany(serverName, "a DNS name", "DNS names"), v.description('TCP listeners: the server name of the TLS ClientHello (RFC 6066 §3), exact or `"*.example.com"`, read without terminating TLS. A route with `sni` serves TCP listeners only, and may only have a `pool`.'), doc({ type: "DNS name or a list of them" })),
  ),
});

const SplitEntry = v.strictObject({
  pool: v.pipe(poolName, v.description("A pool of the split.")),
  weight: v.pipe(v.number("expected a weight"), v.integer("expected a whole-number weight"), v.minValue(0, "expected a weight from 0 to 1000"), v.maxValue(1000, "expected a weight from 0 to 1000"), v.description("Its share relative to the others; `0` sends it nothing new (clients a cookie pins to it move too).")),
});

const HeaderRulesSchema = (direction: string) =>
  v.pipe(
    v.strictObject({
      set: v.optional(v.pipe(v.record(headerName, headerTemplate, "expected an object of header names and values"), v.description("Fields set, replacing any of the same name."), doc({ type: "object of header names and values" }))),
      add: v.optional(v.pipe(v.record(headerName, headerTemplate, "expected an object of header names and values"), v.description("Fields added beside any of the same name."), doc({ type: "object of header names and values" }))),
      remove: v.optional(v.pipe(v.array(headerName, "expected a list of header names"), v.description("Fields removed."))),
    }),
    v.description(`${direction} header fields changed by this route: \`remove\`, then \`set\`, then \`add\`. Values may use \`{client_ip}\`, \`{host}\` (without port), \`{request_id}\` and \`{route}\`.`),
  );

/** JWS algorithms a jwt route may accept (RFC 7518 §3.1, RFC 8037); "none" is not one. */
export const JWT_ASYMMETRIC = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"] as const;
export const JWT_HMAC = ["HS256", "HS384", "HS512"] as const;
const JWT_ALGORITHMS = [...JWT_ASYMMETRIC, ...JWT_HMAC] as const;

const REDIRECT_STATUSES = [301, 302, 307, 308] as const;

/** The actions; exactly one per route (checked below, naming the route). */
const ACTIONS = ["pool", "split", "redirect", "respond"] as const;
/** Modifiers of a forwarded request: only with pool or split. */
const MODIFIERS = ["splitBy", "rewrite", "requestHeaders", "responseHeaders", "mirror", "retry", "timeouts", "limits", "rateLimit", "allow", "deny", "basicAuth", "forwardAuth", "jwt"] as const;

const RouteObject = v.strictObject({
  name: v.pipe(name("a route name"), v.description("A unique name: in logs, metrics labels, `{route}` and `switchyard route`.")),
  match: v.optional(
    v.pipe(Match, v.description("What the request must be like; every condition given must hold. Absent or `{}`: every request.")),
    {},
  ),
  pool: v.optional(v.pipe(poolName, v.description("Forward to this pool."))),
  split: v.optional(
    v.pipe(
      v.array(SplitEntry, "expected a list of { pool, weight }"),
      v.minLength(1, "expected at least one { pool, weight }"),
      v.check((s) => s.some((e) => e.weight > 0), "expected at least one weight above 0"),
      v.check((s) => new Set(s.map((e) => e.pool)).size === s.length, "expected each pool once in a split"),
      v.description("Forward to one of these pools, chosen by weight per request (canary, blue/green); `splitBy` keeps a client on one side."),
    ),
  ),
  splitBy: v.optional(
    v.pipe(
      v.union(
        [
          v.strictObject({ cookie: v.pipe(v.string("expected a cookie name"), v.regex(TOKEN, "expected a cookie name (letters, digits and !#$%&'*+-.^_`|~)"), v.description("A cookie that names the side: a request carrying it (with a pool of the split of weight above 0) goes there; one without gets a side by weight and the cookie with the answer."), doc({ type: "cookie name" })) }),
          v.strictObject({ key: v.pipe(v.string(`expected ${HASH_KEY_HINT}`), v.regex(HASH_KEY_PATTERN, `expected ${HASH_KEY_HINT}`), v.description('The side is a hash of this key (as `hash.key`: `"header:NAME"`, `"cookie:NAME"`, `"ip"` or `"path"`), so one key always lands on one side while the weights stay; without the key, by weight.'), doc({ type: '`"header:NAME"`, `"cookie:NAME"`, `"ip"` or `"path"`' })) }),
        ],
        "expected { cookie: NAME } or { key: KEY }",
      ),
      v.description("With `split`: keep one client on one side, by a cookie or by a hash of a key."),
      doc({ type: "`{ cookie }` or `{ key }`", defaultText: "none: each request by weight" }),
    ),
  ),
  redirect: v.optional(
    v.pipe(
      v.strictObject({
        to: v.pipe(
          v.string("expected a URL or a path"),
          v.nonEmpty("expected a URL or a path"),
          v.regex(HEADER_VALUE, "expected a URL without control characters"),
          v.check((t) => typeof parseTemplate(t, REDIRECT_PLACEHOLDERS) !== "string", (issue) => `expected ${parseTemplate(issue.input as string, REDIRECT_PLACEHOLDERS) as string}`),
          v.description("The `Location`: a URL or a path, with `{host}` (the request's, without port), `{path}` (normalized) and `{query}` (`?` and the query, or nothing), e.g. `\"https://{host}{path}{query}\"`."),
          doc({ type: "URL with placeholders" }),
        ),
        status: v.optional(
          v.pipe(v.picklist(REDIRECT_STATUSES, "expected 301, 302, 307 or 308"), v.description("`301`/`308` permanent, `302`/`307` temporary; `307`/`308` keep the method and body (RFC 9110 §15.4).")),
          302,
        ),
      }),
      v.description("Answer with a redirect instead of forwarding."),
    ),
  ),
  respond: v.optional(
    v.pipe(
      v.strictObject({
        status: v.pipe(statusCode, v.minValue(200, "expected a final status from 200 to 599"), v.description("The status.")),
        body: v.optional(v.pipe(v.string("expected a body string"), v.description("The body."), doc({ defaultText: "empty" })), ""),
        headers: v.optional(v.pipe(v.record(headerName, headerValue, "expected an object of header names and values"), v.description("Header fields of the answer; `content-type` is `text/plain; charset=utf-8` when a body is given without one."), doc({ type: "object of header names and values" })), {}),
      }),
      v.description("Answer with this fixed response instead of forwarding (a maintenance page, `/robots.txt`)."),
    ),
  ),
  rewrite: v.optional(
    v.pipe(
      v.union(
        [
          v.strictObject({
            stripPrefix: v.optional(v.pipe(normalPath("a path prefix"), v.description("Removed from the front of the path, on a segment boundary (`/v1` turns `/v1/x` into `/x` and `/v1` into `/`); a path without it is sent as it is."))),
            addPrefix: v.optional(v.pipe(normalPath("a path prefix"), v.description("Put before the path (after `stripPrefix`)."))),
          }),
          v.strictObject({
            regex: v.pipe(regex("a regular expression"), v.description("A pattern (RE2) of the normalized path; its first match is replaced by `replace`. A path it does not match is sent as it is.")),
            replace: v.pipe(v.string("expected a replacement path"), v.startsWith("/", 'expected a replacement starting with "/"'), v.description("The replacement, with `$1`, `$2` ... for the groups; the result is normalized again.")),
          }),
        ],
        "expected { stripPrefix, addPrefix } or { regex, replace }",
      ),
      v.check((r) => !("regex" in r) || highestGroupRef(r.replace) <= (compileRegex(r.regex) as { groups: number }).groups, "expected rewrite.replace to refer only to groups rewrite.regex has"),
      v.check((r) => "regex" in r || r.stripPrefix !== undefined || r.addPrefix !== undefined, "expected stripPrefix, addPrefix, or regex and replace"),
      v.description("Change the path sent to the backend (the query is kept)."),
      doc({ type: "`{ stripPrefix, addPrefix }` or `{ regex, replace }`" }),
    ),
  ),
  rateLimit: v.optional(RouteRateLimitSchema),
  tracing: v.optional(RouteTracingSchema),
  requestHeaders: v.optional(HeaderRulesSchema("Request")),
  responseHeaders: v.optional(HeaderRulesSchema("Response")),
  mirror: v.optional(
    v.pipe(
      v.strictObject({
        pool: v.pipe(poolName, v.description("The pool that gets the copies.")),
        percent: v.optional(v.pipe(v.number("expected a percentage"), v.minValue(0, "expected 0 to 100"), v.maxValue(100, "expected 0 to 100"), v.description("The share of requests copied.")), 100),
      }),
      v.description("Send a copy of requests to another pool and throw its answer away; it never delays or fails the client's request."),
    ),
  ),
  retry: v.optional(
    v.pipe(
      v.strictObject({
        attempts: v.optional(v.pipe(v.number("expected a whole number of tries, at least 1"), v.integer("expected a whole number of tries, at least 1"), v.minValue(1, "expected a whole number of tries, at least 1"), v.description("As `retry.attempts`."))),
        perTryTimeout: v.optional(v.pipe(duration, v.description("As `retry.perTryTimeout`."))),
        timeout: v.optional(v.pipe(duration, v.description("As `retry.timeout`."))),
        onStatus: v.optional(v.pipe(v.array(statusCode, "expected a list of status codes"), v.description("As `retry.onStatus`."))),
        nonIdempotent: v.optional(v.pipe(v.boolean("expected true or false"), v.description("As `retry.nonIdempotent`."))),
        onGrpcStatus: v.optional(v.pipe(grpcStatusList, v.description("As `retry.onGrpcStatus`."))),
        bufferBody: v.optional(v.pipe(size, v.description("As `retry.bufferBody`; also the most of a body a `mirror` copies."))),
      }),
      v.description("This route's own retry settings, each replacing its pool's."),
      doc({ defaultText: "the pool's" }),
    ),
  ),
  timeouts: v.optional(
    v.pipe(
      v.strictObject({ send: v.optional(v.pipe(anyDuration, v.description("As `timeouts.send` (`0`: no bound)."))) }),
      v.description("This route's own timeouts, replacing its pool's (the tries' own are in `retry`)."),
      doc({ defaultText: "the pool's" }),
    ),
  ),
  allow: v.optional(
    v.pipe(
      v.array(cidr, "expected a list of CIDRs or addresses"),
      v.description('Client addresses this route serves (CIDRs or addresses, IPv4 or IPv6): any other is refused with 403 `SY_FORBIDDEN`, decided from the request\'s head before any other guard (no rate-limit budget or password check is spent on it). Matched against the client\'s address as the request carries it (the peer\'s, or a PROXY protocol header\'s from a trusted proxy), never against `X-Forwarded-For`. `[]` refuses every address.'),
      doc({ type: "list of CIDRs or addresses", defaultText: "every address" }),
    ),
  ),
  deny: v.optional(
    v.pipe(
      v.array(cidr, "expected a list of CIDRs or addresses"),
      v.description("Client addresses refused with 403 `SY_FORBIDDEN`. Deny wins over allow: an address in both lists is refused."),
      doc({ type: "list of CIDRs or addresses", defaultText: "none" }),
    ),
  ),
  basicAuth: v.optional(
    v.pipe(
      v.strictObject({
        usersFile: v.pipe(
          v.string("expected the path of a users file"),
          v.nonEmpty("expected the path of a users file"),
          v.description('An htpasswd file of `name:hash` lines, the hash bcrypt (`$2y$`, `$2b$`, `$2a$`) or argon2 (`$argon2id$`); `#` starts a comment line. `switchyard hash-password NAME` writes a line. Read at load and on every reload; a line Switchyard cannot read is a config problem naming the file and line.'),
          doc({ type: "path" }),
        ),
        realm: v.optional(
          v.pipe(
            v.string("expected a realm"),
            v.regex(/^[\x20-\x7e]*$/, "expected a realm of printable ASCII"),
            v.check((r) => !r.includes('"') && !r.includes("\\"), 'expected a realm without " or \\'),
            v.description("The protection space named in `WWW-Authenticate` (RFC 7617 §2)."),
          ),
          "switchyard",
        ),
        failures: v.optional(
          v.pipe(
            v.strictObject({
              rate: v.pipe(
                v.string(`expected a rate: ${RATE_HINT}`),
                v.check((r) => parseRate(r) !== undefined, `expected a rate: ${RATE_HINT}`),
                v.description('The steady rate of failed attempts one client address may make: `"10/m"`.'),
                doc({ type: '`"N/s"`, `"N/m"` or `"N/h"`' }),
              ),
              burst: v.optional(
                v.pipe(
                  v.number("expected a whole number of attempts, at least 1"), v.integer("expected a whole number of attempts, at least 1"), v.minValue(1, "expected a whole number of attempts, at least 1"),
                  v.description("Failed attempts allowed at once, after a quiet spell."),
                  doc({ defaultText: "the rate's N" }),
                ),
              ),
            }),
            v.description("Limit failed attempts per client address (GCRA): past it, the client gets `429` (`SY_RATE_LIMITED`) with `Retry-After`, and its password is not even checked, so guessing costs the guesser time and costs no hashing here. Successes do not count."),
            doc({ defaultText: "none: no limit" }),
          ),
        ),
      }),
      v.description('Ask for a name and password (HTTP Basic, RFC 7617): a request without valid credentials gets 401 `SY_AUTH_REQUIRED` with `WWW-Authenticate: Basic realm="...", charset="UTF-8"`. Checked with `Bun.password.verify` off the event loop; a success is remembered for a minute (by a SHA-256 of the credentials, at most 1024 of them, forgotten on reload), so a client costs one hash a minute. Use it over TLS only: the password travels in clear otherwise.'),
    ),
  ),
  forwardAuth: v.optional(
    v.pipe(
      v.strictObject({
        url: v.pipe(
          v.string("expected an http:// or https:// URL"),
          v.check((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), "expected an http:// or https:// URL"),
          v.description("The auth service, asked with a GET before each request."),
          doc({ type: "URL" }),
        ),
        copyHeaders: v.optional(
          v.pipe(
            v.array(headerName, "expected a list of header names"),
            v.transform((l) => l.map((n) => n.toLowerCase())),
            v.description("Fields of the service's 2xx answer set on the request (e.g. `x-user`); one the answer lacks is removed from the request, so a client cannot pass its own."),
          ),
          [],
        ),
        headers: v.optional(
          v.pipe(
            v.array(matchHeaderName, "expected a list of header names"),
            v.transform((l) => l.map((n) => n.toLowerCase())),
            v.description("Fields of the request sent to the service, beside `X-Forwarded-Method`, `-Uri`, `-Host`, `-Proto`, `-For` and `X-Request-Id`, which always are."),
            doc({ defaultText: "`[authorization, cookie]`" }),
          ),
          ["authorization", "cookie"],
        ),
        timeout: v.optional(v.pipe(duration, v.description("How long the service has to answer; then 503 `SY_AUTH_UNAVAILABLE`.")), 5000),
      }),
      v.description("Ask an auth service first (nginx `auth_request`, Traefik ForwardAuth): a 2xx lets the request through; any other answer goes to the client as it is (its body up to 64 KiB); no answer, an error or a longer body is 503 `SY_AUTH_UNAVAILABLE`, never a pass."),
    ),
  ),
  jwt: v.optional(
    v.pipe(
      v.strictObject({
        jwks: v.optional(
          v.pipe(
            v.string("expected an http:// or https:// URL"),
            v.check((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), "expected an http:// or https:// URL"),
            v.description("The issuer's key set (JWKS, RFC 7517 §5): fetched on first use, kept 10 minutes (across reloads), fetched again for a token naming an unknown `kid` at most every 30 s. Unreachable: 503 `SY_AUTH_UNAVAILABLE`."),
            doc({ type: "URL" }),
          ),
        ),
        secret: v.optional(
          v.pipe(
            v.string("expected a secret"),
            v.minLength(32, "expected a secret of at least 32 bytes (RFC 7518 §3.2: an HMAC key at least as long as its hash)"),
            v.description("An HMAC secret (HS256/384/512), instead of `jwks`. It shows in `switchyard check` and the admin `/config`: prefer `secretFile`."),
          ),
        ),
        secretFile: v.optional(
          v.pipe(
            v.string("expected the path of a file"),
            v.nonEmpty("expected the path of a file"),
            v.description("A file holding the HMAC secret (its first line, at least 32 bytes), instead of `jwks` or `secret`; read at load and on every reload."),
            doc({ type: "path" }),
          ),
        ),
        issuer: v.pipe(oneOrMany(v.pipe(v.string("expected an issuer"), v.nonEmpty("expected an issuer")), "an issuer", "issuers"), v.description("The `iss` the token must carry (one or a list)."), doc({ type: "string or list of strings" })),
        audience: v.pipe(oneOrMany(v.pipe(v.string("expected an audience"), v.nonEmpty("expected an audience")), "an audience", "audiences"), v.description("An `aud` the token must carry (one or a list)."), doc({ type: "string or list of strings" })),
        algorithms: v.optional(
          v.pipe(
            v.array(v.picklist(JWT_ALGORITHMS, `expected one of ${JWT_ALGORITHMS.join(", ")} ("none" never passes)`), "expected a list of algorithms"),
            v.minLength(1, "expected at least one algorithm"),
            v.description("The signature algorithms accepted (`alg`); `none` never is."),
            doc({ defaultText: "with `jwks` every asymmetric one (RS*, PS*, ES*, EdDSA); with `secret` HS256, HS384, HS512" }),
          ),
        ),
        leeway: v.optional(v.pipe(anyDuration, v.description("Clock skew allowed on `exp` and `nbf`.")), 30_000),
        claimsToHeaders: v.optional(
          v.pipe(
            v.record(v.pipe(v.string(), v.nonEmpty("expected a claim name")), headerName, "expected an object of claim names and header names"),
            v.description("Claims copied into request fields, e.g. `{ sub: x-user }`: strings as they are, others as JSON, control characters dropped, non-ASCII percent-encoded. A field named here that the client sent is removed first."),
            doc({ type: "object of claim names and header names" }),
          ),
          {},
        ),
      }),
      v.check((j) => [j.jwks, j.secret, j.secretFile].filter((x) => x !== undefined).length === 1, "expected exactly one of jwks, secret and secretFile"),
      v.check((j) => j.algorithms === undefined || j.algorithms.every((a) => a.startsWith("HS") === (j.jwks === undefined)), "expected HS* algorithms with secret or secretFile only, and asymmetric ones with jwks only"),
      v.description('Require a bearer token (RFC 6750) signed by the issuer: checked with `jose` for signature, algorithm, `iss`, `aud`, `exp` (required) and `nbf`. No token or a bad one: 401 `SY_AUTH_REQUIRED` with `WWW-Authenticate: Bearer` (`error="invalid_token"` when one was sent).'),
    ),
  ),
  limits: v.optional(
    v.pipe(
      v.strictObject({
        maxBodySize: v.optional(v.pipe(size, v.description("As `limits.maxBodySize`."))),
        maxInFlightPerClient: v.optional(
          v.pipe(
            v.number("expected a whole number of requests, at least 1"), v.integer("expected a whole number of requests, at least 1"), v.minValue(1, "expected a whole number of requests, at least 1"),
            v.description("Requests one client address may have in flight on this route at once (from routing to the end of the answer); one more gets `429`. The address is the real client's (PROXY protocol's when the listener takes it). With `workers`, the workers count together: the bound is the balancer's."),
            doc({ defaultText: "no bound" }),
          ),
        ),
      }),
      v.description("This route's own limits."),
      doc({ defaultText: "the top-level ones" }),
    ),
  ),
});

type RouteShape = v.InferOutput<typeof RouteObject>;
const routeLabel = (r: { name: string }) => `route "${r.name}"`;
const actionsOf = (r: RouteShape) => ACTIONS.filter((a) => r[a] !== undefined);

/** An issue at `key` of the route (or at the route itself), so that the message is placed where the fix goes. */
function issueAt(r: RouteShape, keys: readonly string[]): v.IssuePathItem[] {
  const path: v.IssuePathItem[] = [];
  let input: unknown = r;
  for (const key of keys) {
    const value = (input as Record<string, unknown>)[key];
    path.push({ type: "object", origin: "value", input: input as Record<string, unknown>, key, value });
    input = value;
  }
  return path;
}

/** The checks between fields, each naming the route. */
function routeChecks(r: RouteShape): { message: string; keys: string[] }[] {
  const out: { message: string; keys: string[] }[] = [];
  const found = actionsOf(r);
  if (found.length !== 1) {
    out.push({ keys: [], message: `expected ${routeLabel(r)} to have exactly one of pool, split, redirect, respond; it has ${found.length === 0 ? "none" : found.join(" and ")}` });
  }
  const forwards = r.pool !== undefined || r.split !== undefined;
  for (const m of MODIFIERS) {
    if (r[m] !== undefined && !forwards && found.length > 0) out.push({ keys: [m], message: `expected ${m} only on a route that forwards (pool or split); ${routeLabel(r)} has ${found.join(" and ")}` });
  }
  if (r.splitBy !== undefined && r.split === undefined && r.pool !== undefined) out.push({ keys: ["splitBy"], message: `expected splitBy only with split; ${routeLabel(r)} has pool` });
  if (r.match.sni !== undefined) {
    const extra = [...Object.keys(r).filter((k) => k !== "name" && k !== "match" && k !== "pool" && (r as Record<string, unknown>)[k] !== undefined), ...Object.keys(r.match).filter((k) => k !== "sni").map((k) => `match.${k}`)];
    if (r.pool === undefined || extra.length > 0) {
      out.push({ keys: ["match", "sni"], message: `expected ${routeLabel(r)}, which matches on sni and so serves TCP listeners only, to have only match.sni and pool${extra.length > 0 ? `; it also has ${extra.join(", ")}` : ""}` });
    }
  }
  return out;
}

export const RouteSchema = v.pipe(
  RouteObject,
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    for (const { message, keys } of routeChecks(dataset.value)) addIssue({ message, path: keys.length > 0 ? (issueAt(dataset.value, keys) as [v.IssuePathItem, ...v.IssuePathItem[]]) : undefined });
  }),
);

export type RouteInput = v.InferInput<typeof RouteSchema>;
export type RouteConfig = v.InferOutput<typeof RouteSchema>;

/** The pools a route sends requests or copies to. */
export function poolsOf(route: RouteConfig): string[] {
  const pools: string[] = [];
  if (route.pool !== undefined) pools.push(route.pool);
  for (const s of route.split ?? []) pools.push(s.pool);
  if (route.mirror !== undefined) pools.push(route.mirror.pool);
  return pools;
}

/**
 * What makes a set of routes unusable, each naming the route and field: a pool that does not
 * exist, a name used twice.
 */
export function routeProblems(routes: readonly RouteConfig[], poolNames: Iterable<string>): string[] {
  const pools = new Set(poolNames);
  const problems: string[] = [];
  const seen = new Map<string, number>();
  routes.forEach((r, i) => {
    const first = seen.get(r.name);
    if (first !== undefined) problems.push(`routes[${i}].name: got "${r.name}", expected a name no other route has (routes[${first}] has it)`);
    else seen.set(r.name, i);
    const known = `one of the pools (${[...pools].join(", ") || "none defined"})`;
    if (r.pool !== undefined && !pools.has(r.pool)) problems.push(`routes[${i}].pool: got "${r.pool}", expected ${known}`);
    r.split?.forEach((s, j) => {
      if (!pools.has(s.pool)) problems.push(`routes[${i}].split[${j}].pool: got "${s.pool}", expected ${known}`);
    });
    if (r.mirror !== undefined && !pools.has(r.mirror.pool)) problems.push(`routes[${i}].mirror.pool: got "${r.mirror.pool}", expected ${known}`);
    if (r.jwt?.secretFile !== undefined) {
      const problem = readSecretFile(r.jwt.secretFile).problem;
      if (problem !== undefined) problems.push(`routes[${i}].jwt.secretFile: ${problem}`);
    }
    if (r.basicAuth !== undefined) {
      for (const p of readUsersFile(r.basicAuth.usersFile).problems) problems.push(`routes[${i}].basicAuth.usersFile: ${p}`);
    }
    if (r.mirror !== undefined && (r.mirror.pool === r.pool || r.split?.some((s) => s.pool === r.mirror!.pool))) {
      problems.push(`routes[${i}].mirror.pool: got "${r.mirror.pool}", expected a pool other than the one the route forwards to`);
    }
  });
  return problems;
}

/**
 * What `check` warns about: a route that an earlier one takes every request of (it can never
 * match), and a pool that no route (or mirror, or `alsoUsed`: e.g. a TCP listener's pool) uses.
 *
 * Shadowing is claimed only where it is provable from the match alone: the earlier route has no
 * conditions but host, path and method, and each of those is a superset of the later route's
 * (hosts covered name by name or by a wildcard, a path prefix the later prefix or exact path
 * lies under, methods including the later's). Anything else (headers, regex, query, client
 * address) could hold for some requests and not others, so it is never claimed.
 *
 * Shadowing is judged within the list given: where listeners serve different subsets of the
 * routes, call it once per listener with that listener's routes (a catch-all that only one
 * listener serves hides nothing from the others).
 */
export function routeWarnings(
  routes: readonly RouteConfig[],
  poolNames: Iterable<string>,
  alsoUsed: Iterable<string> = [],
  /** A route's place in the config's list, when `routes` is one listener's share of it. */
  indexOf: (r: RouteConfig, i: number) => number = (_r, i) => i,
): string[] {
  const warnings: string[] = [];
  for (let j = 0; j < routes.length; j++) {
    for (let i = 0; i < j; i++) {
      if (shadows(routes[i]!, routes[j]!)) {
        warnings.push(`routes[${indexOf(routes[j]!, j)}] (${routes[j]!.name}) never matches: routes[${indexOf(routes[i]!, i)}] (${routes[i]!.name}) comes first and takes every request it would`);
        break;
      }
    }
  }
  routes.forEach((r, i) => {
    // "0.0.0.0/0" is every IPv4 address and no IPv6 one: an IPv6 client would pass a deny-all.
    if (r.deny?.includes("0.0.0.0/0") && !r.deny.includes("::/0")) {
      warnings.push(`routes[${indexOf(r, i)}].deny: "0.0.0.0/0" denies every IPv4 client but no IPv6 one; add "::/0" to deny every client`);
    }
  });
  const used = new Set([...routes.flatMap(poolsOf), ...alsoUsed]);
  for (const p of poolNames) if (!used.has(p)) warnings.push(`pools.${p}: no route, mirror or listener uses this pool`);
  return warnings;
}

function shadows(a: RouteConfig, b: RouteConfig): boolean {
  const ma = a.match;
  const mb = b.match;
  // An sni route and an HTTP one serve different listeners.
  if ((ma.sni === undefined) !== (mb.sni === undefined)) return false;
  if (ma.sni !== undefined) return mb.sni!.every((n) => ma.sni!.some((p) => hostCovers(p.toLowerCase(), n.toLowerCase())));
  const aKeys = Object.keys(ma).filter((k) => (ma as Record<string, unknown>)[k] !== undefined);
  if (!aKeys.every((k) => k === "host" || k === "path" || k === "method")) return false;
  if (ma.host !== undefined && (mb.host === undefined || !mb.host.every((h) => ma.host!.some((p) => hostCovers(p.toLowerCase(), h.toLowerCase()))))) return false;
  if (ma.method !== undefined && (mb.method === undefined || !mb.method.every((m) => ma.method!.includes(m)))) return false;
  if (ma.path !== undefined) {
    const under = (p: string | undefined, exact: boolean) => p !== undefined && pathUnder(ma.path!, p, exact);
    if (!under(mb.path, false) && !under(mb.pathExact, true)) return false;
  }
  return true;
}

/** Every host `h` stands for is matched by pattern `p` (exact or "*." wildcard). */
function hostCovers(p: string, h: string): boolean {
  const strip = (x: string) => (x.endsWith(".") ? x.slice(0, -1) : x);
  p = strip(p);
  h = strip(h);
  if (p === h) return true;
  return p.startsWith("*.") && h.endsWith(p.slice(1)) && h.length > p.length - 1;
}

/** Every path that prefix (or exact path) `q` matches is matched by prefix `p`. */
function pathUnder(p: string, q: string, exact: boolean): boolean {
  if (p === "/") return true;
  if (p.endsWith("/")) return q.startsWith(p) && (exact || q.length >= p.length);
  const qBase = !exact && q.endsWith("/") ? q.slice(0, -1) : q;
  return qBase === p || qBase.startsWith(p + "/") || (q.startsWith(p + "/"));
}
