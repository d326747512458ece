/**
 * The one reader of network errors: which failures are the proxy's own (never a backend's),
 * and the check that tells Bun's misreported EMFILE from a real refusal.
 */
import { describe, expect, test } from "bun:test";
import {
  classifyNetworkError, describeNetworkError, descriptorShortage, isLocalCode, LOCAL_CODES, NetworkError, refinedConnectError,
} from "../../src/net/network-error.ts";
import { requirePrograms } from "../helpers/system.ts";

const programs = requirePrograms("the descriptor-exhaustion tests", { sh: "dash" });

const err = (code: string) => Object.assign(new Error(code), { code });

describe("classifyNetworkError", () => {
  test.each([
    ["EMFILE", "local"],
    ["ENFILE", "local"],
    ["EADDRNOTAVAIL", "local"], // connect(2): the local port range is used up
    ["ENOBUFS", "local"],
    ["ENOMEM", "local"],
    ["EAI_AGAIN", "local"], // the resolver could not answer now: nothing about the backend
    ["ECONNREFUSED", "connect"],
    ["ConnectionRefused", "connect"],
    ["ENOTFOUND", "connect"],
    ["EHOSTUNREACH", "connect"],
    ["ETIMEDOUT_CONNECT", "connect"],
    ["CERT_HAS_EXPIRED", "connect"],
    ["ERR_H2_NOT_NEGOTIATED", "connect"], // an https:// backend that selected no h2 in ALPN
    ["ERR_H2_REFUSED_STREAM", "refused"], // HTTP/2: not processed, retried whatever the method
    ["ECONNRESET", "reset"],
    ["EPIPE", "reset"],
  ] as const)("%s is %s", (code, kind) => {
    expect(classifyNetworkError(err(code))).toBe(kind);
    expect(isLocalCode(code)).toBe(kind === "local");
  });

  test("every local code has words of its own", () => {
    for (const code of LOCAL_CODES) expect(describeNetworkError(err(code))).toContain(`(${code})`);
  });
});

describe("refinedConnectError", () => {
  test("with descriptors to spare, a refusal stays a refusal and other errors pass untouched", () => {
    expect(descriptorShortage()).toBeUndefined();
    const refused = err("ECONNREFUSED");
    expect(refinedConnectError(refused)).toBe(refused);
    const reset = err("ECONNRESET");
    expect(refinedConnectError(reset)).toBe(reset);
    expect(refinedConnectError(undefined)).toBeUndefined();
  });

  test.skipIf(programs.skip)("under a low descriptor limit, Bun's ECONNREFUSED for socket() EMFILE becomes EMFILE", async () => {
    programs.assertPresent();
    // A child with `ulimit -n 64` fills its descriptor table, then dials a listener of its own:
    // Bun 1.4.5 reports the failed socket(2) as ECONNREFUSED; refined, it is EMFILE and local.
    const script = `
      import { openSync } from "node:fs";
      import { classifyNetworkError, refinedConnectError } from ${JSON.stringify(`${import.meta.dir}/../../src/net/network-error.ts`)};
      const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
      const held = [];
      try { for (;;) held.push(openSync("/dev/null", "r")); } catch {}
      let out;
      try {
        await Bun.connect({ hostname: "127.0.0.1", port: server.port, socket: { data() {} } });
        out = { connected: true };
      } catch (e) {
        const r = refinedConnectError(e);
        out = { reported: e.code, refined: r.code, kind: classifyNetworkError(r) };
      }
      console.log(JSON.stringify(out));
      process.exit(0);
    `;
    const proc = Bun.spawn([programs.path("sh"), "-c", `ulimit -n 64 && exec "$0" -e "$1"`, process.execPath, script], { stdout: "pipe", stderr: "pipe" });
    const [out, errText] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    expect(await proc.exited, errText).toBe(0);
    const r = JSON.parse(out.trim());
    // If a later Bun reports EMFILE itself, the refinement has nothing to do: both pass.
    expect(["ECONNREFUSED", "EMFILE"]).toContain(r.reported);
    expect(r.refined).toBe("EMFILE");
    expect(r.kind).toBe("local");
  });

  test("a NetworkError keeps its code", () => {
    expect(classifyNetworkError(new NetworkError("EMFILE", "x"))).toBe("local");
  });
});
