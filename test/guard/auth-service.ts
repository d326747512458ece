/**
 * A real auth service for forwardAuth tests (Bun.serve on an ephemeral port), answering by the
 * request's Authorization:
 * - "Bearer alice": 200 with x-user: alice and x-not-copied: 1
 * - "Bearer anon": 200 without x-user
 * - "Bearer login": 302 to /login with a Set-Cookie and a body
 * - "Bearer big": 401 with a body over 64 KiB
 * - "Bearer slow": answers after 5 s (past any test's timeout)
 * - anything else: 401 with WWW-Authenticate: Custom and a body
 * It records the fields of every request it gets.
 */
import type { Server } from "bun";

export interface AuthService {
  url: string;
  seen: Headers[];
  stop(): void;
}

export function startAuthService(): AuthService {
  const seen: Headers[] = [];
  const server: Server<undefined> = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      seen.push(req.headers);
      switch (req.headers.get("authorization")) {
        case "Bearer alice":
          return new Response(null, { status: 200, headers: { "x-user": "alice", "x-not-copied": "1" } });
        case "Bearer anon":
          return new Response("ok", { status: 204 });
        case "Bearer login": {
          const h = new Headers({ location: "/login", "content-type": "text/html" });
          h.append("set-cookie", "next=/app; Path=/");
          return new Response("<a href=/login>log in</a>", { status: 302, headers: h });
        }
        case "Bearer big":
          return new Response("x".repeat(70 * 1024), { status: 401 });
        case "Bearer slow":
          await Bun.sleep(5000);
          return new Response(null, { status: 200 });
        default:
          return new Response("who are you?", { status: 401, headers: { "www-authenticate": 'Custom realm="svc"', "content-type": "text/plain; charset=utf-8" } });
      }
    },
  });
  return { url: `http://127.0.0.1:${server.port}/check`, seen, stop: () => server.stop(true) };
}
