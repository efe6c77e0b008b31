/**
 * The balancer's counters and histograms, and their Prometheus text exposition.
 *
 * Recording is cheap on the hot path: each backend's series are created once (on first use)
 * and held in typed arrays indexed by status code and bucket; label strings are escaped once.
 * Text is built only when `/_lb/metrics` is scraped. Gauges (`denolb_backend_up`,
 * `denolb_backend_in_flight`) are read from the backends at scrape time.
 *
 * @module
 */
import type { Backend, HealthState } from "./backend.ts";

/** Upper bounds of the request duration histogram's buckets, in seconds. */
export const DURATION_BUCKETS_SECONDS: readonly number[] = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

/** The `backend` label of requests that reached no backend (none was healthy). */
export const NO_BACKEND_LABEL = "none";

const BUCKET_BOUNDS_MS = DURATION_BUCKETS_SECONDS.map((seconds) => seconds * 1000);
const STATUS_SLOTS = 600;

/** The series of one backend label. */
class Series {
  /** `backend="..."`, escaped once. */
  readonly label: string;
  /** Requests by status code (index = code; out-of-range codes land in slot 0). */
  readonly codes = new Float64Array(STATUS_SLOTS);
  /** Non-cumulative bucket counts; the last slot is `+Inf`. */
  readonly buckets = new Float64Array(BUCKET_BOUNDS_MS.length + 1);
  sumSeconds = 0;
  count = 0;
  healthyFlips = 0;
  unhealthyFlips = 0;
  /** Passive health ejections (the control plane's own, like the flips). */
  ejections = 0;

  constructor(name: string) {
    this.label = `backend="${escapeLabelValue(name)}"`;
  }
}

/** One backend label's counts, as plain data (sent between isolates). */
export interface SeriesState {
  /** `[statusCode, count]` for every code seen. */
  readonly codes: ReadonlyArray<readonly [number, number]>;
  /** Non-cumulative bucket counts; the last is `+Inf`. */
  readonly buckets: readonly number[];
  readonly sumSeconds: number;
  readonly count: number;
}

/** Everything one isolate counted, as plain data: what a data-plane worker reports. */
export interface MetricsState {
  /** By backend name; `NO_BACKEND_LABEL` for requests that reached none. */
  readonly series: Readonly<Record<string, SeriesState>>;
  readonly noBackend: number;
  readonly retries: number;
  /** WebSocket upgrades relayed (101 sent). Absent from older senders. */
  readonly webSocketUpgrades?: number;
  /** WebSockets open when the state was taken (a gauge: the latest report counts). */
  readonly webSocketsOpen?: number;
  readonly events: Readonly<Partial<Record<MetricEvent, number>>>;
  /** Requests by route, pool and status class (`route\0pool\0class`). Absent without routes. */
  readonly routes?: Readonly<Record<string, number>>;
}

/**
 * The most route and pool pairs counted apart; more land in `route="other"`. Routes come from
 * the configuration, so this only bounds a table rewritten many times by reloads.
 */
export const MAX_ROUTE_SERIES = 512;

/** One route's requests in one pool: what `/status` lists. */
export interface RouteCounts {
  readonly route: string;
  readonly pool: string;
  /** Requests by status class: `2xx`, `3xx`, `4xx`, `5xx`. */
  readonly byClass: Readonly<Record<string, number>>;
  readonly requests: number;
}

