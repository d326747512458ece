/**
 * The Bun socket behaviour src/tcp/relay.ts is built on, pinned so that a Bun upgrade that
 * changes it fails here, next to its explanation, rather than somewhere in the relay.
 */
import { afterEach, expect, test } from "bun:test";
import type { Socket } from "bun";
import { waitFor } from "../helpers/wait.ts";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

interface Events {
  log: string[];
  socket?: Socket<undefined>;
}

/** A listener and a connected client, both with allowHalfOpen, recording their events. */
async function pair(): Promise<{ server: Events; client: Events; clientSocket: Socket<undefined> }> {
  const server: Events = { log: [] };
  const client: Events = { log: [] };
  const listener = Bun.listen({
    hostname: "127.0.0.1", port: 0, allowHalfOpen: true,
    socket: {
      open(s) { server.socket = s; },
      data(_s, d) { server.log.push(`data ${d.toString()}`); },
      end() { server.log.push("end"); },
      close(_s, e) { server.log.push(e ? `close ${(e as { code?: string }).code}` : "close"); },
    },
  });
  cleanups.push(() => listener.stop(true));
  const clientSocket = await Bun.connect({
    hostname: "127.0.0.1", port: listener.port, allowHalfOpen: true,
    socket: {
      data(_s, d) { client.log.push(`data ${d.toString()}`); },
      end() { client.log.push("end"); },
      close(_s, e) { client.log.push(e ? `close ${(e as { code?: string }).code}` : "close"); },
    },
  });
  cleanups.push(() => clientSocket.terminate());
  await waitFor(() => server.socket !== undefined, "the server to accept");
  return { server, client, clientSocket };
}

test("shutdown() is a half-close: the peer gets `end`, can still write, and `close` follows both FINs", async () => {
  const { server, client, clientSocket } = await pair();
  clientSocket.write("ping");
  clientSocket.shutdown();
  await waitFor(() => server.log.includes("end"), "the server to see the client's FIN");
  expect(clientSocket.readyState).toBe(1);
  expect(server.socket!.write("pong")).toBe(4);
  server.socket!.shutdown();
  await waitFor(() => client.log.includes("close") && server.log.includes("close"), "both sockets to close");
  // The client's FIN went first: the server's FIN shows up on the client as `close`, no `end`.
  expect(client.log).toEqual(["data pong", "close"]);
  expect(server.log).toEqual(["data ping", "end", "close"]);
});

test("end() is not a half-close: it closes the socket at once, even with allowHalfOpen", async () => {
  const { server, client, clientSocket } = await pair();
  clientSocket.end();
  expect(clientSocket.readyState).toBe(-1);
  expect(client.log).toEqual(["close"]);
  await waitFor(() => server.log.includes("end"), "the server to see the FIN");
});

test("a reset arrives as close(socket, error) with ECONNRESET", async () => {
  const { server, client } = await pair();
  server.socket!.terminate();
  await waitFor(() => client.log.length > 0, "the client to notice");
  expect(client.log).toEqual(["close ECONNRESET"]);
});

test("write(buf, offset) without a length takes the whole buffer's length (so the relay writes subarrays)", async () => {
  const { clientSocket } = await pair();
  const buf = new Uint8Array(16);
  expect(() => clientSocket.write(buf, 8)).toThrow(/out of range/);
  expect(clientSocket.write(buf, 8, 8)).toBe(8);
  expect(clientSocket.write(buf.subarray(8))).toBe(8);
});
