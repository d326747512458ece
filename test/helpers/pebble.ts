/**
 * A real ACME CA for tests: Debian's pebble (Let's Encrypt's test server) on loopback, with
 * pebble-challtestsrv as its DNS, answering every name with 127.0.0.1 (no AAAA, so that pebble
 * dials IPv4). pebble validates for real: it connects back to `httpPort` for HTTP-01. Its API
 * certificate is made here with openssl; its CA (the roots it issues from) is fetched from its
 * management port. Both processes are stopped by stop().
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "./wait.ts";

export interface Pebble {
  /** The ACME directory URL. */
  readonly directory: string;
  /** The CA file that pebble's API certificate chains to (acme.directoryCa): the certificate itself, self-signed. */
  readonly apiCa: string;
  /** Its key, for a test server that stands beside pebble under the same name. */
  readonly apiKey: string;
  /** The root CA of the certificates it issues, as a file for curl --cacert. */
  readonly roots: string;
  /** pebble's management API: /roots/N, /intermediates/N (N > 0 with alternateRoots). */
  readonly management: string;
  /** pebble-challtestsrv's management API (POST /set-txt, /clear-txt), where a DNS-01 hook sets its records. */
  readonly dnsManagement: string;
  /** Orders it created so far (from its log). */
  orders(): number;
  /** Its log so far. */
  log(): string;
  stop(): Promise<void>;
}

/** A free TCP port on loopback (bound, then released). */
export function freePort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

async function freeUdpPort(): Promise<number> {
  const s = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
  const port = s.port;
  s.close();
  return port;
}

function collect(stream: ReadableStream<Uint8Array>, into: { text: string }): void {
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of stream) into.text += dec.decode(chunk, { stream: true });
  })();
}

/**
 * `validity`: seconds a certificate it issues is valid (pebble's certificateValidityPeriod).
 * `eab`: HMAC keys (base64url) by key ID; given, pebble registers no account without a binding
 * to one of them (RFC 8555 §7.3.4). `alternateRoots`: chains it offers besides its default, each
 * up to a root of its own (RFC 8555 §7.4.2).
 */
export async function startPebble(opts: { httpPort: number; tlsPort?: number; validity?: number; eab?: Record<string, string>; alternateRoots?: number }): Promise<Pebble> {
  const dir = await mkdtemp(join(tmpdir(), "switchyard-pebble-"));
  const openssl = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
    "-days", "2", "-subj", "/CN=pebble test API", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], { cwd: dir, stderr: "pipe" });
  if (openssl.exitCode !== 0) throw new Error(`openssl: ${openssl.stderr.toString()}`);
  const dns = await freeUdpPort();
  const api = freePort();
  const mgmt = freePort();
  await Bun.write(join(dir, "pebble.json"), JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${api}`, managementListenAddress: `127.0.0.1:${mgmt}`,
      certificate: join(dir, "cert.pem"), privateKey: join(dir, "key.pem"),
      httpPort: opts.httpPort, tlsPort: opts.tlsPort ?? freePort(),
      ocspResponderURL: "", externalAccountBindingRequired: opts.eab !== undefined,
      ...(opts.eab !== undefined ? { externalAccountMACKeys: opts.eab } : {}),
      ...(opts.validity !== undefined ? { certificateValidityPeriod: opts.validity } : {}),
    },
  }));
  const dnsLog = { text: "" };
  const ctsManagement = freePort();
  const cts = Bun.spawn(["pebble-challtestsrv", "-dns01", `127.0.0.1:${dns}`, "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", `127.0.0.1:${ctsManagement}`,
    "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""], { stdout: "pipe", stderr: "pipe" });
  collect(cts.stdout, dnsLog);
  collect(cts.stderr, dnsLog);
  const log = { text: "" };
  // NOSLEEP: validate at once; NONCEREJECT=0: no deliberately bad nonces; AUTHZREUSE=0: every order validates anew.
  const pebble = Bun.spawn(["pebble", "-config", join(dir, "pebble.json"), "-dnsserver", `127.0.0.1:${dns}`], {
    cwd: dir, stdout: "pipe", stderr: "pipe",
    env: { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0", ...(opts.alternateRoots !== undefined ? { PEBBLE_ALTERNATE_ROOTS: String(opts.alternateRoots) } : {}) },
  });
  collect(pebble.stdout, log);
  collect(pebble.stderr, log);
  const stop = async () => {
    pebble.kill();
    cts.kill();
    await Promise.all([pebble.exited, cts.exited]);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(() => log.text.includes("ACME directory available") && dnsLog.text.includes("Starting"), `pebble to start (log: ${log.text.slice(-300)} ${dnsLog.text.slice(-300)})`, 10_000, 20);
    const apiCa = join(dir, "cert.pem");
    const ca = await Bun.file(apiCa).text();
    // pebble logs its listeners before their goroutines have bound them: ask until one answers.
    let rootPem = "";
    await waitFor(async () => {
      const root = await fetch(`https://127.0.0.1:${mgmt}/roots/0`, { tls: { ca } }).catch(() => undefined);
      if (root?.ok === true) rootPem = await root.text();
      return rootPem !== "";
    }, "pebble's management port to answer /roots/0", 10_000, 20);
    const roots = join(dir, "roots.pem");
    await Bun.write(roots, rootPem);
    return {
      directory: `https://127.0.0.1:${api}/dir`, apiCa, apiKey: join(dir, "key.pem"), roots, management: `https://127.0.0.1:${mgmt}`, dnsManagement: `http://127.0.0.1:${ctsManagement}`,
      orders: () => log.text.split("\n").filter((l) => l.includes("Added order")).length,
      log: () => log.text,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
