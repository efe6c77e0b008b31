/**
 * The handler's side of the retry budget: counts each request into the budget, asks it before
 * a retry, and when it refuses counts `denolb_retry_budget_exhausted_total` and logs (at most
 * once a second, with how many were held back). The budget itself is `retry_budget.ts`.
 *
 * @module
 */
import type { Logger } from "../shared/logger.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Clock } from "../shared/clock.ts";
import { LogThrottle } from "../shared/log_throttle.ts";
import { RetryBudget } from "./retry_budget.ts";
import type { RetryBudgetStorage } from "../core/shared_state.ts";
import type { ProxySettings } from "../config/settings.ts";

/**
 * Options for {@linkcode RetryGate}: the budget's share and floor as `settings.ts` declares
 * them (`proxy.retryBudgetPercent`, `proxy.retryBudgetMinPerSecond`), and its dependencies.
 */
export interface RetryGateOptions
  extends Pick<ProxySettings, "retryBudgetPercent" | "retryBudgetMinPerSecond"> {
  /** Where the budget's window lives: the balancer's shared one. Default: the gate's own. */
  readonly storage?: RetryBudgetStorage | undefined;
  /** Times the window and the log throttle. */
  readonly clock: Clock;
  /** Counts refusals. */
  readonly metrics: Metrics;
  /** Receives the (throttled) refusal records. */
  readonly logger: Logger;
}

/** Whether a retry may go ahead, by the budget. */
export class RetryGate {
  readonly #budget: RetryBudget;
  readonly #clock: Clock;
  readonly #metrics: Metrics;
  readonly #logger: Logger;
  readonly #throttle: LogThrottle;

  /** @param options The budget's share and floor, clock, metrics and logger. */
  constructor(options: RetryGateOptions) {
    this.#budget = new RetryBudget(options);
    this.#clock = options.clock;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#throttle = new LogThrottle({ intervalMs: 1_000, clock: options.clock });
  }

  /**
   * Counts a request that is about to be forwarded.
   *
   * @param nowMs When it arrived, on the gate's clock.
   */
  recordRequest(nowMs: number): void {
    this.#budget.recordRequest(nowMs);
  }

  /**
   * Takes a retry from the budget; when it is spent, counts and logs the refusal.
   *
   * @param backend The backend that just failed, for the log.
   * @param reason Why it failed, for the log.
   * @returns Whether to retry.
   */
  allow(backend: string, reason: string): boolean {
    if (this.#budget.tryRetry(this.#clock.now())) return true;
    this.#metrics.recordEvent("retry-budget-exhausted");
    const suppressed = this.#throttle.take("exhausted");
    if (suppressed !== undefined) {
      this.#logger.warn("Retry budget exhausted; answering the failure without a retry", {
        backend,
        reason,
        requests: this.#budget.requestCount,
        retries: this.#budget.retryCount,
        suppressed,
      });
    }
    return false;
  }
}
