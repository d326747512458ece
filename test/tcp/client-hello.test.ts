/**
 * The ClientHello reader (src/tcp/client-hello.ts): real ClientHellos captured from real TLS
 * clients (node:tls, Bun.connect with tls, openssl s_client) connecting to a plain TCP server
 * that records their bytes, fed whole, re-framed into many records and byte by byte; then
 * hand-built ClientHellos for every way one can be wrong, and the byte cap.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import tls from "node:tls";
import type { Socket } from "bun";
import { CLIENT_HELLO_MAX_BYTES, ClientHelloReader, parseClientHello, type ClientHelloResult } from "../../src/tcp/client-hello.ts";

// ---- capturing real ClientHellos ----------------------------------------------------------

/**
 * Listen on loopback, let `client` connect, and keep what it sends until its first TLS record is
 * whole (every client here sends its ClientHello in one record). The client waits for a
 * ServerHello that never comes; `client` returns how to stop it.
 */
async function capture(client: (port: number) => () => void): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let whole!: () => void;
  const got = new Promise<void>((r) => (whole = r));
  const server = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(_s, chunk) {
        chunks.push(new Uint8Array(chunk));
        const b = Buffer.concat(chunks);
        if (b.length >= 5 && b.length >= 5 + b.readUInt16BE(3)) whole();
      },
    },
  });
  const stop = client(server.port);
  const timer = setTimeout(() => whole(), 10_000);
  try {
    await got;
  } finally {
    clearTimeout(timer);
    stop();
    server.stop(true);
  }
  const b = Buffer.concat(chunks);
  if (b.length < 5) throw new Error("the client sent no TLS record within 10 s");
  return new Uint8Array(b);
}

function nodeClient(servername?: string, ALPNProtocols?: string[]): (port: number) => () => void {
  return (port) => {
    const s = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...(servername !== undefined ? { servername } : {}), ...(ALPNProtocols !== undefined ? { ALPNProtocols } : {}) });
    s.on("error", () => {});
    return () => s.destroy();
  };
}

function bunClient(serverName: string): (port: number) => () => void {
  return (port) => {
    let socket: Socket<undefined> | undefined;
    let stopped = false;
    void Bun.connect({ hostname: "127.0.0.1", port, tls: { serverName, rejectUnauthorized: false }, socket: { data() {} } }).then(
      (s) => (stopped ? s.terminate() : (socket = s)),
      () => {},
    );
    return () => {
      stopped = true;
      socket?.terminate();
    };
  };
}

