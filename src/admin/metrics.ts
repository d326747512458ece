/**
 * /metrics in the Prometheus text exposition format (version 0.0.4): every family has # HELP
 * and # TYPE, its samples follow together, label values are escaped, histograms have
 * cumulative `_bucket{le}` lines ending in +Inf, then `_sum` and `_count`, in seconds.
 *
 * Latency histograms are exported on a coarser set of bounds than the 61 the Histogram keeps:
 * cumulative counts at any of its bounds are exact, so the subset loses nothing but
 * resolution, and keeps the series count per backend reasonable for a Prometheus server.
 */
import type { Backend, BackendState } from "../pool/backend.ts";
import type { Histogram } from "../stats/histogram.ts";
import { METHOD_LABELS } from "../stats/traffic.ts";
import type { ProxyErrorCode } from "../errors.ts";
import { backendTally, responsesByClass, type Mode } from "./tally.ts";
import type { TrafficStats } from "../stats/traffic.ts";
import { balancerMode, poolsOf, routeStatsOf, type PoolView } from "./topology.ts";
import { isStandby } from "../pool/tiers.ts";
import type { SnapshotSource } from "./snapshot.ts";
import type { AcmeNameFigures } from "../acme/manager.ts";
import type { BackendStatsPoller, PollResult } from "./poller.ts";
import pkg from "../../package.json" with { type: "json" };

/** switchyard_build_info's labels: fixed for the process, made once. */
const BUILD_LABELS = `version="${escapeLabelValue(pkg.version)}",bun_version="${escapeLabelValue(Bun.version)}",bun_revision="${escapeLabelValue(Bun.revision.slice(0, 9))}"`;

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Exported bucket bounds, seconds: 0.25 ms to 50 s, in 1-2.5-5 steps. */
export const EXPORTED_BOUNDS_SECONDS: readonly number[] = [
  0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50,
];

const STATES: readonly BackendState[] = ["up", "down", "draining", "ejected", "slow-starting"];
const CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"] as const;

/** Prometheus label-value escaping: backslash, double quote and line feed. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** HELP text escaping: backslash and line feed. */
function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function num(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "+Inf";
  if (x === -Infinity) return "-Inf";
  return String(x);
}

/** Which slots of a histogram's bounds to export, and their `le` strings; cached per bounds array. */
interface BucketPlan {
  indexes: number[];
  le: string[];
}
const plans = new WeakMap<readonly number[], BucketPlan>();

export function bucketPlan(boundsMs: readonly number[]): BucketPlan {
  let plan = plans.get(boundsMs);
  if (plan) return plan;
  const indexes: number[] = [];
  const le: string[] = [];
  for (const s of EXPORTED_BOUNDS_SECONDS) {
    const ms = s * 1000;
    const i = boundsMs.findIndex((b) => Math.abs(b - ms) <= ms * 1e-9);
    if (i >= 0) {
      indexes.push(i);
      le.push(num(s));
    }
  }
  // Bounds with none of ours in common (a custom histogram): export every bound.
  if (indexes.length === 0) {
    boundsMs.forEach((b, i) => {
      indexes.push(i);
      le.push(num(Number((b / 1000).toPrecision(12))));
    });
  }
  plan = { indexes, le };
  plans.set(boundsMs, plan);
  return plan;
}

class Writer {
  private readonly lines: string[] = [];

  family(name: string, type: "counter" | "gauge" | "histogram", help: string): void {
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  }

  /** A family with one unlabelled sample. */
  single(name: string, type: "counter" | "gauge", help: string, value: number): void {
    this.family(name, type, help);
    this.sample(name, "", value);
  }

  /** `labels` is already rendered ("a=\"x\",b=\"y\"") or empty. */
  sample(name: string, labels: string, value: number): void {
    this.lines.push(labels ? `${name}{${labels}} ${num(value)}` : `${name} ${num(value)}`);
  }

  /** Histogram samples for one label set; ms values become seconds. */
  histogram(name: string, labels: string, h: Histogram): void {
    const plan = bucketPlan(h.bounds);
    const sep = labels ? `${labels},` : "";
    let cumulative = 0;
    let next = 0;
    for (let k = 0; k < plan.indexes.length; k++) {
      const upTo = plan.indexes[k]!;
      for (; next <= upTo; next++) cumulative += h.counts[next]!;
      this.lines.push(`${name}_bucket{${sep}le="${plan.le[k]}"} ${num(cumulative)}`);
    }
    this.lines.push(`${name}_bucket{${sep}le="+Inf"} ${num(h.count)}`);
    this.lines.push(labels ? `${name}_sum{${labels}} ${num(h.sum / 1000)}` : `${name}_sum ${num(h.sum / 1000)}`);
    this.lines.push(labels ? `${name}_count{${labels}} ${num(h.count)}` : `${name}_count ${num(h.count)}`);
  }

