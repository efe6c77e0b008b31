import { DEFAULTS } from "../support/settings.ts";
import { RETRY_BUDGET_WINDOW_MS, RetryBudget } from "../../lib/data/retry_budget.ts";
import { assertEquals, assertThrows } from "../support/assert.ts";

/** How many of `attempts` retries the budget lets through at `nowMs`. */
function drain(budget: RetryBudget, nowMs: number, attempts: number): number {
  let allowed = 0;
  for (let i = 0; i < attempts; i++) if (budget.tryRetry(nowMs)) allowed++;
  return allowed;
}

Deno.test("RetryBudget allows percent of the window's requests", () => {
  const budget = new RetryBudget({ retryBudgetPercent: 20, retryBudgetMinPerSecond: 0 });
  for (let i = 0; i < 1000; i++) budget.recordRequest(i * 5); // 1000 requests over 5 s
  assertEquals(drain(budget, 5_000, 1000), 200);
  assertEquals(budget.retryCount, 200);
});

Deno.test("RetryBudget falls back to the floor when requests are few", () => {
  const budget = new RetryBudget({ retryBudgetPercent: 20, retryBudgetMinPerSecond: 3 });
  budget.recordRequest(0);
  // 3 per second over the 10 s window: 30, more than 20% of one request.
  assertEquals(drain(budget, 0, 100), 30);
});

Deno.test("RetryBudget with 0 percent allows only the floor", () => {
  const budget = new RetryBudget({ retryBudgetPercent: 0, retryBudgetMinPerSecond: 1 });
  for (let i = 0; i < 500; i++) budget.recordRequest(0);
  assertEquals(drain(budget, 0, 100), 10);
  assertEquals(
    drain(new RetryBudget({ retryBudgetPercent: 0, retryBudgetMinPerSecond: 0 }), 0, 5),
    0,
  );
});

Deno.test("RetryBudget forgets requests and retries that left the window", () => {
  const budget = new RetryBudget({ retryBudgetPercent: 50, retryBudgetMinPerSecond: 0 });
  for (let i = 0; i < 10; i++) budget.recordRequest(0);
  assertEquals(drain(budget, 0, 10), 5);
  // Still inside the window: spent.
  assertEquals(drain(budget, RETRY_BUDGET_WINDOW_MS - 1, 10), 0);
  // The second that held them has left: neither requests nor retries count.
  assertEquals(drain(budget, RETRY_BUDGET_WINDOW_MS, 10), 0);
  assertEquals(budget.requestCount, 0);
  assertEquals(budget.retryCount, 0);
  for (let i = 0; i < 4; i++) budget.recordRequest(RETRY_BUDGET_WINDOW_MS);
  assertEquals(drain(budget, RETRY_BUDGET_WINDOW_MS, 10), 2);
});

Deno.test("RetryBudget slides one second at a time", () => {
  const budget = new RetryBudget({ retryBudgetPercent: 100, retryBudgetMinPerSecond: 0 });
  for (let second = 0; second < 10; second++) budget.recordRequest(second * 1000);
  assertEquals(budget.requestCount, 10);
  assertEquals(drain(budget, 9_500, 3), 3);
  budget.recordRequest(10_000); // second 0 leaves, second 10 arrives
  assertEquals(budget.requestCount, 10);
  budget.recordRequest(25_000); // a long pause empties every slot first
  assertEquals(budget.requestCount, 1);
  assertEquals(budget.retryCount, 0);
});

Deno.test("RetryBudget rejects a percent outside 0 to 100", () => {
  assertThrows(
    () => new RetryBudget({ ...DEFAULTS.proxy, retryBudgetPercent: 101 }),
    RangeError,
    'Invalid retry budget "101": must be a percentage, 0 to 100',
  );
  assertThrows(
    () => new RetryBudget({ ...DEFAULTS.proxy, retryBudgetMinPerSecond: -1 }),
    RangeError,
  );
});
