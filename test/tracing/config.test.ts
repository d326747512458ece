/** The `tracing` options: a wrong one names the field, the value and what was expected. */
import { expect, test } from "bun:test";
import { validateConfig } from "../../src/config/load.ts";

/** ConfigError's message lists every problem, one a line. */
const rejects = (raw: unknown, problem: RegExp) => expect(() => validateConfig(raw)).toThrow(problem);
const backends = [{ url: "http://127.0.0.1:5001" }];
const otlp = { endpoint: "http://127.0.0.1:4318/v1/traces" };

test("defaults", () => {
  const c = validateConfig({ backends, tracing: { otlp } });
  expect(c.tracing).toEqual({ otlp: { ...otlp, headers: {}, timeout: 10_000 }, sampleRatio: 1, serviceName: "switchyard", queueSize: 2048, batchSize: 512, batchDelay: 5_000 });
  expect(validateConfig({ backends }).tracing).toBeUndefined();
});

test("each wrong value is named with what was expected", () => {
  rejects({ backends, tracing: { otlp, sampleRatio: 1.5 } }, /tracing\.sampleRatio.*1\.5.*ratio from 0 to 1/);
  rejects({ backends, tracing: { otlp: { endpoint: "ftp://x/v1/traces" } } }, /tracing\.otlp\.endpoint.*ftp:\/\/x.*http:\/\/ or https:\/\//);
  rejects({ backends, tracing: { otlp: { endpoint: "http://x", headers: { "bad name": "v" } } } }, /tracing\.otlp\.headers/);
  rejects({ backends, tracing: { otlp, queueSize: 0 } }, /tracing\.queueSize.*0.*at least 1/);
  rejects({ backends, tracing: { otlp, queueSize: 10, batchSize: 20 } }, /tracing.*batchSize at most queueSize/);
  rejects({ backends, tracing: {} }, /tracing\.otlp/);
});

test("a route's own sampleRatio needs the top-level tracing", () => {
  const routes = [{ name: "api", match: { path: "/api" }, pool: "default", tracing: { sampleRatio: 0.5 } }];
  expect(validateConfig({ backends, tracing: { otlp }, routes }).routes[0]!.tracing).toEqual({ sampleRatio: 0.5 });
  rejects({ backends, routes }, /routes\[0\]\.tracing: expected the top-level tracing section/);
  rejects({ backends, tracing: { otlp }, routes: [{ ...routes[0], tracing: { sampleRatio: -1 } }] }, /routes\[0\]\.tracing\.sampleRatio.*-1.*ratio from 0 to 1/);
});
