/**
 * What the live view shows while a run is going: completions, failures by class and a window
 * of recent latencies. The runner records into a {@linkcode LiveStats}; a worker drains its own
 * into a {@linkcode LiveDelta} a few times a second and the main thread adds the deltas up, so
 * the view reads the same numbers in-process and over workers.
 *
 * @module
 */
import { LatencyHistogram } from "./histogram.ts";

/** What changed since the previous drain; structured-clone safe. */
export interface LiveDelta {
  /** Requests finished. */
  readonly completed: number;
  /** Failures by class (`5xx`, `timeout`, `refused`, ...). */
  readonly errors: Readonly<Record<string, number>>;
  /** Encoded histogram (µs) of the responses in this interval. */
  readonly window: string;
}

/** Live counters of the current run. */
export class LiveStats {
  #completed = 0;
  #drainedCompleted = 0;
  readonly #errors = new Map<string, number>();
  readonly #undrainedErrors = new Map<string, number>();
  #window = new LatencyHistogram();

  /**
   * Records one finished request.
   *
   * @param latencyUs Its latency when it got a response, else `undefined`.
   * @param errorClass Its failure class when it failed, else `undefined`.
   */
  record(latencyUs: number | undefined, errorClass: string | undefined): void {
    this.#completed++;
    if (latencyUs !== undefined) this.#window.record(latencyUs);
    if (errorClass !== undefined) this.#countError(errorClass, 1);
  }

  /**
   * Adds what another isolate recorded.
   *
   * @param delta A worker's drained delta.
   * @throws {SyntaxError} When the window histogram cannot be decoded.
   */
  add(delta: LiveDelta): void {
    this.#completed += delta.completed;
    for (const [name, count] of Object.entries(delta.errors)) this.#countError(name, count);
    this.#window.add(LatencyHistogram.decode(delta.window));
  }

  /** Requests finished so far. */
  get completed(): number {
    return this.#completed;
  }

  /** Failures by class so far. */
  errors(): Record<string, number> {
    return Object.fromEntries(this.#errors);
  }

  /** The latencies recorded since the previous call, emptying the window. */
  takeWindow(): LatencyHistogram {
    const window = this.#window;
    this.#window = new LatencyHistogram();
    return window;
  }

  /** What changed since the previous drain (completions, failures, latency window). */
  drain(): LiveDelta {
    const delta: LiveDelta = {
      completed: this.#completed - this.#drainedCompleted,
      errors: Object.fromEntries(this.#undrainedErrors),
      window: this.takeWindow().encode(),
    };
    this.#drainedCompleted = this.#completed;
    this.#undrainedErrors.clear();
    return delta;
  }

  #countError(name: string, count: number): void {
    this.#errors.set(name, (this.#errors.get(name) ?? 0) + count);
    this.#undrainedErrors.set(name, (this.#undrainedErrors.get(name) ?? 0) + count);
  }
}
