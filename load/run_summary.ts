/**
 * The statistics a reader wants from a run, computed once from its {@linkcode RunStats}: error
 * classes, throughput and latency percentiles in milliseconds. Every report (text, JSON, CSV,
 * Markdown, chart) reads them from here, so a run in which nothing succeeded is `n/a` everywhere
 * instead of a throughput of failures and a latency of 0.
 *
 * @module
 */
import type { ComputedStats, RunStats } from "./report_schema.ts";
import { latencySummary, throughput } from "./stats.ts";

/**
 * Whether a run completed requests and none of them succeeded. One function decides it: the
 * text report, the JSON and the exit code all ask here.
 *
 * @param stats The run.
 * @returns True when `requests > 0` and `ok === 0`.
 *
 * @example
 * ```ts
 * import { isAllFailed } from "./run_summary.ts";
 * import { emptyRunStats } from "./stats.ts";
 * if (!isAllFailed({ ...emptyRunStats(), requests: 3, errors: 3 })) throw new Error();
 * if (isAllFailed(emptyRunStats())) throw new Error();
 * ```
 */
export function isAllFailed(stats: RunStats): boolean {
  return stats.requests > 0 && stats.ok === 0;
}

/**
 * Failed requests by class: rejected statuses by class (`5xx`, `4xx`, ...) and network errors
 * by kind. Classes with no failures are left out.
 *
 * @param stats The run.
 * @returns Counts by class, such as `{ "5xx": 3, refused: 2 }`.
 *
 * @example
 * ```ts
 * import { errorsByClass } from "./run_summary.ts";
 * import { emptyRunStats } from "./stats.ts";
 * const stats = emptyRunStats();
 * const classes = errorsByClass({
 *   ...stats,
 *   failedStatuses: { "500": 2, "503": 1 },
 *   networkErrors: { ...stats.networkErrors, refused: 4 },
 * });
 * if (classes["5xx"] !== 3 || classes.refused !== 4) throw new Error(JSON.stringify(classes));
 * ```
 */
export function errorsByClass(stats: RunStats): Record<string, number> {
  const classes: Record<string, number> = {};
  for (const [status, count] of Object.entries(stats.failedStatuses)) {
    const name = `${status.slice(0, 1)}xx`;
    classes[name] = (classes[name] ?? 0) + count;
  }
  for (const [kind, count] of Object.entries(stats.networkErrors)) {
    if (count > 0) classes[kind] = count;
  }
  return classes;
}

/**
 * Computes a run's {@linkcode ComputedStats}. When nothing succeeded, throughput and every
 * latency are `null` (shown as `n/a`).
 *
 * @param stats The run.
 * @returns Error classes, req/s and latency percentiles in ms.
 *
 * @example
 * ```ts
 * import { computeStats } from "./run_summary.ts";
 * import { emptyRunStats } from "./stats.ts";
 * const computed = computeStats({ ...emptyRunStats(), requests: 4, errors: 4, elapsedMs: 1 });
 * if (computed.rps !== null || computed.p99Ms !== null || !computed.isAllFailed) throw new Error();
 * ```
 */
export function computeStats(stats: RunStats): ComputedStats {
  const isFailed = isAllFailed(stats);
  const latency = latencySummary(stats);
  const hasLatency = !isFailed && latency.count > 0;
  const ms = (microseconds: number): number | null =>
    hasLatency ? Math.round(microseconds) / 1000 : null;
  return {
    isAllFailed: isFailed,
    errorsByClass: errorsByClass(stats),
    rps: isFailed || stats.elapsedMs <= 0 ? null : Math.round(throughput(stats) * 10) / 10,
    meanMs: ms(latency.mean),
    p50Ms: ms(latency.p50),
    p90Ms: ms(latency.p90),
    p95Ms: ms(latency.p95),
    p99Ms: ms(latency.p99),
    p999Ms: ms(latency.p999),
    maxMs: ms(latency.max),
  };
}