/** Events outside the request/response path, each counted in one series. */
export type MetricEvent =
  /** `accept()` failed for want of file descriptors. */
  | "accept-fd-exhausted"
  /** `accept()` failed for another reason. */
  | "accept-error"
  /** Connecting to a backend failed for want of file descriptors. */
  | "connect-fd-exhausted"
  /** A client connection sent no complete request head within the header timeout. */
  | "header-timeout"
  /** A kept-alive client connection sent no next request within the keep-alive timeout. */
  | "keepalive-timeout"
  /** A TLS client did not complete its handshake within the handshake timeout. */
  | "handshake-timeout"
  /** A TLS handshake failed (no shared version or cipher, not TLS at all, a reset). */
  | "handshake-failed"
  /** A client's request body stalled past the body timeout. */
  | "body-timeout"
  /** A client connection broke with an HTTP error (such as bad chunked framing). */
  | "connection-error"
  /** A client connection beyond `--max-connections` was answered 503 and closed. */
  | "connection-refused"
  /** Every backend was at its in-flight limit and the queue was full: 503. */
  | "queue-full"
  /** Every backend stayed at its in-flight limit for the whole queue timeout: 503. */
  | "queue-timeout"
  /** Writing the access log failed (it is retried). */
  | "access-log-write-failed"
  /** An access log line was lost: the log could not be written and its buffer was full. */
  | "access-log-line-lost"
  /** Connecting to a backend took longer than `--connect-timeout`. */
  | "connect-timeout"
  /** A backend sent no response headers within `--timeout`. */
  | "response-timeout"
  /** A backend's response body paused longer than `--idle-body-timeout`; the client's was cut. */
  | "idle-body-timeout"
  /** A retry was allowed by `--retries` but refused by the retry budget. */
  | "retry-budget-exhausted"
  /** A request was over its route's rate limit: 429. */
  | "rate-limited"
  /** A rate-limit bucket was evicted (least recently used) for a new key. */
  | "rate-limit-evicted"
  /** An ACME order (a first certificate or a renewal) got a certificate. */
  | "acme-order-succeeded"
  /** An ACME order failed; the previous certificate, if any, is still served. */
  | "acme-order-failed";

/** How events are rendered: one metric per entry, one series (labels) per event. */
const EVENT_METRICS: ReadonlyArray<{
  readonly name: string;
  readonly help: string;
  readonly series: ReadonlyArray<readonly [MetricEvent, labels: string]>;
}> = [
  {
    name: "denolb_fd_exhausted_total",
    help: "Accepts and backend connects that failed for want of file descriptors.",
    series: [["accept-fd-exhausted", '{where="accept"}'], [
      "connect-fd-exhausted",
      '{where="connect"}',
    ]],
  },
  {
    name: "denolb_accept_errors_total",
    help: "Accepts that failed for another reason.",
    series: [["accept-error", ""]],
  },
  {
    name: "denolb_client_timeouts_total",
    help: "Client connections or requests cut for slowness, by timeout.",
    series: [
      ["header-timeout", '{timeout="header"}'],
      ["keepalive-timeout", '{timeout="keepalive"}'],
      ["body-timeout", '{timeout="body"}'],
      ["handshake-timeout", '{timeout="handshake"}'],
    ],
  },
  {
    name: "denolb_tls_handshake_failures_total",
    help: "TLS handshakes that failed (old protocol versions, no shared cipher, not TLS).",
    series: [["handshake-failed", ""]],
  },
  {
    name: "denolb_client_connection_errors_total",
    help: "Client connections that broke with an HTTP error, such as bad chunked framing.",
    series: [["connection-error", ""]],
  },
  {
    name: "denolb_connections_rejected_total",
    help: "Client connections beyond --max-connections, answered 503 and closed.",
    series: [["connection-refused", ""]],
  },
  {
    name: "denolb_queue_rejected_total",
    help: "Requests answered 503 because every backend was at its in-flight limit, by reason.",
    series: [["queue-full", '{reason="queue-full"}'], [
      "queue-timeout",
      '{reason="queue-timeout"}',
    ]],
  },
  {
    name: "denolb_access_log_errors_total",
    help: "Access log writes that failed (retried), and lines lost while it could not be written.",
    series: [
      ["access-log-write-failed", '{kind="write-failed"}'],
      ["access-log-line-lost", '{kind="line-lost"}'],
    ],
  },
  {
    name: "denolb_backend_timeouts_total",
    help: "Attempts cut by a backend timeout: connect, response headers, or an idle response body.",
    series: [
      ["connect-timeout", '{timeout="connect"}'],
      ["response-timeout", '{timeout="response"}'],
      ["idle-body-timeout", '{timeout="idle-body"}'],
    ],
  },
  {
    name: "denolb_retry_budget_exhausted_total",
    help: "Retries --retries allowed that the retry budget refused (the failure was answered).",
    series: [["retry-budget-exhausted", ""]],
  },
  {
    name: "denolb_rate_limited_total",
    help: "Requests answered 429 because they were over their route's rate limit.",
    series: [["rate-limited", ""]],
  },
  {
    name: "denolb_rate_limit_evictions_total",
    help: "Rate-limit buckets evicted (least recently used) to make room for a new key.",
    series: [["rate-limit-evicted", ""]],
  },
  {
    name: "denolb_acme_orders_total",
    help: "ACME certificate orders (first certificates and renewals), by outcome; after a " +
      "failed one the previous certificate is still served.",
    series: [
      ["acme-order-succeeded", '{outcome="succeeded"}'],
      ["acme-order-failed", '{outcome="failed"}'],
    ],
  },
];

