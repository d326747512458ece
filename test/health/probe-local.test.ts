/**
 * A probe the proxy cannot make for want of descriptors says nothing about the backend: in a
 * child under `ulimit -n 64` with every descriptor taken, a TCP and an HTTP probe of a listening
 * backend come back `local` (the monitor counts them neither way), not as its failure.
 */
import { describe, expect, test } from "bun:test";
import { requirePrograms } from "../helpers/system.ts";

const programs = requirePrograms("the descriptor-exhaustion tests", { sh: "dash" });
const SRC = `${import.meta.dir}/../../src`;

describe.skipIf(programs.skip)("probes out of descriptors", () => {
  test("TCP and HTTP probes report a local failure, not the backend's", async () => {
    programs.assertPresent();
    const script = `
      import { openSync, closeSync } from "node:fs";
      import { createProbe } from ${JSON.stringify(`${SRC}/health/probe.ts`)};
      import { Backend } from ${JSON.stringify(`${SRC}/pool/backend.ts`)};
      import { startFetchClient } from ${JSON.stringify(`${SRC}/engine/fetch/engine.ts`)};
      const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok", { headers: { connection: "close" } }) });
      const b = new Backend({ name: "b", url: "http://127.0.0.1:" + server.port });
      const base = { method: "GET", headers: {}, host: undefined, port: undefined, interval: 1000, timeout: 1000, rise: 1, fall: 1, expectStatus: ["2xx"], expectBody: undefined };
      const tcp = createProbe(b, { ...base, type: "tcp", path: "/" });
      const http = createProbe(b, { ...base, type: "http", path: "/" });
      // As the balancer does before it listens (engine/fetch/engine.ts): Bun's HTTP client started.
      // The backend closes every connection, so the HTTP probe needs a new one each time.
      await startFetchClient();
      const before = [await tcp.run(new AbortController().signal), await http.run(new AbortController().signal)];
      const held = [];
      try { for (;;) held.push(openSync("/dev/null", "r")); } catch {}
      const during = [await tcp.run(new AbortController().signal), await http.run(new AbortController().signal)];
      for (const fd of held) closeSync(fd);
      console.log(JSON.stringify({ before, during }));
      process.exit(0);
    `;
    const proc = Bun.spawn([programs.path("sh"), "-c", `ulimit -n 64 && exec "$0" -e "$1"`, process.execPath, script], { stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    expect(await proc.exited, err).toBe(0);
    const { before, during } = JSON.parse(out.trim());
    expect(before).toEqual([{ ok: true, detail: "connected" }, { ok: true, detail: "status 200" }]);
    expect(during).toEqual([
      { ok: false, detail: "no file descriptor left in the proxy (EMFILE)", local: true },
      { ok: false, detail: "no file descriptor left in the proxy (EMFILE)", local: true },
    ]);
  });
});
