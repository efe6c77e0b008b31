/**
 * What the thresholds are, as parsed from the flags: `--max-error-rate`, `--max-p99` and the
 * `--threshold` rules. Pure data and parsing; `thresholds.ts` judges runs against them.
 *
 * @module
 */
import { parseDuration } from "../lib/shared/duration.ts";

/** Statistics a `--threshold` rule can name, with the computed statistic each reads. */
export const RULE_STATS = {
  mean: "meanMs",
  avg: "meanMs",
  p50: "p50Ms",
  p90: "p90Ms",
  p95: "p95Ms",
  p99: "p99Ms",
  "p99.9": "p999Ms",
  p999: "p999Ms",
  max: "maxMs",
  rps: "rps",
  errors: "errors",
} as const;

/** A statistic a rule can name. */
export type RuleStat = keyof typeof RULE_STATS;
/** A rule's comparison: the run passes when `actual OP limit` holds. */
export type RuleOperator = "<" | "<=" | ">" | ">=";

/** One `--threshold` rule. */
export interface ThresholdRule {
  /** The statistic, such as `p95`. */
  readonly stat: RuleStat;
  /** The comparison that must hold. */
  readonly op: RuleOperator;
  /** The limit: ms for latencies, a fraction for `errors`, req/s for `rps`. */
  readonly limit: number;
  /** The rule as given, for messages. */
  readonly text: string;
}

/**
 * Parses one `--threshold` rule: a statistic (mean, p50, p90, p95, p99, p99.9, max, rps,
 * errors), a comparison (`<`, `<=`, `>`, `>=`) and a limit: a duration for latencies (a bare
 * number is seconds, as everywhere), a percentage or fraction for errors, a number for rps.
 *
 * @param text The rule, such as `"p95<200ms"` or `"errors<1%"`.
 * @returns The rule.
 * @throws {SyntaxError} When the rule does not parse.
 *
 * @example
 * ```ts
 * import { parseThresholdRule } from "./threshold_rules.ts";
 * const rule = parseThresholdRule("p95 < 200ms");
 * if (rule.stat !== "p95" || rule.op !== "<" || rule.limit !== 200) throw new Error();
 * if (parseThresholdRule("errors<=1%").limit !== 0.01) throw new Error();
 * ```
 */
export function parseThresholdRule(text: string): ThresholdRule {
  const match = /^\s*([a-z0-9.]+)\s*(<=|>=|<|>)\s*(\S+)\s*$/i.exec(text);
  const name = match?.[1]?.toLowerCase() ?? "";
  const op = match?.[2] as RuleOperator | undefined;
  const value = match?.[3] ?? "";
  if (match === null || op === undefined || !(name in RULE_STATS)) {
    throw new SyntaxError(
      `use STAT<LIMIT with STAT one of ${
        Object.keys(RULE_STATS).join(", ")
      } and < <= > >=, such as p95<200ms or errors<1%`,
    );
  }
  const stat = name as RuleStat;
  let limit: number;
  if (stat === "errors") {
    const isPercent = value.endsWith("%");
    limit = Number(isPercent ? value.slice(0, -1) : value) / (isPercent ? 100 : 1);
    if (!(limit >= 0 && limit <= 1)) {
      throw new SyntaxError(`the errors limit must be a percentage (1%) or a fraction (0.01)`);
    }
  } else if (stat === "rps") {
    limit = Number(value);
    if (!(limit >= 0) || !Number.isFinite(limit)) {
      throw new SyntaxError(`the rps limit must be a number of requests per second`);
    }
  } else {
    try {
      limit = parseDuration(value);
    } catch (error) {
      throw new SyntaxError(
        `the ${stat} limit must be a duration such as 200ms (a bare number is seconds)`,
        { cause: error },
      );
    }
  }
  return { stat, op, limit, text: text.trim() };
}

/** SLO thresholds: breaching one makes the command exit 1. */
export interface Thresholds {
  /** Highest acceptable share of failed requests (0..1). Default: none. */
  readonly maxErrorRate?: number;
  /** Highest acceptable p99 latency in milliseconds. Default: none. */
  readonly maxP99Ms?: number;
  /** `--threshold` rules on any reported statistic. Default: none. */
  readonly rules?: readonly ThresholdRule[];
}
