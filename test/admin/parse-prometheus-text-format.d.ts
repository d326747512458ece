/** Types for parse-prometheus-text-format 1.1 (the package ships none); only what the tests read. */
declare module "parse-prometheus-text-format" {
  export interface ParsedFamily {
    name: string;
    help: string;
    /** Upper case: "COUNTER", "GAUGE", "HISTOGRAM", "SUMMARY", "UNTYPED". */
    type: string;
    metrics: {
      value?: string;
      labels?: Record<string, string>;
      buckets?: Record<string, string>;
      count?: string;
      sum?: string;
    }[];
  }
  export default function parsePrometheusTextFormat(text: string): ParsedFamily[];
}
