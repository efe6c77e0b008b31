/**
 * The set of backends the balancer forwards to.
 *
 * @module
 */
import type { Backend } from "./backend.ts";

/** The backends, in configuration order. */
export class Pool {
  readonly #backends: readonly Backend[];

  /**
   * @param backends The backends, in configuration order.
   * @throws {RangeError} When two backends have the same URL.
   */
  constructor(backends: readonly Backend[]) {
    const seen = new Set<string>();
    for (const backend of backends) {
      if (seen.has(backend.url.href)) {
        throw new RangeError(`Backend "${backend.url.href}" is listed twice`);
      }
      seen.add(backend.url.href);
    }
    this.#backends = [...backends];
  }

  /** Every backend, healthy or not, in configuration order. */
  get backends(): readonly Backend[] {
    return this.#backends;
  }

  /** How many backends take traffic now. */
  get healthyCount(): number {
    let count = 0;
    for (const backend of this.#backends) if (backend.isHealthy) count++;
    return count;
  }

  /** In-flight requests over all backends. */
  get inFlight(): number {
    let count = 0;
    for (const backend of this.#backends) count += backend.inFlight;
    return count;
  }
}