/** Counters and histograms of one balancer (one isolate). */
export class Metrics {
  readonly #series = new Map<string, Series>();
  readonly #none = new Series(NO_BACKEND_LABEL);
  readonly #backends: () => readonly Backend[];
  #noBackend = 0;
  #retries = 0;
  #webSocketUpgrades = 0;
  #webSocketsOpen = 0;
  readonly #events = new Map<MetricEvent, number>();
  readonly #routes = new Map<string, number>();
  /** The latest cumulative state of each other isolate, by its id. */
  readonly #remote = new Map<string, MetricsState>();

  /**
   * @param backends The backends whose gauges are exposed, in configuration order, or the pool
   *   (read at each scrape, so added backends appear). Their
   *   series exist from the start, so a scrape lists every backend even before traffic.
   */
  constructor(backends: readonly Backend[] | { readonly backends: readonly Backend[] }) {
    // A pool is read at each scrape, so backends added later get their gauges too.
    this.#backends = "backends" in backends ? () => backends.backends : () => backends;
    for (const backend of this.#backends()) this.#seriesOf(backend.name);
  }

  /**
   * Records one answered client request.
   *
   * @param backend The backend that served it (the last one tried), or `undefined` when none
   *   was picked (`backend="none"`).
   * @param status The status code sent to the client.
   * @param durationMs Time from the request's arrival to its response headers.
   */
  recordRequest(backend: Backend | undefined, status: number, durationMs: number): void {
    const series = backend === undefined ? this.#none : this.#seriesOf(backend.name);
    const slot = status > 0 && status < STATUS_SLOTS ? status : 0;
    series.codes[slot] = (series.codes[slot] ?? 0) + 1;
    let bucket = 0;
    while (bucket < BUCKET_BOUNDS_MS.length && durationMs > (BUCKET_BOUNDS_MS[bucket] ?? 0)) {
      bucket++;
    }
    series.buckets[bucket] = (series.buckets[bucket] ?? 0) + 1;
    series.sumSeconds += durationMs / 1000;
    series.count++;
  }

  /**
   * Records one request a route took, by its pool (`none` for the route's own answers) and
   * status class.
   *
   * @param route The route's name.
   * @param pool The pool it went to, or `none`.
   * @param status The status the client got.
   */
  recordRoute(route: string, pool: string, status: number): void {
    let key = `${route}\u0000${pool}\u0000${Math.floor(status / 100)}xx`;
    if (!this.#routes.has(key) && this.#routes.size >= MAX_ROUTE_SERIES) {
      key = `other\u0000other\u0000${Math.floor(status / 100)}xx`;
    }
    this.#routes.set(key, (this.#routes.get(key) ?? 0) + 1);
  }

  /** Every route and pool pair's requests, over every isolate, in first-seen order. */
  routeCounts(): RouteCounts[] {
    const totals = new Map(this.#routes);
    for (const state of this.#remote.values()) {
      for (const [key, count] of Object.entries(state.routes ?? {})) {
        totals.set(key, (totals.get(key) ?? 0) + count);
      }
    }
    const byPair = new Map<
      string,
      { route: string; pool: string; byClass: Record<string, number> }
    >();
    for (const [key, count] of totals) {
      const [route = "", pool = "", statusClass = ""] = key.split("\u0000");
      const pair = `${route}\u0000${pool}`;
      let entry = byPair.get(pair);
      if (entry === undefined) {
        entry = { route, pool, byClass: {} };
        byPair.set(pair, entry);
      }
      entry.byClass[statusClass] = (entry.byClass[statusClass] ?? 0) + count;
    }
    return [...byPair.values()].map((entry) => ({
      ...entry,
      requests: Object.values(entry.byClass).reduce((sum, count) => sum + count, 0),
    }));
  }

  /** Records a request answered 503 because no backend was healthy. */
  recordNoBackend(): void {
    this.#noBackend++;
  }

  /**
   * Counts one event outside the request path.
   *
   * @param event What happened.
   */
  recordEvent(event: MetricEvent): void {
    this.#events.set(event, (this.#events.get(event) ?? 0) + 1);
  }

  /**
   * How often `event` happened.
   *
   * @param event The event.
   * @returns Its count.
   */
  eventCount(event: MetricEvent): number {
    return (this.#events.get(event) ?? 0) + this.#sumRemote((state) => state.events[event] ?? 0);
  }

  /** Records one retry of a request on another backend. */
  recordRetry(): void {
    this.#retries++;
  }

  /**
   * Records a health flip (called by the health checker when a backend changes state).
   *
   * @param backend The backend that flipped.
   * @param to Its new state.
   */
  recordHealthFlip(backend: Backend, to: HealthState): void {
    const series = this.#seriesOf(backend.name);
    if (to === "healthy") series.healthyFlips++;
    else series.unhealthyFlips++;
  }

  /**
   * Records a passive health ejection (called by the control plane's outlier detection).
   *
   * @param backend The backend ejected.
   */
  recordEjection(backend: Backend): void {
    this.#seriesOf(backend.name).ejections++;
  }

  /**
   * Estimates a latency quantile of one backend's requests from its histogram buckets,
   * interpolating linearly inside the bucket (as Prometheus' `histogram_quantile` does).
   *
   * @param backend The backend.
   * @param quantile Between 0 and 1, such as 0.99.
   * @returns Milliseconds, or `null` before the backend has served a request.
   */
  latencyQuantileMs(backend: Backend, quantile: number): number | null {
    const label = this.#seriesOf(backend.name).label;
    const series = this.#remote.size === 0
      ? this.#series.get(backend.name)
      : this.#merged().series.find((s) => s.label === label);
    if (series === undefined || series.count === 0) return null;
    const rank = quantile * series.count;
    let cumulative = 0;
    for (let bucket = 0; bucket < series.buckets.length; bucket++) {
      const inBucket = series.buckets[bucket] ?? 0;
      if (cumulative + inBucket >= rank && inBucket > 0) {
        const upper = BUCKET_BOUNDS_MS[bucket];
        const lower = bucket === 0 ? 0 : BUCKET_BOUNDS_MS[bucket - 1] ?? 0;
        // Past the last bound the histogram knows no more than "above it".
        if (upper === undefined) return lower;
        return lower + (upper - lower) * ((rank - cumulative) / inBucket);
      }
      cumulative += inBucket;
    }
    return BUCKET_BOUNDS_MS[BUCKET_BOUNDS_MS.length - 1] ?? null;
  }

  /** Requests answered 503 for want of a healthy backend. */
  get noBackendCount(): number {
    return this.#noBackend + this.#sumRemote((state) => state.noBackend);
  }

  /** Counts a relayed WebSocket upgrade and one more open socket. */
  recordWebSocketOpened(): void {
    this.#webSocketUpgrades++;
    this.#webSocketsOpen++;
  }

  /** Counts one WebSocket closed. */
  recordWebSocketClosed(): void {
    this.#webSocketsOpen--;
  }

  /** WebSockets open now, over every isolate (as of their latest reports). */
  get webSocketsOpen(): number {
    return this.#webSocketsOpen + this.#sumRemote((state) => state.webSocketsOpen ?? 0);
  }

  /** WebSocket upgrades relayed, over every isolate. */
  get webSocketUpgrades(): number {
    return this.#webSocketUpgrades + this.#sumRemote((state) => state.webSocketUpgrades ?? 0);
  }

  /** Retries on another backend. */
  get retryCount(): number {
    return this.#retries + this.#sumRemote((state) => state.retries);
  }

  /**
   * This isolate's counts as plain data, to send to the control plane.
   *
   * @returns The cumulative state (health flips are the control plane's own and left out).
   */
  exportState(): MetricsState {
    const series: Record<string, SeriesState> = {};
    for (const [name, s] of [...this.#series, [NO_BACKEND_LABEL, this.#none] as const]) {
      if (s.count === 0 && s.codes.every((count) => count === 0)) continue;
      const codes: Array<[number, number]> = [];
      s.codes.forEach((count, code) => {
        if (count > 0) codes.push([code, count]);
      });
      series[name] = { codes, buckets: [...s.buckets], sumSeconds: s.sumSeconds, count: s.count };
    }
    return {
      series,
      noBackend: this.#noBackend,
      retries: this.#retries,
      webSocketUpgrades: this.#webSocketUpgrades,
      webSocketsOpen: this.#webSocketsOpen,
      events: Object.fromEntries(this.#events),
      ...(this.#routes.size === 0 ? {} : { routes: Object.fromEntries(this.#routes) }),
    };
  }

  /**
   * Takes in another isolate's cumulative state, replacing the one it sent before: every
   * figure this object reports is then the sum over itself and every source. Histograms merge
   * exactly (bucket counts add up).
   *
   * @param source The isolate's id.
   * @param state Its latest {@linkcode exportState}.
   */
  absorb(source: string, state: MetricsState): void {
    this.#remote.set(source, state);
  }

  /** Forgets a source that is gone (its counts no longer add up). */
  forget(source: string): void {
    this.#remote.delete(source);
  }

  /** Local and remote series summed, by backend label. */
  #merged(): { series: Series[]; none: Series } {
    if (this.#remote.size === 0) return { series: [...this.#series.values()], none: this.#none };
    const merged = new Map<string, Series>();
    const add = (name: string, from: SeriesState | Series) => {
      let into = merged.get(name);
      if (into === undefined) {
        into = new Series(name);
        const local = name === NO_BACKEND_LABEL ? this.#none : this.#series.get(name);
        if (local !== undefined) {
          into.healthyFlips = local.healthyFlips;
          into.unhealthyFlips = local.unhealthyFlips;
          into.ejections = local.ejections;
        }
        merged.set(name, into);
      }
      if (from instanceof Series) {
        from.codes.forEach((count, code) => into.codes[code] = (into.codes[code] ?? 0) + count);
      } else {
        for (const [code, count] of from.codes) into.codes[code] = (into.codes[code] ?? 0) + count;
      }
      from.buckets.forEach((count, i) => into.buckets[i] = (into.buckets[i] ?? 0) + count);
      into.sumSeconds += from.sumSeconds;
      into.count += from.count;
    };
    for (const [name, series] of this.#series) add(name, series);
    add(NO_BACKEND_LABEL, this.#none);
    for (const state of this.#remote.values()) {
      for (const [name, series] of Object.entries(state.series)) add(name, series);
    }
    const none = merged.get(NO_BACKEND_LABEL) ?? new Series(NO_BACKEND_LABEL);
    merged.delete(NO_BACKEND_LABEL);
    return { series: [...merged.values()], none };
  }

  #sumRemote(get: (state: MetricsState) => number): number {
    let total = 0;
    for (const state of this.#remote.values()) total += get(state);
    return total;
  }

  /**
   * Renders every metric in the Prometheus text exposition format (version 0.0.4).
   *
   * @returns The exposition text, ending in a newline.
   */
  render(): string {
    const merged = this.#merged();
    const all = [...merged.series, merged.none];
    const lines: string[] = [];

    lines.push(
      "# HELP denolb_requests_total Client requests answered, by backend and status code.",
      "# TYPE denolb_requests_total counter",
    );
    for (const series of all) {
      series.codes.forEach((count, code) => {
        if (count > 0) {
          lines.push(`denolb_requests_total{${series.label},code="${code}"} ${count}`);
        }
      });
    }

    lines.push(
      "# HELP denolb_request_duration_seconds Time from a request's arrival to its response headers.",
      "# TYPE denolb_request_duration_seconds histogram",
    );
    for (const series of all) {
      if (series.count === 0 && series === merged.none) continue;
      let cumulative = 0;
      DURATION_BUCKETS_SECONDS.forEach((bound, index) => {
        cumulative += series.buckets[index] ?? 0;
        lines.push(
          `denolb_request_duration_seconds_bucket{${series.label},le="${bound}"} ${cumulative}`,
        );
      });
      lines.push(
        `denolb_request_duration_seconds_bucket{${series.label},le="+Inf"} ${series.count}`,
        `denolb_request_duration_seconds_sum{${series.label}} ${series.sumSeconds}`,
        `denolb_request_duration_seconds_count{${series.label}} ${series.count}`,
      );
    }

    lines.push(
      "# HELP denolb_backend_up Whether the backend takes traffic (1) or not (0).",
      "# TYPE denolb_backend_up gauge",
    );
    for (const backend of this.#backends()) {
      lines.push(
        `denolb_backend_up{${this.#seriesOf(backend.name).label}} ${backend.isHealthy ? 1 : 0}`,
      );
    }

    lines.push(
      "# HELP denolb_backend_in_flight Requests forwarded to the backend and not finished.",
      "# TYPE denolb_backend_in_flight gauge",
    );
    for (const backend of this.#backends()) {
      lines.push(
        `denolb_backend_in_flight{${this.#seriesOf(backend.name).label}} ${backend.inFlight}`,
      );
    }

    lines.push(
      "# HELP denolb_backend_ejected Whether passive health has the backend ejected (1) or not (0).",
      "# TYPE denolb_backend_ejected gauge",
    );
    for (const backend of this.#backends()) {
      const ejected = backend.isEjected ? 1 : 0;
      lines.push(`denolb_backend_ejected{${this.#seriesOf(backend.name).label}} ${ejected}`);
    }

    lines.push(
      "# HELP denolb_no_backend_total Requests answered 503 because no backend was healthy.",
      "# TYPE denolb_no_backend_total counter",
      `denolb_no_backend_total ${this.noBackendCount}`,
      "# HELP denolb_retries_total Requests retried on another backend after a failure.",
      "# TYPE denolb_retries_total counter",
      `denolb_retries_total ${this.retryCount}`,
      "# HELP denolb_websockets_open WebSocket connections relayed now.",
      "# TYPE denolb_websockets_open gauge",
      `denolb_websockets_open ${this.webSocketsOpen}`,
      "# HELP denolb_websocket_upgrades_total WebSocket upgrades relayed to a backend (101 sent).",
      "# TYPE denolb_websocket_upgrades_total counter",
      `denolb_websocket_upgrades_total ${this.webSocketUpgrades}`,
      "# HELP denolb_health_flips_total Health state changes, by backend and new state.",
      "# TYPE denolb_health_flips_total counter",
    );
    for (const series of this.#series.values()) {
      lines.push(
        `denolb_health_flips_total{${series.label},to="healthy"} ${series.healthyFlips}`,
        `denolb_health_flips_total{${series.label},to="unhealthy"} ${series.unhealthyFlips}`,
      );
    }
    lines.push(
      "# HELP denolb_outlier_ejections_total Backends ejected by passive health (outlier detection).",
      "# TYPE denolb_outlier_ejections_total counter",
    );
    for (const series of this.#series.values()) {
      lines.push(`denolb_outlier_ejections_total{${series.label}} ${series.ejections}`);
    }
    const routes = this.routeCounts();
    if (routes.length > 0) {
      lines.push(
        "# HELP denolb_route_requests_total Requests by route, the pool it sent them to " +
          "(none for its own answers) and status class.",
        "# TYPE denolb_route_requests_total counter",
      );
      for (const { route, pool, byClass } of routes) {
        const labels = `route="${escapeLabelValue(route)}",pool="${escapeLabelValue(pool)}"`;
        for (const [statusClass, count] of Object.entries(byClass)) {
          lines.push(`denolb_route_requests_total{${labels},code="${statusClass}"} ${count}`);
        }
      }
    }
    for (const metric of EVENT_METRICS) {
      lines.push(`# HELP ${metric.name} ${metric.help}`, `# TYPE ${metric.name} counter`);
      for (const [event, labels] of metric.series) {
        lines.push(`${metric.name}${labels} ${this.eventCount(event)}`);
      }
    }
    lines.push("");
    return lines.join("\n");
  }

  #seriesOf(name: string): Series {
    let series = this.#series.get(name);
    if (series === undefined) {
      series = new Series(name);
      this.#series.set(name, series);
    }
    return series;
  }
}

/**
 * Escapes a Prometheus label value: backslash, double quote and newline.
 *
 * @param value The raw label value.
 * @returns The value, safe between double quotes.
 *
 * @example
 * ```ts
 * import { escapeLabelValue } from "./metrics.ts";
 * if (escapeLabelValue('a"b\\c') !== 'a\\"b\\\\c') throw new Error("bad escape");
 * ```
 */
export function escapeLabelValue(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}
