/**
 * compose.yaml and the config it mounts agree, checked without a container engine (the real
 * run is test/containers.slow.test.ts): the config validates, the published container ports
 * are its listen and admin ports, and each backend it names is a compose service running a sim
 * of that name on that port.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfigFile } from "../../src/config/load.ts";

const ROOT = join(import.meta.dir, "../..");
const compose = Bun.YAML.parse(readFileSync(join(ROOT, "compose.yaml"), "utf8")) as any;

test("compose.yaml: the balancer's config validates and its ports are the ones published", async () => {
  const lb = compose.services.switchyard;
  const [source, target] = lb.volumes[0].split(":");
  expect(lb.command).toEqual(["serve", "--config", target]);
  const config = await loadConfigFile(join(ROOT, source));
  if (config.admin === false) throw new Error("the compose config has no admin port");
  const published = (lb.ports as string[]).map((p) => Number(p.split(":").at(-1)));
  expect(published).toEqual([config.listen.port, config.admin.port]);
  expect(config.admin.host).toBe("0.0.0.0");
  expect(lb.read_only).toBe(true);
});

test("compose.yaml: each backend in the config is a service running a sim of that name and port", async () => {
  const config = await loadConfigFile(join(ROOT, compose.services.switchyard.volumes[0].split(":")[0]));
  expect(config.pools.default!.backends.length).toBe(3);
  for (const b of config.pools.default!.backends) {
    const url = new URL(b.url!);
    const service = compose.services[url.hostname];
    expect(service).toBeDefined();
    const cmd = service.command as string[];
    expect(cmd[0]).toBe("sim");
    expect(cmd[cmd.indexOf("--name") + 1]).toBe(b.name!);
    expect(Number(cmd[cmd.indexOf("--base-port") + 1])).toBe(Number(url.port));
    expect(cmd[cmd.indexOf("--host") + 1]).toBe("0.0.0.0");
    expect(service.image).toBe(compose.services.switchyard.image);
    // The image's HEALTHCHECK asks this instead of the balancer's admin port.
    expect(service.environment.SWITCHYARD_HEALTH_URL).toBe(`http://127.0.0.1:${url.port}/health`);
    expect(compose.services.switchyard.depends_on).toContain(url.hostname);
  }
});
