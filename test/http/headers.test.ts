import { describe, expect, test } from "bun:test";
import { compileResponseHeaderRules, stripHopByHop, toClientHeaders, toUpstreamHeaders } from "../../src/http/headers.ts";
import { cidrMatcher, parseIp } from "../../src/net/cidr.ts";
import { FieldList } from "../../src/http/fields.ts";

const info = { clientIp: "198.51.100.9", proto: "http", requestId: "rid-1" };
const untrusted = { trusted: cidrMatcher([]), preserveHost: true };

describe("header transforms", () => {
  test("removes hop-by-hop fields and those named in Connection, case-insensitively", () => {
    const h = new Headers({ Connection: "X-A, x-b ,keep-alive", "X-A": "1", "X-B": "2", "Keep-Alive": "t=5", TE: "trailers", Upgrade: "h2c", "Transfer-Encoding": "chunked", "X-C": "3" });
    stripHopByHop(h);
    expect([...h.keys()]).toEqual(["x-c"]);
  });

  test("Host named in Connection is kept: it is end-to-end and required (RFC 9112 §3.2)", () => {
    const h = new Headers({ Host: "a.example", Connection: "Host, X-A", "X-A": "1" });
    stripHopByHop(h);
    expect(h.get("host")).toBe("a.example");
    expect(h.get("x-a")).toBeNull();
    const up = new Headers({ host: "a.example", connection: "host" });
    expect(toUpstreamHeaders(up, info, untrusted, "10.0.0.1:80")).toBe(false);
    expect(up.get("host")).toBe("a.example");
  });

  test("upstream: X-Real-IP from an untrusted peer is replaced by the peer's address", () => {
    const spoofed = new Headers({ host: "a.example", "x-real-ip": "1.2.3.4" });
    toUpstreamHeaders(spoofed, info, untrusted, "x");
    expect(spoofed.get("x-real-ip")).toBe("198.51.100.9");
    const none = new Headers({ host: "a.example" });
    toUpstreamHeaders(none, info, untrusted, "x");
    expect(none.get("x-real-ip")).toBe("198.51.100.9");
  });

  test("upstream: X-Real-IP from a trusted peer is kept, and set from the peer when absent", () => {
    const trusted = { trusted: cidrMatcher(["198.51.100.0/24"]), preserveHost: true };
    const kept = new Headers({ host: "a.example", "x-real-ip": "1.2.3.4" });
    toUpstreamHeaders(kept, info, trusted, "x");
    expect(kept.get("x-real-ip")).toBe("1.2.3.4");
    const none = new Headers({ host: "a.example" });
    toUpstreamHeaders(none, info, trusted, "x");
    expect(none.get("x-real-ip")).toBe("198.51.100.9");
  });

  test("upstream: X-Forwarded-* set, untrusted values replaced, Via and request id added", () => {
    const h = new Headers({ host: "a.example", "x-forwarded-for": "1.2.3.4", "x-forwarded-host": "evil", forwarded: "for=1.2.3.4" });
    toUpstreamHeaders(h, info, untrusted, "10.0.0.1:80");
    expect(h.get("x-forwarded-for")).toBe("198.51.100.9");
    expect(h.get("x-forwarded-host")).toBe("a.example");
    expect(h.get("x-forwarded-proto")).toBe("http");
    expect(h.get("forwarded")).toBeNull();
    expect(h.get("via")).toBe("1.1 switchyard");
    expect(h.get("x-request-id")).toBe("rid-1");
    expect(h.get("host")).toBe("a.example");
  });

  test("upstream: from a trusted peer, X-Forwarded-For is appended to and the rest kept", () => {
    const h = new Headers({ host: "a.example", "x-forwarded-for": "1.2.3.4", "x-forwarded-proto": "https", "x-forwarded-host": "front.example" });
    toUpstreamHeaders(h, info, { trusted: cidrMatcher(["198.51.100.0/24"]), preserveHost: true }, "x");
    expect(h.get("x-forwarded-for")).toBe("1.2.3.4, 198.51.100.9");
    expect(h.get("x-forwarded-proto")).toBe("https");
    expect(h.get("x-forwarded-host")).toBe("front.example");
  });

  test("upstream: Host rewritten when preserveHost is false, or when the client sent none", () => {
    const h = new Headers({ host: "a.example" });
    toUpstreamHeaders(h, info, { ...untrusted, preserveHost: false }, "10.0.0.1:8080");
    expect(h.get("host")).toBe("10.0.0.1:8080");
    const none = new Headers();
    toUpstreamHeaders(none, info, untrusted, "10.0.0.1:8080");
    expect(none.get("host")).toBe("10.0.0.1:8080");
  });

  test("Via names the version each message came in (RFC 9110 §7.6.3): 1.0, 1.1 or 2", () => {
    const up = (version?: "1.0" | "2") => {
      const h = new Headers({ host: "a.example", via: "1.1 edge" });
      toUpstreamHeaders(h, { ...info, ...(version !== undefined ? { version } : {}) }, untrusted, "x");
      return h.get("via");
    };
    expect([up(), up("1.0"), up("2")]).toEqual(["1.1 edge, 1.1 switchyard", "1.1 edge, 1.0 switchyard", "1.1 edge, 2 switchyard"]);
    const down = (version?: "1.0" | "2") => {
      const h = new Headers();
      toClientHeaders(h, "rid", undefined, version);
      return h.get("via");
    };
    expect([down(), down("1.0"), down("2")]).toEqual(["1.1 switchyard", "1.0 switchyard", "2 switchyard"]);
  });

  test("client: hop-by-hop removed, Via appended, Set-Cookie kept separate", () => {
    const h = new Headers([["connection", "x-internal"], ["x-internal", "1"], ["via", "1.1 backend"], ["set-cookie", "a=1"], ["set-cookie", "b=2"]]);
    toClientHeaders(h, "rid-2");
    expect(h.get("x-internal")).toBeNull();
    expect(h.get("via")).toBe("1.1 backend, 1.1 switchyard");
    expect(h.getSetCookie()).toEqual(["a=1", "b=2"]);
    expect(h.get("x-request-id")).toBe("rid-2");
  });
});

