/**
 * When the open model's requests are due: a constant arrival rate, or k6's ramping arrival
 * rate (`--stages 30s:100,1m:500,30s:0`), where each stage moves the rate linearly from where
 * the previous one ended (0 at the start) to its target over its duration. Pure functions of
 * the slot index; the rate scheduler turns them into intended start times.
 *
 * @module
 */
import { parseDuration } from "../lib/shared/duration.ts";

/** One stage of a ramping arrival rate. */
export interface Stage {
  /** How long the stage lasts, in ms. */
  readonly durationMs: number;
  /** The rate reached at its end, in requests per second. */
  readonly targetRate: number;
}

/** The planned arrivals of a run. */
export interface Arrivals {
  /**
   * When slot `index` (from 0) is due, in ms after the run's start.
   *
   * @returns The offset, or `Infinity` when the plan has no such slot.
   */
  offsetOf(index: number): number;
  /**
   * How many slots are due at or before `offsetMs` (offsets after the plan's end count the
   * whole plan).
   */
  countBy(offsetMs: number): number;
  /** How many slots are due strictly before `offsetMs` (the deadline of a timed run). */
  countBefore(offsetMs: number): number;
}

/**
 * Arrivals at a constant rate: slot `i` at `i / rate`.
 *
 * @param ratePerSecond The rate.
 * @returns The arrivals.
 *
 * @example
 * ```ts
 * import { constantArrivals } from "./arrivals.ts";
 * const arrivals = constantArrivals(100);
 * if (arrivals.offsetOf(3) !== 30 || arrivals.countBy(30) !== 4) throw new Error();
 * ```
 */
export function constantArrivals(ratePerSecond: number): Arrivals {
  const intervalMs = 1000 / ratePerSecond;
  return {
    offsetOf: (index) => index * intervalMs,
    countBy: (offsetMs) => (offsetMs < 0 ? 0 : Math.floor(offsetMs / intervalMs) + 1),
    countBefore: (offsetMs) => (offsetMs <= 0 ? 0 : Math.ceil(offsetMs / intervalMs)),
  };
}

/**
 * Arrivals of a ramping rate. The expected arrivals by time `t` are the area under the rate
 * curve, N(t); slot `i` is due when N(t) reaches `i` (slot 0 at the start). Within a stage going
 * from rate `a` to `b` over `D` seconds, N grows by `a·t + (b−a)·t²/(2D)`, solved for `t`.
 *
 * @param stages The stages, in order.
 * @returns The arrivals; slots end with the last stage.
 *
 * @example
 * ```ts
 * import { stagedArrivals } from "./arrivals.ts";
 * // 0 -> 100/s over 2 s: 100 arrivals in all, the 25th (index 25) at 1 s.
 * const arrivals = stagedArrivals([{ durationMs: 2000, targetRate: 100 }]);
 * if (Math.round(arrivals.offsetOf(25)) !== 1000) throw new Error(String(arrivals.offsetOf(25)));
 * if (arrivals.countBy(2000) !== 101) throw new Error(String(arrivals.countBy(2000)));
 * ```
 */
export function stagedArrivals(stages: readonly Stage[]): Arrivals {
  // Cumulative arrivals and start offsets at each stage boundary.
  const starts: Array<{ offsetMs: number; arrivals: number; fromRate: number; stage: Stage }> = [];
  let offsetMs = 0;
  let arrivals = 0;
  let rate = 0;
  for (const stage of stages) {
    starts.push({ offsetMs, arrivals, fromRate: rate, stage });
    arrivals += ((rate + stage.targetRate) / 2) * (stage.durationMs / 1000);
    offsetMs += stage.durationMs;
    rate = stage.targetRate;
  }
  const totalArrivals = arrivals;
  const endMs = offsetMs;
  const arrivalsAt = (t: number): number => {
    if (t >= endMs) return totalArrivals;
    for (let i = starts.length - 1; i >= 0; i--) {
      const start = starts[i];
      if (start === undefined || t < start.offsetMs) continue;
      const seconds = (t - start.offsetMs) / 1000;
      const span = start.stage.durationMs / 1000;
      const slope = (start.stage.targetRate - start.fromRate) / span;
      return start.arrivals + start.fromRate * seconds + (slope * seconds * seconds) / 2;
    }
    return 0;
  };
  // A little slack so float error at a boundary does not drop a whole slot.
  const EPSILON = 1e-9;
  return {
    offsetOf(index: number): number {
      if (index > totalArrivals + EPSILON) return Number.POSITIVE_INFINITY;
      for (const start of starts) {
        const { stage, fromRate } = start;
        const stageEnd = start.arrivals + ((fromRate + stage.targetRate) / 2) *
            (stage.durationMs / 1000);
        if (index > stageEnd + EPSILON) continue;
        const need = index - start.arrivals;
        const span = stage.durationMs / 1000;
        const slope = (stage.targetRate - fromRate) / span;
        let seconds: number;
        if (Math.abs(slope) < 1e-12) seconds = fromRate > 0 ? need / fromRate : 0;
        else {
          // slope/2·t² + fromRate·t − need = 0, the root inside the stage.
          const discriminant = Math.max(0, fromRate * fromRate + 2 * slope * need);
          seconds = (-fromRate + Math.sqrt(discriminant)) / slope;
        }
        return start.offsetMs + Math.min(span, Math.max(0, seconds)) * 1000;
      }
      return Number.POSITIVE_INFINITY;
    },
    countBy(offsetMs: number): number {
      if (offsetMs < 0) return 0;
      return Math.floor(arrivalsAt(offsetMs) + EPSILON) + 1;
    },
    countBefore(offsetMs: number): number {
      if (offsetMs <= 0) return 0;
      return Math.ceil(arrivalsAt(offsetMs) - EPSILON);
    },
  };
}

