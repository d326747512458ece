/**
 * The runtime's floor for the fetch design: the least a Bun.serve + fetch forwarder can do
 * (round robin, no header rules, no stats, no retries). bench/http.ts runs it beside
 * Switchyard's fetch engine to show what Switchyard adds per request.
 *
 *   bun bench/fetch-floor.ts PORT BACKEND_URL [BACKEND_URL ...]
 */
const [port, ...backends] = Bun.argv.slice(2);
if (!port || backends.length === 0) {
  console.error("usage: bun bench/fetch-floor.ts PORT BACKEND_URL [BACKEND_URL ...]");
  process.exit(2);
}
let next = 0;
Bun.serve({
  hostname: "127.0.0.1",
  port: Number(port),
  development: false,
  async fetch(req) {
    const url = new URL(req.url);
    const backend = backends[next++ % backends.length];
    return fetch(backend + url.pathname + url.search, {
      method: req.method,
      headers: req.headers,
      body: req.body,
      redirect: "manual",
      decompress: false,
    } as RequestInit);
  },
});
