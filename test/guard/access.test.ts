/**
 * Access control end to end, on both engines: allow and deny lists, basic auth, forward auth
 * and JWT on routes, in front of a recording backend.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startBalancer, type Balancer } from "../../src/balancer.ts";
import { validateConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { startRecordingBackend, type RecordingBackend } from "../helpers/recording-backend.ts";

for (const engine of ["socket", "fetch"] as const) {
  describe(`${engine} engine`, () => {
    let api: RecordingBackend;
    let lb: Balancer;
    let base: string;

    beforeAll(async () => {
      api = startRecordingBackend();
      lb = await startBalancer(
        validateConfig({
          engine, admin: false, healthCheck: false, log: { access: false },
          listeners: [{ name: "web", host: "127.0.0.1", port: 0 }],
          pools: { api: { backends: [{ url: api.url }] } },
          routes: [
            { name: "allowed", match: { path: "/allowed" }, pool: "api", allow: ["127.0.0.0/8", "::1"] },
            { name: "elsewhere", match: { path: "/elsewhere" }, pool: "api", allow: ["10.0.0.0/8"] },
            { name: "both", match: { path: "/both" }, pool: "api", allow: ["127.0.0.0/8"], deny: ["127.0.0.1"] },
            { name: "private", match: { path: "/private" }, pool: "api", deny: ["0.0.0.0/0", "::/0"] },
          ],
        }),
        { env: {}, logger: memoryLogger() },
      );
      base = lb.url;
    });

    afterAll(async () => {
      await lb?.stop(false);
      api?.stop();
    });

    test("allow and deny: deny wins, allow refuses the rest, with 403 SY_FORBIDDEN", async () => {
      const before = api.requests.length;
      const ok = await fetch(`${base}/allowed`);
      expect(ok.status).toBe(200);
      await ok.text();
      expect(api.requests.length).toBe(before + 1);
      for (const path of ["/elsewhere", "/both", "/private"]) {
        const r = await fetch(base + path);
        expect(r.status).toBe(403);
        expect(await r.json()).toMatchObject({ error: "SY_FORBIDDEN" });
      }
      expect(api.requests.length).toBe(before + 1);
    });
  });
}
