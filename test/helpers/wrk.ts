/**
 * wrk as the load in zero-drop tests: 2 threads, 64 connections, for `seconds`; its totals
 * parsed from its report (socket errors of every kind summed, non-2xx/3xx answers apart).
 */
export async function wrk(program: string, url: string, seconds: number): Promise<{ requests: number; errors: number; non2xx: number; out: string }> {
  const proc = Bun.spawn([program, "-t2", "-c64", `-d${seconds}s`, "--timeout", "5s", url], { stdout: "pipe", stderr: "pipe" });
  const [out] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? -1),
    errors: sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0,
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    out,
  };
}
