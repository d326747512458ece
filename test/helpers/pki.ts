/**
 * A throwaway PKI for TLS tests, made at test time with the openssl command line: a CA, and
 * certificates it signs for given names (valid, expired, or for other names). Files go to a
 * fresh temporary directory, removed by `remove()`.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

async function openssl(args: string[], cwd: string): Promise<void> {
  const p = Bun.spawn(["openssl", ...args], { cwd, stdout: "ignore", stderr: "pipe" });
  const err = await new Response(p.stderr).text();
  if ((await p.exited) !== 0) throw new Error(`openssl ${args[0]} failed: ${err}`);
}

export interface Issued {
  cert: string;
  key: string;
}

export interface Pki {
  dir: string;
  /** The CA certificate's path. */
  ca: string;
  /**
   * A certificate signed by the CA for `names` (DNS names, or "IP:1.2.3.4"), its CN the first;
   * `days: -1` gives one that expired yesterday. `file` names the files (NAME.pem, NAME.key).
   */
  issue(file: string, names: string[], opts?: { days?: number; cn?: string }): Promise<Issued>;
  remove(): Promise<void>;
}

export async function makePki(): Promise<Pki> {
  const dir = await mkdtemp(join(tmpdir(), "switchyard-pki-"));
  await openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Switchyard Test CA"], dir);
  let serial = 1;
  return {
    dir,
    ca: join(dir, "ca.pem"),
    async issue(file, names, opts = {}) {
      const cn = opts.cn ?? names[0]!.replace(/^IP:/, "");
      await openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${file}.key`, "-out", `${file}.csr`, "-subj", `/CN=${cn}`], dir);
      const san = names.map((n) => (n.startsWith("IP:") ? n : `DNS:${n}`)).join(",");
      await Bun.write(join(dir, `${file}.ext`), `subjectAltName=${san}\n`);
      await openssl([
        "x509", "-req", "-in", `${file}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", String(serial++),
        "-out", `${file}.pem`, "-days", String(opts.days ?? 1), "-extfile", `${file}.ext`,
      ], dir);
      return { cert: join(dir, `${file}.pem`), key: join(dir, `${file}.key`) };
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/** curl's verbose output and body for an HTTPS request, trusting `ca`. */
export async function curl(args: string[]): Promise<{ code: number; body: string; verbose: string }> {
  const p = Bun.spawn(["curl", "-sS", "-v", "--max-time", "10", ...args], { stdout: "pipe", stderr: "pipe" });
  const [body, verbose] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, body, verbose };
}
