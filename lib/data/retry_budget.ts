/**
 * The retry budget: how many retries the balancer may spend, as a share of the requests it
 * received recently, so that a sick pool is not flooded with retries on top of its load.
 *
 * Definition: over a sliding window of the last {@linkcode RETRY_BUDGET_WINDOW_MS} (kept as ten
 * one-second slots), a retry is allowed while the retries already made in the window are fewer
 * than `max(percent% of requests in the window, minPerSecond * window seconds)`. It is Finagle's
 * and linkerd's budget (a share of recent requests) with Envoy's floor (`min_retry_concurrency`)
 * turned into a rate. Envoy's own definition, a share of the requests active right now, limits
 * little in a balancer whose failures are mostly fast (a refused connection is retried within a
 * millisecond, so few retries are ever active at once); a share of recent requests bounds the
 * extra load a failing pool receives whatever the failures' speed: with 20%, a pool failing
 * every request gets at most 1.2 attempts per request (plus the floor), where `--retries 2`
 * alone would make it 3.
 *
 * Pure: time comes in as arguments. One budget per isolate (per handler), so with `--workers N`
 * each isolate spends its share of its own requests.
 *
 * @module
 */

/** The window the budget looks back over, in milliseconds. */
export const RETRY_BUDGET_WINDOW_MS = 10_000;

const SLOT_MS = 1_000;
const SLOTS = RETRY_BUDGET_WINDOW_MS / SLOT_MS;

/** Options for {@linkcode RetryBudget}. */
export interface RetryBudgetOptions {
  /** Retries allowed as a percentage of the window's requests, 0 to 100. Default: 20. */
  readonly percent?: number;
  /** Retries per second always allowed, however few the requests. Default: 3. */
  readonly minPerSecond?: number;
}

/**
 * Counts requests and retries over a sliding window and says whether one more retry fits.
 *
 * @example
 * ```ts
 * import { RetryBudget } from "./retry_budget.ts";
 * const budget = new RetryBudget({ percent: 20, minPerSecond: 0 });
 * for (let i = 0; i < 10; i++) budget.recordRequest(0);
 * // 20% of 10 requests: two retries.
 * if (!budget.tryRetry(0) || !budget.tryRetry(0) || budget.tryRetry(0)) throw new Error();
 * ```
 */
export class RetryBudget {
  readonly #share: number;
  readonly #floor: number;
  /** Requests and retries per one-second slot; slot `i` holds the second `s` with `s % SLOTS`. */
  readonly #requests = new Float64Array(SLOTS);
  readonly #retries = new Float64Array(SLOTS);
  /** The second (time / SLOT_MS, floored) the newest slot holds. */
  #second = -Infinity;
  #requestSum = 0;
  #retrySum = 0;

  /** @param options The share of requests and the floor. */
  constructor(options: RetryBudgetOptions = {}) {
    const percent = options.percent ?? 20;
    const minPerSecond = options.minPerSecond ?? 3;
    if (!(percent >= 0 && percent <= 100)) {
      throw new RangeError(`Invalid retry budget "${percent}": must be a percentage, 0 to 100`);
    }
    if (!(minPerSecond >= 0)) {
      throw new RangeError(`Invalid retry budget minimum "${minPerSecond}": must be 0 or more`);
    }
    this.#share = percent / 100;
    this.#floor = minPerSecond * SLOTS;
  }

  /** Requests counted in the window (as of the last call). */
  get requestCount(): number {
    return this.#requestSum;
  }

  /** Retries counted in the window (as of the last call). */
  get retryCount(): number {
    return this.#retrySum;
  }

  /**
   * Counts a client request: it adds `percent`% of a retry to the budget for the window.
   *
   * @param nowMs The time, on any monotonic millisecond clock (the same for every call).
   */
  recordRequest(nowMs: number): void {
    const slot = this.#advance(nowMs);
    this.#requests[slot] = (this.#requests[slot] ?? 0) + 1;
    this.#requestSum++;
  }

  /**
   * Takes one retry from the budget when it has room.
   *
   * @param nowMs The time, on the clock {@linkcode recordRequest} uses.
   * @returns Whether the retry may go ahead (it is then counted).
   */
  tryRetry(nowMs: number): boolean {
    const slot = this.#advance(nowMs);
    const allowed = Math.max(this.#requestSum * this.#share, this.#floor);
    if (this.#retrySum + 1 > allowed) return false;
    this.#retries[slot] = (this.#retries[slot] ?? 0) + 1;
    this.#retrySum++;
    return true;
  }

  /** Moves the window to `nowMs`, emptying the slots of seconds that left it. */
  #advance(nowMs: number): number {
    const second = Math.floor(nowMs / SLOT_MS);
    if (second > this.#second) {
      // Every slot from the one after the newest up to now's held a second that left.
      const stale = Math.min(second - this.#second, SLOTS);
      for (let step = stale - 1; step >= 0; step--) {
        const index = (((second - step) % SLOTS) + SLOTS) % SLOTS;
        this.#requestSum -= this.#requests[index] ?? 0;
        this.#retrySum -= this.#retries[index] ?? 0;
        this.#requests[index] = 0;
        this.#retries[index] = 0;
      }
      this.#second = second;
    }
    // A clock that steps back (never a monotonic one) counts in the newest slot.
    return ((this.#second % SLOTS) + SLOTS) % SLOTS;
  }
}
