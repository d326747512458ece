/**
 * The runtime's floor for the fetch design: the least a Bun.serve + fetch forwarder can do
 * (round robin, no header rules, no stats, no retries). bench/http.ts runs it beside
 * Switchyard's fetch engine to show what Switchyard adds per request.
 *
 *   bun bench/fetch-floor.ts PORT BACKEND_URL [BACKEND_URL ...]
 *
 * `FLOOR_ADD` (a comma-separated list) adds, one by one, the runtime calls the fetch engine
 * makes per request and the floor does not, so bench/fetch-costs.ts can price each alone:
 * `ip` server.requestIP(), `signal` a listener on request.signal (the client leaving),
 * `abort` an AbortController whose signal fetch takes (the try's own cancel), `options` fetch's
 * `timeout: false` and `duplex: "half"`, `hono` a Hono app with one catch-all route in front,
 * `whole` the response body read whole and a new Response made with it, `fields` the fields
 * Switchyard adds (X-Forwarded-For/-Proto/-Host, X-Real-IP, Via and X-Request-Id to the
 * backend, Via and X-Request-Id to the client), set on the request's and response's own Headers
 * (it calls server.requestIP() for X-Forwarded-For itself, as the engine must).
 */
import { Hono } from "hono";
import type { Server } from "bun";

const [port, ...backends] = Bun.argv.slice(2);
if (!port || backends.length === 0) {
  console.error("usage: bun bench/fetch-floor.ts PORT BACKEND_URL [BACKEND_URL ...]");
  process.exit(2);
}
const add = new Set((process.env.FLOOR_ADD ?? "").split(",").filter((s) => s !== ""));
const unknown = [...add].filter((a) => !["ip", "signal", "abort", "options", "hono", "whole", "fields"].includes(a));
if (unknown.length > 0) {
  console.error(`bench/fetch-floor.ts: unknown FLOOR_ADD ${unknown.join(", ")}`);
  process.exit(2);
}

let next = 0;
async function forward(req: Request, server: Server<unknown>): Promise<Response> {
  const url = new URL(req.url);
  const backend = backends[next++ % backends.length];
  if (add.has("ip")) server.requestIP(req);
  if (add.has("signal")) req.signal.addEventListener("abort", () => {}, { once: true });
  const id = add.has("fields") ? crypto.randomUUID() : "";
  if (add.has("fields")) {
    const h = req.headers;
    const ip = server.requestIP(req)?.address ?? "";
    h.set("x-forwarded-for", ip);
    h.set("x-real-ip", ip);
    h.set("x-forwarded-proto", "http");
    h.set("x-forwarded-host", h.get("host") ?? "");
    h.set("via", "1.1 switchyard");
    h.set("x-request-id", id);
  }
  const res = await fetch(backend + url.pathname + url.search, {
    method: req.method,
    headers: req.headers,
    body: req.body,
    redirect: "manual",
    decompress: false,
    ...(add.has("abort") ? { signal: new AbortController().signal } : {}),
    ...(add.has("options") ? { timeout: false, duplex: "half" } : {}),
  } as RequestInit);
  if (add.has("fields")) {
    res.headers.set("via", "1.1 switchyard");
    res.headers.set("x-request-id", id);
  }
  if (!add.has("whole")) return res;
  const body = await res.arrayBuffer();
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
}

const app = new Hono<{ Bindings: { server: Server<unknown> } }>();
app.all("*", (c) => forward(c.req.raw, c.env.server));

Bun.serve({
  hostname: "127.0.0.1",
  port: Number(port),
  development: false,
  fetch: add.has("hono") ? (req, server) => app.fetch(req, { server }) : forward,
});
