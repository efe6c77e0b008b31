/**
 * Many timeouts on one timer: the proxy's response-header deadlines. A `setTimeout` and
 * `clearTimeout` per request cost about 2 µs on Deno 2.9; adding an entry here and cancelling
 * it costs about a tenth of that.
 *
 * Entries wait in a queue ordered by deadline. With one timeout for every request (the
 * balancer's case) each new entry belongs at the tail, and requests mostly finish in the order
 * they started, so cancelled entries leave from the head at once; the rest are skipped when
 * the timer reaches them, and the queue is compacted when they pile up behind a slow request.
 * One clock sleep is armed for the earliest pending deadline, and none while nothing is
 * pending, so an idle balancer holds no timer (tests' leak checks and a prompt exit rely on it).
 *
 * @module
 */
import { type Clock, systemClock } from "./clock.ts";

/** A deadline in a {@linkcode DeadlineQueue}; pass it back to cancel it. */
export interface Deadline {
  /** When it expires, on the queue's clock. */
  readonly at: number;
}

/** Cancelled entries tolerated before the queue is compacted (when they outnumber the rest). */
const COMPACT_AFTER = 1024;

/** Why the timer's sleep was cut short; made once, as a fresh `DOMException` is costly. */
const DISARMED = new DOMException("Deadline timer disarmed", "AbortError");

function ignore(): void {}

class Entry implements Deadline {
  readonly at: number;
  /** Cleared once the entry expires or is cancelled. */
  callback: ((arg: never) => void) | undefined;
  arg: unknown;

  constructor(at: number, callback: (arg: never) => void, arg: unknown) {
    this.at = at;
    this.callback = callback;
    this.arg = arg;
  }
}

/** Options for {@linkcode DeadlineQueue}. */
export interface DeadlineQueueOptions {
  /** Measures time and drives the single timer. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
}

/**
 * Timeouts that share one timer. Each callback runs at most once, when its deadline has passed
 * (never early), unless it was cancelled first.
 *
 * @example
 * ```ts
 * import { DeadlineQueue } from "./deadlines.ts";
 * const deadlines = new DeadlineQueue();
 * const controller = new AbortController();
 * const deadline = deadlines.add(performance.now() + 30_000, (c) => c.abort(), controller);
 * deadlines.cancel(deadline); // the awaited thing arrived in time
 * if (deadlines.pendingCount !== 0 || controller.signal.aborted) throw new Error("still pending");
 * ```
 */
export class DeadlineQueue {
  readonly #clock: Clock;
  /** Entries from `#head` on, in deadline order; cancelled ones are skipped. */
  #entries: Entry[] = [];
  #head = 0;
  #pending = 0;
  /** Aborts the armed sleep; `undefined` while no sleep is armed. */
  #disarm: AbortController | undefined;
  /** When the armed sleep wakes. */
  #armedAt = Infinity;

  /** @param options The clock. */
  constructor(options: DeadlineQueueOptions = {}) {
    this.#clock = options.clock ?? systemClock;
  }

  /** Deadlines added and neither expired nor cancelled. */
  get pendingCount(): number {
    return this.#pending;
  }

  /**
   * Calls `callback(arg)` once the clock reaches `at`, unless cancelled first. Passing the
   * argument (as `setTimeout` allows) saves a closure per call; taking an absolute time saves
   * a clock reading when the caller has just taken one.
   *
   * @param at When, on the queue's clock: such as `clock.now() + timeoutMs`.
   * @param callback Runs on the timer; it must not throw.
   * @param arg Passed to `callback`.
   * @returns The deadline, for {@linkcode DeadlineQueue.cancel}.
   */
  add<T>(at: number, callback: (arg: T) => void, arg: T): Deadline {
    const entry = new Entry(at, callback, arg);
    const entries = this.#entries;
    const last = entries[entries.length - 1];
    if (last === undefined || last.at <= entry.at) {
      entries.push(entry);
    } else {
      // A shorter timeout than an earlier one: keep the queue in deadline order.
      let low = this.#head;
      let high = entries.length;
      while (low < high) {
        const middle = (low + high) >>> 1;
        if ((entries[middle]?.at ?? 0) <= entry.at) low = middle + 1;
        else high = middle;
      }
      entries.splice(low, 0, entry);
    }
    this.#pending++;
    if (entry.at < this.#armedAt) this.#arm(entry.at);
    return entry;
  }

  /**
   * Cancels a deadline: its callback never runs. Cancelling one that already expired or was
   * cancelled does nothing.
   *
   * @param deadline What this queue's {@linkcode DeadlineQueue.add} returned.
   */
  cancel(deadline: Deadline): void {
    if (!(deadline instanceof Entry)) return;
    const entry = deadline;
    if (entry.callback === undefined) return;
    entry.callback = undefined;
    entry.arg = undefined;
    this.#pending--;
    if (this.#pending === 0) {
      this.#clear();
      return;
    }
    const entries = this.#entries;
    while (this.#head < entries.length && entries[this.#head]?.callback === undefined) {
      this.#head++;
    }
    // Entries cancelled out of order wait behind a slow request; drop them once they are many.
    const live = entries.length - this.#head;
    if (this.#head > COMPACT_AFTER && this.#head * 2 > entries.length) {
      this.#entries = entries.slice(this.#head);
      this.#head = 0;
    } else if (live - this.#pending > COMPACT_AFTER && live > 2 * this.#pending) {
      this.#entries = entries.filter((e, index) => index >= this.#head && e.callback !== undefined);
      this.#head = 0;
    }
  }

  /** Cancels every pending deadline and the timer. */
  clear(): void {
    for (let index = this.#head; index < this.#entries.length; index++) {
      const entry = this.#entries[index];
      if (entry !== undefined) {
        entry.callback = undefined;
        entry.arg = undefined;
      }
    }
    this.#pending = 0;
    this.#clear();
  }

  #clear(): void {
    this.#entries = [];
    this.#head = 0;
    this.#disarm?.abort(DISARMED);
    this.#disarm = undefined;
    this.#armedAt = Infinity;
  }

  #arm(at: number): void {
    this.#disarm?.abort(DISARMED);
    const disarm = new AbortController();
    this.#disarm = disarm;
    this.#armedAt = at;
    this.#clock.sleep(at - this.#clock.now(), disarm.signal).then(
      () => {
        if (this.#disarm === disarm) this.#expire();
      },
      ignore, // disarmed: a newer sleep (or none) took over
    );
  }

  /** Runs every due callback, then arms the timer for the next pending deadline. */
  #expire(): void {
    this.#disarm = undefined;
    this.#armedAt = Infinity;
    const now = this.#clock.now();
    // A callback may add or cancel entries, so the queue is read afresh on every step.
    for (let entry = this.#entries[this.#head]; entry !== undefined;) {
      const callback = entry.callback;
      if (callback !== undefined) {
        if (entry.at > now) break;
        const arg = entry.arg;
        entry.callback = undefined;
        entry.arg = undefined;
        this.#pending--;
        callback(arg as never);
      }
      if (this.#entries[this.#head] === entry) this.#head++;
      entry = this.#entries[this.#head];
    }
    const next = this.#entries[this.#head];
    if (this.#pending === 0 || next === undefined) this.#clear();
    else if (next.at < this.#armedAt) this.#arm(next.at);
  }
}
