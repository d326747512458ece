import type { Backend } from "../pool/backend.ts";

/** In-flight load relative to weight: what "least loaded" compares. */
export function load(b: Backend): number {
  return b.inFlight / b.weight;
}