  text(): string {
    return this.lines.join("\n") + "\n";
  }
}

export function renderMetrics(src: SnapshotSource, poller?: BackendStatsPoller, now = Date.now()): string {
  const { traffic, config } = src;
  const mode: Mode = balancerMode(config);
  const w = new Writer();
  const pools = poolsOf(src);
  // Each pool's label and each backend's labels are escaped once per scrape. Their values are
  // pool and backend names of the configuration (or DNS answers it asked for), never a request's.
  const poolLabel = new Map<PoolView, string>(pools.map((p) => [p, `pool="${escapeLabelValue(p.name)}"`]));
  const backends: Backend[] = [];
  const label = new Map<Backend, string>();
  const modeOf = new Map<Backend, Mode>();
  for (const p of pools) {
    for (const b of p.pool.backends) {
      backends.push(b);
      label.set(b, `${poolLabel.get(p)!},backend="${escapeLabelValue(b.name)}"`);
      modeOf.set(b, p.config.mode);
    }
  }
  const each = (name: string, value: (b: Backend) => number) => {
    for (const b of backends) w.sample(name, label.get(b)!, value(b));
  };
  const perPool = (name: string, value: (p: PoolView) => number, which: readonly PoolView[] = pools) => {
    for (const p of which) w.sample(name, poolLabel.get(p)!, value(p));
  };
  const httpPools = pools.filter((p) => p.config.mode === "http");

  w.single("switchyard_start_time_seconds", "gauge", "When the balancer started, seconds since the Unix epoch.", src.startedAt / 1000);
  w.family("switchyard_build_info", "gauge", "Always 1: the version of Switchyard and of the Bun runtime it runs on, as labels.");
  w.sample("switchyard_build_info", BUILD_LABELS, 1);

  w.family("switchyard_requests_total", "counter", "Responses sent to clients, by request method and status class (including the balancer's own error answers).");
  for (const m of METHOD_LABELS) {
    const counts = traffic.byMethod[m]!;
    if (!counts.some((n) => n > 0) && m !== "GET") continue;
    for (let k = 1; k <= 5; k++) w.sample("switchyard_requests_total", `method="${m}",code_class="${CLASSES[k - 1]}"`, counts[k] ?? 0);
  }

  w.family("switchyard_proxy_errors_total", "counter", "Requests the balancer answered itself (or that the client abandoned), and connections its HTTP listeners refused (SY_TOO_MANY_CLIENT_CONNECTIONS, SY_PROXY_PROTOCOL_REFUSED), by error code.");
  for (const [code, n] of Object.entries(traffic.proxyErrors) as [ProxyErrorCode, number][]) {
    w.sample("switchyard_proxy_errors_total", `code="${code}"`, n);
  }

  w.single("switchyard_retries_total", "counter", "Tries after the first, over all requests.", traffic.retries);
  if (mode === "http") w.single("switchyard_queued_requests_total", "counter", "Requests that waited in line for an upstream slot (fetch engine: limits.upstreamConcurrency and uploadConcurrency; the socket engine has no such line). Those that waited too long are proxy errors SY_QUEUE_TIMEOUT.", traffic.queued);
  w.single("switchyard_access_log_dropped_total", "counter", "Access-log lines dropped: the queue waiting for stdout or log.file was full (log.maxBuffer), or a write failed.", traffic.accessLogDropped);
  if (httpPools.length > 0 && mode === "http") {
    w.family("switchyard_retry_budget_exhausted_total", "counter", "Retries refused because the pool's retry.budget was spent: the request got its last failure instead.");
    perPool("switchyard_retry_budget_exhausted_total", (p) => p.pool.retryBudget.exhausted, httpPools);
  }

  if (config.tracing !== undefined) {
    const tracing = traffic.tracing;
    w.single("switchyard_tracing_spans_exported_total", "counter", "Spans the OTLP collector accepted (tracing).", tracing.exported);
    w.single("switchyard_tracing_spans_dropped_total", "counter", "Spans dropped because the export queue was full (tracing.queueSize): the collector is slow, down or hanging.", tracing.dropped);
    w.single("switchyard_tracing_spans_failed_total", "counter", "Spans in exports that failed (an error status, a network error, tracing.otlp.timeout).", tracing.failed);
    w.single("switchyard_tracing_exports_total", "counter", "Export requests sent to the OTLP collector.", tracing.exports);
    w.single("switchyard_tracing_export_failures_total", "counter", "Export requests that failed.", tracing.exportFailures);
  }

  w.family("switchyard_local_errors_total", "counter", "Tries that failed for want of the proxy's own resources (file descriptors, local ports, its resolver), by error code; never counted against a backend.");
  for (const [code, n] of Object.entries(traffic.localErrors)) w.sample("switchyard_local_errors_total", `code="${code}"`, n);
  w.family("switchyard_panic", "gauge", "1 while the pool is in panic mode (fewer than panicThreshold % of its backends in service healthy: traffic goes to all of them), else 0.");
  perPool("switchyard_panic", (p) => (p.pool.panicking(now) ? 1 : 0));
  w.family("switchyard_panic_entered_total", "counter", "Times the pool entered panic mode.");
  perPool("switchyard_panic_entered_total", (p) => p.pool.panic.entered);
  w.family("switchyard_panic_picks_total", "counter", "Requests (TCP: connections) balanced in panic mode, over unhealthy backends too.");
  perPool("switchyard_panic_picks_total", (p) => p.pool.panic.picks);

  w.family("switchyard_request_duration_seconds", "histogram", "Time from a request's arrival to its response head, seconds.");
  w.histogram("switchyard_request_duration_seconds", "", traffic.latency);

  renderRoutes(w, src);

  let inFlight = 0;
  for (const b of backends) inFlight += b.inFlight;
  w.single("switchyard_in_flight_requests", "gauge", mode === "tcp" ? "Connections open to backends now." : "Requests in flight to backends now.", inFlight);

  const stateOf = new Map<Backend, BackendState>();
  const byPool = pools.map((p) => {
    const byState: Record<BackendState, number> = { up: 0, down: 0, draining: 0, ejected: 0, "slow-starting": 0 };
    let available = 0;
    for (const b of p.pool.backends) {
      const s = b.state(now);
      stateOf.set(b, s);
      byState[s]++;
      if (b.available(now)) available++;
    }
    return { p, byState, available };
  });
  w.family("switchyard_backends", "gauge", "Backends of the pool in each state.");
  for (const { p, byState } of byPool) for (const s of STATES) w.sample("switchyard_backends", `${poolLabel.get(p)!},state="${s}"`, byState[s]);
  w.family("switchyard_backends_available", "gauge", "Backends of the pool that would take new traffic now.");
  for (const { p, available } of byPool) w.sample("switchyard_backends_available", poolLabel.get(p)!, available);

  w.family("switchyard_backend_requests_total", "counter", mode === "tcp" ? "Connections made to the backend." : "Tries sent to the backend (a retry counts on the backend it went to).");
  each("switchyard_backend_requests_total", (b) => backendTally(b, modeOf.get(b)!).units);

  w.family("switchyard_backend_responses_total", "counter", "Responses from the backend, by request method and status class.");
  for (const b of backends) {
    const l = label.get(b)!;
    for (const m of METHOD_LABELS) {
      const counts = b.stats.byMethod[m]!;
      // Methods a backend never saw are left out: a series appears with its first request.
      if (m !== "GET" && counts.every((c) => c === 0)) continue;
      for (let k = 1; k <= 5; k++) w.sample("switchyard_backend_responses_total", `${l},method="${m}",code_class="${CLASSES[k - 1]}"`, counts[k] ?? 0);
    }
  }

  w.family("switchyard_backend_proxy_errors_total", "counter", "Tries that got no response from the backend: refused, reset or timed out.");
  each("switchyard_backend_proxy_errors_total", (b) => b.stats.proxyErrors);
  w.family("switchyard_backend_connect_failures_total", "counter", "Connections to the backend that could not be made.");
  each("switchyard_backend_connect_failures_total", (b) => b.stats.connectFailures);
  w.family("switchyard_backend_retries_total", "counter", "Retries that went to the backend.");
  each("switchyard_backend_retries_total", (b) => b.stats.retries);
  w.family("switchyard_backend_ejections_total", "counter", "Times the backend was ejected by outlier detection.");
  each("switchyard_backend_ejections_total", (b) => b.stats.ejections);

  w.family("switchyard_backend_in_flight", "gauge", mode === "tcp" ? "Connections open to the backend now." : "Requests in flight to the backend now.");
  each("switchyard_backend_in_flight", (b) => b.inFlight);
  if (httpPools.length > 0) {
    w.family("switchyard_backend_websockets", "gauge", "WebSockets open through the backend now (each is also one request in flight).");
    for (const b of backends) if (modeOf.get(b) === "http") w.sample("switchyard_backend_websockets", label.get(b)!, b.stats.webSockets);
  }
  w.family("switchyard_backend_up", "gauge", "1 when the backend is healthy (active checks and passive detection), else 0.");
  each("switchyard_backend_up", (b) => (b.isHealthy ? 1 : 0));
  w.family("switchyard_backend_available", "gauge", "1 when the backend would take new traffic now (healthy, enabled, not ejected, not full).");
  each("switchyard_backend_available", (b) => (b.available(now) ? 1 : 0));
  w.family("switchyard_backend_state", "gauge", "The backend's state: 1 for the current one, 0 for the others.");
  for (const b of backends) {
    const l = label.get(b)!;
    const cur = stateOf.get(b);
    for (const s of STATES) w.sample("switchyard_backend_state", `${l},state="${s}"`, s === cur ? 1 : 0);
  }
  w.family("switchyard_backend_weight", "gauge", "The backend's configured weight.");
  each("switchyard_backend_weight", (b) => b.weight);
  w.family("switchyard_backend_priority", "gauge", "The backend's failover tier (an SRV record's priority); lower is preferred.");
  each("switchyard_backend_priority", (b) => b.priority);
  w.family("switchyard_backend_standby", "gauge", "1 when the backend is in a tier worse than the one taking traffic in its pool (a standby), else 0.");
  for (const p of pools) {
    const active = p.pool.activePriority(now);
    for (const b of p.pool.backends) w.sample("switchyard_backend_standby", label.get(b)!, isStandby(b, active) ? 1 : 0);
  }
  w.family("switchyard_backend_last_state_change_timestamp_seconds", "gauge", "When the backend last changed state, seconds since the Unix epoch.");
  each("switchyard_backend_last_state_change_timestamp_seconds", (b) => b.lastChange / 1000);

  const checked = backends.filter((b) => b.lastCheck !== undefined);
  if (checked.length > 0) {
    w.family("switchyard_backend_last_check_success", "gauge", "1 when the backend's last active health check passed, else 0.");
    for (const b of checked) w.sample("switchyard_backend_last_check_success", label.get(b)!, b.lastCheck!.ok ? 1 : 0);
    w.family("switchyard_backend_last_check_timestamp_seconds", "gauge", "When the backend was last checked, seconds since the Unix epoch.");
    for (const b of checked) w.sample("switchyard_backend_last_check_timestamp_seconds", label.get(b)!, b.lastCheck!.at / 1000);
  }

  w.family("switchyard_backend_response_latency_seconds", "histogram", "Upstream time: from the start of a try (a connection taken or opened, the request sent) to the backend's response head, seconds; one observation per try that got one.");
  for (const b of backends) w.histogram("switchyard_backend_response_latency_seconds", label.get(b)!, b.stats.latency);

  if (pools.some((p) => p.config.mode === "tcp") || backends.some((b) => b.stats.bytesIn > 0 || b.stats.bytesOut > 0)) {
    w.family("switchyard_backend_connections_total", "counter", "Connections handed to the backend.");
    each("switchyard_backend_connections_total", (b) => b.acquired);
    w.family("switchyard_backend_bytes_total", "counter", "Bytes relayed through the backend's connections, by direction (in: client to backend, out: backend to client).");
    for (const b of backends) {
      const l = label.get(b)!;
      w.sample("switchyard_backend_bytes_total", `${l},direction="in"`, b.stats.bytesIn);
      w.sample("switchyard_backend_bytes_total", `${l},direction="out"`, b.stats.bytesOut);
    }
  }

  const tcp = src.tcpStats;
  if (tcp) {
    w.single("switchyard_tcp_connections_total", "counter", "Client connections accepted by the TCP listener.", tcp.accepted);
    w.single("switchyard_tcp_open_connections", "gauge", "Client connections open now (connecting or relaying).", tcp.open);
    w.family(
      "switchyard_tcp_closed_unserved_total", "counter",
      "Client connections closed without a backend, by reason (no_backend: none available; unreachable: every try failed; SNI routing: sni_timeout: no complete ClientHello in time, sni_invalid: a malformed, too large or cut-short ClientHello, not_tls: not a TLS handshake, no_route: no route takes its server name; proxy_protocol: no valid PROXY protocol header from a trusted peer in time; per_client: the client's address held limits.maxConnectionsPerClient connections already).",
    );
    w.sample("switchyard_tcp_closed_unserved_total", `reason="no_backend"`, tcp.rejected);
    w.sample("switchyard_tcp_closed_unserved_total", `reason="unreachable"`, tcp.unreachable);
    w.sample("switchyard_tcp_closed_unserved_total", `reason="sni_timeout"`, tcp.sniTimeouts);
    w.sample("switchyard_tcp_closed_unserved_total", `reason="sni_invalid"`, tcp.sniInvalid);
    w.sample("switchyard_tcp_closed_unserved_total", `reason="not_tls"`, tcp.sniNotTls);
    w.sample("switchyard_tcp_closed_unserved_total", `reason="no_route"`, tcp.sniNoRoute);
    w.sample("switchyard_tcp_closed_unserved_total", `reason="proxy_protocol"`, tcp.proxyRefused);
    w.sample("switchyard_tcp_closed_unserved_total", `reason="per_client"`, tcp.clientConnectionsRefused);
    w.single("switchyard_tcp_connect_failures_total", "counter", "Backend connects that failed or timed out.", tcp.connectFailures);
    w.single("switchyard_tcp_connect_timeouts_total", "counter", "Backend connects that ran out of timeouts.connect.", tcp.connectTimeouts);
    w.single("switchyard_tcp_local_errors_total", "counter", "Backend connects that failed for want of the proxy's own resources (file descriptors, local ports); never counted against a backend.", tcp.localErrors);
    w.single("switchyard_tcp_retries_total", "counter", "Connects to a further backend after one failed.", tcp.retries);
    w.single("switchyard_tcp_idle_timeouts_total", "counter", "Relays closed because no byte moved for timeouts.idle.", tcp.idleTimeouts);
    w.single("switchyard_tcp_resets_total", "counter", "Relays cut short by a reset or an error on either side.", tcp.resets);
    w.family("switchyard_tcp_bytes_total", "counter", "Bytes relayed by the TCP listener, by direction (in: client to backend, out: backend to client).");
    w.sample("switchyard_tcp_bytes_total", `direction="in"`, tcp.bytesIn);
    w.sample("switchyard_tcp_bytes_total", `direction="out"`, tcp.bytesOut);
  }

  if (src.workers) {
    const ws = src.workers.figures();
    w.single("switchyard_workers", "gauge", "Worker processes configured (workers).", ws.count);
    w.single("switchyard_workers_serving", "gauge", "Worker processes serving the proxy port now.", ws.list.filter((x) => x.state === "serving").length);
    w.family("switchyard_worker_restarts_total", "counter", "Times a worker process was started again after it exited.");
    for (const x of ws.list) w.sample("switchyard_worker_restarts_total", `worker="${x.index}"`, x.restarts);
    w.family("switchyard_worker_requests_total", "counter", "Requests answered (TCP: connections accepted) by the worker process now in this slot, since it started.");
    for (const x of ws.list) w.sample("switchyard_worker_requests_total", `worker="${x.index}"`, x.requests);
  }

  renderAcme(w, src.acme?.figures() ?? []);

  if (poller) {
    const reported = backends.map((b) => [b, poller.get(b)] as const);
    const withUptime = reported.filter(([, r]) => r?.uptimeSeconds != null);
    if (withUptime.length > 0) {
      w.family("switchyard_backend_reported_uptime_seconds", "gauge", "Uptime the backend reported at its statsPath, at the last successful poll.");
      for (const [b, r] of withUptime) w.sample("switchyard_backend_reported_uptime_seconds", label.get(b)!, r!.uptimeSeconds!);
    }
    const withMemory = reported.filter(([, r]) => r?.memoryUsage != null);
    if (withMemory.length > 0) {
      w.family("switchyard_backend_reported_memory_bytes", "gauge", "Memory use the backend reported at its statsPath, at the last successful poll.");
      for (const [b, r] of withMemory) w.sample("switchyard_backend_reported_memory_bytes", label.get(b)!, r!.memoryUsage!);
    }
    w.family("switchyard_backend_stats_polls_total", "counter", "Polls of backends' statsPath, by result (skipped: the backend's last poll was still running or the queue was full).");
    for (const r of ["ok", "error", "skipped"] as PollResult[]) w.sample("switchyard_backend_stats_polls_total", `result="${r}"`, poller.counts[r]);
  }

  return w.text();
}

