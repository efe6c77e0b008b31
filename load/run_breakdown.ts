/**
 * The end-of-run detail hey and oha print: a text histogram of response latencies and the
 * distribution of statuses and network errors. Pure formatting over a run's {@linkcode RunStats}.
 *
 * @module
 */
import { LatencyHistogram } from "./histogram.ts";
import type { RunStats } from "./report_schema.ts";

/** Buckets of the text histogram. */
const HISTOGRAM_BUCKETS = 10;
/** Width of the longest bar. */
const BAR_WIDTH = 40;

/** One bar of the text histogram. */
export interface HistogramBar {
  /** Upper bound of the bucket in milliseconds. */
  readonly upToMs: number;
  /** Responses in the bucket. */
  readonly count: number;
}

/**
 * Splits recorded latencies into equal-width buckets between the smallest and the largest (as
 * hey does). Pure.
 *
 * @param values `[microseconds, count]` pairs in increasing order.
 * @param buckets How many buckets. Default: {@linkcode HISTOGRAM_BUCKETS}.
 * @returns The bars, empty when nothing was recorded.
 *
 * @example
 * ```ts
 * import { histogramBars } from "./run_breakdown.ts";
 * const bars = histogramBars([[1000, 3], [2000, 1]], 2);
 * if (bars.length !== 2 || bars[0]?.count !== 3 || bars[1]?.upToMs !== 2) throw new Error();
 * ```
 */
export function histogramBars(
  values: ReadonlyArray<readonly [number, number]>,
  buckets: number = HISTOGRAM_BUCKETS,
): HistogramBar[] {
  const first = values[0];
  const last = values[values.length - 1];
  if (first === undefined || last === undefined) return [];
  const min = first[0];
  const span = last[0] - min;
  if (span <= 0) {
    return [{ upToMs: last[0] / 1000, count: values.reduce((n, [, count]) => n + count, 0) }];
  }
  const counts = new Array<number>(buckets).fill(0);
  for (const [value, count] of values) {
    const index = Math.min(buckets - 1, Math.ceil(((value - min) / span) * buckets) - 1);
    counts[Math.max(0, index)] = (counts[Math.max(0, index)] ?? 0) + count;
  }
  return counts.map((count, i) => ({ upToMs: (min + (span * (i + 1)) / buckets) / 1000, count }));
}

/**
 * The text histogram of a run's response latencies, one line per bucket.
 *
 * @param stats The run.
 * @returns Indented lines ending in a newline, or `""` when no response was recorded.
 */
export function formatLatencyHistogram(stats: RunStats): string {
  const bars = histogramBars(LatencyHistogram.decode(stats.histogram).recordedValues());
  if (bars.length === 0) return "";
  const most = Math.max(...bars.map((bar) => bar.count));
  const labels = bars.map((bar) => bar.upToMs.toFixed(bar.upToMs < 10 ? 3 : 1));
  const labelWidth = Math.max(...labels.map((label) => label.length));
  const countWidth = Math.max(...bars.map((bar) => String(bar.count).length)) + 2;
  const lines = ["  Latency histogram (ms, up to):"];
  bars.forEach((bar, i) => {
    const length = most === 0 ? 0 : Math.round((bar.count / most) * BAR_WIDTH);
    lines.push(
      `    ${(labels[i] ?? "").padStart(labelWidth)} ${`[${bar.count}]`.padEnd(countWidth)} |${
        "#".repeat(bar.count > 0 ? Math.max(1, length) : 0)
      }`,
    );
  });
  return lines.join("\n") + "\n";
}

/**
 * The distribution of statuses and network errors of a run, with shares of the completed
 * requests; failures are marked.
 *
 * @param stats The run.
 * @returns Indented lines ending in a newline, or `""` when nothing completed.
 *
 * @example
 * ```ts
 * import { formatStatusBreakdown } from "./run_breakdown.ts";
 * import { emptyRunStats } from "./stats.ts";
 * const text = formatStatusBreakdown({
 *   ...emptyRunStats(), requests: 4, ok: 3, errors: 1,
 *   statuses: { "200": 3, "500": 1 }, failedStatuses: { "500": 1 },
 * });
 * if (!text.includes("[500]  1 (25.00%) failed")) throw new Error(text);
 * ```
 */
export function formatStatusBreakdown(stats: RunStats): string {
  if (stats.requests === 0) return "";
  const rows: Array<[string, number, boolean]> = Object.entries(stats.statuses).map((
    [status, count],
  ) => [`[${status}]`, count, stats.failedStatuses[status] !== undefined]);
  for (const [kind, count] of Object.entries(stats.networkErrors)) {
    if (count > 0) rows.push([kind, count, true]);
  }
  const nameWidth = Math.max(...rows.map(([name]) => name.length));
  const countWidth = Math.max(...rows.map(([, count]) => String(count).length));
  const lines = ["  Status distribution:"];
  for (const [name, count, isFailure] of rows) {
    const share = ((count / stats.requests) * 100).toFixed(2);
    lines.push(
      `    ${name.padEnd(nameWidth)}  ${String(count).padStart(countWidth)} (${share}%)${
        isFailure ? " failed" : ""
      }`,
    );
  }
  return lines.join("\n") + "\n";
}
