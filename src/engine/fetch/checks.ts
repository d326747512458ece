/**
 * What Bun.serve lets through that a proxy must refuse before forwarding (fetch engine). The
 * socket engine parses heads itself (llhttp, and its checkHead in client.ts).
 *
 * Bun.serve joins repeated request fields into one comma-separated value (the Fetch Headers
 * model), so a repeated Host or Content-Length shows up here as a value with a comma in it.
 */
import type { AnswerCode } from "../../errors.ts";
import { ALLOW, refusedMethod } from "../../http/methods.ts";

/**
 * A request refused for how its client framed it or what it asks for: 400 (RFC 9112 §3.2 Host,
 * §6.3 Content-Length) and 405 (http/methods.ts). The engine answers it itself and closes the
 * connection: after a framing fault nothing more read from it can be trusted (RFC 9112 §6.3
 * item 5 requires the close for a bad length).
 */
export interface Refusal {
  code: Extract<AnswerCode, "SY_BAD_REQUEST" | "SY_METHOD_NOT_ALLOWED">;
  detail: string;
  /** Fields the status requires, e.g. Allow on a 405 (RFC 9110 §15.5.6). */
  headers?: Record<string, string>;
}

const DIGITS = /^\d+$/;

export function checkRequest(method: string, headers: Headers): Refusal | undefined {
  const refused = refusedMethod(method);
  if (refused !== undefined) return { code: "SY_METHOD_NOT_ALLOWED", detail: refused, headers: { allow: ALLOW } };
  // RFC 9112 §3.2: a request with more than one Host field gets 400. A comma is never part of
  // a host name or port, so one in the joined value means the field was repeated.
  const host = headers.get("host");
  if (host !== null && host.includes(",")) return { code: "SY_BAD_REQUEST", detail: "more than one Host field" };
  // RFC 9112 §6.3 item 5: a Content-Length that is not one decimal number makes the framing
  // invalid: 400 and close. RFC 9110 §8.6 lets a recipient either fold "5, 5" into 5 or reject
  // it; fetch would refuse the joined value when sending it on (counted against the backend),
  // so it is rejected here, as the socket engine's parser does.
  const length = headers.get("content-length");
  if (length !== null && !DIGITS.test(length)) return { code: "SY_BAD_REQUEST", detail: `invalid Content-Length "${length.slice(0, 40)}${length.length > 40 ? "..." : ""}"` };
  // Bun.serve reads and discards the body of a GET or HEAD (req.body is null), so forwarding
  // the request would drop it without a word: a search with its query in the body would reach
  // the backend as a search without one. RFC 9110 §9.3.1 and §9.3.2 allow rejecting such a
  // request; the socket engine forwards it.
  if ((method === "GET" || method === "HEAD") && ((length !== null && length !== "0") || headers.has("transfer-encoding"))) {
    return { code: "SY_BAD_REQUEST", detail: `a ${method} request with a body: Bun.serve discards the body, so the fetch engine cannot forward it (the socket engine can)` };
  }
  return undefined;
}
