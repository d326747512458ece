/**
 * docs/errors.md, rendered from the one table of codes (src/errors.ts). `bun run docs`
 * writes it; test/errors.test.ts fails when the file and this rendering differ.
 */
import { ERRORS, type ErrorCode, type ErrorSource, type ErrorSpec } from "../../src/errors.ts";

/** Each source's section: its title and what its codes have in common. */
const SECTIONS: Record<ErrorSource, { title: string; about: string }> = {
  proxy: {
    title: "Answers of the proxy",
    about: "The forwarding loop's own answers (src/forward/forward.ts). Each is counted by code in `/stats` (`proxyErrors`) and `/metrics` (`switchyard_proxy_errors_total`), and named in the access log (`error=`).",
  },
  guard: {
    title: "Refused by a route's guards",
    about: "A route's rate limits and access control (src/guard/), deciding before the request goes to a pool. Counted by code with the proxy's own answers (`proxyErrors`, `switchyard_proxy_errors_total`) and named in the access log; never held against a backend.",
  },
  engine: {
    title: "Requests refused before forwarding",
    about: "Answered by an engine or a listener before any backend is asked; a framing fault closes the connection (RFC 9112 §11.2).",
  },
  listener: {
    title: "Connections refused",
    about: "Refused by a listener as a connection opens, before any request is read (src/net/client-counts.ts). Counted by code with the proxy's own answers (`proxyErrors`, `switchyard_proxy_errors_total`); TCP listeners count theirs in their own figures (`tcp.clientConnectionsRefused`).",
  },
  admin: {
    title: "The admin listener",
    about: "Guards and endpoints of the admin listener (src/admin/).",
  },
  control: {
    title: "Changes refused",
    about: "Changes refused by Control (src/control/): the admin API answers with the status; `switchyard ctl` (and `switchyard reload`, `switchyard upgrade`) prints the message and the code, and exits 2 on a 4xx, 1 on a 5xx.",
  },
  config: {
    title: "Configuration",
    about: "Reading and checking the config (src/config/, src/tls/).",
  },
  start: {
    title: "Starting the process",
    about: "Failures that stop `switchyard serve` from starting; the message names the listener or worker.",
  },
  invariant: {
    title: "Invariants",
    about: "Checks of the runtime state's own rules: seeing one is a bug worth reporting.",
  },
  acme: {
    title: "Certificates from ACME",
    about: "Ordering and renewing certificates (src/acme/, [acme.md](acme.md)): logged with the listener's field and the name; the certificate in service stays.",
  },
};

/** A table cell: no pipe or line break may end it early. */
function cell(text: string): string {
  return text.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

export function errorsMarkdown(): string {
  const out: string[] = [
    "# Error codes",
    "",
    "<!-- Generated from src/errors.ts by `bun run docs`: edit that file, not this one. -->",
    "",
    "Every error Switchyard reports carries a stable `SY_*` code, declared once in `src/errors.ts`.",
    "An error answered over HTTP has a JSON body:",
    "",
    "```json",
    '{"error": "SY_UPSTREAM_TIMEOUT", "status": 504, "message": "the backend did not answer in time: ...", "requestId": "..."}',
    "```",
    "",
    "`requestId` is there when the request got one (the proxy's answers; also in `x-request-id`);",
    "some answers add members (`problems`, `endpoints`, `max`). Every error answer has",
    "`cache-control: no-store`, and a 503 has `retry-after`.",
    "",
  ];
  const codes = Object.keys(ERRORS) as ErrorCode[];
  for (const source of Object.keys(SECTIONS) as ErrorSource[]) {
    const section = SECTIONS[source];
    out.push(`## ${section.title}`, "", section.about, "", "| Code | Status | Outside HTTP | Meaning |", "| --- | --- | --- | --- |");
    for (const code of codes) {
      const spec: ErrorSpec = ERRORS[code];
      if (spec.from !== source) continue;
      out.push(`| \`${code}\` | ${spec.status ?? "none"} | ${cell(spec.otherwise ?? "")} | ${cell(spec.meaning)} |`);
    }
    out.push("");
  }
  return out.join("\n");
}
