/**
 * The dashboard in a real browser: Debian's Chromium, driven by playwright-core. Three sim
 * backends behind the balancer with traffic flowing; the page must show them up, its counters
 * must rise, and a backend taken down must show as down within a few seconds without a reload.
 * With the admin token entered on the page, a backend is drained from its row and its traffic
 * stops. Saves test-artifacts/dashboard.png.
 *
 * Chromium comes from apt (`apt-get install -y chromium`; .ci/run installs it when missing).
 * Where it is missing the tests are skipped with a notice; under CI=true they fail instead.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { createAdminApp } from "../../src/admin/app.ts";
import { fakeSource } from "./fixtures.ts";
import { startStack, traffic, type Stack } from "./helpers.ts";
import { waitFor } from "../helpers/wait.ts";
import { requirePrograms } from "../helpers/system.ts";
import { startBalancer } from "../../src/balancer.ts";
import { validateConfig } from "../../src/config/load.ts";
import { memoryLogger } from "../../src/log/logger.ts";
import { startCluster } from "../../sim/cluster.ts";
import { testEngine } from "../helpers/balancer.ts";

const browser = requirePrograms("the dashboard browser tests", { chromium: "chromium" });
const SKIP = browser.skip;

const ARTIFACT = join(import.meta.dir, "../../test-artifacts/dashboard.png");

let context: BrowserContext | undefined;
let userDataDir: string | undefined;

beforeAll(async () => {
  if (SKIP) return;
  browser.assertPresent();
  userDataDir = mkdtempSync(join(tmpdir(), "switchyard-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: browser.path("chromium"),
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

/**
 * A running stack's dashboard under `loops` request loops, open in a page: `body` runs with the
 * page loaded; then the page must have logged no error. The stack is stopped at the end.
 */
async function onLiveDashboard(stack: Stack, loops: number, body: (page: Page) => Promise<void>): Promise<void> {
  let load: ReturnType<typeof traffic> | undefined;
  let page: Page | undefined;
  try {
    load = traffic(`${stack.balancer.url}/`, loops);
    const opened = await openPage();
    page = opened.page;
    await page.goto(`${stack.adminUrl}/`);
    await body(page);
    expect(opened.errors).toEqual([]);
  } finally {
    // Whatever failed above, the traffic and the stack stop.
    await page?.close().catch(() => {});
    await load?.stop();
    await stack.stop();
  }
}

/**
 * The dashboard of an admin app over `src` (a fake source the test changes as it goes), open
 * in a page: `body` runs with the page loaded, then the page must have logged no error.
 */
async function onFakeDashboard(src: Parameters<typeof createAdminApp>[0], body: (page: Page) => Promise<void>): Promise<void> {
  const admin = createAdminApp(src);
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, reusePort: false, fetch: (req, srv) => admin.fetch(req, { server: srv }) });
  const { page, errors } = await openPage();
  try {
    await page.goto(`http://127.0.0.1:${server.port}/`);
    await body(page);
    expect(errors).toEqual([]);
  } finally {
    await page.close();
    await admin.stop();
    await server.stop(true);
  }
}

const number = (text: string | null) => Number((text ?? "").replace(/[^\d.]/g, ""));

