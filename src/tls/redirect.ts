/**
 * `listen.httpRedirect`: a plain-HTTP listener that sends every request to the same place over
 * HTTPS. 308 rather than 301, so that a POST stays a POST (RFC 9110 §15.4.9). The host is the
 * one the client asked for (its Host field, without the port), and the port the HTTPS
 * listener's, left out when it is 443 (RFC 9110 §4.2.2).
 */
import type { Server } from "bun";
import { errorResponse } from "../errors.ts";
import { HTTP01_PREFIX, http01Answer, http01Response } from "../acme/http01.ts";

export function redirectTarget(req: Request, httpsPort: number): string | undefined {
  const host = req.headers.get("host");
  if (host === null || host === "") return undefined;
  // "[::1]:8080" or "example.com:8080": the name without its port.
  const name = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.split(":")[0]!;
  if (name === "" || /[\s/\\@?#]/.test(name)) return undefined;
  const url = req.url;
  // The target as received: Bun gives an absolute URL, or the bare target without a Host.
  const slash = url.charCodeAt(0) === 47 ? 0 : url.indexOf("/", url.indexOf("//") + 2);
  const target = slash === -1 ? "/" : url.slice(slash);
  return `https://${name}${httpsPort === 443 ? "" : `:${httpsPort}`}${target}`;
}

/**
 * Start the redirecting listener; `httpsPort()` is read per request (the HTTPS port may be
 * ephemeral). `acmeStorage()`: where pending ACME HTTP-01 answers are (acme/http01.ts), which
 * this listener gives before redirecting anything: port 80 is where a CA asks.
 */
export function serveRedirect(host: string, port: number, httpsPort: () => number, acmeStorage: () => string | undefined = () => undefined): Server<unknown> {
  return Bun.serve({
    hostname: host,
    port,
    // Claimed exclusively first (balancer.ts, portFor): shared only with a successor during an upgrade.
    reusePort: true,
    development: false,
    fetch(req) {
      const storage = acmeStorage();
      // Only a request that may be a challenge pays for parsing its URL.
      if (storage !== undefined && req.url.includes(HTTP01_PREFIX)) {
        const answer = http01Answer(storage, new URL(req.url).pathname);
        if (answer !== undefined) return http01Response(answer);
      }
      const location = redirectTarget(req, httpsPort());
      if (location === undefined) {
        return errorResponse("SY_BAD_REQUEST", "a request without a usable Host cannot be redirected to HTTPS", { headers: { connection: "close" } });
      }
      return new Response(null, { status: 308, headers: { location, "content-length": "0" } });
    },
  });
}
