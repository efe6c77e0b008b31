/**
 * SLO thresholds for CI: `--max-error-rate` and `--max-p99`, checked against every run.
 *
 * @module
 */
import { LatencyHistogram } from "./histogram.ts";
import type { Thresholds } from "./options.ts";
import { runLabel } from "./report.ts";
import { errorRate, type RunStats } from "./stats.ts";
import type { RunRecord } from "./sweep.ts";

/** One breached threshold in one run. */
export interface Breach {
  /** The flag breached. */
  readonly flag: "--max-error-rate" | "--max-p99";
  /** The run, as labelled in the report. */
  readonly run: string;
  /** What was measured: a fraction, or milliseconds. */
  readonly actual: number;
  /** The limit. */
  readonly limit: number;
  /** One line saying which threshold and by how much. */
  readonly message: string;
}

const percent = (fraction: number): string => `${(fraction * 100).toFixed(2)}%`;

/**
 * Whether a run's stats breach the thresholds.
 *
 * @param stats The run's stats.
 * @param thresholds The limits.
 * @param label The run's label, for messages.
 * @returns The breaches, empty when within limits.
 *
 * @example
 * ```ts
 * import { checkRun } from "./thresholds.ts";
 * import { emptyRunStats } from "./stats.ts";
 * const stats = { ...emptyRunStats(), requests: 100, ok: 95, errors: 5 };
 * const [breach] = checkRun(stats, { maxErrorRate: 0.01 }, "Run 1/1");
 * if (breach?.flag !== "--max-error-rate") throw new Error("expected a breach");
 * ```
 */
export function checkRun(stats: RunStats, thresholds: Thresholds, label: string): Breach[] {
  const breaches: Breach[] = [];
  const { maxErrorRate, maxP99Ms } = thresholds;
  if (maxErrorRate !== undefined) {
    const rate = errorRate(stats);
    if (rate > maxErrorRate) {
      breaches.push({
        flag: "--max-error-rate",
        run: label,
        actual: rate,
        limit: maxErrorRate,
        message: `Threshold breached: error rate ${percent(rate)} exceeds --max-error-rate ${
          percent(maxErrorRate)
        } by ${((rate - maxErrorRate) * 100).toFixed(2)} percentage points in ${label}`,
      });
    }
  }
  if (maxP99Ms !== undefined) {
    const p99Ms = LatencyHistogram.decode(stats.histogram).percentile(99) / 1000;
    if (p99Ms > maxP99Ms) {
      breaches.push({
        flag: "--max-p99",
        run: label,
        actual: p99Ms,
        limit: maxP99Ms,
        message: `Threshold breached: p99 latency ${
          p99Ms.toFixed(2)
        }ms exceeds --max-p99 ${maxP99Ms}ms by ${(p99Ms - maxP99Ms).toFixed(2)}ms in ${label}`,
      });
    }
  }
  return breaches;
}

/**
 * Checks every run against the thresholds.
 *
 * @param runs The runs.
 * @param thresholds The limits.
 * @returns Every breach, in run order.
 */
export function checkThresholds(runs: readonly RunRecord[], thresholds: Thresholds): Breach[] {
  return runs.flatMap((run) => checkRun(run.stats, thresholds, runLabel(run)));
}
