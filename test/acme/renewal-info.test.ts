/**
 * ARI's pure parts (src/acme/renewal-info.ts): Retry-After read as RFC 9110 §10.2.3 says and
 * kept within bounds, and the time chosen in a window. The CertID and the polling itself are
 * tested against pebble with a renewalInfo endpoint beside it (pebble.test.ts, "ARI").
 */
import { expect, test } from "bun:test";
import { certId, DEFAULT_RETRY_AFTER_MS, MAX_RETRY_AFTER_MS, MIN_RETRY_AFTER_MS, pickInWindow, retryAfterMs, serialOctets } from "../../src/acme/renewal-info.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

test("Retry-After: delay-seconds or an HTTP-date, within bounds; the default without one or with one that does not parse", () => {
  const now = Date.parse("2026-12-07T00:00:00Z");
  expect(retryAfterMs("21600", now)).toBe(21_600_000);
  expect(retryAfterMs(" 60 ", now)).toBe(60_000);
  expect(retryAfterMs("Mon, 07 Dec 2026 02:00:00 GMT", now)).toBe(7_200_000);
  expect(retryAfterMs(undefined, now)).toBe(DEFAULT_RETRY_AFTER_MS);
  expect(retryAfterMs("", now)).toBe(DEFAULT_RETRY_AFTER_MS);
  expect(retryAfterMs("soon", now)).toBe(DEFAULT_RETRY_AFTER_MS);
  expect(retryAfterMs("-5", now)).toBe(DEFAULT_RETRY_AFTER_MS);
  // A tight loop and a silence of days are both refused.
  expect(retryAfterMs("0", now)).toBe(MIN_RETRY_AFTER_MS);
  expect(retryAfterMs("Sun, 06 Dec 2026 00:00:00 GMT", now)).toBe(MIN_RETRY_AFTER_MS);
  expect(retryAfterMs(String(30 * 86_400), now)).toBe(MAX_RETRY_AFTER_MS);
});

test("the time chosen is uniform in the window, its ends included", () => {
  const w = { start: 1_000, end: 2_000 };
  expect(pickInWindow(w, () => 0)).toBe(1_000);
  expect(pickInWindow(w, () => 0.5)).toBe(1_500);
  expect(pickInWindow(w, () => 0.999999)).toBeLessThan(2_000);
  for (let i = 0; i < 1000; i++) {
    const t = pickInWindow(w);
    expect(t >= 1_000 && t < 2_000).toBe(true);
  }
});

test("a serial's DER octets: a leading 00 where the high bit is set, none otherwise (X.690 §8.3)", () => {
  expect(serialOctets("8A0102").toString("hex")).toBe("008a0102");
  expect(serialOctets("7f0102").toString("hex")).toBe("7f0102");
  expect(serialOctets("1").toString("hex")).toBe("01");
  expect(serialOctets("FFF").toString("hex")).toBe("0fff");
});

test("the CertID of certificates openssl issued with high-bit and plain serials (RFC 9773 §4.1)", () => {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-certid-"));
  try {
    const run = (args: string[]) => {
      const p = Bun.spawnSync(["openssl", ...args], { cwd: dir, stderr: "pipe" });
      if (p.exitCode !== 0) throw new Error(p.stderr.toString());
      return p.stdout.toString();
    };
    run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=ca", "-days", "1"]);
    const ski = /([0-9A-F]{2}(:[0-9A-F]{2})+)/.exec(run(["x509", "-in", "ca.pem", "-noout", "-ext", "subjectKeyIdentifier"]))![1]!.replace(/:/g, "");
    run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=leaf"]);
    for (const [serial, octets] of [["0x8A0102030405060708", "008a0102030405060708"], ["0x3C77AD6A5363C96A", "3c77ad6a5363c96a"]] as const) {
      writeFileSync(join(dir, "ext"), "authorityKeyIdentifier=keyid\n");
      run(["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", serial, "-out", "leaf.pem", "-days", "1", "-extfile", "ext"]);
      const pem = run(["x509", "-in", "leaf.pem"]);
      expect(certId(pem)).toBe(`${Buffer.from(ski, "hex").toString("base64url")}.${Buffer.from(octets, "hex").toString("base64url")}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
