/**
 * Statistics of a load run: the success rule for statuses, the per-run recorder the runner
 * feeds, and merging the serialisable {@linkcode RunStats} (declared in `report_schema.ts`)
 * that workers, the JSON report and `merge` exchange. Latencies are kept in a {@linkcode LatencyHistogram} that travels encoded, so merged
 * percentiles are exact rather than averaged.
 *
 * @module
 */
import { statusText } from "../lib/shared/std.ts";
import { LatencyHistogram, type LatencySummary } from "./histogram.ts";
import type { RunStats } from "./report_schema.ts";
import type { NetworkErrorKind, Outcome } from "./transport.ts";

/** How many distinct error messages a run keeps as samples. */
export const MAX_ERROR_SAMPLES = 5;

/** Inclusive status ranges that count as success, such as `[[200, 399]]`. */
export type StatusRanges = ReadonlyArray<readonly [number, number]>;

/** The default success rule: 2xx and 3xx. */
export const DEFAULT_SUCCESS_STATUSES: StatusRanges = [[200, 399]];

/**
 * Parses a success-status rule: comma-separated codes (`200`), classes (`2xx`) and ranges
 * (`200-204`).
 *
 * @param text The rule, such as `"2xx,3xx"` or `"200,204,301-308"`.
 * @returns The inclusive ranges.
 * @throws {SyntaxError} When a part is not a status code, class or range between 100 and 599.
 *
 * @example
 * ```ts
 * import { parseStatusRanges } from "./stats.ts";
 * const ranges = parseStatusRanges("2xx,304");
 * if (ranges.length !== 2 || ranges[0]?.[1] !== 299) throw new Error("bad");
 * ```
 */
export function parseStatusRanges(text: string): StatusRanges {
  const ranges: Array<readonly [number, number]> = [];
  for (const raw of text.split(",")) {
    const part = raw.trim().toLowerCase();
    let range: readonly [number, number] | undefined;
    const klass = /^([1-5])xx$/.exec(part);
    const span = /^(\d{3})-(\d{3})$/.exec(part);
    if (klass !== null) range = [Number(klass[1]) * 100, Number(klass[1]) * 100 + 99];
    else if (span !== null) range = [Number(span[1]), Number(span[2])];
    else if (/^\d{3}$/.test(part)) range = [Number(part), Number(part)];
    if (range === undefined || range[0] < 100 || range[1] > 599 || range[0] > range[1]) {
      throw new SyntaxError(
        `Cannot parse status "${raw.trim()}": use codes (200), classes (2xx) or ranges (200-204) between 100 and 599`,
      );
    }
    ranges.push(range);
  }
  return ranges;
}

/** Counts of requests that ended without an HTTP response, by kind. */
export type NetworkErrorCounts = Readonly<Record<NetworkErrorKind, number>>;

export type { RunStats };

const NETWORK_KINDS: readonly NetworkErrorKind[] = ["timeout", "refused", "reset", "network"];

/** Options of a {@linkcode RunRecorder}. */
export interface RunRecorderOptions {
  /** Statuses that count as success. Default: {@linkcode DEFAULT_SUCCESS_STATUSES}. */
  readonly successStatuses?: StatusRanges;
  /** Keep per-second buckets. Default: false. */
  readonly timeline?: boolean;
  /** Clock time the run started, the origin of timeline buckets. Default: 0. */
  readonly startMs?: number;
}

/** Why a latency is a lower bound rather than a measured time (a censored sample). */
export type CensoredKind = "timeout" | "inFlight" | "unsent";

interface MutableBucket {
  ok: number;
  errors: number;
  readonly histogram: LatencyHistogram;
}

/** Folds each request's samples into counters and histograms as they arrive. */
export class RunRecorder {
  readonly #latency = new LatencyHistogram();
  readonly #lateness = new LatencyHistogram();
  readonly #statusCounts = new Uint32Array(600);
  readonly #isSuccess = new Uint8Array(600);
  readonly #networkCounts = new Uint32Array(NETWORK_KINDS.length);
  readonly #samples = new Map<string, number>();
  readonly #timeline: MutableBucket[] | undefined;
  readonly #startMs: number;
  #ok = 0;
  #errors = 0;
  #bodyBytes = 0;
  #censored = 0;
  /** Requests in flight when the run ended (recorded by {@linkcode RunRecorder.recordCensored}). */
  cutOff = 0;
  /** Requests that started later than planned. */
  late = 0;
  /** Open model: late requests held back by the generator itself, not by the in-flight cap. */
  lateByGenerator = 0;
  /** Requests planned that never started (recorded by {@linkcode RunRecorder.recordCensored}). */
  unsent = 0;
  /** Requests sent on a new connection because the idle one had closed (see `Transport`). */
  resent = 0;
  /** Most requests in flight at once. */
  peakInFlight = 0;
  /** Open model: the in-flight cap (0: closed model). */
  inFlightCap = 0;

  /** @param options Success rule and timeline. */
  constructor(options: RunRecorderOptions = {}) {
    for (const [low, high] of options.successStatuses ?? DEFAULT_SUCCESS_STATUSES) {
      this.#isSuccess.fill(1, low, high + 1);
    }
    this.#timeline = options.timeline === true ? [] : undefined;
    this.#startMs = options.startMs ?? 0;
  }

