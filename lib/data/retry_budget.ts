/**
 * The retry budget: how many retries the balancer may spend, as a share of the requests it
 * received recently, so that a sick pool is not flooded with retries on top of its load.
 *
 * Definition: over a sliding window of the last {@linkcode RETRY_BUDGET_WINDOW_MS} (kept as ten
 * one-second slots), a retry is allowed while the retries already made in the window are fewer
 * than `max(retryBudgetPercent% of requests in the window, retryBudgetMinPerSecond * window seconds)`. It is Finagle's
 * and linkerd's budget (a share of recent requests) with Envoy's floor (`min_retry_concurrency`)
 * turned into a rate. Envoy's own definition, a share of the requests active right now, limits
 * little in a balancer whose failures are mostly fast (a refused connection is retried within a
 * millisecond, so few retries are ever active at once); a share of recent requests bounds the
 * extra load a failing pool receives whatever the failures' speed: with 20%, a pool failing
 * every request gets at most 1.2 attempts per request (plus the floor), where `--retries 2`
 * alone would make it 3.
 *
 * Pure: time comes in as arguments. The window may live in the balancer's shared memory
 * (`shared_state.ts`), so with `--workers N` the budget counts the whole balancer's requests and
 * retries once, on the creating isolate's time base. Counting is lock-free (an atomic add per
 * request, a compare-and-swap per retry); only moving the window to a new second takes a lock.
 *
 * @module
 */
import { RETRY_BUDGET_WORDS, type RetryBudgetStorage } from "../core/shared_state.ts";
import type { ProxySettings } from "../config/settings.ts";

/** The window the budget looks back over, in milliseconds. */
export const RETRY_BUDGET_WINDOW_MS = 10_000;

const SLOT_MS = 1_000;
const SLOTS = RETRY_BUDGET_WINDOW_MS / SLOT_MS;

/**
 * Options for {@linkcode RetryBudget}: retries allowed as a percentage of the window's requests
 * (0 to 100) and per second however few the requests, as `settings.ts` declares them.
 */
export interface RetryBudgetOptions
  extends Pick<ProxySettings, "retryBudgetPercent" | "retryBudgetMinPerSecond"> {
  /** Where the window lives: the balancer's shared one. Default: this budget's own. */
  readonly storage?: RetryBudgetStorage | undefined;
}

/** The window's words: a lock, the newest second, the two sums, then the slots. */
const LOCK = 0;
const SECOND = 1;
const REQUEST_SUM = 2;
const RETRY_SUM = 3;
const REQUESTS = 4;
const RETRIES = REQUESTS + SLOTS;

function ownStorage(): RetryBudgetStorage {
  return { words: new Int32Array(RETRY_BUDGET_WORDS), timeDeltaMs: 0 };
}

/**
 * Counts requests and retries over a sliding window and says whether one more retry fits.
 *
 * @example
 * ```ts
 * import { RetryBudget } from "./retry_budget.ts";
 * const budget = new RetryBudget({ retryBudgetPercent: 20, retryBudgetMinPerSecond: 0 });
 * for (let i = 0; i < 10; i++) budget.recordRequest(0);
 * // 20% of 10 requests: two retries.
 * if (!budget.tryRetry(0) || !budget.tryRetry(0) || budget.tryRetry(0)) throw new Error();
 * ```
 */
export class RetryBudget {
  readonly #share: number;
  readonly #floor: number;
  readonly #timeDeltaMs: number;
  /** The window: see the layout constants; slot `i` holds the second `s` with `s % SLOTS`. */
  readonly #window: Int32Array;

  /** @param options The share of requests, the floor, and where the window lives. */
  constructor(options: RetryBudgetOptions) {
    const percent = options.retryBudgetPercent;
    const minPerSecond = options.retryBudgetMinPerSecond;
    if (!(percent >= 0 && percent <= 100)) {
      throw new RangeError(`Invalid retry budget "${percent}": must be a percentage, 0 to 100`);
    }
    if (!(minPerSecond >= 0)) {
      throw new RangeError(`Invalid retry budget minimum "${minPerSecond}": must be 0 or more`);
    }
    this.#share = percent / 100;
    this.#floor = minPerSecond * SLOTS;
    const storage = options.storage ?? ownStorage();
    this.#window = storage.words;
    this.#timeDeltaMs = storage.timeDeltaMs;
  }

  /** Requests counted in the window (as of the last call). */
  get requestCount(): number {
    return Atomics.load(this.#window, REQUEST_SUM);
  }

  /** Retries counted in the window (as of the last call). */
  get retryCount(): number {
    return Atomics.load(this.#window, RETRY_SUM);
  }

  /**
   * Counts a client request: it adds `percent`% of a retry to the budget for the window.
   *
   * @param nowMs The time, on any monotonic millisecond clock (the same for every call).
   */
  recordRequest(nowMs: number): void {
    const slot = this.#advance(nowMs);
    Atomics.add(this.#window, REQUESTS + slot, 1);
    Atomics.add(this.#window, REQUEST_SUM, 1);
  }

  /**
   * Takes one retry from the budget when it has room.
   *
   * @param nowMs The time, on the clock {@linkcode recordRequest} uses.
   * @returns Whether the retry may go ahead (it is then counted).
   */
  tryRetry(nowMs: number): boolean {
    const window = this.#window;
    const slot = this.#advance(nowMs);
    for (;;) {
      const retries = Atomics.load(window, RETRY_SUM);
      const allowed = Math.max(Atomics.load(window, REQUEST_SUM) * this.#share, this.#floor);
      if (retries + 1 > allowed) return false;
      // Two isolates at the budget's edge: only one of them takes the last retry.
      if (Atomics.compareExchange(window, RETRY_SUM, retries, retries + 1) === retries) break;
    }
    Atomics.add(window, RETRIES + slot, 1);
    return true;
  }

  /**
   * Moves the window to `nowMs`, emptying the slots of seconds that left it, and returns the
   * newest second's slot. Only a new second takes the lock; a slot is emptied before the newer
   * second is published, so no count lands in a slot about to be emptied.
   */
  #advance(nowMs: number): number {
    const window = this.#window;
    const second = Math.floor((nowMs + this.#timeDeltaMs) / SLOT_MS);
    if (second > Atomics.load(window, SECOND)) {
      while (Atomics.compareExchange(window, LOCK, 0, 1) !== 0) {
        // Another isolate is moving the window; it takes a few slots' worth of work.
      }
      try {
        const newest = Atomics.load(window, SECOND);
        if (second > newest) {
          // Every slot from the one after the newest up to now's held a second that left.
          const stale = Math.min(second - newest, SLOTS);
          for (let step = stale - 1; step >= 0; step--) {
            const index = (((second - step) % SLOTS) + SLOTS) % SLOTS;
            Atomics.sub(window, REQUEST_SUM, Atomics.exchange(window, REQUESTS + index, 0));
            Atomics.sub(window, RETRY_SUM, Atomics.exchange(window, RETRIES + index, 0));
          }
          Atomics.store(window, SECOND, second);
        }
      } finally {
        Atomics.store(window, LOCK, 0);
      }
    }
    // A clock that steps back (or an isolate a little behind another) counts in the newest slot.
    const newest = Atomics.load(window, SECOND);
    return ((newest % SLOTS) + SLOTS) % SLOTS;
  }
}
