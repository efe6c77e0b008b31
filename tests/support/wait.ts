/**
 * Waiting for something that happens in the background (a worker's report, a log line, a
 * pending timer) with a deadline: a test that waits in a loop fails with a message naming what
 * never happened instead of hanging.
 *
 * @module
 */

/** Bounds of {@linkcode waitUntil}. */
export interface WaitUntilOptions {
  /** Real time to wait before failing, in milliseconds. Default: 10000. */
  readonly timeoutMs?: number;
  /** Pause between checks, in milliseconds. Default: 1. */
  readonly intervalMs?: number;
}

/**
 * Checks `condition` until it holds, pausing between checks, for at most `timeoutMs` of real
 * time.
 *
 * @param what What is awaited, for the error: `"the access record"`.
 * @param condition Returns (or resolves to) true once it happened.
 * @param options Deadline and pause.
 * @throws {Error} When the deadline passes first, naming `what`.
 *
 * @example
 * ```ts
 * import { waitUntil } from "./wait.ts";
 * let ticks = 0;
 * await waitUntil("three ticks", () => ++ticks >= 3);
 * ```
 */
export async function waitUntil(
  what: string,
  condition: () => boolean | Promise<boolean>,
  options: WaitUntilOptions = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadline = performance.now() + timeoutMs;
  while (!await condition()) {
    if (performance.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 1));
  }
}

/**
 * Awaits `promise` for at most `timeoutMs` of real time, so a test whose peer never answers
 * fails naming the step instead of hanging the run.
 *
 * @param what What is awaited, for the error: `"the backend's 101"`.
 * @param promise What to await.
 * @param timeoutMs Real time to wait before failing, in milliseconds. Default: 10000.
 * @returns What `promise` resolved with.
 * @throws {Error} When the deadline passes first, naming `what`; or what `promise` rejected with.
 *
 * @example
 * ```ts
 * import { within } from "./wait.ts";
 * const value = await within("the answer", Promise.resolve(42));
 * if (value !== 42) throw new Error();
 * ```
 */
export async function within<T>(what: string, promise: Promise<T>, timeoutMs = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}
