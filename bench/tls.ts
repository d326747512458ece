/**
 * TLS termination against nginx with the same certificate, side by side in one run, for an
 * ECDSA P-256 and an RSA 2048 certificate:
 *
 *   - "handshakes": one request per connection (wrk sends `Connection: close`, so every request
 *     is a new TCP connection and a full TLS handshake: wrk offers no session to resume);
 *   - "keep-alive": requests over connections kept open, after their one handshake.
 *
 * Both proxies forward to the same sim backends over plain HTTP with upstream keep-alive;
 * Switchyard runs its default socket engine in one process, nginx one worker. For each
 * scenario and key type, each target's req/s, p99 and its own CPU per request (user + system
 * of its processes from /proc, divided by the requests wrk completed: harness.ts), median and
 * spread over interleaved rounds, and Switchyard's ratio to nginx. Target (issue 26): at least
 * 0.8× nginx's req/s on both.
 *
 *   bun bench/tls.ts [--duration 5] [--rounds 3] [--connections 64] [--max-steal 5]
 *   BENCH_QUICK=1 bun bench/tls.ts      a smoke run: 1 s runs, 1 round
 *
 * Needs wrk, nginx and openssl (apt-get install wrk nginx openssl). Linux only (/proc),
 * loopback only, ephemeral ports, bounded in time; every process it starts is stopped by PID.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { Processes, cleanRounds, freePort, interleaved, median, need, nginxProxyPass, nginxWith, requireKept, setAsideNote, sim, spread, switchyard, wrk, type Target, type WrkResult } from "./harness.ts";

const quick = process.env.BENCH_QUICK === "1";
const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: quick ? "1" : "5" },
    rounds: { type: "string", default: quick ? "1" : "3" },
    connections: { type: "string", default: "64" },
    "max-steal": { type: "string", default: "5" },
  },
});
need("bench/tls.ts", ["wrk", "nginx", "openssl"], "wrk nginx openssl");

const procs = new Processes();
const KEYS = ["ecdsa-p256", "rsa-2048"] as const;
type KeyKind = (typeof KEYS)[number];
const SCENARIOS = [
  { name: "handshakes", headers: { Connection: "close" } as Record<string, string> },
  { name: "keep-alive", headers: {} as Record<string, string> },
] as const;

/** A self-signed certificate for 127.0.0.1 with a key of `kind`, in the bench's directory. */
async function certificate(kind: KeyKind): Promise<{ cert: string; key: string }> {
  const cert = join(procs.dir, `${kind}.pem`);
  const key = join(procs.dir, `${kind}.key`);
  const newkey = kind === "ecdsa-p256" ? ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] : ["-newkey", "rsa:2048"];
  const p = Bun.spawn(["openssl", "req", "-x509", ...newkey, "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { stdout: "ignore", stderr: "pipe" });
  if ((await p.exited) !== 0) throw new Error(`openssl: ${await new Response(p.stderr).text()}`);
  return { cert, key };
}

try {
  const { backends } = await sim(procs, { count: 2 });
  const targets: (Target & { key: KeyKind; proxy: "switchyard" | "nginx" })[] = [];
  for (const kind of KEYS) {
    const c = await certificate(kind);
    const sy = await switchyard(procs, `switchyard ${kind}`, {
      listen: { host: "127.0.0.1", port: 0, tls: { cert: c.cert, key: c.key } },
      backends: backends.map((b) => ({ url: `http://${b}` })),
    });
    targets.push({ ...sy, key: kind, proxy: "switchyard" });
    const port = freePort();
    const n = await nginxWith(procs, `
  upstream pool { ${backends.map((b) => `server ${b};`).join(" ")} keepalive 64; }
  server { listen 127.0.0.1:${port} ssl; ssl_certificate ${c.cert}; ssl_certificate_key ${c.key};
    ssl_protocols TLSv1.2 TLSv1.3; keepalive_requests 1000000;
    location / { ${nginxProxyPass("pool")} } }`, []);
    // nginx's TLS port answers only TLS: wait for it to accept.
    await waitAccepting(port);
    targets.push({ name: `nginx ${kind}`, port, pids: n.pids, key: kind, proxy: "nginx" });
  }

  const maxSteal = Number(values["max-steal"]);
  const results = new Map<string, WrkResult[]>();
  for (const sc of SCENARIOS) {
    const r = await cleanRounds(Number(values.rounds), maxSteal, interleaved(targets, (t) => wrk(t, { connections: Number(values.connections), duration: values.duration!, headers: sc.headers, scheme: "https" })));
    requireKept(r, maxSteal);
    for (const run of r.kept) {
      const k = `${sc.name}|${run.name}`;
      results.set(k, [...(results.get(k) ?? []), run]);
    }
    console.log(`\n${sc.name} (${setAsideNote(r, maxSteal)})`);
  }

  console.log(`\nbench/tls.ts, ${new Date().toISOString().slice(0, 10)}, wrk -c${values.connections} -d${values.duration}s, ${values.rounds} interleaved round(s)`);
  console.log("| scenario | key | target | req/s | p99 | own CPU µs/req | errors |");
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  const verdicts: string[] = [];
  for (const sc of SCENARIOS) {
    for (const kind of KEYS) {
      const of = (proxy: string) => results.get(`${sc.name}|${proxy} ${kind}`) ?? [];
      for (const proxy of ["switchyard", "nginx"]) {
        const runs = of(proxy);
        console.log(
          `| ${sc.name} | ${kind} | ${proxy} | ${spread(runs.map((r) => r.rps), 0)} | ${runs.map((r) => r.p99).join(", ")} | ${spread(runs.map((r) => r.user + r.sys))} | ${runs.reduce((n, r) => n + r.errors, 0)} |`,
        );
      }
      const ratio = median(of("switchyard").map((r) => r.rps)) / median(of("nginx").map((r) => r.rps));
      verdicts.push(`${sc.name}, ${kind}: switchyard ${ratio.toFixed(2)}× nginx's req/s (target 0.8: ${ratio >= 0.8 ? "met" : "missed"})`);
    }
  }
  console.log("");
  for (const v of verdicts) console.log(v);
} finally {
  await procs.stop();
}

/** Resolves once something accepts TCP connections on `port` (a TLS port answers no plain HTTP). */
async function waitAccepting(port: number): Promise<void> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    try {
      const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      s.end();
      return;
    } catch {
      if (performance.now() > deadline) throw new Error(`nothing accepts on ${port}`);
      await Bun.sleep(50);
    }
  }
}
