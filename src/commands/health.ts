/**
 * `switchyard health`: asks a running balancer's admin port whether it is alive, and exits 0
 * (yes) or 1 (no). It is the container HEALTHCHECK, so images need no curl or shell: the binary
 * checks itself.
 */
import { parseArgs } from "node:util";
import { parseDuration } from "../config/units.ts";

export const DEFAULT_HEALTH_URL = "http://127.0.0.1:8081/healthz";

export const HEALTH_HELP = `Usage: switchyard health [--url URL] [--timeout 2s]

Requests URL and exits 0 when it answers 2xx, 1 when it answers anything else or cannot be
reached in time. A URL without a path gets /healthz; give .../readyz to ask whether any
backend is available.
  --url URL        the endpoint to ask (default: $SWITCHYARD_HEALTH_URL, else
                   ${DEFAULT_HEALTH_URL}, the admin port's liveness endpoint)
  --timeout TIME   how long to wait for the answer (default 2s)
  --help           show this help`;

/** Exit codes: 0 healthy, 1 unhealthy or unreachable, 2 bad usage. */
export async function runHealthCommand(argv: string[]): Promise<number> {
  let flags;
  try {
    flags = parseArgs({
      args: argv,
      options: { url: { type: "string" }, timeout: { type: "string" }, help: { type: "boolean" } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    console.error(`switchyard health: ${(e as Error).message}\n\n${HEALTH_HELP}`);
    return 2;
  }
  if (flags.help) {
    console.log(HEALTH_HELP);
    return 0;
  }
  const timeoutMs = parseDuration(flags.timeout ?? "2s");
  if (timeoutMs === undefined || timeoutMs <= 0) {
    console.error(`switchyard health: --timeout: got "${flags.timeout}", expected a duration like "500ms" or "2s"`);
    return 2;
  }
  let url: URL;
  try {
    // The environment variable lets a container change what its image's HEALTHCHECK asks
    // (another admin port, or a sim's /health) without repeating the whole check.
    url = new URL(flags.url ?? (process.env.SWITCHYARD_HEALTH_URL || DEFAULT_HEALTH_URL));
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("not http(s)");
  } catch {
    const given = flags.url !== undefined ? `--url: got "${flags.url}"` : `SWITCHYARD_HEALTH_URL: got "${process.env.SWITCHYARD_HEALTH_URL}"`;
    console.error(`switchyard health: ${given}, expected an http(s) URL like ${DEFAULT_HEALTH_URL}`);
    return 2;
  }
  if (url.pathname === "/") url.pathname = "/healthz";
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: "manual" });
    const body = (await res.text()).trim();
    if (res.ok) {
      console.log(`${url}: ${res.status} ${body}`);
      return 0;
    }
    console.error(`switchyard health: ${url}: status ${res.status} ${body}`);
    return 1;
  } catch (e) {
    const err = e as { name?: string; code?: string; message?: string };
    const why = err.name === "TimeoutError" ? `no answer within ${timeoutMs}ms` : (err.code ?? err.message ?? String(e));
    console.error(`switchyard health: ${url}: ${why}`);
    return 1;
  }
}
