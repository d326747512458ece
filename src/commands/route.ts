/**
 * `switchyard route --config FILE METHOD URL [-H 'name: value']...`: which route takes a
 * request, and why each earlier one did not; the pool, or the redirect or fixed answer; the
 * target and the header fields as the backend would get them. It runs the same route table and
 * header rules the listeners run (src/route/, src/http/headers.ts), on nothing but the config.
 */
import { parseArgs } from "node:util";
import { ConfigError, loadConfigFile } from "../config/load.ts";
import type { Config, ListenerConfig } from "../config/schema.ts";
import { RouteTable } from "../route/table.ts";
import { routesServed } from "../config/expand.ts";
import { FieldList } from "../http/fields.ts";
import { toUpstreamHeaders } from "../http/headers.ts";
import { cidrMatcher } from "../net/cidr.ts";

export const ROUTE_HELP = `Usage: switchyard route --config FILE [--listener NAME] [--client-ip IP] METHOD URL [-H 'name: value']...

Shows which route takes the request, and for each earlier route why it did not match; then
the pool it goes to (or the redirect or fixed answer), and the target and header fields as
the backend would get them. URL is http(s)://host[:port]/path?query, or a path with the Host
given by -H. Nothing is sent anywhere.
  --listener NAME   the HTTP listener whose routes are used (default: the first HTTP listener)
  --client-ip IP    the client's address, for clientIp matches and forwarded fields (default 127.0.0.1)
  -H 'name: value'  a request header field; repeatable`;

export async function runRouteCommand(argv: string[], out: (line: string) => void = console.log, err: (line: string) => void = console.error): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: "string" }, listener: { type: "string" }, "client-ip": { type: "string" },
        header: { type: "string", short: "H", multiple: true }, help: { type: "boolean" },
      },
    });
  } catch (e) {
    err(`switchyard route: ${(e as Error).message}\n\n${ROUTE_HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out(ROUTE_HELP);
    return 0;
  }
  if (typeof values.config !== "string" || positionals.length !== 2) {
    err(`switchyard route: expected --config FILE, a METHOD and a URL\n\n${ROUTE_HELP}`);
    return 2;
  }
  let config: Config;
  try {
    config = await loadConfigFile(values.config);
  } catch (e) {
    if (e instanceof ConfigError) {
      err(e.message);
      return 2;
    }
    throw e;
  }
  const listener = pickListener(config, values.listener);
  if (typeof listener === "string") {
    err(`switchyard route: ${listener}`);
    return 2;
  }
  const [method, url] = positionals as [string, string];
  const headers: string[] = [];
  for (const h of values.header ?? []) {
    const colon = h.indexOf(":");
    if (colon <= 0) {
      err(`switchyard route: -H ${JSON.stringify(h)}: expected 'name: value'`);
      return 2;
    }
    headers.push(h.slice(0, colon).trim(), h.slice(colon + 1).trim());
  }
  let target = url;
  const absolute = /^https?:\/\/([^/?#]*)(.*)$/i.exec(url);
  if (absolute !== null) {
    // RFC 9112 §3.2.2: the authority of an absolute-form target is the Host.
    if (!headers.some((_, i) => i % 2 === 0 && headers[i]!.toLowerCase() === "host")) headers.unshift("Host", absolute[1]!);
    target = absolute[2] === "" ? "/" : absolute[2]!;
  }
  const fields = new FieldList(headers);
  const clientIp = values["client-ip"] ?? "127.0.0.1";
  const table = RouteTable.compile(routesServed(config, listener), (name) => name);
  const { steps, result } = table.explain({ method: method.toUpperCase(), target, host: fields.get("host") ?? undefined, headers: fields, clientIp });
  for (const s of steps) {
    if (!s.matched) out(`  skip   ${s.route}: ${s.why}`);
  }
  if (result === undefined) {
    out(`no route takes ${method.toUpperCase()} ${target}: 404 SY_NO_ROUTE`);
    return 1;
  }
  if ("refused" in result) {
    out(`refused: 400 SY_BAD_PATH: ${result.refused}`);
    return 1;
  }
  const route = result.route;
  out(`route  ${route.name} (routes[${config.routes.findIndex((r) => r.name === route.name)}])`);
  const a = result.action;
  if (a.kind === "redirect") {
    out(`answer ${a.status} redirect to ${a.location}`);
    return 0;
  }
  if (a.kind === "respond") {
    out(`answer ${a.status}, ${Buffer.byteLength(a.body)} bytes${Object.keys(a.headers).length > 0 ? `, ${Object.entries(a.headers).map(([k, v]) => `${k}: ${v}`).join("; ")}` : ""}`);
    return 0;
  }
  out(`pool   ${a.pool}${route.pools.length > 1 ? ` (a split over ${route.pools.join(", ")}; this request's draw)` : ""}`);
  if (result.mirror !== undefined) out(`mirror ${result.mirror}`);
  const rewriteHost = toUpstreamHeaders(fields, { clientIp, proto: listener.tls !== undefined ? "https" : "http", requestId: "(a new request id)" }, { trusted: cidrMatcher(config.trustedProxies), preserveHost: config.preserveHost });
  route.requestHeaders?.apply(fields, { client_ip: clientIp, host: result.host ?? "", request_id: "(a new request id)", route: route.name });
  out(`sent   ${method.toUpperCase()} ${result.target}`);
  fields.forEach((value, name) => out(`       ${name}: ${value}`));
  if (rewriteHost) out("       host: (the chosen backend's host)");
  return 0;
}

function pickListener(config: Config, name: string | undefined): ListenerConfig | string {
  const http = config.listeners.filter((l) => l.mode === "http");
  if (name === undefined) return http[0] ?? "the config has no HTTP listener";
  const l = config.listeners.find((x) => x.name === name);
  if (l === undefined) return `--listener: got "${name}", expected one of ${config.listeners.map((x) => x.name).join(", ")}`;
  if (l.mode !== "http") return `--listener: "${name}" is a TCP listener; routes by SNI are shown by its config, not by a request`;
  return l;
}
