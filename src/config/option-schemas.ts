/**
 * The building blocks every config schema shares (src/config/schema.ts, the route schema in
 * src/route/schema.ts, the rate-limit options in src/guard/rate-limit-config.ts): durations,
 * sizes, status codes, and the metadata the docs generator reads. Apart from schema.ts, so that
 * the schemas it is built from can use them without importing it.
 */
import * as v from "valibot";
import { parseDuration, parseSize } from "./units.ts";
import { GRPC_STATUS, type GrpcStatusName } from "../errors.ts";

export const DURATION_HINT = 'a duration like "250ms", "5s", "1m" or a number of milliseconds';
export const SIZE_HINT = 'a size like "64KB", "128MB" or a number of bytes';

/**
 * What the docs generator (docs/generators/configuration.ts) reads beside v.description, where
 * the schema's structure does not say it by itself. Metadata does nothing at validation.
 */
export type OptionDoc = {
  /** The type in words ("host name or address"), and its plural for a list of them. */
  type?: string;
  plural?: string;
  /** A number in the output that the file may write as a duration ("5s") or a size ("64KB"). */
  unit?: "duration" | "size";
  /** A default the schema leaves unset because the code fills it in later; as it would be written. */
  defaultValue?: unknown;
  /** The same in words, when no single value says it. */
  defaultText?: string;
  /** The fields are those of the option at this path, documented there. */
  fieldsAt?: string;
};
export const doc = <TInput>(meta: OptionDoc): v.MetadataAction<TInput, OptionDoc> => v.metadata(meta);

/** A duration in the file; milliseconds after parsing. */
export const duration = v.pipe(
  v.union([v.string(), v.number()], `expected ${DURATION_HINT}`),
  v.check((x) => parseDuration(x) !== undefined, `expected ${DURATION_HINT}`),
  v.transform((x) => parseDuration(x)!),
  doc({ unit: "duration" }),
);

/** A duration that must be more than zero: a timeout of 0 would fail every try at once. */
export const positiveDuration = v.pipe(duration, v.minValue(1, "expected a duration of more than 0"));

/** A size in the file; bytes after parsing. */
export const size = v.pipe(
  v.union([v.string(), v.number()], `expected ${SIZE_HINT}`),
  v.check((x) => parseSize(x) !== undefined, `expected ${SIZE_HINT}`),
  v.transform((x) => parseSize(x)!),
  doc({ unit: "size" }),
);

export const statusCode = v.pipe(
  v.number("expected an HTTP status code"),
  v.integer("expected an HTTP status code"),
  v.minValue(100, "expected an HTTP status code from 100 to 599"),
  v.maxValue(599, "expected an HTTP status code from 100 to 599"),
  doc({ type: "HTTP status code" }),
);

/** gRPC status names other than OK (grpc/doc/statuscodes.md), for retry.onGrpcStatus. */
const GRPC_STATUS_NAMES = Object.keys(GRPC_STATUS) as GrpcStatusName[];
export const grpcStatusList = v.pipe(
  v.array(v.picklist(GRPC_STATUS_NAMES, `expected a gRPC status name: ${GRPC_STATUS_NAMES.join(", ")}`), "expected a list of gRPC status names"),
  doc({ type: 'list of gRPC status names ("UNAVAILABLE")' }),
);
