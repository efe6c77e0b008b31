/**
 * `--find-capacity`: ramp the load (concurrency or rate) geometrically until a level fails
 * (errors, unsent requests, or p99 over `--max-p99`), then bisect between the last level that
 * held and the first that failed, and report the highest level that held.
 *
 * @module
 */
import { LatencyHistogram } from "./histogram.ts";
import type { LoadPlan } from "./options.ts";
import type { LiveStats } from "./live_stats.ts";
import { isCapReached } from "./report.ts";
import type { Executor } from "./run.ts";
import { errorRate, type RunStats } from "./stats.ts";
import type { Thresholds } from "./threshold_rules.ts";
import { checkRun } from "./thresholds.ts";
import { jobForLevel, type RunRecord, type SweepHooks, warmUp } from "./sweep.ts";

/** Growth factor of the ramp. */
export const RAMP_FACTOR = 2;
/** Bisection stops when the gap is within this share of the held level. */
export const CAPACITY_PRECISION = 0.1;
/** Most levels one search runs. */
export const MAX_CAPACITY_STEPS = 16;
/** Highest concurrency the ramp tries. */
export const MAX_CONCURRENCY = 10_000;
/** Highest rate the ramp tries, in requests per second. */
export const MAX_RATE = 1_000_000;

/** Whether a level held, and why not. */
export interface Verdict {
  /** The level sustained the load within the limits. */
  readonly isHeld: boolean;
  /** Why it failed, for the report; empty when held. */
  readonly reason: string;
}

/**
 * Judges one level: it holds when it completed requests, its error rate is within
 * `maxErrorRate` (default: no errors at all), nothing went unsent and p99 is within `maxP99Ms`.
 *
 * @param stats The level's run.
 * @param thresholds The limits.
 * @returns The verdict.
 */
export function judgeLevel(stats: RunStats, thresholds: Thresholds): Verdict {
  const rate = errorRate(stats);
  if (stats.requests === 0) return { isHeld: false, reason: "no request completed" };
  if (rate > (thresholds.maxErrorRate ?? 0)) {
    return { isHeld: false, reason: `${(rate * 100).toFixed(2)}% errors` };
  }
  if (stats.unsent > 0) {
    // Not held either way: the level was not delivered. Whose doing it was goes in the reason.
    const whose = isCapReached(stats)
      ? "the in-flight cap was reached"
      : "the generator fell behind";
    return { isHeld: false, reason: `${stats.unsent} requests never sent (${whose})` };
  }
  if (thresholds.maxP99Ms !== undefined) {
    const p99Ms = LatencyHistogram.decode(stats.histogram).percentile(99) / 1000;
    if (p99Ms > thresholds.maxP99Ms) {
      return { isHeld: false, reason: `p99 ${p99Ms.toFixed(2)}ms over ${thresholds.maxP99Ms}ms` };
    }
  }
  // The --threshold rules judge a level the same way they judge a run.
  const rules = thresholds.rules ?? [];
  const [breach] = rules.length === 0 ? [] : checkRun(stats, { rules }, "");
  if (breach !== undefined) return { isHeld: false, reason: breach.detail };
  return { isHeld: true, reason: "" };
}

/** The search so far. */
export interface SearchState {
  /** Highest level that held. */
  readonly held?: number;
  /** Lowest level that failed. */
  readonly failed?: number;
  /** Levels run so far. */
  readonly steps: number;
}

/**
 * The next level to try, or `undefined` when the search is over. Pure.
 *
 * @param state Highest held and lowest failed levels so far.
 * @param model Integer levels (closed) or fractional rates (open).
 * @returns The next level.
 *
 * @example
 * ```ts
 * import { nextLevel } from "./capacity.ts";
 * if (nextLevel({ held: 100, steps: 2 }, "closed") !== 200) throw new Error("ramp");
 * if (nextLevel({ held: 100, failed: 200, steps: 3 }, "closed") !== 150) throw new Error("bisect");
 * ```
 */