describe("response header rules", () => {
  const rules = compileResponseHeaderRules({ remove: ["Server", "X-Powered-By", "server"], set: { "X-Frame-Options": "DENY", Server: "switchyard" } });

  test("compiled once: names lower-cased, duplicates folded", () => {
    expect(rules.remove).toEqual(["server", "x-powered-by"]);
    expect(rules.set).toEqual([["x-frame-options", "DENY"], ["server", "switchyard"]]);
  });

  test("remove and set apply to the backend's headers, case-insensitively", () => {
    const h = new Headers({ Server: "Apache/2.4", "X-Powered-By": "PHP/8", "X-Frame-Options": "SAMEORIGIN", "Content-Type": "text/plain" });
    toClientHeaders(h, "rid", { responseHeaders: rules });
    expect(h.get("server")).toBe("switchyard");
    expect(h.get("x-powered-by")).toBeNull();
    expect(h.get("x-frame-options")).toBe("DENY");
    expect(h.get("content-type")).toBe("text/plain");
  });

  test("rules run last: they may remove what the proxy adds", () => {
    const h = new Headers();
    toClientHeaders(h, "rid", { responseHeaders: compileResponseHeaderRules({ remove: ["via"], set: { "x-request-id": "fixed" } }) });
    expect(h.get("via")).toBeNull();
    expect(h.get("x-request-id")).toBe("fixed");
  });

  test("the same rules on the socket engine's FieldList, names matched whatever their case", () => {
    const f = new FieldList(["Server", "Apache", "X-Powered-By", "PHP", "Connection", "X-Internal, Host", "X-Internal", "1", "Content-Type", "text/plain"]);
    toClientHeaders(f, "rid", { responseHeaders: rules });
    expect(f.get("server")).toBe("switchyard");
    expect(f.has("x-powered-by")).toBe(false);
    expect(f.has("x-internal")).toBe(false);
    expect(f.get("content-type")).toBe("text/plain");
    const up = new FieldList(["Host", "a.example", "Connection", "Host", "X-Real-IP", "1.2.3.4"]);
    toUpstreamHeaders(up, info, untrusted, "x");
    expect(up.get("host")).toBe("a.example");
    expect(up.get("x-real-ip")).toBe("198.51.100.9");
  });

  test("no rules: the headers are left as the backend sent them", () => {
    const h = new Headers({ server: "nginx" });
    toClientHeaders(h, "rid", { responseHeaders: compileResponseHeaderRules({ remove: [], set: {} }) });
    expect(h.get("server")).toBe("nginx");
  });
});

describe("CIDR matching", () => {
  test("IPv4, IPv6, IPv4-mapped and bare addresses", () => {
    const m = cidrMatcher(["10.0.0.0/8", "192.168.1.7", "::1/128", "2001:db8::/32"]);
    expect(m("10.200.3.4")).toBe(true);
    expect(m("11.0.0.1")).toBe(false);
    expect(m("192.168.1.7")).toBe(true);
    expect(m("192.168.1.8")).toBe(false);
    expect(m("::1")).toBe(true);
    expect(m("::ffff:10.1.1.1")).toBe(true);
    expect(m("2001:db8:ffff::1")).toBe(true);
    expect(m("2001:db9::1")).toBe(false);
    expect(m("not-an-ip")).toBe(false);
  });
  test("parseIp rejects malformed addresses", () => {
    for (const bad of ["1.2.3", "256.1.1.1", "1::2::3", "12345::", "::g"]) expect(parseIp(bad)).toBeUndefined();
    expect(parseIp("::")).toBe(0n);
  });
  test("bad CIDRs throw", () => {
    expect(() => cidrMatcher(["10.0.0.0/33"])).toThrow();
    expect(() => cidrMatcher(["nope/8"])).toThrow();
  });
});
