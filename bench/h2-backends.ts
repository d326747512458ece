/**
 * The backends of bench/h2.ts: `--count` responders on ephemeral loopback ports, one process,
 * each answering every request 200 with the same 19-byte body, and printing
 * "listening on http://127.0.0.1:PORT" once it listens.
 *
 * - `--kind bun` (default): Bun.serve with `http2: true` on plain TCP, which serves HTTP/1.1
 *   and cleartext HTTP/2 by prior knowledge on one port, so the HTTP/1.1 and the h2c scenarios
 *   of the bench reach literally the same backends.
 * - `--kind node`: a node:http2 server (h2c only, `allowHTTP1` has no effect without TLS), to
 *   compare what each costs per request (bench/h2.ts's `direct` rows).
 *
 *   bun bench/h2-backends.ts [--count 3] [--kind bun|node]
 */
import { createServer } from "node:http2";
import { parseArgs } from "node:util";

const { values } = parseArgs({ args: Bun.argv.slice(2), options: { count: { type: "string", default: "3" }, kind: { type: "string", default: "bun" } } });
const BODY = "hello from backend\n";

for (let i = 0; i < Number(values.count); i++) {
  if (values.kind === "node") {
    const server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/plain", "content-length": BODY.length });
      res.end(BODY);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    console.log(`listening on http://127.0.0.1:${typeof address === "object" && address ? address.port : "?"}`);
  } else if (values.kind === "bun") {
    // `http2` is experimental and missing from bun-types 1.4.5's ServeOptions.
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, http2: true, fetch: () => new Response(BODY, { headers: { "content-type": "text/plain" } }) } as Parameters<typeof Bun.serve>[0]);
    console.log(`listening on http://127.0.0.1:${server.port}`);
  } else {
    console.error(`--kind: expected "bun" or "node", got ${JSON.stringify(values.kind)}`);
    process.exit(2);
  }
}
