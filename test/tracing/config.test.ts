/** The `tracing` options: a wrong one names the field, the value and what was expected. */
import { expect, test } from "bun:test";
import { ConfigError, validateConfig } from "../../src/config/load.ts";

const problems = (raw: unknown): string[] => {
  try {
    validateConfig(raw);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error("expected the config to be rejected");
};
const backends = [{ url: "http://127.0.0.1:5001" }];
const otlp = { endpoint: "http://127.0.0.1:4318/v1/traces" };

test("defaults", () => {
  const c = validateConfig({ backends, tracing: { otlp } });
  expect(c.tracing).toEqual({ otlp: { ...otlp, headers: {}, timeout: 10_000 }, sampleRatio: 1, serviceName: "switchyard", queueSize: 2048, batchSize: 512, batchDelay: 5_000 });
  expect(validateConfig({ backends }).tracing).toBeUndefined();
});

test("each wrong value is named with what was expected", () => {
  expect(problems({ backends, tracing: { otlp, sampleRatio: 1.5 } }).join("\n")).toMatch(/tracing\.sampleRatio.*1\.5.*ratio from 0 to 1/);
  expect(problems({ backends, tracing: { otlp: { endpoint: "ftp://x/v1/traces" } } }).join("\n")).toMatch(/tracing\.otlp\.endpoint.*ftp:\/\/x.*http:\/\/ or https:\/\//);
  expect(problems({ backends, tracing: { otlp: { endpoint: "http://x", headers: { "bad name": "v" } } } }).join("\n")).toMatch(/tracing\.otlp\.headers/);
  expect(problems({ backends, tracing: { otlp, queueSize: 0 } }).join("\n")).toMatch(/tracing\.queueSize.*0.*at least 1/);
  expect(problems({ backends, tracing: { otlp, queueSize: 10, batchSize: 20 } }).join("\n")).toMatch(/tracing.*batchSize at most queueSize/);
  expect(problems({ backends, tracing: {} }).join("\n")).toMatch(/tracing\.otlp/);
});

test("a route's own sampleRatio needs the top-level tracing", () => {
  const routes = [{ name: "api", match: { path: "/api" }, pool: "default", tracing: { sampleRatio: 0.5 } }];
  expect(validateConfig({ backends, tracing: { otlp }, routes }).routes[0]!.tracing).toEqual({ sampleRatio: 0.5 });
  expect(problems({ backends, routes }).join("\n")).toMatch(/routes\[0\]\.tracing: expected the top-level tracing section/);
  expect(problems({ backends, tracing: { otlp }, routes: [{ ...routes[0], tracing: { sampleRatio: -1 } }] }).join("\n")).toMatch(/routes\[0\]\.tracing\.sampleRatio.*-1.*ratio from 0 to 1/);
});
