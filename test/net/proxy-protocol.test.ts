import { describe, expect, test } from "bun:test";
import { encodeProxyHeader, parseProxyHeader, ProxyHeaderReader, PROXY_V1_MAX_BYTES, PROXY_V2_MAX_BYTES, type ProxyHeaderResult } from "../../src/net/proxy-protocol.ts";

const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const ascii = (s: string) => Uint8Array.from(Buffer.from(s, "latin1"));
const bytes = (...parts: (number[] | Uint8Array)[]) => Uint8Array.from(parts.flatMap((p) => [...p]));

/** Feed one byte at a time: need-more until the last byte of the header, then the result. */
function byteByByte(b: Uint8Array): ProxyHeaderResult {
  const r = new ProxyHeaderReader();
  let last: ProxyHeaderResult = { state: "need-more" };
  for (let i = 0; i < b.length; i++) {
    last = r.push(b.subarray(i, i + 1));
    if (last.state !== "need-more") {
      // A valid header is complete at its last byte, never sooner; a bad one stops early.
      if (last.state !== "invalid") expect(i).toBe(b.length - 1);
      break;
    }
  }
  return last;
}

describe("PROXY v1", () => {
  test("TCP4, whole and byte by byte, with what follows kept", () => {
    const h = ascii("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
    const want = { state: "done", version: 1, source: { address: "192.168.0.1", port: 56324 }, destination: { address: "192.168.0.11", port: 443 }, consumed: h.length };
    expect(parseProxyHeader(h)).toEqual(want as ProxyHeaderResult);
    expect(byteByByte(h)).toEqual(want as ProxyHeaderResult);
    const r = new ProxyHeaderReader();
    expect(r.push(bytes(h, ascii("GET / HTTP/1.1\r\n")))).toEqual(want as ProxyHeaderResult);
    expect(Buffer.from(r.rest()).toString()).toBe("GET / HTTP/1.1\r\n");
  });

  test("TCP6 and UNKNOWN", () => {
    expect(parseProxyHeader(ascii("PROXY TCP6 2001:db8::1 ::1 1 65535\r\n"))).toMatchObject({ state: "done", source: { address: "2001:db8::1", port: 1 }, destination: { address: "::1", port: 65535 } });
    expect(parseProxyHeader(ascii("PROXY UNKNOWN\r\n"))).toEqual({ state: "local", version: 1, consumed: 15 });
    expect(parseProxyHeader(ascii("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"))).toMatchObject({ state: "local" });
  });

  test("the longest header (107 bytes) is accepted; one byte more is not", () => {
    const six = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    // The spec's worst case: UNKNOWN with two full IPv6 addresses and ports.
    const longest = ascii(`PROXY UNKNOWN ${six} ${six} 65535 65535\r\n`);
    expect(longest.length).toBe(PROXY_V1_MAX_BYTES);
    expect(byteByByte(longest)).toMatchObject({ state: "local", consumed: 107 });
    expect(byteByByte(ascii(`PROXY TCP6 ${six} ${six} 65535 65535\r\n`))).toMatchObject({ state: "done", source: { address: six, port: 65535 } });
    const tooLong = ascii(`PROXY UNKNOWN ${"x".repeat(92)}\r\n`);
    expect(tooLong.length).toBe(PROXY_V1_MAX_BYTES + 1);
    expect(byteByByte(tooLong)).toMatchObject({ state: "invalid" });
    expect(parseProxyHeader(ascii(`PROXY TCP4 ${"1".repeat(200)}`))).toMatchObject({ state: "invalid", reason: expect.stringContaining("no CRLF") });
  });

  test.each([
    ["GET / HTTP/1.1\r\n", "not the start"],
    ["PROXX TCP4", "not a PROXY v1"],
    ["PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n", "protocol"],
    ["PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n", "expected"],
    ["PROXY TCP4 1.2.3.4  1.2.3.5 1 2\r\n", "expected"],
    ["PROXY TCP4 1.2.3.256 1.2.3.5 1 2\r\n", "not an IPv4"],
    ["PROXY TCP4 ::1 1.2.3.5 1 2\r\n", "not an IPv4"],
    ["PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "not an IPv6"],
    ["PROXY TCP4 1.2.3.4 1.2.3.5 01 2\r\n", "port"],
    ["PROXY TCP4 1.2.3.4 1.2.3.5 1 65536\r\n", "port"],
    ["PROXY TCP4 1.2.3.4 1.2.3.5 1 2\rX", "CR not followed"],
    ["PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n", "printable"],
    ["PROXY TCP4 1.2.3.4\t1.2.3.5 1 2\r\n", "printable"],
  ])("refuses %j", (text, reason) => {
    expect(parseProxyHeader(ascii(text))).toMatchObject({ state: "invalid", reason: expect.stringContaining(reason) });
    // Found as soon as the bytes show it, byte by byte too.
    const r = new ProxyHeaderReader();
    let last: ProxyHeaderResult = { state: "need-more" };
    for (const b of ascii(text)) if ((last = r.push(Uint8Array.of(b))).state !== "need-more") break;
    expect(last.state).toBe("invalid");
  });

  test("a prefix is need-more", () => {
    expect(parseProxyHeader(ascii("PRO"))).toEqual({ state: "need-more" });
    expect(parseProxyHeader(ascii("PROXY TCP4 1.2.3.4 1.2.3.5 1 2\r"))).toEqual({ state: "need-more" });
  });
});

describe("PROXY v2", () => {
  // The v2 example of the spec's section 2.2 layout: PROXY, TCP over IPv4, 12 address bytes.
  const v4 = bytes(SIG, [0x21, 0x11, 0x00, 0x0c], [10, 0, 0, 1], [10, 0, 0, 2], [0xdc, 0x11], [0x01, 0xbb]);

  test("TCP over IPv4, whole and byte by byte", () => {
    const want = { state: "done", version: 2, source: { address: "10.0.0.1", port: 56337 }, destination: { address: "10.0.0.2", port: 443 }, consumed: 28 };
    expect(parseProxyHeader(v4)).toEqual(want as ProxyHeaderResult);
    expect(byteByByte(v4)).toEqual(want as ProxyHeaderResult);
  });

  test("TCP over IPv6, TLVs skipped, data after it kept", () => {
    const src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const dst = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];
    const tlvs = [0x04, 0x00, 0x03, 1, 2, 3, 0x05, 0x00, 0x01, 9];
    const h = bytes(SIG, [0x21, 0x21, 0x00, 36 + tlvs.length], src, dst, [0x30, 0x39], [0x00, 0x50], tlvs);
    const r = new ProxyHeaderReader();
    expect(r.push(bytes(h, ascii("hello")))).toEqual({ state: "done", version: 2, source: { address: "2001:db8::1", port: 12345 }, destination: { address: "127.0.0.1", port: 80 }, consumed: h.length });
    expect(Buffer.from(r.rest()).toString()).toBe("hello");
    expect(byteByByte(h)).toMatchObject({ state: "done" });
  });

  test("LOCAL, UNSPEC and AF_UNIX keep the connection's own address", () => {
    expect(parseProxyHeader(bytes(SIG, [0x20, 0x00, 0x00, 0x00]))).toEqual({ state: "local", version: 2, consumed: 16 });
    // LOCAL with addresses: they are ignored.
    expect(parseProxyHeader(bytes(SIG, [0x20], v4.subarray(13)))).toEqual({ state: "local", version: 2, consumed: 28 });
    expect(parseProxyHeader(bytes(SIG, [0x21, 0x00, 0x00, 0x00]))).toMatchObject({ state: "local" });
    expect(parseProxyHeader(bytes(SIG, [0x21, 0x31, 0x00, 216], new Array(216).fill(0)))).toMatchObject({ state: "local", consumed: 232 });
  });

  test.each([
    ["a wrong signature byte", bytes(SIG.slice(0, 5), [0x01]), "signature"],
    ["version 1 in the v2 format", bytes(SIG, [0x11]), "version"],
    ["command 2", bytes(SIG, [0x22]), "command"],
    ["family 4", bytes(SIG, [0x21, 0x41]), "family"],
    ["transport 3", bytes(SIG, [0x21, 0x13]), "family"],
    ["INET with UNSPEC transport", bytes(SIG, [0x21, 0x10]), "family"],
    ["a length shorter than its addresses", bytes(SIG, [0x21, 0x11, 0x00, 0x0b]), "shorter"],
    ["a length over the bound", bytes(SIG, [0x21, 0x11, 0xff, 0xff]), "more than"],
  ])("refuses %s", (_name, b, reason) => {
    expect(parseProxyHeader(b)).toMatchObject({ state: "invalid", reason: expect.stringContaining(reason) });
  });

  test("the longest accepted header, and the reader's bound", () => {
    const tlvLen = PROXY_V2_MAX_BYTES - 28;
    const h = bytes(v4.subarray(0, 14), [(12 + tlvLen) >> 8, (12 + tlvLen) & 0xff], v4.subarray(16), new Array(tlvLen).fill(0));
    expect(h.length).toBe(PROXY_V2_MAX_BYTES);
    expect(parseProxyHeader(h)).toMatchObject({ state: "done", consumed: PROXY_V2_MAX_BYTES });
    const over = h.slice();
    over[15]! += 1;
    expect(parseProxyHeader(over)).toMatchObject({ state: "invalid" });
    expect(parseProxyHeader(h.subarray(0, h.length - 1))).toEqual({ state: "need-more" });
  });
});

describe("encodeProxyHeader", () => {
  test("v1 and v2 round trip through the parser", () => {
    for (const version of [1, 2] as const) {
      for (const [src, dst] of [
        [{ address: "192.0.2.7", port: 40000 }, { address: "198.51.100.1", port: 8080 }],
        [{ address: "2001:db8::7", port: 1 }, { address: "2001:db8::1", port: 443 }],
      ]) {
        const h = encodeProxyHeader(version, src!, dst!);
        expect(parseProxyHeader(h)).toEqual({ state: "done", version, source: src!, destination: dst!, consumed: h.length });
      }
    }
    expect(Buffer.from(encodeProxyHeader(1, { address: "127.0.0.1", port: 5 }, { address: "127.0.0.1", port: 6 })).toString()).toBe("PROXY TCP4 127.0.0.1 127.0.0.1 5 6\r\n");
  });

  test("IPv4-mapped addresses are written plain; mixed families as IPv6", () => {
    expect(Buffer.from(encodeProxyHeader(1, { address: "::ffff:10.1.2.3", port: 5 }, { address: "::ffff:10.0.0.1", port: 6 })).toString()).toBe("PROXY TCP4 10.1.2.3 10.0.0.1 5 6\r\n");
    expect(Buffer.from(encodeProxyHeader(1, { address: "10.1.2.3", port: 5 }, { address: "::1", port: 6 })).toString()).toBe("PROXY TCP6 ::ffff:10.1.2.3 ::1 5 6\r\n");
    expect(parseProxyHeader(encodeProxyHeader(2, { address: "10.1.2.3", port: 5 }, { address: "::1", port: 6 }))).toMatchObject({ source: { address: "10.1.2.3" }, destination: { address: "::1" } });
  });

  test("a non-IP address gives UNKNOWN / LOCAL", () => {
    expect(Buffer.from(encodeProxyHeader(1, { address: "", port: 0 }, { address: "::1", port: 6 })).toString()).toBe("PROXY UNKNOWN\r\n");
    expect(parseProxyHeader(encodeProxyHeader(2, { address: "nope", port: 0 }, { address: "::1", port: 6 }))).toMatchObject({ state: "local" });
  });
});
