/**
 * Real gRPC peers through the socket engine, HTTP/2 at both ends: @grpc/grpc-js servers behind an
 * h2c pool, a grpc-js client with one channel to the proxy. Unary, server-streaming and bidi
 * calls, their status in trailers, and per-call spreading over three backends from one channel.
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { startRig, type TestRig } from "../../helpers/balancer.ts";

const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
  path: `/test.Echo/${name}`, requestStream, responseStream,
  requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize,
  responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize,
});
const ECHO = {
  say: method("Say", false, false), list: method("List", false, true), chat: method("Chat", true, true),
  sum: method("Sum", true, false), slow: method("Slow", false, false), ticks: method("Ticks", false, true),
} as unknown as grpc.ServiceDefinition;
const EchoClient = grpc.makeGenericClientConstructor(ECHO, "Echo");

/** A grpc-js server of the Echo service that says its name in every answer. */
async function echoServer(name: string, unavailable = false): Promise<{ port: number; server: grpc.Server }> {
  const server = new grpc.Server();
  server.addService(ECHO, {
    say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      if (unavailable) return cb({ code: grpc.status.UNAVAILABLE, details: `${name} is shutting down` });
      if (call.request.toString() === "fail") return cb({ code: grpc.status.FAILED_PRECONDITION, details: `no from ${name}` });
      cb(null, Buffer.from(`${name}:${call.request.toString()}`));
    },
    list: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      for (let i = 0; i < 3; i++) call.write(Buffer.from(`${name}:${i}`));
      call.end();
    },
    chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on("data", (d: Buffer) => call.write(Buffer.from(`${name}:${d.toString()}`)));
      call.on("end", () => call.end());
    },
    // Client streaming: the messages' lengths added up.
    sum: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      let total = 0;
      call.on("data", (d: Buffer) => (total += d.length));
      call.on("end", () => cb(null, Buffer.from(`${name}:${total}`)));
    },
    // Answers after as many ms as the request says, unless the call is cancelled first.
    slow: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const t = setTimeout(() => cb(null, Buffer.from(`${name}:late`)), Number(call.request.toString()));
      call.on("cancelled", () => clearTimeout(t));
    },
    // A message every 20 ms until the call ends.
    ticks: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      let i = 0;
      const t = setInterval(() => call.write(Buffer.from(`${name}:${i++}`)), 20);
      call.on("cancelled", () => clearInterval(t));
      call.on("close", () => clearInterval(t));
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return { port, server };
}

let rig: TestRig | undefined;
const servers: grpc.Server[] = [];
const clients: grpc.Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await rig?.stop();
  rig = undefined;
  for (const s of servers.splice(0)) s.forceShutdown();
});

type Echo = grpc.Client & Record<"say" | "list" | "chat" | "sum" | "slow" | "ticks", (...a: unknown[]) => unknown>;

async function setup(count: number, more: Record<string, unknown> = {}, unavailable: string[] = []): Promise<Echo> {
  const backends = [];
  for (let i = 0; i < count; i++) {
    const s = await echoServer(`b${i}`, unavailable.includes(`b${i}`));
    servers.push(s.server);
    backends.push({ name: `b${i}`, url: `http://127.0.0.1:${s.port}` });
  }
  rig = await startRig(0, { engine: "socket", protocol: "h2c", strategy: "round-robin", backends, ...more });
  const client = new EchoClient(`127.0.0.1:${rig.balancer.port}`, grpc.credentials.createInsecure());
  clients.push(client);
  return client as unknown as Echo;
}

const say = (c: Echo, text: string) =>
  new Promise<string>((resolve, reject) => c.say(Buffer.from(text), (e: grpc.ServiceError | null, r: Buffer) => (e ? reject(e) : resolve(r.toString()))));

