/**
 * The gRPC peers of bench/h2.ts, written with @grpc/grpc-js and a generic service definition
 * (Buffer in, Buffer out: no proto files), as test/engine/h2/grpc-js.test.ts does. One file, two
 * programs, each in its own process so that neither's CPU is counted as a proxy's:
 *
 *   bun bench/grpc-peers.ts servers [--count 3]
 *       `count` servers of the unary method /bench.Echo/Say (it answers the request's bytes),
 *       each printing "listening on http://127.0.0.1:PORT".
 *   bun bench/grpc-peers.ts load --target HOST:PORT [--concurrency 64] [--channels 4] [--duration 5]
 *       keeps `concurrency` unary calls in flight, spread over `channels` channels (each its own
 *       HTTP/2 connection), for `duration` seconds, then prints one JSON line:
 *       { calls, errors, seconds, meanMs, p99Ms }. Calls that error are counted, not timed.
 */
import * as grpc from "@grpc/grpc-js";
import { parseArgs } from "node:util";

const bytes = (b: Buffer) => b;
const SERVICE = {
  say: {
    path: "/bench.Echo/Say", requestStream: false, responseStream: false,
    requestSerialize: bytes, requestDeserialize: bytes, responseSerialize: bytes, responseDeserialize: bytes,
  },
} as unknown as grpc.ServiceDefinition;
const EchoClient = grpc.makeGenericClientConstructor(SERVICE, "Echo");
type Echo = grpc.Client & { say(req: Buffer, cb: (e: grpc.ServiceError | null, r?: Buffer) => void): void };

const { values, positionals } = parseArgs({
  // process.argv, not Bun.argv: bench/h2.ts bundles this file to run its servers under Node.
  args: process.argv.slice(2),
  allowPositionals: true,
  options: {
    count: { type: "string", default: "3" },
    target: { type: "string" },
    concurrency: { type: "string", default: "64" },
    channels: { type: "string", default: "4" },
    duration: { type: "string", default: "5" },
  },
});

if (positionals[0] === "servers") {
  for (let i = 0; i < Number(values.count); i++) {
    const server = new grpc.Server();
    server.addService(SERVICE, { say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request) });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    console.log(`listening on http://127.0.0.1:${port}`);
  }
} else if (positionals[0] === "load" && values.target) {
  // A local subchannel pool: each channel its own connection (grpc-js shares one across
  // channels to the same target by default).
  const channels = Array.from({ length: Number(values.channels) }, () =>
    new EchoClient(values.target!, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 }) as unknown as Echo);
  const request = Buffer.from("hello from the load client");
  const call = (c: Echo) => new Promise<boolean>((resolve) => c.say(request, (e) => resolve(e === null)));
  // Connected and warm before the clock starts.
  await Promise.all(channels.map((c) => call(c)));
  const end = performance.now() + Number(values.duration) * 1000;
  const latencies: number[] = [];
  let errors = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: Number(values.concurrency) }, async (_, i) => {
    const c = channels[i % channels.length]!;
    while (performance.now() < end) {
      const t0 = performance.now();
      if (await call(c)) latencies.push(performance.now() - t0);
      else errors++;
    }
  }));
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  const meanMs = latencies.reduce((s, x) => s + x, 0) / Math.max(1, latencies.length);
  const p99Ms = latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))]! : NaN;
  console.log(JSON.stringify({ calls: latencies.length, errors, seconds, meanMs, p99Ms }));
  for (const c of channels) c.close();
} else {
  console.error("usage: bun bench/grpc-peers.ts servers [--count N] | load --target HOST:PORT [--concurrency N] [--channels N] [--duration S]");
  process.exit(2);
}
