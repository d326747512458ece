/**
 * DNS-01 (RFC 8555 §8.4): the CA looks up a TXT record at `_acme-challenge.<name>`. DNS is
 * the operator's, behind whatever API their provider has, so the record is set by a command
 * they give (`tls.acme.dns01.command`), called as lego's `exec` provider and certbot's hooks
 * are: `COMMAND... present FQDN VALUE` before the CA is told to look, and
 * `COMMAND... cleanup FQDN VALUE` after (FQDN with its final dot). A script written for lego
 * works unchanged.
 *
 * The command runs in the process that orders (the owner), with a bounded time, its output
 * kept to the last 2 KiB for the error. DNS-01 is the only challenge that proves a wildcard
 * name (RFC 8555 §7.1.3).
 */

/** What `tls.acme.dns01` says: the command (argv, no shell), its time limit, and a wait for the record to reach the CA's resolvers. */
export interface Dns01Settings {
  readonly command: readonly string[];
  readonly timeoutMs: number;
  readonly propagationDelayMs: number;
}

/** Output kept for an error message: the end, where a failing command says why. */
const OUTPUT_TAIL = 2048;

/** The TXT record's owner name for `name` (a wildcard's is its base name's, RFC 8555 §8.4), with the final dot. */
export function challengeRecordName(name: string): string {
  return `_acme-challenge.${name.replace(/^\*\./, "").replace(/\.$/, "").toLowerCase()}.`;
}

/** Run `COMMAND present|cleanup FQDN VALUE`; rejects with what it printed when it fails or overruns. */
export async function runDns01Hook(s: Dns01Settings, action: "present" | "cleanup", fqdn: string, value: string): Promise<void> {
  const argv = [...s.command, action, fqdn, value];
  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  } catch (e) {
    throw new Error(`dns01.command ${JSON.stringify(s.command[0])} cannot be run: ${(e as Error).message}`);
  }
  const out = collectTail(proc.stdout as ReadableStream<Uint8Array>);
  const err = collectTail(proc.stderr as ReadableStream<Uint8Array>);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const overrun = new Promise<"overrun">((resolve) => (timer = setTimeout(() => resolve("overrun"), s.timeoutMs)));
  try {
    const code = await Promise.race([proc.exited, overrun]);
    if (code === "overrun") {
      proc.kill("SIGKILL");
      throw new Error(`dns01.command ${action} ${fqdn} did not finish within ${s.timeoutMs / 1000}s`);
    }
    if (code !== 0) {
      // Its output, once its pipes close; a child it left behind may hold them open, so not for long.
      await Promise.race([Promise.all([out.ended, err.ended]), Bun.sleep(OUTPUT_GRACE_MS)]);
      const said = (err.text() || out.text()).trim();
      throw new Error(`dns01.command ${action} ${fqdn} exited with ${code}${said === "" ? "" : `: ${said}`}`);
    }
  } finally {
    clearTimeout(timer);
  }
}

/** How long a failed command's output is waited for after it exits. */
const OUTPUT_GRACE_MS = 1000;

/** The last OUTPUT_TAIL bytes of a stream as they arrive, read to its end (so the process never blocks on a full pipe). */
function collectTail(stream: ReadableStream<Uint8Array>): { text(): string; ended: Promise<void> } {
  let kept = new Uint8Array(0);
  const ended = (async () => {
    for await (const chunk of stream) {
      const joined = new Uint8Array(kept.length + chunk.length);
      joined.set(kept);
      joined.set(chunk, kept.length);
      kept = joined.length > OUTPUT_TAIL ? joined.slice(joined.length - OUTPUT_TAIL) : joined;
    }
  })().catch(() => {});
  return { text: () => new TextDecoder().decode(kept), ended };
}
