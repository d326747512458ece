/**
 * The dashboard in a real browser: Debian's Chromium, driven by playwright-core. Three sim
 * backends behind the balancer with traffic flowing; the page must show them up, its counters
 * must rise, and a backend taken down must show as down within a few seconds without a reload.
 * Saves test-artifacts/dashboard.png.
 *
 * Chromium comes from apt (`apt-get install -y chromium`; .ci/run installs it when missing).
 * Where it is missing and apt-get exists, the test fails saying so; it is skipped, with a
 * message, only where Chromium cannot be installed at all (no apt-get).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { createAdminApp } from "../../src/admin/app.ts";
import { fakeSource } from "./fixtures.ts";
import { startStack, traffic, waitFor } from "./helpers.ts";

const CHROMIUM = Bun.which("chromium") ?? (existsSync("/usr/bin/chromium") ? "/usr/bin/chromium" : undefined);
const CAN_INSTALL = Bun.which("apt-get") !== null;
const SKIP = CHROMIUM === undefined && !CAN_INSTALL;
if (SKIP) {
  console.warn(
    "SKIPPED dashboard browser tests: Chromium is not on PATH and apt-get is not available to install it. " +
      "Install Chromium (Debian: apt-get install -y chromium) to run them.",
  );
}

const ARTIFACT = join(import.meta.dir, "../../test-artifacts/dashboard.png");

let context: BrowserContext | undefined;
let userDataDir: string | undefined;

beforeAll(async () => {
  if (SKIP) return;
  if (CHROMIUM === undefined) {
    throw new Error("Chromium is not installed: run `apt-get install -y chromium` (.ci/run does this when it is missing)");
  }
  userDataDir = mkdtempSync(join(tmpdir(), "switchyard-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1440, height: 900 },
    colorScheme: "dark",
  });
});

afterAll(async () => {
  await context?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

/** A page that records console errors and uncaught exceptions (a CSP violation is one). */
async function openPage(): Promise<{ page: Page; errors: string[] }> {
  const page = await context!.newPage();
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  // The page must not reach for anything but its own origin.
  page.on("request", (r) => {
    if (!r.url().startsWith("http://127.0.0.1:")) errors.push(`request to ${r.url()}`);
  });
  return { page, errors };
}

const number = (text: string | null) => Number((text ?? "").replace(/[^\d.]/g, ""));

describe.skipIf(SKIP)("dashboard in Chromium", () => {
  test("three backends up, counters rising, one taken down shows down without a reload", async () => {
    const stack = await startStack(3);
    const load = traffic(`${stack.balancer.url}/`, 3);
    const { page, errors } = await openPage();
    try {
      await page.goto(`${stack.adminUrl}/`);
      await page.waitForSelector('#live[data-state="live"]', { timeout: 5000 });
      // Proof that nothing reloads the page later: this marker would be gone.
      await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));

      await page.waitForFunction(
        () => [...document.querySelectorAll("#backends tbody tr")].filter((tr) => (tr as HTMLElement).dataset.state === "up").length === 3,
        undefined,
        { timeout: 5000 },
      );
      const pills = await page.$$eval("#backends tbody tr .pill", (els) => els.map((e) => e.textContent));
      expect(pills).toEqual(["up", "up", "up"]);
      const names = await page.$$eval("#backends tbody tr", (rows) => rows.map((r) => (r as HTMLElement).dataset.backend));
      expect(names).toEqual(["backend-1", "backend-2", "backend-3"]);
      expect(await page.textContent("#backends-available")).toBe("3 / 3");

      // The counters rise with the traffic, from events alone.
      const first = number(await page.textContent("#total-requests"));
      await waitFor(async () => number(await page.textContent("#total-requests")) > first + 20, "the request counter to rise", 4000);
      const rowRequests = await page.$$eval('#backends tbody tr td[data-col="requests"]', (tds) => tds.map((td) => td.textContent));
      for (const r of rowRequests) expect(number(r)).toBeGreaterThan(0);
      await page.waitForFunction(() => document.querySelectorAll("#chart-rps polygon").length === 3, undefined, { timeout: 4000 });

      // Take backend-2 down: its health check fails and the page must follow within seconds.
      const downAt = performance.now();
      stack.cluster.backends[1]!.setHealth("down");
      await page.waitForFunction(
        () => {
          const tr = document.querySelector('#backends tr[data-backend="backend-2"]') as HTMLElement | null;
          return tr?.dataset.state === "down" && tr.querySelector(".pill")?.textContent === "down";
        },
        undefined,
        { timeout: 5000 },
      );
      expect(performance.now() - downAt).toBeLessThan(5000);
      expect(await page.textContent("#backends-available")).toBe("2 / 3");
      expect(await page.$$eval("#backends tbody tr .pill", (els) => els.map((e) => e.textContent))).toEqual(["up", "down", "up"]);
      expect(await page.textContent('#backends tr[data-backend="backend-2"] td[data-col="check"]')).toContain("status 503");
      expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);

      // A second more so the charts and the "changed" column show the event, then the artifact.
      await Bun.sleep(1200);
      mkdirSync(join(ARTIFACT, ".."), { recursive: true });
      await page.screenshot({ path: ARTIFACT, fullPage: true });
      expect(existsSync(ARTIFACT)).toBe(true);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
      await load.stop();
      await stack.stop();
    }
  }, 30_000);

  test("the live indicator shows a lost stream, and the page reconnects by itself", async () => {
    const src = fakeSource([{ name: "a", url: "http://127.0.0.1:9" }]);
    const admin = createAdminApp(src);
    const serveAdmin = (port: number) => Bun.serve({ hostname: "127.0.0.1", port, reusePort: false, fetch: (req, server) => admin.fetch(req, { server }) });
    let server = serveAdmin(0);
    const port = server.port!;
    const { page, errors } = await openPage();
    try {
      await page.goto(`http://127.0.0.1:${port}/`);
      await page.waitForSelector('#live[data-state="live"]', { timeout: 5000 });
      await page.evaluate(() => ((window as unknown as { marker: number }).marker = 7));
      await server.stop(true);
      await page.waitForSelector('#live[data-state="reconnecting"]', { timeout: 5000 });
      expect(await page.textContent("#live")).toBe("reconnecting…");
      server = serveAdmin(port);
      await page.waitForSelector('#live[data-state="live"]', { timeout: 6000 });
      expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(7);
      // Failed reconnection attempts while the server was away are logged by the browser itself.
      expect(errors.filter((e) => !/ERR_CONNECTION_REFUSED|Failed to load resource/.test(e))).toEqual([]);
    } finally {
      await page.close();
      await admin.stop();
      await server.stop(true);
    }
  }, 20_000);
});