function opensslClient(...args: string[]): (port: number) => () => void {
  return (port) => {
    const p = Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${port}`, ...args], { stdin: "pipe", stdout: "ignore", stderr: "ignore" });
    return () => p.kill();
  };
}

const captured: Record<string, Uint8Array> = {};
beforeAll(async () => {
  captured.node = await capture(nodeClient("A.Example.COM"));
  captured.nodeDot = await capture(nodeClient("x.example.com."));
  captured.nodeNoSni = await capture(nodeClient());
  captured.bun = await capture(bunClient("b.example.com"));
  captured.openssl12 = await capture(opensslClient("-servername", "c.example.com", "-tls1_2"));
  captured.openssl13 = await capture(opensslClient("-servername", "c.example.com", "-tls1_3"));
  captured.opensslNoSni = await capture(opensslClient("-noservername"));
  captured.nodeAlpn = await capture(nodeClient("a.example.com", ["h2", "http/1.1"]));
  captured.nodeAcme = await capture(nodeClient("a.example.com", ["acme-tls/1"]));
  captured.opensslAlpn = await capture(opensslClient("-servername", "c.example.com", "-alpn", "http/1.1,h2,acme-tls/1"));
}, 30_000);

const real: [string, string, string | undefined][] = [
  ["node:tls", "node", "a.example.com"],
  ["node:tls, a trailing dot", "nodeDot", "x.example.com"],
  ["node:tls to an IP address (no SNI)", "nodeNoSni", undefined],
  ["Bun.connect with tls", "bun", "b.example.com"],
  ["openssl s_client -tls1_2", "openssl12", "c.example.com"],
  ["openssl s_client -tls1_3", "openssl13", "c.example.com"],
  ["openssl s_client -noservername", "opensslNoSni", undefined],
];

/** The handshake message inside a captured single-record ClientHello. */
function messageOf(record: Uint8Array): Uint8Array {
  return record.subarray(5);
}

// ---- building ClientHellos by hand ----------------------------------------------------------

const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];
const cat = (...parts: (Uint8Array | number[])[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const ascii = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));

function extension(type: number, data: Uint8Array | number[]): Uint8Array {
  return cat(u16(type), u16(data.length), data);
}

/** ALPN (RFC 7301 §3.1) offering these protocol names, in order. */
function alpnExtension(...names: string[]): Uint8Array {
  const list = cat(...names.map((n) => cat([n.length], ascii(n))));
  return extension(16, cat(u16(list.length), list));
}

/** server_name (RFC 6066 §3) with these host_name entries (name type 0 unless given as [type, bytes]). */
function sniExtension(...names: (string | Uint8Array | [number, Uint8Array])[]): Uint8Array {
  const entries = names.map((n) => {
    const [type, bytes] = Array.isArray(n) ? n : [0, typeof n === "string" ? ascii(n) : n];
    return cat([type], u16(bytes.length), bytes);
  });
  const list = cat(...entries);
  return extension(0, cat(u16(list.length), list));
}

interface HelloParts {
  version?: number[];
  sessionId?: number;
  suites?: number[];
  compression?: number[];
  /** The extensions; null: no extensions block at all (TLS 1.2 allows it). */
  extensions?: Uint8Array[] | null;
  /** Override the extensions block's length field. */
  extensionsLength?: number;
  /** Bytes after the extensions block. */
  trailing?: number[];
}

function helloBody(p: HelloParts = {}): Uint8Array {
  const suites = p.suites ?? [0x13, 0x01, 0xc0, 0x2f];
  const compression = p.compression ?? [0];
  const fixed = cat(
    p.version ?? [3, 3],
    new Uint8Array(32).fill(7),
    [p.sessionId ?? 32],
    new Uint8Array(Math.min(p.sessionId ?? 32, 32)).fill(9),
    u16(suites.length),
    suites,
    [compression.length],
    compression,
  );
  if (p.extensions === null) return cat(fixed, p.trailing ?? []);
  const exts = cat(...(p.extensions ?? [sniExtension("example.com")]));
  return cat(fixed, u16(p.extensionsLength ?? exts.length), exts, p.trailing ?? []);
}

/** A handshake message: type (1 = ClientHello), uint24 length, body. */
function handshake(body: Uint8Array, type = 1, length = body.length): Uint8Array {
  return cat([type, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff], body);
}

/** Frame `message` into handshake records of at most `size` bytes each. */
function records(message: Uint8Array, size = 1 << 14, version = [3, 1]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let at = 0; at < message.length; at += size) {
    const frag = message.subarray(at, at + size);
    parts.push(cat([22], version, u16(frag.length), frag));
  }
  return cat(...parts);
}

const hello = (p: HelloParts = {}) => records(handshake(helloBody(p)));

function read(bytes: Uint8Array, maxBytes?: number): ClientHelloResult {
  return new ClientHelloReader(maxBytes).push(bytes);
}

function expectInvalid(r: ClientHelloResult, reason: RegExp): void {
  expect(r.state).toBe("invalid");
  if (r.state === "invalid") expect(r.reason).toMatch(reason);
}

// ---- the tests ------------------------------------------------------------------------------

describe("real ClientHellos", () => {
  for (const [label, key, name] of real) {
    test(`${label}: read whole`, () => {
      const bytes = captured[key]!;
      const reader = new ClientHelloReader();
      expect(reader.push(bytes)).toEqual({ state: "done", serverName: name });
      expect(reader.consumed).toBe(bytes.length);
    });

    test(`${label}: byte by byte, need-more until the very last byte`, () => {
      const bytes = captured[key]!;
      const reader = new ClientHelloReader();
      for (let i = 0; i < bytes.length - 1; i++) expect(reader.push(bytes.subarray(i, i + 1)).state).toBe("need-more");
      expect(reader.push(bytes.subarray(bytes.length - 1))).toEqual({ state: "done", serverName: name });
    });

    test(`${label}: re-framed into records of 1, 7 and 100 bytes, pushed in odd pieces`, () => {
      const msg = messageOf(captured[key]!);
      for (const size of [1, 7, 100]) {
        // One-byte records cost 5 header bytes each: give the cap room for that.
        const framed = records(msg, size, [3, 3]);
        const reader = new ClientHelloReader(64 * 1024);
        let r: ClientHelloResult = reader.state;
        for (let at = 0; at < framed.length; at += 13) r = reader.push(framed.subarray(at, at + 13));
        expect(r).toEqual({ state: "done", serverName: name });
        expect(reader.consumed).toBe(framed.length);
      }
    });
  }

  test("bytes after the ClientHello in the same chunk are left alone", () => {
    const bytes = cat(captured.openssl13!, ascii("early data or anything"));
    const reader = new ClientHelloReader();
    expect(reader.push(bytes)).toEqual({ state: "done", serverName: "c.example.com" });
    expect(reader.consumed).toBe(captured.openssl13!.length);
  });

  test("a ClientHello cut short stays need-more (the relay ends it by its timeout or the client's FIN)", () => {
    const bytes = captured.bun!;
    expect(read(bytes.subarray(0, bytes.length - 1)).state).toBe("need-more");
    expect(read(bytes.subarray(0, 3)).state).toBe("need-more");
  });

  test("once final, more bytes change nothing", () => {
    const reader = new ClientHelloReader();
    const done = reader.push(captured.openssl12!);
    expect(reader.push(ascii("GET / HTTP/1.1\r\n"))).toBe(done);
    const notTls = new ClientHelloReader();
    const r = notTls.push(ascii("G"));
    expect(r.state).toBe("not-tls");
    expect(notTls.push(captured.openssl12!)).toBe(r);
  });
});

describe("ALPN (RFC 7301)", () => {
  test("captured from real clients, in their order", () => {
    expect(read(captured.nodeAlpn!)).toEqual({ state: "done", serverName: "a.example.com", alpn: ["h2", "http/1.1"] });
    expect(read(captured.nodeAcme!)).toEqual({ state: "done", serverName: "a.example.com", alpn: ["acme-tls/1"] });
    expect(read(captured.opensslAlpn!)).toEqual({ state: "done", serverName: "c.example.com", alpn: ["http/1.1", "h2", "acme-tls/1"] });
  });

  test("byte by byte and re-framed, the same list", () => {
    const bytes = captured.nodeAlpn!;
    const reader = new ClientHelloReader();
    for (let i = 0; i < bytes.length - 1; i++) expect(reader.push(bytes.subarray(i, i + 1)).state).toBe("need-more");
    expect(reader.push(bytes.subarray(bytes.length - 1))).toEqual({ state: "done", serverName: "a.example.com", alpn: ["h2", "http/1.1"] });
    expect(read(records(messageOf(captured.nodeAcme!), 7, [3, 3]), 64 * 1024)).toEqual({ state: "done", serverName: "a.example.com", alpn: ["acme-tls/1"] });
  });

  test("a client that offers none: no alpn field", () => {
    expect(read(captured.node!)).toEqual({ state: "done", serverName: "a.example.com" });
    expect("alpn" in read(captured.node!)).toBe(false);
  });

  test("hand-built: before or after server_name, without server_name, names read byte for byte", () => {
    expect(read(hello({ extensions: [alpnExtension("acme-tls/1"), sniExtension("a.example.com")] }))).toEqual({ state: "done", serverName: "a.example.com", alpn: ["acme-tls/1"] });
    expect(read(hello({ extensions: [sniExtension("a.example.com"), alpnExtension("h2", "http/1.1")] }))).toEqual({ state: "done", serverName: "a.example.com", alpn: ["h2", "http/1.1"] });
    expect(read(hello({ extensions: [alpnExtension("x")] }))).toEqual({ state: "done", serverName: undefined, alpn: ["x"] });
    // Not case-folded: "ACME-TLS/1" is another protocol.
    expect(read(hello({ extensions: [alpnExtension("ACME-TLS/1")] }))).toEqual({ state: "done", serverName: undefined, alpn: ["ACME-TLS/1"] });
    const long = "p".repeat(255);
    expect(read(hello({ extensions: [alpnExtension(long, "h2")] }))).toEqual({ state: "done", serverName: undefined, alpn: [long, "h2"] });
  });

  test("malformed ALPN extensions are invalid, with a reason", () => {
    const alpn = (data: number[]) => read(hello({ extensions: [sniExtension("a.example.com"), extension(16, data)] }));
    // The list length says more, or fewer, bytes than the extension holds.
    expectInvalid(alpn([0, 9, 2, 0x68, 0x32]), /ALPN list length 9 does not match its extension \(3 bytes\)/);
    expectInvalid(alpn([0, 2, 2, 0x68, 0x32]), /ALPN list length 2 does not match its extension \(3 bytes\)/);
    // protocol_name_list<2..2^16-1>: an empty list.
    expectInvalid(alpn([0, 0]), /ALPN list is empty/);
    expectInvalid(alpn([]), /ALPN extension too short/);
    expectInvalid(alpn([0]), /ALPN extension too short/);
    // "Empty strings MUST NOT be included".
    expectInvalid(alpn([0, 4, 2, 0x68, 0x32, 0]), /empty protocol name/);
    expectInvalid(alpn([0, 2, 0, 0]), /empty protocol name/);
    // A name whose length runs past the list.
    expectInvalid(alpn([0, 3, 5, 0x68, 0x32]), /ALPN protocol name of 5 bytes runs past its list/);
    expectInvalid(alpn([0, 5, 2, 0x68, 0x32, 8, 0x68]), /ALPN protocol name of 8 bytes runs past its list/);
    // Twice (RFC 8446 §4.2).
    expectInvalid(read(hello({ extensions: [alpnExtension("h2"), alpnExtension("h2")] })), /extension 16 appears twice/);
  });
});

describe("not TLS", () => {
  test("plain HTTP is told apart at its first byte", () => {
    const reader = new ClientHelloReader();
    expect(reader.push(ascii("G")).state).toBe("not-tls");
    expect(reader.consumed).toBe(1);
    expect(read(ascii("GET / HTTP/1.1\r\nHost: a\r\n\r\n")).state).toBe("not-tls");
  });

  test("an SSLv2-style hello, and a handshake byte with a non-3.x version", () => {
    expect(read(new Uint8Array([0x80, 0x2e, 0x01, 0x00, 0x02])).state).toBe("not-tls");
    const reader = new ClientHelloReader();
    expect(reader.push(new Uint8Array([22])).state).toBe("need-more");
    expect(reader.push(new Uint8Array([1])).state).toBe("not-tls");
  });

  test("a TLS record of another type (an alert, application data) first", () => {
    expect(read(new Uint8Array([21, 3, 3, 0, 2, 2, 40])).state).toBe("not-tls");
    expect(read(new Uint8Array([23, 3, 3, 0, 1, 0])).state).toBe("not-tls");
  });
});

describe("hand-built ClientHellos", () => {
  test("the builder makes what the reader takes", () => {
    expect(read(hello())).toEqual({ state: "done", serverName: "example.com" });
  });

  test("a TLS 1.2 ClientHello with no extensions block at all has no server name", () => {
    expect(read(hello({ extensions: null }))).toEqual({ state: "done", serverName: undefined });
  });

  test("extensions without server_name: no server name", () => {
    expect(read(hello({ extensions: [extension(10, [0, 2, 0, 29]), extension(13, [0, 2, 4, 3])] }))).toEqual({ state: "done", serverName: undefined });
  });

  test("server names: lower-cased, trailing dot removed, underscores and IDNA labels kept", () => {
    const name = (n: string) => read(hello({ extensions: [sniExtension(n)] }));
    expect(name("A.Example.COM.")).toEqual({ state: "done", serverName: "a.example.com" });
    expect(name("_svc._tcp.example.com")).toEqual({ state: "done", serverName: "_svc._tcp.example.com" });
    expect(name("xn--bcher-kva.example")).toEqual({ state: "done", serverName: "xn--bcher-kva.example" });
    expect(name("localhost")).toEqual({ state: "done", serverName: "localhost" });
    expect(name("10.0.0.1.example.com")).toEqual({ state: "done", serverName: "10.0.0.1.example.com" });
    expect(name(`${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`).state).toBe("done");
  });

  test("server names that are not DNS names", () => {
    const name = (n: string | Uint8Array) => read(hello({ extensions: [sniExtension(n)] }));
    expectInvalid(name(cat(ascii("a.example.com"), [0], ascii("evil"))), /byte 0x00/);
    expectInvalid(name("a b.example.com"), /byte 0x20/);
    expectInvalid(name("a/b.example.com"), /byte 0x2f/);
    expectInvalid(name(cat(ascii("caf"), [0xc3, 0xa9], ascii(".example"))), /byte 0xc3/);
    expectInvalid(name("10.0.0.1"), /IP address literal/);
    expectInvalid(name("a..example.com"), /empty label/);
    expectInvalid(name(".example.com"), /empty label/);
    expectInvalid(name("."), /only a dot/);
    expectInvalid(name("-a.example.com"), /hyphen/);
    expectInvalid(name("a-.example.com"), /hyphen/);
    expectInvalid(name(`${"a".repeat(64)}.example.com`), /label of 64/);
    expectInvalid(name(`${"a.".repeat(126)}ab`), /254 characters/);
    expectInvalid(name(""), /empty host_name/);
  });

  test("server_name extensions that break RFC 6066 §3", () => {
    expectInvalid(read(hello({ extensions: [sniExtension("a.example.com", "b.example.com")] })), /more than one host_name/);
    expectInvalid(read(hello({ extensions: [sniExtension([1, ascii("a.example.com")])] })), /type 1/);
    expectInvalid(read(hello({ extensions: [extension(0, [0, 0])] })), /list is empty/);
    expectInvalid(read(hello({ extensions: [extension(0, [])] })), /too short/);
    expectInvalid(read(hello({ extensions: [extension(0, [0, 9, 0, 0, 3, 0x61, 0x62, 0x63])] })), /list length 9/);
    expectInvalid(read(hello({ extensions: [extension(0, [0, 6, 0, 0, 9, 0x61, 0x62, 0x63])] })), /runs past its list/);
    expectInvalid(read(hello({ extensions: [extension(0, [0, 2, 0, 0])] })), /cut short/);
  });

  test("a duplicate extension (RFC 8446 §4.2)", () => {
    expectInvalid(read(hello({ extensions: [sniExtension("a.example.com"), sniExtension("b.example.com")] })), /extension 0 appears twice/);
    expectInvalid(read(hello({ extensions: [extension(10, [0, 2, 0, 29]), extension(10, [0, 2, 0, 29])] })), /extension 10 appears twice/);
  });

  test("wrong lengths inside the ClientHello", () => {
    expectInvalid(read(hello({ sessionId: 33 })), /session id of 33/);
    expectInvalid(read(hello({ suites: [0x13] })), /cipher suites length 1/);
    expectInvalid(read(hello({ suites: [] })), /cipher suites length 0/);
    expectInvalid(read(hello({ compression: [] })), /no compression methods/);
    expectInvalid(read(hello({ version: [2, 0] })), /version 2\.0/);
    const exts = [sniExtension("example.com")];
    const length = exts[0]!.length;
    expectInvalid(read(hello({ extensions: exts, extensionsLength: length + 1 })), /extensions length/);
    expectInvalid(read(hello({ extensions: exts, extensionsLength: length - 1 })), /extensions length/);
    expectInvalid(read(hello({ extensions: exts, trailing: [0] })), /extensions length/);
    expectInvalid(read(hello({ extensions: [cat(u16(10), u16(50), [1, 2])] })), /runs past/);
    expectInvalid(read(hello({ extensions: [cat([0, 10, 0])] })), /extension header is cut short/);
    // A body whose declared fields run past its end.
    expectInvalid(parseClientHello(cat([3, 3], new Uint8Array(32), [0], u16(200), new Uint8Array(6))), /ends inside its cipher suites/);
  });

  test("wrong handshake framing", () => {
    expectInvalid(read(records(handshake(helloBody(), 2))), /type 2, expected ClientHello/);
    expectInvalid(read(records(handshake(helloBody().subarray(0, 20)))), /shorter than its fixed fields/);
    // The message claims more bytes than come, then the next record is not a handshake.
    const msg = handshake(helloBody());
    const bytes = cat(records(msg.subarray(0, 50)), [23, 3, 3, 0, 1, 0]);
    expectInvalid(read(bytes), /content type 23/);
  });

  test("wrong record framing", () => {
    expectInvalid(read(new Uint8Array([22, 3, 1, 0, 0])), /record 1 is empty/);
    expectInvalid(read(new Uint8Array([22, 3, 1, 0x40, 0x01])), /more than 2\^14/);
    const msg = handshake(helloBody());
    expectInvalid(read(cat(records(msg.subarray(0, 10)), [22, 4, 0, 0, 5])), /record 2 has version 4\.0/);
  });
});

describe("the byte cap", () => {
  test("is 16 KiB by default", () => {
    expect(CLIENT_HELLO_MAX_BYTES).toBe(16 * 1024);
  });

  test("a ClientHello whose declared length passes the cap is refused from its first 9 bytes", () => {
    // 16 MiB declared: refused before any buffer is sized for it.
    const reader = new ClientHelloReader();
    expectInvalid(reader.push(new Uint8Array([22, 3, 1, 0x40, 0x00, 1, 0xff, 0xff, 0xff])), /16777215 bytes exceeds the 16384-byte limit/);
    expect(reader.consumed).toBe(9);
    // A real one under a cap smaller than itself.
    expectInvalid(read(captured.node!, 1000), /exceeds the 1000-byte limit/);
  });

  test("a padded ClientHello past 16 KiB over two records: refused by default, taken with a larger cap", () => {
    const big = hello({ extensions: [sniExtension("big.example.com"), extension(21, new Uint8Array(20_000))] });
    expect(big.length).toBeGreaterThan(CLIENT_HELLO_MAX_BYTES);
    expectInvalid(read(big), /exceeds the 16384-byte limit/);
    expect(read(big, 32 * 1024)).toEqual({ state: "done", serverName: "big.example.com" });
  });

  test("record headers count: a ClientHello that fits, framed in 1-byte records, does not", () => {
    const msg = handshake(helloBody({ extensions: [sniExtension("a.example.com"), extension(21, new Uint8Array(3000))] }));
    expect(msg.length).toBeLessThan(CLIENT_HELLO_MAX_BYTES);
    const framed = records(msg, 1);
    const reader = new ClientHelloReader();
    let r: ClientHelloResult = reader.state;
    for (let at = 0; at < framed.length && r.state === "need-more"; at += 512) r = reader.push(framed.subarray(at, at + 512));
    expectInvalid(r, /no complete ClientHello within 16384 bytes/);
    expect(reader.consumed).toBeLessThanOrEqual(CLIENT_HELLO_MAX_BYTES + 1);
  });

  test("exactly at the cap is taken", () => {
    const base = hello({ extensions: [sniExtension("a.example.com"), extension(21, [])] });
    const padded = hello({ extensions: [sniExtension("a.example.com"), extension(21, new Uint8Array(CLIENT_HELLO_MAX_BYTES - base.length))] });
    expect(padded.length).toBe(CLIENT_HELLO_MAX_BYTES);
    expect(read(padded)).toEqual({ state: "done", serverName: "a.example.com" });
    const over = hello({ extensions: [sniExtension("a.example.com"), extension(21, new Uint8Array(CLIENT_HELLO_MAX_BYTES - base.length + 1))] });
    expect(read(over).state).toBe("invalid");
  });
});

afterAll(() => {
  for (const k of Object.keys(captured)) delete captured[k];
});
