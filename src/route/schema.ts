/** Interim: the route schema (replaced by the route module's full one). */
import * as v from "valibot";

export const RouteSchema = v.strictObject({
  name: v.pipe(v.string(), v.description("The route's name.")),
  match: v.optional(
    v.pipe(
      v.strictObject({
        host: v.optional(v.pipe(v.union([v.string(), v.array(v.string())]), v.description("Hosts."))),
        path: v.optional(v.pipe(v.string(), v.description("Path prefix."))),
        sni: v.optional(v.pipe(v.union([v.string(), v.array(v.string())]), v.description("TLS server names."))),
      }),
      v.description("What the request must be."),
    ),
    {},
  ),
  pool: v.optional(v.pipe(v.string(), v.description("The pool."))),
});
export type RouteConfig = v.InferOutput<typeof RouteSchema>;
