/**
 * SLO thresholds for CI, checked against every run: `--max-error-rate`, `--max-p99`, and k6-style
 * rules on any reported statistic (`--threshold 'p95<200ms'`, `--threshold 'errors<1%'`, parsed
 * in `threshold_rules.ts`).
 *
 * @module
 */
import { LatencyHistogram } from "./histogram.ts";
import { runLabel } from "./report.ts";
import type { ComputedStats } from "./report_schema.ts";
import {
  RULE_STATS,
  type RuleOperator,
  type ThresholdRule,
  type Thresholds,
} from "./threshold_rules.ts";
import { computeStats } from "./run_summary.ts";
import { errorRate, type RunStats } from "./stats.ts";
import type { RunRecord } from "./sweep.ts";

/** One breached threshold in one run. */
export interface Breach {
  /** The flag breached. */
  readonly flag: "--max-error-rate" | "--max-p99" | "--threshold";
  /** The run, as labelled in the report. */
  readonly run: string;
  /** What was measured: a fraction, or milliseconds. */
  readonly actual: number;
  /** The limit. */
  readonly limit: number;
  /** One line saying which threshold and by how much. */
  readonly message: string;
  /** The message without its run, for judging a capacity level. */
  readonly detail: string;
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
        ...described(
          `error rate ${percent(rate)} exceeds --max-error-rate ${percent(maxErrorRate)} by ${
            ((rate - maxErrorRate) * 100).toFixed(2)
          } percentage points`,
          label,
        ),
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
        ...described(
          `p99 latency ${p99Ms.toFixed(2)}ms exceeds --max-p99 ${maxP99Ms}ms by ${
            (p99Ms - maxP99Ms).toFixed(2)
          }ms`,
          label,
        ),
      });
    }
  }
  const rules = thresholds.rules ?? [];
  if (rules.length > 0) {
    const computed = computeStats(stats);
    for (const rule of rules) {
      const breach = checkRule(rule, stats, computed, label);
      if (breach !== undefined) breaches.push(breach);
    }
  }
  return breaches;
}

const HOLDS: Readonly<Record<RuleOperator, (actual: number, limit: number) => boolean>> = {
  "<": (actual, limit) => actual < limit,
  "<=": (actual, limit) => actual <= limit,
  ">": (actual, limit) => actual > limit,
  ">=": (actual, limit) => actual >= limit,
};

function checkRule(
  rule: ThresholdRule,
  stats: RunStats,
  computed: ComputedStats,
  label: string,
): Breach | undefined {
  const field = RULE_STATS[rule.stat];
  const actual = field === "errors" ? errorRate(stats) : computed[field];
  const show = (value: number) =>
    rule.stat === "errors"
      ? percent(value)
      : rule.stat === "rps"
      ? `${value.toFixed(1)} req/s`
      : `${value.toFixed(2)}ms`;
  // A statistic with no value (nothing succeeded) cannot meet any limit.
  if (actual !== null && HOLDS[rule.op](actual, rule.limit)) return undefined;
  const by = actual === null
    ? ""
    : ` by ${
      rule.stat === "errors"
        ? `${(Math.abs(actual - rule.limit) * 100).toFixed(2)} percentage points`
        : show(Math.abs(actual - rule.limit))
    }`;
  return {
    flag: "--threshold",
    run: label,
    actual: actual ?? Number.NaN,
    limit: rule.limit,
    ...described(
      `${rule.stat} ${
        actual === null ? "n/a (nothing succeeded)" : show(actual)
      } fails --threshold '${rule.text}'${by}`,
      label,
    ),
  };
}

function described(detail: string, label: string): { message: string; detail: string } {
  return { message: `Threshold breached: ${detail} in ${label}`, detail };
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
