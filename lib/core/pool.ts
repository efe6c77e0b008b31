/**
 * The set of backends the balancer forwards to.
 *
 * @module
 */
import type { Backend } from "./backend.ts";

/** The backends, in configuration order. */
export class Pool {
  #backends: readonly Backend[];

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

  /**
   * Adds a backend at the end. The list is replaced, not changed in place, so a request that
   * is iterating the old one is not disturbed.
   *
   * @param backend The new backend.
   * @throws {RangeError} When a backend with the same URL is in the pool.
   */
  add(backend: Backend): void {
    if (this.#backends.some((b) => b.url.href === backend.url.href)) {
      throw new RangeError(`Backend "${backend.url.href}" is listed twice`);
    }
    this.#backends = [...this.#backends, backend];
  }

  /**
   * Removes a backend (requests already forwarded to it finish).
   *
   * @param backend The backend to remove.
   * @returns Whether it was in the pool.
   */
  remove(backend: Backend): boolean {
    const next = this.#backends.filter((b) => b !== backend);
    if (next.length === this.#backends.length) return false;
    this.#backends = next;
    return true;
  }

  /**
   * Replaces the whole list at once (a worker mirroring the control plane's pool, in its order:
   * round-robin's shared rotation keys its state by position).
   *
   * @param backends The backends, in configuration order.
   * @throws {RangeError} When two backends have the same URL.
   */
  replace(backends: readonly Backend[]): void {
    this.#backends = new Pool(backends).backends;
  }

  /**
   * The backend with this URL, if it is in the pool.
   *
   * @param href A base URL as {@linkcode parseBackendUrl} gives it.
   * @returns The backend, or `undefined`.
   */
  find(href: string): Backend | undefined {
    return this.#backends.find((b) => b.url.href === href);
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
