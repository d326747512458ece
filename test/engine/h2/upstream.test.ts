/**
 * HTTP/2 to backends on the socket engine (src/engine/h2/): h2c and h2 over TLS through the
 * rig, with real node:http2 servers as backends. These run on the socket engine whatever
 * SWITCHYARD_TEST_ENGINE says: the fetch engine refuses h2/h2c (config.test below).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { startRig, type TestRig } from "../../helpers/balancer.ts";
import { makePki, type Pki } from "../../helpers/pki.ts";
import { waitFor } from "../../helpers/wait.ts";
import { echo, startH2c, startH2Tls, startRefusing, type H2Backend } from "./backends.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function rig(backends: { name: string; url: string; protocol?: string }[], config: Record<string, unknown> = {}): Promise<TestRig> {
  const r = await startRig(0, { engine: "socket", protocol: "h2c", backends, ...config });
  cleanups.push(() => r.stop());
  return r;
}

async function h2c(name: string, ...rest: Parameters<typeof startH2c> extends [string, ...infer R] ? R : never): Promise<H2Backend & { kill(): void }> {
  const b = await startH2c(name, ...rest);
  cleanups.push(() => b.stop());
  return b;
}

describe("h2c backends", () => {
  test("GET and a POST of a few MB both ways arrive intact", async () => {
    const big = crypto.getRandomValues(new Uint8Array(3 * 1024 * 1024 + 17));
    const sha = new Bun.CryptoHasher("sha256").update(big).digest("hex");
    const b = await h2c("a", (stream, headers) => {
      if (headers[":path"] === "/download") {
        stream.respond({ ":status": 200 });
        stream.end(Buffer.from(big));
        return;
      }
      echo(stream, headers, "a");
    });
    const r = await rig([{ name: "a", url: b.url }]);
    const get = await fetch(`${r.balancer.url}/hello?x=1`, { headers: { host: "front.example" } });
    expect(get.status).toBe(200);
    const got = await get.json();
    expect(got).toMatchObject({ backend: "a", method: "GET", path: "/hello?x=1", authority: "front.example", te: "trailers", length: 0 });
    expect(got.host).toBeUndefined();

    const post = await fetch(`${r.balancer.url}/upload`, { method: "POST", body: big });
    expect(post.status).toBe(200);
    expect(await post.json()).toMatchObject({ method: "POST", length: big.length, sha });

    const down = await fetch(`${r.balancer.url}/download`);
    expect(down.status).toBe(200);
    const bytes = new Uint8Array(await down.arrayBuffer());
    expect(bytes.length).toBe(big.length);
    expect(new Bun.CryptoHasher("sha256").update(bytes).digest("hex")).toBe(sha);
  });
});