/**
 * The names whose certificates come from ACME, by name (bounded by the config): what an alert on
 * a certificate about to expire, a placeholder still serving or renewals that keep failing reads.
 */
function renderAcme(w: Writer, names: AcmeNameFigures[]): void {
  if (names.length === 0) return;
  const label = (a: AcmeNameFigures) => `name="${escapeLabelValue(a.name)}"`;
  const issued = names.filter((a) => a.notAfter !== null);
  if (issued.length > 0) {
    w.family("switchyard_acme_certificate_expiry_timestamp_seconds", "gauge", "When the name's certificate from the CA expires (Unix time); absent while a placeholder serves.");
    for (const a of issued) w.sample("switchyard_acme_certificate_expiry_timestamp_seconds", label(a), Date.parse(a.notAfter!) / 1000);
  }
  const due = names.filter((a) => a.renewAt !== null);
  if (due.length > 0) {
    w.family("switchyard_acme_renewal_timestamp_seconds", "gauge", "When the name is due for renewal (Unix time): two thirds of its lifetime, or the CA's window (ARI) when earlier; now while a placeholder serves.");
    for (const a of due) w.sample("switchyard_acme_renewal_timestamp_seconds", label(a), Date.parse(a.renewAt!) / 1000);
  }
  w.family("switchyard_acme_placeholder", "gauge", "1 while the name is served a self-signed placeholder (no certificate from the CA yet), else 0.");
  for (const a of names) w.sample("switchyard_acme_placeholder", label(a), a.serving === "placeholder" ? 1 : 0);
  w.family("switchyard_acme_order_failures", "gauge", "Orders for the name that failed in a row; 0 once one succeeds.");
  for (const a of names) w.sample("switchyard_acme_order_failures", label(a), a.failures);
  w.family("switchyard_acme_certificates_issued_total", "counter", "Certificates this process got from the CA for the name (another replica's are not counted).");
  for (const a of names) w.sample("switchyard_acme_certificates_issued_total", label(a), a.issued);
}

