/**
 * Certificate files that change on disk are put in service without a reload
 * (src/tls/file-watch.ts, src/tls/termination.ts), written the ways renewal tools write them:
 * a rename over the old file, cert-manager's `..data` symlink swap, certbot's `live/` symlink
 * pointed at a new file in `archive/`. A pair that does not read keeps the certificates in
 * service and says why. Both engines, and every worker.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "../helpers/wait.ts";
import { startRig, type RigConfig, type TestRig } from "../helpers/balancer.ts";
import { curl, makePki, type Pki } from "../helpers/pki.ts";

let pki: Pki;
let dir: string;
beforeAll(async () => {
  pki = await makePki();
  dir = mkdtempSync(join(tmpdir(), "switchyard-certs-"));
});
afterAll(async () => {
  await pki.remove();
  rmSync(dir, { recursive: true, force: true });
});

const rigs: TestRig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.stop();
});
async function rig(config: RigConfig): Promise<TestRig> {
  const r = await startRig(1, config);
  rigs.push(r);
  return r;
}

/** The CN of the certificate a new connection to `r` is given. */
async function served(r: TestRig): Promise<string | undefined> {
  const res = await curl(["--cacert", pki.ca, "--resolve", `a.test:${r.balancer.port}:127.0.0.1`, `https://a.test:${r.balancer.port}/`]);
  return /subject: CN ?= ?(\S+)/.exec(res.verbose)?.[1];
}

/** The CN of the certificate a new connection that sends no server name is given (curl sends none to an address). */
async function servedNoName(r: TestRig): Promise<string | undefined> {
  const res = await curl(["--cacert", pki.ca, `https://127.0.0.1:${r.balancer.port}/`]);
  return /subject: CN ?= ?(\S+)/.exec(res.verbose)?.[1];
}

let n = 0;
/** A pair for a.test whose CN says which it is. */
const issue = (cn: string) => pki.issue(`w${n++}`, ["a.test", "IP:127.0.0.1"], { cn });

for (const engine of ["socket", "fetch"]) {
  describe(`${engine} engine`, () => {
    test("renamed over the old files: new handshakes get the new pair, no reload", async () => {
      const home = mkdtempSync(join(dir, "rename-"));
      const first = await issue(`first-${engine}.a.test`);
      copyFileSync(first.cert, join(home, "cert.pem"));
      copyFileSync(first.key, join(home, "key.pem"));
      const r = await rig({ engine, listen: { host: "127.0.0.1", port: 0, tls: { cert: join(home, "cert.pem"), key: join(home, "key.pem") } } });
      expect(await served(r)).toBe(`first-${engine}.a.test`);
      expect(await servedNoName(r)).toBe(`first-${engine}.a.test`);
      const next = await issue(`next-${engine}.a.test`);
      copyFileSync(next.key, join(home, "key.tmp"));
      copyFileSync(next.cert, join(home, "cert.tmp"));
      renameSync(join(home, "key.tmp"), join(home, "key.pem"));
      renameSync(join(home, "cert.tmp"), join(home, "cert.pem"));
      await waitFor(async () => (await served(r)) === `next-${engine}.a.test`, "the renamed pair in service");
      expect(r.logLines.some((l) => l.includes("certificate files changed"))).toBe(true);
      // A client that sends no name gets the default certificate, renewed in place too (the
      // fetch engine's retiring server may take a connection for DRAIN_NOTICE_MS more).
      await waitFor(async () => (await servedNoName(r)) === `next-${engine}.a.test`, "the renamed pair in service for clients that send no name");
    });

    test("cert-manager's ..data symlink swap, then a broken pair that keeps the one in service", async () => {
      const home = mkdtempSync(join(dir, "k8s-"));
      const v1 = await issue(`v1-${engine}.a.test`);
      const put = (version: string, pair: { cert: string; key: string }) => {
        mkdirSync(join(home, version));
        copyFileSync(pair.cert, join(home, version, "tls.crt"));
        copyFileSync(pair.key, join(home, version, "tls.key"));
        symlinkSync(version, join(home, "..data_tmp"));
        renameSync(join(home, "..data_tmp"), join(home, "..data"));
      };
      put("v1", v1);
      symlinkSync("..data/tls.crt", join(home, "tls.crt"));
      symlinkSync("..data/tls.key", join(home, "tls.key"));
      const r = await rig({ engine, listen: { host: "127.0.0.1", port: 0, tls: { cert: join(home, "tls.crt"), key: join(home, "tls.key") } } });
      expect(await served(r)).toBe(`v1-${engine}.a.test`);
      const v2 = await issue(`v2-${engine}.a.test`);
      put("v2", v2);
      await waitFor(async () => (await served(r)) === `v2-${engine}.a.test`, "the swapped pair in service");
      // A key that is not the certificate's: the pair in service stays, and the log says why.
      const stranger = await issue(`stranger-${engine}.a.test`);
      mkdirSync(join(home, "v3"));
      copyFileSync(v1.cert, join(home, "v3", "tls.crt"));
      copyFileSync(stranger.key, join(home, "v3", "tls.key"));
      symlinkSync("v3", join(home, "..data_tmp"));
      renameSync(join(home, "..data_tmp"), join(home, "..data"));
      await waitFor(() => r.logLines.some((l) => l.includes("do not read as a pair")), "the broken pair logged");
      expect(await served(r)).toBe(`v2-${engine}.a.test`);
      // A truncated certificate: the same.
      const broken = () => r.logLines.filter((l) => l.includes("do not read as a pair")).length;
      const before = broken();
      writeFileSync(join(home, "v3", "tls.crt"), "-----BEGIN CERTIFICATE-----\nMIIB\n");
      await waitFor(() => broken() > before, "the truncated file logged");
      expect(await served(r)).toBe(`v2-${engine}.a.test`);
    });
  });
}

test("certbot's live/ symlink pointed at a new archive/ file, on every worker", async () => {
  const home = mkdtempSync(join(dir, "certbot-"));
  mkdirSync(join(home, "archive"));
  mkdirSync(join(home, "live"));
  const one = await issue("one.a.test");
  copyFileSync(one.cert, join(home, "archive", "fullchain1.pem"));
  copyFileSync(one.key, join(home, "archive", "privkey1.pem"));
  symlinkSync("../archive/fullchain1.pem", join(home, "live", "fullchain.pem"));
  symlinkSync("../archive/privkey1.pem", join(home, "live", "privkey.pem"));
  const r = await rig({ workers: 2, log: { access: false }, listen: { host: "127.0.0.1", port: 0, tls: { cert: join(home, "live", "fullchain.pem"), key: join(home, "live", "privkey.pem") } } });
  expect(await served(r)).toBe("one.a.test");
  const two = await issue("two.a.test");
  copyFileSync(two.cert, join(home, "archive", "fullchain2.pem"));
  copyFileSync(two.key, join(home, "archive", "privkey2.pem"));
  for (const [link, target] of [["privkey.pem", "privkey2.pem"], ["fullchain.pem", "fullchain2.pem"]] as const) {
    symlinkSync(`../archive/${target}`, join(home, "live", `${link}.new`));
    renameSync(join(home, "live", `${link}.new`), join(home, "live", link));
  }
  // New connections land on either worker (SO_REUSEPORT): ten in a row must all get the new one.
  await waitFor(async () => (await Promise.all(Array.from({ length: 10 }, () => served(r)))).every((cn) => cn === "two.a.test"), "every worker serving the new pair");
}, 30_000);
