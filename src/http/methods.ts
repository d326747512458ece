/**
 * Methods a reverse proxy answers itself instead of forwarding; one decision for both HTTP
 * engines (the socket engine's head check can ask here too).
 *
 * - CONNECT (RFC 9110 §9.3.6) asks the recipient to open a tunnel to the authority in the
 *   request target: a forward proxy's job. Forwarded, a backend's 200 would turn the client's
 *   connection into a tunnel to wherever that backend chooses.
 * - TRACE (RFC 9110 §9.3.8) makes the final recipient reflect the request it received,
 *   fields included, back in the response body. Forwarded, it hands the client's Cookie and
 *   Authorization fields to any script that can read the response (cross-site tracing), and
 *   shows which fields this proxy adds. §9.3.8 tells clients never to send credentials with
 *   it; a proxy cannot count on that. nginx answers TRACE with 405 by default; so do we.
 *
 * Both get 405 with an Allow field, which RFC 9110 §15.5.6 requires of a 405: the methods this
 * proxy does forward (extension methods are forwarded too; Allow cannot say "all but these").
 */
export const ALLOW = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH";

const REFUSED: ReadonlyMap<string, string> = new Map([
  ["CONNECT", "CONNECT is not supported: this is a reverse proxy, not a tunnel"],
  ["TRACE", "TRACE is not forwarded: it would reflect the request's credentials"],
]);

/** Why `method` is answered 405 instead of forwarded, or undefined when it is forwarded. */
export function refusedMethod(method: string): string | undefined {
  return REFUSED.get(method);
}
