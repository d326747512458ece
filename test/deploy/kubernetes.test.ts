/**
 * deploy/kubernetes/: every manifest parses, and the manifests agree with the config the
 * ConfigMap carries: that config passes the project's own validator, the container ports are
 * its listen and admin ports, the probes ask endpoints the admin port really serves, the
 * volume puts the file where the container's --config looks, and the DNS entry the config
 * carries names the backends' headless Service, in the namespace, on the pods' port.
 *
 * Bun.YAML.parse returns an array for a multi-document file (`---`), one value otherwise.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { parseConfigText, validateConfig } from "../../src/config/load.ts";
import { startRig } from "../helpers/balancer.ts";
import { refusedPort } from "../tcp/helpers.ts";

const DIR = join(import.meta.dir, "../../deploy/kubernetes");

// The manifests are loosely typed JSON; the assertions below say what must be there.
type Manifest = any;

const files = readdirSync(DIR).filter((f) => f.endsWith(".yaml")).sort();
const manifests: { file: string; doc: Manifest }[] = files.flatMap((file) => {
  const parsed = Bun.YAML.parse(readFileSync(join(DIR, file), "utf8"));
  return (Array.isArray(parsed) ? parsed : [parsed]).map((doc) => ({ file, doc }));
});
const byKind = (kind: string, name: string): Manifest => {
  const found = manifests.filter((m) => m.doc?.kind === kind && m.doc?.metadata?.name === name);
  if (found.length !== 1) throw new Error(`expected one ${kind} named ${name}, found ${found.length}`);
  return found[0]!.doc;
};

const deployment = byKind("Deployment", "switchyard");
const pod = deployment.spec.template.spec;
const container = pod.containers.find((c: Manifest) => c.name === "switchyard");
const configMap = byKind("ConfigMap", pod.volumes.find((v: Manifest) => v.configMap).configMap.name);
const mount = container.volumeMounts.find((m: Manifest) => m.name === pod.volumes.find((v: Manifest) => v.configMap).name);
const configArg = container.args[container.args.indexOf("--config") + 1] as string;
const configKey = configArg.slice(mount.mountPath.length + 1);
const config = validateConfig(parseConfigText(configMap.data[configKey], `${configMap.metadata.name}/${configKey}`), "ConfigMap");
const portNamed = (name: string) => container.ports.find((p: Manifest) => p.name === name)?.containerPort;

describe("deploy/kubernetes", () => {
  test("every file parses; each document has apiVersion, kind and a name; kustomization lists every manifest", () => {
    expect(files).toEqual(["backends.yaml", "configmap.yaml", "deployment.yaml", "kustomization.yaml", "namespace.yaml", "service.yaml"]);
    for (const { file, doc } of manifests) {
      expect(`${file}: ${typeof doc?.apiVersion}`).toBe(`${file}: string`);
      expect(`${file}: ${typeof doc?.kind}`).toBe(`${file}: string`);
      if (doc.kind !== "Kustomization") expect(`${file}: ${typeof doc.metadata?.name}`).toBe(`${file}: string`);
    }
    const kustomization = manifests.find((m) => m.doc.kind === "Kustomization")!.doc;
    expect([...kustomization.resources].sort()).toEqual(files.filter((f) => f !== "kustomization.yaml"));
    expect(byKind("Namespace", kustomization.namespace).kind).toBe("Namespace");
  });

  test("the ConfigMap's config passes the project's validator and is where --config looks", () => {
    expect(container.args.slice(0, 1)).toEqual(["serve"]);
    expect(configArg.startsWith(`${mount.mountPath}/`)).toBe(true);
    expect(mount.readOnly).toBe(true);
    expect(Object.keys(configMap.data)).toEqual([configKey]);
    expect(config.mode).toBe("http");
  });

  test("container ports are the config's listen and admin ports, on every interface", () => {
    expect(config.admin).not.toBe(false);
    if (config.admin === false) return;
    expect(portNamed("http")).toBe(config.listen.port);
    expect(portNamed("admin")).toBe(config.admin.port);
    // The kubelet probes the pod's address, not loopback.
    expect(config.listen.host).toBe("0.0.0.0");
    expect(config.admin.host).toBe("0.0.0.0");
    const service = byKind("Service", "switchyard");
    expect(service.spec.selector).toEqual(deployment.spec.template.metadata.labels);
    expect(service.spec.ports.map((p: Manifest) => p.targetPort)).toEqual(["http"]);
    expect(deployment.spec.selector.matchLabels).toEqual(deployment.spec.template.metadata.labels);
    const scrape = deployment.spec.template.metadata.annotations;
    expect(Number(scrape["prometheus.io/port"])).toBe(config.admin.port);
  });

  test("2 replicas, readiness on /readyz and liveness on /healthz of the admin port, resources, non-root, read-only root", () => {
    expect(deployment.spec.replicas).toBe(2);
    expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "admin" });
    expect(container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "admin" });
    expect(container.resources.requests.cpu).toBeDefined();
    expect(container.resources.requests.memory).toBeDefined();
    expect(container.resources.limits.memory).toBeDefined();
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    // The Dockerfile's USER.
    expect(pod.securityContext.runAsUser).toBe(65532);
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    // The grace period outlasts the config's own drain on SIGTERM.
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(config.timeouts.shutdownGrace);
    expect(container.image).toBe(`switchyard:${pkg.version}`);
  });

  test("the probe paths are endpoints the admin port serves (the ConfigMap's config, run for real)", async () => {
    if (config.admin === false) throw new Error("the ConfigMap's config has no admin port");
    // The same config on loopback ports of its own. Its DNS name exists only inside the cluster:
    // asked of a server that is not there, it finds no backend, so readiness says 503 (not ready,
    // as a pod with no backend should be) and liveness 200.
    const rig = await startRig(0, {
      ...(parseConfigText(configMap.data[configKey], configKey) as object),
      listen: { host: "127.0.0.1", port: 0 }, admin: { host: "127.0.0.1", port: 0 }, log: { access: false },
      dns: { servers: [`127.0.0.1:${refusedPort()}`], timeout: "100ms" },
    });
    const lb = rig.balancer;
    try {
      expect(lb.pool.backends.length).toBe(0);
      expect((await fetch(`${lb.adminUrl}${container.readinessProbe.httpGet.path}`)).status).toBe(503);
      expect((await fetch(`${lb.adminUrl}${container.livenessProbe.httpGet.path}`)).status).toBe(200);
      expect((await fetch(`${lb.adminUrl}/no-such-endpoint`)).status).toBe(404);
    } finally {
      await rig.stop();
    }
  });

  test("the config's backends are found through DNS: the headless Service's full name, on the pods' port", () => {
    const headless = manifests.find((m) => m.doc.kind === "Service" && m.doc.spec.clusterIP === "None")!.doc;
    const pods = manifests.find((m) => m.doc.kind === "Deployment" && m.doc.metadata.name !== "switchyard")!.doc;
    expect(headless.spec.selector).toEqual(pods.spec.template.metadata.labels);
    const simPort = pods.spec.template.spec.containers[0].ports.find((p: Manifest) => p.name === "http").containerPort;
    expect(headless.spec.ports[0].targetPort).toBe("http");
    const namespace = manifests.find((m) => m.doc.kind === "Kustomization")!.doc.namespace;
    expect(config.pools.default!.backends).toHaveLength(1);
    expect(config.pools.default!.backends[0]).toMatchObject({ dns: `${headless.metadata.name}.${namespace}.svc.cluster.local`, type: "A", port: simPort });
    // The sims answer their /health, which is what the config's check asks.
    expect(config.healthCheck && config.healthCheck.path).toBe("/health");
    expect(pods.spec.template.spec.containers[0].readinessProbe.httpGet.path).toBe("/health");
  });
});