/**
 * Parses `--stages`: comma-separated `DURATION:RATE` pairs (a bare duration is seconds).
 *
 * @param text Such as `"30s:100,1m:500,30s:0"`.
 * @returns The stages.
 * @throws {SyntaxError} When a part is not `DURATION:RATE`, a duration is not positive, a rate
 * is negative, or no stage has a rate above zero.
 *
 * @example
 * ```ts
 * import { parseStages } from "./arrivals.ts";
 * const stages = parseStages("30s:100,1m:500,30s:0");
 * if (stages.length !== 3 || stages[1]?.durationMs !== 60_000) throw new Error();
 * ```
 */
export function parseStages(text: string): Stage[] {
  const stages = text.split(",").map((raw) => {
    const part = raw.trim();
    const colon = part.lastIndexOf(":");
    const rate = colon < 0 ? Number.NaN : Number(part.slice(colon + 1));
    let durationMs = Number.NaN;
    try {
      durationMs = parseDuration(part.slice(0, Math.max(0, colon)));
    } catch {
      // Reported below with the stage.
    }
    if (!(durationMs > 0) || part.slice(colon + 1).trim() === "" || !(rate >= 0)) {
      throw new SyntaxError(
        `Cannot parse stage "${part}": use DURATION:RATE such as 30s:100 (duration above 0, rate 0 or more)`,
      );
    }
    return { durationMs, targetRate: rate };
  });
  if (!stages.some((stage) => stage.targetRate > 0)) {
    throw new SyntaxError(`Cannot use stages "${text}": every rate is 0, so nothing would be sent`);
  }
  return stages;
}

/**
 * The planned rate at a moment of a ramp.
 *
 * @param stages The stages.
 * @param offsetMs Time since the run started.
 * @returns Requests per second planned at that moment (0 after the last stage).
 *
 * @example
 * ```ts
 * import { stageRateAt } from "./arrivals.ts";
 * if (stageRateAt([{ durationMs: 1000, targetRate: 100 }], 250) !== 25) throw new Error();
 * ```
 */
export function stageRateAt(stages: readonly Stage[], offsetMs: number): number {
  let start = 0;
  let rate = 0;
  for (const stage of stages) {
    if (offsetMs < start + stage.durationMs) {
      return rate + ((stage.targetRate - rate) * (offsetMs - start)) / stage.durationMs;
    }
    start += stage.durationMs;
    rate = stage.targetRate;
  }
  return 0;
}

/**
 * The highest rate the stages reach.
 *
 * @param stages The stages.
 * @returns The peak rate in requests per second.
 */
export function peakRate(stages: readonly Stage[]): number {
  return Math.max(0, ...stages.map((stage) => stage.targetRate));
}

/**
 * The stages as `--stages` takes them.
 *
 * @param stages The stages.
 * @returns Such as `"30s:100,1m:500"` (durations in the shortest exact unit).
 */
export function formatStages(stages: readonly Stage[]): string {
  return stages.map(({ durationMs, targetRate }) => {
    const duration = durationMs % 60_000 === 0
      ? `${durationMs / 60_000}m`
      : durationMs % 1000 === 0
      ? `${durationMs / 1000}s`
      : `${durationMs}ms`;
    return `${duration}:${targetRate}`;
  }).join(",");
}