/**
 * Per route: responses by status class and the latency histogram, labelled with the route's
 * name from the config (bounded by the config, never by requests). HTTP routes this process
 * counts only: SNI routes' connections are in switchyard_tcp_*, and with workers the routes are
 * counted in the worker processes.
 */
function renderRoutes(w: Writer, src: SnapshotSource): void {
  const stats = routeStatsOf(src);
  const routes: [string, TrafficStats][] = [];
  for (const r of src.config.routes ?? []) {
    const t = r.match?.sni === undefined ? stats.get(r.name) : undefined;
    if (t !== undefined) routes.push([`route="${escapeLabelValue(r.name)}"`, t]);
  }
  if (routes.length === 0) return;
  w.family("switchyard_route_requests_total", "counter", "Responses sent to clients for the route's requests, by status class (including the balancer's own error answers and the route's redirect or respond).");
  for (const [l, t] of routes) {
    const cls = responsesByClass(t);
    for (let k = 1; k <= 5; k++) w.sample("switchyard_route_requests_total", `${l},code_class="${CLASSES[k - 1]}"`, cls[k] ?? 0);
  }
  const errors = routes.flatMap(([l, t]) => Object.entries(t.proxyErrors).filter(([, n]) => n > 0).map(([code, n]) => [`${l},code="${code}"`, n] as const));
  if (errors.length > 0) {
    w.family("switchyard_route_proxy_errors_total", "counter", "The route's requests the balancer answered itself (or that the client abandoned), by error code; a code appears with its first count.");
    for (const [l, n] of errors) w.sample("switchyard_route_proxy_errors_total", l, n);
  }
  w.family("switchyard_route_request_duration_seconds", "histogram", "Time from a request's arrival to its response head, for the route's requests, seconds.");
  for (const [l, t] of routes) w.histogram("switchyard_route_request_duration_seconds", l, t.latency);
}