describe.skipIf(SKIP)("dashboard in Chromium", () => {
  test("three backends up, counters rising, one taken down shows down without a reload", async () => {
    const stack = await startStack(3);
    await onLiveDashboard(stack, 3, async (page) => {
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
    });
  }, 30_000);

  test("with a token entered on the page, draining a backend from its row stops its traffic", async () => {
    const TOKEN = "browser-test-token-0123456789";
    const stack = await startStack(3, { admin: { host: "127.0.0.1", port: 0, token: TOKEN } });
    const b2 = stack.balancer.pool.get("backend-2")!;
    await onLiveDashboard(stack, 3, async (page) => {
      await page.waitForSelector('#live[data-state="live"]', { timeout: 5000 });
      await page.waitForFunction(() => document.querySelectorAll('#backends tbody tr[data-state="up"]').length === 3, undefined, { timeout: 5000 });
      expect(await page.textContent("#config-version")).toBe("v1");
      // Read-only until a token is given: no controls.
      expect(await page.isVisible('#backends tr[data-backend="backend-2"] td[data-col="actions"] button.toggle')).toBe(false);

      await page.fill("#token", TOKEN);
      await page.click("#token-use");
      await page.waitForSelector('#backends tr[data-backend="backend-2"] td[data-col="actions"] button.toggle', { state: "visible", timeout: 3000 });
      expect(await page.textContent("#token-state")).toBe("changes on");
      // Kept in this tab only, never in a cookie.
      expect(await page.evaluate(() => sessionStorage.getItem("switchyard-admin-token"))).toBe(TOKEN);
      expect((await context!.cookies()).length).toBe(0);

      await waitFor(() => b2.stats.requests > 10, "backend-2 to take traffic");
      await page.click('#backends tr[data-backend="backend-2"] button.toggle');
      await page.waitForFunction(
        () => (document.querySelector('#backends tr[data-backend="backend-2"]') as HTMLElement | null)?.dataset.state === "draining",
        undefined,
        { timeout: 5000 },
      );
      expect(b2.isEnabled).toBe(false);
      // Its traffic stops: once its last requests finish, it gets no more while the others do.
      await waitFor(() => b2.inFlight === 0, "backend-2's requests in flight to finish");
      const b2Requests = b2.stats.requests;
      const others = () => stack.balancer.pool.backends.filter((b) => b !== b2).reduce((n, b) => n + b.stats.requests, 0);
      const othersBefore = others();
      await waitFor(() => others() > othersBefore + 100, "the other backends to serve 100 more requests");
      expect(b2.stats.requests).toBe(b2Requests);
      // The page shows the same: its request count stands still while the total rises.
      await page.waitForFunction(
        (n) => Number(document.querySelector('#backends tr[data-backend="backend-2"] td[data-col="requests"]')?.textContent?.replace(/[^\d]/g, "")) === n,
        b2Requests,
        { timeout: 4000 },
      );
      // The change is listed, with the token's name, and the button now offers enable.
      await page.waitForSelector("#changes li .what >> text=drain backend-2", { timeout: 3000 });
      expect(await page.textContent("#changes li")).toContain("by admin.token");
      expect(await page.textContent('#backends tr[data-backend="backend-2"] button.toggle')).toBe("enable");

      // And back: enable from the page.
      await page.click('#backends tr[data-backend="backend-2"] button.toggle');
      await waitFor(() => b2.stats.requests > b2Requests, "backend-2 to take traffic again");
    });
  }, 30_000);

  test("several pools: backends grouped under their pool, each route's figures, a drain from a row names pool/backend", async () => {
    const TOKEN = "browser-test-token-0123456789";
    const sims = await startCluster({ count: 3, basePort: 0 });
    const lb = await startBalancer(
      validateConfig({
        ...testEngine(),
        admin: { host: "127.0.0.1", port: 0, token: TOKEN },
        log: { access: false },
        healthCheck: { path: "/health", interval: "150ms", timeout: "500ms", fall: 1, rise: 1 },
        listeners: [{ name: "main", host: "127.0.0.1", port: 0 }],
        pools: {
          api: { backends: [{ name: "b1", url: sims.backends[0]!.url }, { name: "b2", url: sims.backends[1]!.url }] },
          web: { strategy: "round-robin", backends: [{ name: "b1", url: sims.backends[2]!.url }] },
        },
        routes: [
          { name: "api", match: { path: "/api" }, pool: "api" },
          { name: "site", pool: "web" },
        ],
      }),
      { env: {}, logger: memoryLogger() },
    );
    let running = true;
    const loops = ["/api/x", "/"].map(async (path) => {
      while (running) await (await fetch(`${lb.url}${path}`)).arrayBuffer().catch(() => {});
    });
    const { page, errors } = await openPage();
    try {
      await page.goto(`${lb.adminUrl}/`);
      await page.waitForSelector('#live[data-state="live"]', { timeout: 5000 });
      await page.waitForFunction(() => document.querySelectorAll('#backends tbody tr[data-state="up"]').length === 3, undefined, { timeout: 5000 });
      // Each pool's header row, then its backends, named pool/backend.
      const rows = await page.$$eval("#backends tbody tr", (trs) => trs.map((tr) => ((tr as HTMLElement).classList.contains("poolrow") ? `pool:${(tr as HTMLElement).dataset.pool}` : (tr as HTMLElement).dataset.backend)));
      expect(rows).toEqual(["pool:api", "api/b1", "api/b2", "pool:web", "web/b1"]);
      expect(await page.textContent('#backends tr.poolrow[data-pool="web"]')).toContain("pool web · round-robin · 1 / 1 available · routes site");
      expect(await page.textContent('#backends tr[data-backend="web/b1"] .name')).toBe("b1");
      expect(await page.textContent("#strategy")).toBe("per pool");

      // The routes, in order, with their traffic.
      await page.waitForSelector("#routes-panel", { state: "visible", timeout: 3000 });
      expect(await page.$$eval("#routes tbody tr", (trs) => trs.map((tr) => (tr as HTMLElement).dataset.route))).toEqual(["api", "site"]);
      expect(await page.textContent('#routes tr[data-route="api"] td[data-col="match"]')).toBe("path /api");
      expect(await page.textContent('#routes tr[data-route="site"] td[data-col="action"]')).toBe("→ web");
      await page.waitForFunction(() => Number(document.querySelector('#routes tr[data-route="api"] td[data-col="requests"]')?.textContent?.replace(/[^\d]/g, "")) > 20, undefined, { timeout: 5000 });
      await page.waitForFunction(() => document.querySelector('#routes tr[data-route="site"] td[data-col="latency"]')?.textContent !== "–", undefined, { timeout: 5000 });
      // The 404s of "/api/x" at the sims count as the api route's 4xx.
      await page.waitForFunction(() => Number(document.querySelector('#routes tr[data-route="api"] td[data-col="c4"]')?.textContent?.replace(/[^\d]/g, "")) > 0, undefined, { timeout: 5000 });

      // Drain api/b1 from its row: web/b1, of the same name, keeps its traffic.
      await page.fill("#token", TOKEN);
      await page.click("#token-use");
      await page.click('#backends tr[data-backend="api/b1"] button.toggle');
      await page.waitForFunction(() => (document.querySelector('#backends tr[data-backend="api/b1"]') as HTMLElement | null)?.dataset.state === "draining", undefined, { timeout: 5000 });
      expect(lb.pools.get("api")!.pool.get("b1")!.isEnabled).toBe(false);
      expect(lb.pools.get("web")!.pool.get("b1")!.isEnabled).toBe(true);
      await page.waitForSelector("#changes li .what >> text=drain api/b1", { timeout: 3000 });
      await page.screenshot({ path: join(ARTIFACT, "../dashboard-pools.png"), fullPage: true });
      expect(errors).toEqual([]);
    } finally {
      running = false;
      await Promise.all(loops);
      await page.close();
      await lb.stop(false);
      await sims.stop();
    }
  }, 30_000);

  test("with workers, the page shows the whole balancer: how many serve, and every worker's traffic in the totals", async () => {
    const stack = await startStack(2, { workers: 2 });
    await onLiveDashboard(stack, 4, async (page) => {
      await page.waitForSelector('#live[data-state="live"]', { timeout: 5000 });
      await page.waitForFunction(() => document.querySelector("#workers")?.textContent === "2 of 2 serving", undefined, { timeout: 5000 });
      const first = number(await page.textContent("#total-requests"));
      await waitFor(async () => number(await page.textContent("#total-requests")) > first + 20, "the request counter to rise", 4000);
      const title = await page.getAttribute("#workers", "title");
      expect(title).toContain("worker 0: serving (pid ");
      expect(title).toContain("worker 1: serving (pid ");
    });
  });

  test("the Retries card: retries, and the retry budget's refusals, amber once there is one", async () => {
    const src = { ...fakeSource([{ name: "a", url: "http://127.0.0.1:9" }]), config: { mode: "http" as const, strategy: "round-robin", retry: { budget: { percent: 20, minRetriesPerSecond: 3 } } } };
    src.traffic.retries = 1234;
    await onFakeDashboard(src, async (page) => {
      await page.waitForFunction(() => document.getElementById("total-retry-count")?.textContent === "1,234", undefined, { timeout: 5000 });
      expect(await page.textContent("#retry-budget")).toBe("0 over budget");
      expect(await page.getAttribute("#retry-budget", "class")).toBe("s ");
      expect(await page.getAttribute("#retry-budget", "title")).toBe("retry.budget: over any 10 s, retries at most 20% of the requests, plus 3 a second");
      // Refusals show without a reload.
      for (let i = 0; i < 2; i++) src.pool.retryBudget.admit({ percent: 0, minRetriesPerSecond: 0 }, performance.now());
      await page.waitForFunction(() => document.getElementById("retry-budget")?.textContent === "2 over budget", undefined, { timeout: 5000 });
      expect(await page.getAttribute("#retry-budget", "class")).toBe("s warn");
    });
  }, 20_000);

  test("panic mode shows as a banner and in the backends card, and goes when the backends return", async () => {
    const stack = await startStack(3);
    await onLiveDashboard(stack, 2, async (page) => {
      await page.waitForSelector('#live[data-state="live"]', { timeout: 5000 });
      await page.waitForFunction(() => document.querySelectorAll('#backends tbody tr[data-state="up"]').length === 3, undefined, { timeout: 5000 });
      expect(await page.isVisible("#panic")).toBe(false);
      // Two of three failing their checks: 1/3 healthy is below the default 50%.
      stack.cluster.backends[0]!.setHealth("down");
      stack.cluster.backends[1]!.setHealth("down");
      await page.waitForSelector("#panic", { state: "visible", timeout: 5000 });
      expect(await page.textContent("#panic")).toContain("Panic mode: fewer than 50% of the backends in service are healthy");
      expect(await page.textContent("#backends-states")).toMatch(/^PANIC · /);
      expect(await page.getAttribute("#backends-available", "class")).toBe("v bad");
      stack.cluster.backends[0]!.setHealth("up");
      stack.cluster.backends[1]!.setHealth("up");
      await page.waitForSelector("#panic", { state: "hidden", timeout: 5000 });
      expect(await page.textContent("#backends-states")).not.toContain("PANIC");
    });
  }, 30_000);

  test("the proxy's own errors show in the errors card, by code", async () => {
    const src = fakeSource([{ name: "a", url: "http://127.0.0.1:9" }]);
    // As the forwarding loop counts a try that found no descriptor (test/proxy/local-errors.test.ts
    // produces real ones; here the page's rendering of them is what is checked).
    src.traffic.localErrors.EMFILE = 3;
    src.traffic.localErrors.EADDRNOTAVAIL = 1;
    await onFakeDashboard(src, async (page) => {
      await page.waitForSelector('#live[data-state="live"]', { timeout: 5000 });
      await page.waitForFunction(() => document.querySelector("#local-errors")?.textContent?.startsWith("local 4"), undefined, { timeout: 5000 });
      expect(await page.textContent("#local-errors")).toBe("local 4 (EMFILE 3, EADDRNOTAVAIL 1)");
      expect(await page.getAttribute("#local-errors", "class")).toBe("s warn");
    });
  }, 20_000);

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

  test("priority tiers: rows carry their priority, standbys say so, and the tags follow a failover", async () => {
    const src = fakeSource([
      { name: "a", url: "http://127.0.0.1:9" },
      { name: "s", url: "http://127.0.0.1:10", priority: 1 },
    ]);
    await onFakeDashboard(src, async (page) => {
      const tier = (name: string) => page.$eval(`#backends tr[data-backend="${name}"] .tier`, (e) => ({ text: e.textContent, standby: e.classList.contains("standby"), shown: !(e as HTMLElement).hidden }));
      await page.waitForSelector('#backends tr[data-backend="s"] .tier.standby', { timeout: 5000 });
      expect(await tier("a")).toEqual({ text: "priority 0", standby: false, shown: true });
      expect(await tier("s")).toEqual({ text: "standby · priority 1", standby: true, shown: true });
      expect(await page.textContent("#backends-states")).toBe("2 up · 1 standby");
      // The state pills are unchanged: a standby is up.
      expect(await page.$$eval("#backends tbody tr .pill", (els) => els.map((e) => e.textContent))).toEqual(["up", "up"]);
      src.pool.get("a")!.setHealthy(false, "probe");
      await page.waitForFunction(() => !document.querySelector('#backends tr[data-backend="s"] .tier')!.classList.contains("standby"), undefined, { timeout: 5000 });
      expect(await tier("s")).toEqual({ text: "priority 1", standby: false, shown: true });
    });
  }, 20_000);
});
