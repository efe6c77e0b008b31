/**
 * Rate-limiting for log records that come in floods (descriptor exhaustion, accept errors):
 * at most one record per key per interval, saying how many were held back since the last one.
 *
 * @module
 */
import { type Clock, systemClock } from "./clock.ts";

/** Options for {@linkcode LogThrottle}. */
export interface LogThrottleOptions {
  /** The shortest time between two records of one key, in milliseconds. */
  readonly intervalMs: number;
  /** Measures the interval. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
}

/**
 * Lets one event per key and interval through and counts the rest.
 *
 * @example
 * ```ts
 * import { LogThrottle } from "./log_throttle.ts";
 * let now = 0;
 * const throttle = new LogThrottle({ intervalMs: 1000, clock: { now: () => now, sleep: async () => {} } });
 * if (throttle.take("accept") !== 0) throw new Error("first passes");
 * if (throttle.take("accept") !== undefined) throw new Error("second is held back");
 * now = 1000;
 * if (throttle.take("accept") !== 1) throw new Error("says one was held back");
 * ```
 */
export class LogThrottle {
  readonly #intervalMs: number;
  readonly #clock: Clock;
  readonly #keys = new Map<string, { last: number; suppressed: number }>();

  /** @param options The interval and clock. */
  constructor(options: LogThrottleOptions) {
    this.#intervalMs = options.intervalMs;
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * Asks whether an event of `key` may be logged now.
   *
   * @param key What kind of event.
   * @returns How many events of `key` were held back since the last one logged, or
   *   `undefined` when this one must be held back too.
   */
  take(key: string): number | undefined {
    const now = this.#clock.now();
    const state = this.#keys.get(key);
    if (state === undefined) {
      this.#keys.set(key, { last: now, suppressed: 0 });
      return 0;
    }
    if (now - state.last < this.#intervalMs) {
      state.suppressed++;
      return undefined;
    }
    const suppressed = state.suppressed;
    state.last = now;
    state.suppressed = 0;
    return suppressed;
  }
}