  /**
   * Records one finished request.
   *
   * @param intendedMs When it should have started (equals `startMs` in the closed model).
   * @param endMs When the response body was read or the error happened.
   * @param outcome The transport's outcome.
   * @returns Whether it counts as a success.
   */
  record(intendedMs: number, endMs: number, outcome: Outcome): boolean {
    let isOk = false;
    let latencyUs = -1;
    if (!outcome.ok && outcome.error === "timeout") {
      // A user who gave up waited at least the timeout: leaving it out would let p90 hide a
      // tenth of requests timing out. It is a lower bound, counted as censored.
      latencyUs = (endMs - intendedMs) * 1000;
      this.#latency.record(latencyUs);
      this.#censored++;
    }
    if (outcome.ok) {
      const status = outcome.status;
      latencyUs = (endMs - intendedMs) * 1000;
      this.#latency.record(latencyUs);
      this.#bodyBytes += outcome.bodyBytes;
      if (status >= 100 && status < 600) {
        this.#statusCounts[status] = (this.#statusCounts[status] ?? 0) + 1;
        isOk = this.#isSuccess[status] === 1;
      }
      if (isOk) this.#ok++;
      else {
        this.#errors++;
        this.#sample(`HTTP ${status} ${statusText(status)}`.trimEnd());
      }
    } else {
      const index = NETWORK_KINDS.indexOf(outcome.error);
      this.#networkCounts[index] = (this.#networkCounts[index] ?? 0) + 1;
      this.#errors++;
      this.#sample(`${outcome.error}: ${outcome.message}`);
    }
    if (this.#timeline !== undefined) this.#bucket(endMs, isOk, latencyUs);
    return isOk;
  }