export function nextLevel(state: SearchState, model: "closed" | "open"): number | undefined {
  const { held, failed } = state;
  const max = model === "closed" ? MAX_CONCURRENCY : MAX_RATE;
  const round = (
    value: number,
  ) => (model === "closed" ? Math.floor(value) : Math.round(value * 10) / 10);
  if (state.steps >= MAX_CAPACITY_STEPS) return undefined;
  if (failed === undefined) {
    if (held === undefined || held >= max) return undefined;
    return Math.min(max, round(held * RAMP_FACTOR));
  }
  if (held === undefined) {
    const lower = round(failed / RAMP_FACTOR);
    return lower >= (model === "closed" ? 1 : 0.1) && lower < failed ? lower : undefined;
  }
  if (failed - held <= Math.max(model === "closed" ? 1 : 0.1, held * CAPACITY_PRECISION)) {
    return undefined;
  }
  const middle = round((held + failed) / 2);
  return middle > held && middle < failed ? middle : undefined;
}

/** The outcome of a capacity search. */
export interface CapacityResult {
  /** Highest level that held. */
  readonly held?: number;
  /** Lowest level that failed. */
  readonly failed?: number;
  /** Why the lowest failing level failed. */
  readonly reason: string;
}

/** Options of {@linkcode findCapacity}. */
export interface FindCapacityOptions {
  /** Stops the search. Default: none. */
  readonly signal?: AbortSignal;
  /** Live counters for the progress view. Default: none. */
  readonly progress?: LiveStats;
  /** Streaming callbacks. Default: none. */
  readonly hooks?: SweepHooks;
}

/**
 * Searches for the highest level the target sustains, starting at the plan's first level.
 *
 * @param plan The plan (its first level starts the ramp; its thresholds judge each level).
 * @param executor Where to run.
 * @param options Cancellation, progress and hooks.
 * @returns The runs (sorted by level) and the result.
 */
export async function findCapacity(
  plan: LoadPlan,
  executor: Executor,
  options: FindCapacityOptions = {},
): Promise<{ runs: RunRecord[]; result: CapacityResult }> {
  const { signal, progress, hooks } = options;
  const runs: RunRecord[] = [];
  let held: number | undefined;
  let failed: number | undefined;
  let reason = "";
  await warmUp(plan, executor, signal);
  for (let level: number | undefined = plan.levels[0]; level !== undefined;) {
    if (signal?.aborted) break;
    const job = jobForLevel(plan, level);
    hooks?.onRunStart?.({ round: 1, level, job });
    const stats = await executor.execute(job, {
      ...(signal === undefined ? {} : { signal }),
      ...(progress === undefined ? {} : { progress }),
    });
    const record: RunRecord = { round: 1, rounds: 1, model: plan.model, level, stats };
    runs.push(record);
    hooks?.onRunEnd?.(record);
    if (signal?.aborted) break;
    const verdict = judgeLevel(stats, plan.thresholds);
    if (verdict.isHeld) held = Math.max(held ?? level, level);
    else if (failed === undefined || level < failed) {
      failed = level;
      reason = verdict.reason;
    }
    level = nextLevel({
      ...(held === undefined ? {} : { held }),
      ...(failed === undefined ? {} : { failed }),
      steps: runs.length,
    }, plan.model);
  }
  runs.sort((a, b) => a.level - b.level);
  return {
    runs,
    result: {
      ...(held === undefined ? {} : { held }),
      ...(failed === undefined ? {} : { failed }),
      reason,
    },
  };
}

/**
 * The search's result as one line.
 *
 * @param result The result.
 * @param model Which kind of level.
 * @returns For example `Capacity: highest level that held: concurrency=150 (concurrency=200 failed: 2.00% errors)`.
 */
export function formatCapacityResult(result: CapacityResult, model: "closed" | "open"): string {
  const name = model === "closed" ? "concurrency" : "rate";
  const unit = model === "closed" ? "" : "/s";
  const failure = result.failed === undefined
    ? ""
    : `${name}=${result.failed}${unit} failed: ${result.reason}`;
  if (result.held === undefined) {
    return `Capacity: no level held${failure === "" ? "" : ` (${failure})`}\n`;
  }
  const tail = failure === "" ? "no level failed up to the ramp's limit" : failure;
  return `Capacity: highest level that held: ${name}=${result.held}${unit} (${tail})\n`;
}
