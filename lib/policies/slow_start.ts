/**
 * Slow start: a backend that comes (back) into rotation (recovered, returned from ejection,
 * undrained, or added to a running pool) gets its weight ramped up linearly over a window, from
 * a floor of {@linkcode SLOW_START_FLOOR} of its weight, so a cold cache or a JIT that has not
 * warmed up is not handed its full share at once. Backends present at start-up do not ramp.
 *
 * The ramp begins at the first pick after the backend's {@linkcode Backend.returnCount}
 * changed, in whichever isolate picks first: its start is kept in the backend's shared slot, on
 * the balancer's time base, so every isolate ramps the backend on the same time (and round-robin's
 * one rotation sees the same weights whichever isolate picks).
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import type { Clock } from "../shared/clock.ts";

/** The smallest share of its weight a ramping backend gets (Envoy's `min_weight_percent`). */
export const SLOW_START_FLOOR = 0.1;

/**
 * The share of its weight a backend gets `elapsedMs` into a ramp of `durationMs`: linear from
 * {@linkcode SLOW_START_FLOOR} (the floor holds until the line passes it) to 1.
 *
 * @param elapsedMs Time since the ramp began.
 * @param durationMs The ramp's length; 0 is no ramp.
 * @returns A factor in [`SLOW_START_FLOOR`, 1].
 *
 * @example
 * ```ts
 * import { slowStartFactor } from "./slow_start.ts";
 * if (slowStartFactor(500, 10_000) !== 0.1) throw new Error("floor");
 * if (slowStartFactor(5_000, 10_000) !== 0.5) throw new Error("half way");
 * if (slowStartFactor(12_000, 10_000) !== 1) throw new Error("done");
 * ```
 */
export function slowStartFactor(elapsedMs: number, durationMs: number): number {
  if (!(durationMs > 0) || elapsedMs >= durationMs) return 1;
  return Math.max(SLOW_START_FLOOR, elapsedMs / durationMs);
}

/** One backend's ramp. */
interface Ramp {
  /** The backend's return count the ramp belongs to. */
  readonly returnCount: number;
  /** When it began, on the shared time base; `-Infinity` for a backend present at start-up. */
  readonly sinceMs: number;
  /** Whether it has reached full weight (no more clock reads for it). */
  isDone: boolean;
}

/**
 * The ramps of one isolate's backends, kept across reloads; {@linkcode SlowStart.weigher} gives
 * the policies' `weightOf`.
 */
export class SlowStart {
  readonly #clock: Pick<Clock, "now">;
  readonly #timeDeltaMs: number;
  readonly #ramps = new WeakMap<Backend, Ramp>();

  /**
   * @param clock The clock ramps are measured on.
   * @param timeDeltaMs Added to the clock to reach the balancer's shared time base. Default: 0.
   */
  constructor(clock: Pick<Clock, "now">, timeDeltaMs = 0) {
    this.#clock = clock;
    this.#timeDeltaMs = timeDeltaMs;
  }

  /**
   * A backend's effective weight now: its weight times {@linkcode slowStartFactor}.
   *
   * @param backend A backend of the pool.
   * @param durationMs The ramp's length.
   * @returns The weight a policy should use.
   */
  effectiveWeight(backend: Backend, durationMs: number): number {
    const returnCount = backend.returnCount;
    let ramp = this.#ramps.get(backend);
    if (ramp === undefined || ramp.returnCount !== returnCount) {
      // A backend seen for the first time with no return is one from start-up: no ramp.
      const sinceMs = returnCount === 0
        ? -Infinity
        : backend.shared.rampSince(returnCount, this.#clock.now() + this.#timeDeltaMs);
      ramp = { returnCount, sinceMs, isDone: returnCount === 0 };
      this.#ramps.set(backend, ramp);
    }
    if (ramp.isDone) return backend.weight;
    const elapsedMs = this.#clock.now() + this.#timeDeltaMs - ramp.sinceMs;
    const factor = slowStartFactor(elapsedMs, durationMs);
    if (factor === 1) ramp.isDone = true;
    return backend.weight * factor;
  }

  /**
   * The policies' `weightOf` for a ramp of `durationMs`.
   *
   * @param durationMs The ramp's length; 0 turns slow start off.
   * @returns A function from a backend to its effective weight.
   */
  weigher(durationMs: number): (backend: Backend) => number {
    if (!(durationMs > 0)) return (backend) => backend.weight;
    return (backend) => this.effectiveWeight(backend, durationMs);
  }
}