  /**
   * Records a request that has no end: in flight when the run ended, or planned and never sent
   * (the open model). Its latency is the time it had waited by the end, a lower bound (wrk2's
   * and HdrHistogram's practice for censored samples), so percentiles and thresholds see it.
   *
   * @param kind In flight at the end, or never sent.
   * @param intendedMs When it started or should have started.
   * @param endMs When the run ended.
   */
  recordCensored(kind: Exclude<CensoredKind, "timeout">, intendedMs: number, endMs: number): void {
    const latencyUs = Math.max(0, endMs - intendedMs) * 1000;
    this.#latency.record(latencyUs);
    this.#censored++;
    if (kind === "inFlight") this.cutOff++;
    else this.unsent++;
    if (this.#timeline !== undefined) this.#bucket(endMs, false, latencyUs, false);
  }

  /**
   * Records how late the generator started a request it was not held back from by the
   * in-flight cap (open model): its own timers and CPU, kept out of the target's latency.
   *
   * @param latenessMs Start minus planned start.
   */
  recordLateness(latenessMs: number): void {
    this.#lateness.record(latenessMs * 1000);
  }

  #sample(message: string): void {
    const count = this.#samples.get(message);
    if (count !== undefined) this.#samples.set(message, count + 1);
    else if (this.#samples.size < MAX_ERROR_SAMPLES) this.#samples.set(message, 1);
  }

  #bucket(endMs: number, isOk: boolean, latencyUs: number, isCounted = true): void {
    const timeline = this.#timeline ?? [];
    const second = Math.max(0, Math.floor((endMs - this.#startMs) / 1000));
    while (timeline.length <= second) {
      timeline.push({ ok: 0, errors: 0, histogram: new LatencyHistogram() });
    }
    const bucket = timeline[second];
    if (bucket === undefined) return;
    if (isOk) bucket.ok++;
    else if (isCounted) bucket.errors++;
    if (latencyUs >= 0) bucket.histogram.record(latencyUs);
  }

  /** Completed requests so far. */
  get requests(): number {
    return this.#ok + this.#errors;
  }

  /**
   * The plain-data result.
   *
   * @param elapsedMs Wall time of the run.
   * @returns Counters, samples and encoded histograms.
   */
  finish(elapsedMs: number): RunStats {
    const statuses: Record<string, number> = {};
    const failedStatuses: Record<string, number> = {};
    this.#statusCounts.forEach((count, status) => {
      if (count === 0) return;
      statuses[String(status)] = count;
      if (this.#isSuccess[status] !== 1) failedStatuses[String(status)] = count;
    });
    const stats: RunStats = {
      requests: this.#ok + this.#errors,
      ok: this.#ok,
      errors: this.#errors,
      statuses,
      failedStatuses,
      networkErrors: networkCounts((kind) => this.#networkCounts[NETWORK_KINDS.indexOf(kind)] ?? 0),
      cutOff: this.cutOff,
      late: this.late,
      lateByGenerator: this.lateByGenerator,
      unsent: this.unsent,
      censored: this.#censored,
      resent: this.resent,
      peakInFlight: this.peakInFlight,
      inFlightCap: this.inFlightCap,
      bodyBytes: this.#bodyBytes,
      elapsedMs,
      errorSamples: [...this.#samples].map(([message, count]) => ({ message, count })),
      histogram: this.#latency.encode(),
      lateness: this.#lateness.encode(),
    };
    if (this.#timeline === undefined) return stats;
    const timeline = this.#timeline.map((bucket, second) => ({
      second,
      ok: bucket.ok,
      errors: bucket.errors,
      histogram: bucket.histogram.encode(),
    }));
    return { ...stats, timeline };
  }
}

function networkCounts(count: (kind: NetworkErrorKind) => number): NetworkErrorCounts {
  return {
    timeout: count("timeout"),
    refused: count("refused"),
    reset: count("reset"),
    network: count("network"),
  };
}

/** Stats of a run that recorded nothing. */
export function emptyRunStats(): RunStats {
  return new RunRecorder().finish(0);
}

/**
 * Combines the stats of slices that ran at the same time (workers, or machines in `merge`):
 * counts add up, histograms merge exactly, the elapsed time is the longest slice's.
 *
 * @param parts Stats of concurrent slices of one run.
 * @returns The combined stats.
 * @throws {SyntaxError} When a histogram cannot be decoded.
 */
export function mergeRunStats(parts: readonly RunStats[]): RunStats {
  const latency = new LatencyHistogram();
  const lateness = new LatencyHistogram();
  const statuses: Record<string, number> = {};
  const failedStatuses: Record<string, number> = {};
  const samples = new Map<string, number>();
  const buckets: Array<{ ok: number; errors: number; histogram: LatencyHistogram }> = [];
  let hasTimeline = false;
  for (const part of parts) {
    latency.add(LatencyHistogram.decode(part.histogram));
    lateness.add(LatencyHistogram.decode(part.lateness));
    for (const [status, count] of Object.entries(part.statuses)) {
      statuses[status] = (statuses[status] ?? 0) + count;
    }
    for (const [status, count] of Object.entries(part.failedStatuses)) {
      failedStatuses[status] = (failedStatuses[status] ?? 0) + count;
    }
    for (const { message, count } of part.errorSamples) {
      const seen = samples.get(message);
      if (seen !== undefined) samples.set(message, seen + count);
      else if (samples.size < MAX_ERROR_SAMPLES) samples.set(message, count);
    }
    if (part.timeline === undefined) continue;
    hasTimeline = true;
    for (const bucket of part.timeline) {
      while (buckets.length <= bucket.second) {
        buckets.push({ ok: 0, errors: 0, histogram: new LatencyHistogram() });
      }
      const target = buckets[bucket.second];
      if (target === undefined) continue;
      target.ok += bucket.ok;
      target.errors += bucket.errors;
      target.histogram.add(LatencyHistogram.decode(bucket.histogram));
    }
  }
  const sum = (pick: (stats: RunStats) => number) => parts.reduce((n, p) => n + pick(p), 0);
  const stats: RunStats = {
    requests: sum((p) => p.requests),
    ok: sum((p) => p.ok),
    errors: sum((p) => p.errors),
    statuses,
    failedStatuses,
    networkErrors: networkCounts((kind) => sum((p) => p.networkErrors[kind])),
    cutOff: sum((p) => p.cutOff),
    late: sum((p) => p.late),
    lateByGenerator: sum((p) => p.lateByGenerator),
    unsent: sum((p) => p.unsent),
    censored: sum((p) => p.censored),
    resent: sum((p) => p.resent),
    // Slices ran side by side: their peaks and caps add up (an upper bound for the peak).
    peakInFlight: sum((p) => p.peakInFlight),
    inFlightCap: sum((p) => p.inFlightCap),
    bodyBytes: sum((p) => p.bodyBytes),
    elapsedMs: parts.reduce((max, p) => Math.max(max, p.elapsedMs), 0),
    errorSamples: [...samples].map(([message, count]) => ({ message, count })),
    histogram: latency.encode(),
    lateness: lateness.encode(),
  };
  if (!hasTimeline) return stats;
  const timeline = buckets.map((bucket, second) => ({
    second,
    ok: bucket.ok,
    errors: bucket.errors,
    histogram: bucket.histogram.encode(),
  }));
  return { ...stats, timeline };
}

/**
 * The latency percentiles of a run.
 *
 * @param stats The run.
 * @returns Its latency summary in microseconds.
 */
export function latencySummary(stats: RunStats): LatencySummary {
  return LatencyHistogram.decode(stats.histogram).summary();
}

/**
 * Completed requests per second.
 *
 * @param stats The run.
 * @returns Throughput, or 0 when no time elapsed.
 *
 * @example
 * ```ts
 * import { emptyRunStats, throughput } from "./stats.ts";
 * if (throughput({ ...emptyRunStats(), requests: 50, elapsedMs: 500 }) !== 100) throw new Error();
 * ```
 */
export function throughput(stats: RunStats): number {
  return stats.elapsedMs > 0 ? stats.requests / (stats.elapsedMs / 1000) : 0;
}

/**
 * The share of completed requests that failed.
 *
 * @param stats The run.
 * @returns Between 0 and 1; 0 when nothing completed.
 */
export function errorRate(stats: RunStats): number {
  return stats.requests > 0 ? stats.errors / stats.requests : 0;
}