describe("gRPC through the proxy, HTTP/2 at both ends (grpc-js)", () => {
  test("unary calls from one channel spread over three backends, call by call", async () => {
    const c = await setup(3);
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => say(c, `m${i}`)));
    const by = new Map<string, number>();
    for (const a of answers) by.set(a.split(":")[0]!, (by.get(a.split(":")[0]!) ?? 0) + 1);
    expect([...by.entries()].sort()).toEqual([["b0", 10], ["b1", 10], ["b2", 10]]);
  });

  test("a backend's error status reaches the client (grpc-status and grpc-message in trailers)", async () => {
    const c = await setup(1);
    const e = await say(c, "fail").then(() => undefined, (err: grpc.ServiceError) => err);
    expect(e?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(e?.details).toBe("no from b0");
  });

  test("a unary call's message is kept whole: retry.onGrpcStatus sends it again to another backend", async () => {
    const c = await setup(2, { retry: { onGrpcStatus: ["UNAVAILABLE"] } }, ["b0"]);
    for (let i = 0; i < 4; i++) expect(await say(c, `m${i}`)).toBe(`b1:m${i}`);
  });

  test("server streaming and bidi calls", async () => {
    const c = await setup(1);
    const listed = await new Promise<string[]>((resolve, reject) => {
      const got: string[] = [];
      const call = c.list(Buffer.from("")) as grpc.ClientReadableStream<Buffer>;
      call.on("data", (d: Buffer) => got.push(d.toString()));
      call.on("end", () => resolve(got));
      call.on("error", reject);
    });
    expect(listed).toEqual(["b0:0", "b0:1", "b0:2"]);
    const chatted = await new Promise<string[]>((resolve, reject) => {
      const got: string[] = [];
      const call = c.chat() as grpc.ClientDuplexStream<Buffer, Buffer>;
      call.on("data", (d: Buffer) => {
        got.push(d.toString());
        if (got.length < 3) call.write(Buffer.from(`x${got.length}`));
        else call.end();
      });
      call.on("end", () => resolve(got));
      call.on("error", reject);
      call.write(Buffer.from("x0"));
    });
    expect(chatted).toEqual(["b0:x0", "b0:x1", "b0:x2"]);
  });

  test("client streaming: every message reaches the backend, one answer comes back", async () => {
    const c = await setup(1);
    const answer = await new Promise<string>((resolve, reject) => {
      const call = c.sum((e: grpc.ServiceError | null, r: Buffer) => (e ? reject(e) : resolve(r.toString()))) as grpc.ClientWritableStream<Buffer>;
      for (let i = 0; i < 50; i++) call.write(Buffer.alloc(1000, 97));
      call.end();
    });
    expect(answer).toBe("b0:50000");
  });

  test("a deadline: the client gets DEADLINE_EXCEEDED at its deadline, not the backend's answer later", async () => {
    const c = await setup(1);
    const t = performance.now();
    const e = await new Promise<grpc.ServiceError | undefined>((resolve) =>
      c.slow(Buffer.from("3000"), { deadline: Date.now() + 300 }, (err: grpc.ServiceError | null) => resolve(err ?? undefined)),
    );
    expect(e?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(performance.now() - t).toBeLessThan(2500);
    // The proxy is free again: the next call is answered.
    expect(await say(c, "after")).toBe("b0:after");
  });

  test("a backend killed mid-stream: the call ends with an error, not a hang; the next calls go to the other backend", async () => {
    const c = await setup(2);
    // Round robin: the first call goes to b0, which is killed once a few messages are in.
    const outcome = await new Promise<{ got: number; error?: grpc.ServiceError }>((resolve) => {
      let got = 0;
      const call = c.ticks(Buffer.from("")) as grpc.ClientReadableStream<Buffer>;
      call.on("data", (d: Buffer) => {
        got++;
        if (got === 3) {
          expect(d.toString()).toStartWith("b0:");
          servers[0]!.forceShutdown();
        }
      });
      call.on("error", (error: grpc.ServiceError) => resolve({ got, error }));
      call.on("end", () => resolve({ got }));
    });
    console.log(`killed mid-stream: ${outcome.got} messages, then ${outcome.error?.code} ${outcome.error?.details}`);
    expect(outcome.got).toBeGreaterThanOrEqual(3);
    expect(outcome.error).toBeDefined();
    expect([grpc.status.UNAVAILABLE, grpc.status.INTERNAL, grpc.status.CANCELLED, grpc.status.UNKNOWN]).toContain(outcome.error!.code);
    // b0 is gone: calls from the same channel keep being answered, by b1 (passive health and retries of refused connections).
    for (let i = 0; i < 4; i++) expect(await say(c, `n${i}`)).toBe(`b1:n${i}`);
  });
});
