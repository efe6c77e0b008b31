/**
 * When requests start. The runner's virtual users ask a {@linkcode Scheduler} for their next
 * slot and time each request from the slot's intended start, so one runner serves both load
 * models:
 *
 * - closed: N users each send their next request as soon as the previous one finishes; the
 *   intended start is "now";
 * - open: requests are planned at a fixed arrival rate; a user waits for the next planned time,
 *   and when every user is busy the slot starts late but is still timed from when it was due
 *   (no coordinated omission).
 *
 * @module
 */
import type { Clock } from "../lib/shared/clock.ts";
import { type Arrivals, constantArrivals } from "./arrivals.ts";

/** Hands out request slots to the runner's users. */
export interface Scheduler {
  /**
   * Claims the next slot and waits until it is due.
   *
   * @param signal Aborts the wait: the result is then `undefined`.
   * @returns The slot's intended start (clock milliseconds), or `undefined` when the run has no
   * more slots. A plain value when no wait is needed, to spare the hot path a promise.
   */
  acquire(signal: AbortSignal): number | undefined | Promise<number | undefined>;
  /**
   * How many slots were due before the run ended, to count the ones never sent.
   *
   * @param endMs Clock time the run ended.
   * @returns The number of slots planned at or before `endMs` (and before the deadline of a
   * timed run), capped by the total.
   */
  dueBy(endMs: number): number;
  /**
   * When a slot was planned, to record the lateness of slots never sent.
   *
   * @param index The slot, counting from 0.
   * @returns Its intended start (clock milliseconds); the run's start in the closed model.
   */
  slotAt(index: number): number;
  /** A request starting later than this after its intended start counts as late. */
  readonly lateAfterMs: number;
}

/** When a run stops: after a number of requests, or after a duration. */
export type Stop =
  | { readonly kind: "count"; readonly total: number }
  | { readonly kind: "time"; readonly durationMs: number };

/** Options of {@linkcode createClosedScheduler}. */
export interface ClosedSchedulerOptions {
  /** Source of time. */
  readonly clock: Clock;
  /** When the run stops. */
  readonly stop: Stop;
  /** Clock time the run started. Default: `clock.now()`. */
  readonly startMs?: number;
}

/**
 * The closed model: a slot is free whenever a user is, until the total is handed out or the
 * duration has passed.
 *
 * @param options Clock and stop condition.
 * @returns A scheduler whose slots are always due at once.
 */
export function createClosedScheduler(options: ClosedSchedulerOptions): Scheduler {
  const { clock, stop } = options;
  const total = stop.kind === "count" ? stop.total : Number.POSITIVE_INFINITY;
  const startMs = options.startMs ?? clock.now();
  const deadline = stop.kind === "time" ? startMs + stop.durationMs : Number.POSITIVE_INFINITY;
  let issued = 0;
  return {
    lateAfterMs: Number.POSITIVE_INFINITY,
    slotAt: () => startMs,
    acquire(signal: AbortSignal): number | undefined {
      if (issued >= total || signal.aborted) return undefined;
      const now = clock.now();
      if (now >= deadline) return undefined;
      issued++;
      return now;
    },
    dueBy(): number {
      return issued;
    },
  };
}

/** Options of {@linkcode createRateScheduler}. */
export interface RateSchedulerOptions {
  /** Source of time. */
  readonly clock: Clock;
  /** Arrival rate in requests per second; ignored when `arrivals` is given. */
  readonly ratePerSecond: number;
  /** When each slot is due (a ramping rate). Default: constant at `ratePerSecond`. */
  readonly arrivals?: Arrivals;
  /** When the run stops. */
  readonly stop: Stop;
  /** Clock time of the first slot. Default: `clock.now()`. */
  readonly startMs?: number;
  /** Lateness that counts as late, in ms. Default: {@linkcode DEFAULT_LATE_AFTER_MS}. */
  readonly lateAfterMs?: number;
}

/**
 * Default lateness tolerance of the open model: timers and a busy event loop jitter by a few
 * milliseconds, which is noise rather than a missed slot.
 */
export const DEFAULT_LATE_AFTER_MS = 10;

/**
 * The open model: slot `i` is due at `start + i / rate` (or when a ramping rate's arrivals say),
 * whether or not earlier requests have finished.
 *
 * Only one idle user waits on a timer for the next slot; the others park on a stack and the most
 * recently parked is woken next, so at low rates a few users (and their keep-alive connections)
 * carry the load, and at high rates returning users claim overdue slots without waiting at all.
 *
 * @param options Clock, rate and stop condition.
 * @returns A scheduler whose `acquire` waits until the claimed slot is due.
 * @throws {RangeError} When the rate is not a positive finite number.
 */
export function createRateScheduler(options: RateSchedulerOptions): Scheduler {
  const { clock, stop, ratePerSecond } = options;
  if (options.arrivals === undefined && (!(ratePerSecond > 0) || !Number.isFinite(ratePerSecond))) {
    throw new RangeError(`Invalid rate "${ratePerSecond}": must be a positive number`);
  }
  const arrivals = options.arrivals ?? constantArrivals(ratePerSecond);
  const startMs = options.startMs ?? clock.now();
  const total = stop.kind === "count" ? stop.total : Number.POSITIVE_INFINITY;
  const deadline = stop.kind === "time" ? startMs + stop.durationMs : Number.POSITIVE_INFINITY;
  const parked: Array<() => void> = [];
  let issued = 0;
  let hasTimekeeper = false;
  let watched: AbortSignal | undefined;

  const wakeAll = () => {
    for (const wake of parked.splice(0)) wake();
  };
  const claim = (intended: number): number => {
    issued++;
    if (!hasTimekeeper) parked.pop()?.();
    return intended;
  };
  const acquire = async (signal: AbortSignal): Promise<number | undefined> => {
    if (watched !== signal) {
      watched = signal;
      signal.addEventListener("abort", wakeAll, { once: true });
    }
    for (;;) {
      const intended = startMs + arrivals.offsetOf(issued);
      const now = clock.now();
      if (issued >= total || signal.aborted || intended >= deadline || now >= deadline) {
        // The run is over: release every parked user so its loop can end too.
        wakeAll();
        return undefined;
      }
      if (intended <= now) return claim(intended);
      if (hasTimekeeper) {
        await new Promise<void>((resolve) => parked.push(resolve));
        continue;
      }
      hasTimekeeper = true;
      try {
        await clock.sleep(Math.min(intended, deadline) - now, signal);
      } catch {
        return undefined;
      } finally {
        hasTimekeeper = false;
      }
    }
  };

  return {
    lateAfterMs: options.lateAfterMs ?? DEFAULT_LATE_AFTER_MS,
    slotAt: (index: number): number => startMs + arrivals.offsetOf(index),
    acquire(signal: AbortSignal): number | undefined | Promise<number | undefined> {
      if (issued < total && !signal.aborted) {
        const intended = startMs + arrivals.offsetOf(issued);
        const now = clock.now();
        if (intended <= now && intended < deadline && now < deadline) return claim(intended);
      }
      return acquire(signal);
    },
    dueBy(endMs: number): number {
      const byEnd = arrivals.countBy(endMs - startMs); // planned at or before the end
      const byDeadline = arrivals.countBefore(deadline - startMs); // planned before the deadline
      return Math.max(0, Math.min(total, byEnd, byDeadline));
    },
  };
}
