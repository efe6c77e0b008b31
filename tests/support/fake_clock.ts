/**
 * A manually driven {@linkcode Clock} for tests: time moves only when the test calls
 * {@linkcode FakeClock.advance}, which resolves due sleepers in time order.
 *
 * @module
 */
import type { Clock } from "../../lib/shared/clock.ts";

interface Sleeper {
  readonly wakeAt: number;
  readonly seq: number;
  readonly resolve: () => void;
}

/** A clock whose time only moves when told to. */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  #sleepers: Sleeper[] = [];

  /** @param startMs The initial time. Default: 0. */
  constructor(startMs = 0) {
    this.#now = startMs;
  }

  /** The current fake time in milliseconds. */
  now(): number {
    return this.#now;
  }

  /** How many sleeps are pending. */
  get pendingSleeps(): number {
    return this.#sleepers.length;
  }

  /** When each pending sleep wakes, in fake milliseconds. */
  get wakeTimes(): number[] {
    return this.#sleepers.map((s) => s.wakeAt);
  }

  /** Resolves when {@linkcode advance} passes `now() + ms`, or rejects when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const sleeper: Sleeper = {
        wakeAt: this.#now + Math.max(0, ms),
        seq: this.#seq++,
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.#sleepers = this.#sleepers.filter((s) => s !== sleeper);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#sleepers.push(sleeper);
    });
  }

  /**
   * Moves time forward by `ms`, waking each due sleeper in order and letting the work it
   * triggers run (microtasks and already-due macrotasks) before moving on.
   */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      await settle();
      const due = this.#sleepers
        .filter((s) => s.wakeAt <= target)
        .sort((a, b) => a.wakeAt - b.wakeAt || a.seq - b.seq)[0];
      if (due === undefined) break;
      this.#sleepers = this.#sleepers.filter((s) => s !== due);
      this.#now = Math.max(this.#now, due.wakeAt);
      due.resolve();
    }
    this.#now = target;
    await settle();
  }
}

/** Lets pending promise callbacks and zero-delay timers run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
