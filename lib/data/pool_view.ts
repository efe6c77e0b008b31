/**
 * A named pool as a view of the balancer's one pool: the backends whose URLs the pool lists, in
 * the balancer's order. The balancer keeps one pool of every backend (health checks, drain,
 * metrics and the shared slots work on it unchanged); each route's handler picks from its
 * pool's view. The view follows the pool: the list is filtered again only when the pool
 * replaced its list (a reload or an admin change), so a pick costs no filtering.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import { Pool } from "../core/pool.ts";

/** The backends of one named pool, as the balancer's pool holds them now. */
export class PoolView extends Pool {
  readonly #source: Pool;
  readonly #hrefs: ReadonlySet<string>;
  #seen: readonly Backend[] | undefined;
  #members: readonly Backend[] = [];

  /**
   * @param source The balancer's pool.
   * @param hrefs The base URLs of this pool's backends.
   */
  constructor(source: Pool, hrefs: Iterable<string>) {
    super([]);
    this.#source = source;
    this.#hrefs = new Set(hrefs);
  }

  /** This pool's backends in the balancer's order (the order every isolate shares). */
  override get backends(): readonly Backend[] {
    const all = this.#source.backends;
    if (all !== this.#seen) {
      this.#seen = all;
      this.#members = all.filter((backend) => this.#hrefs.has(backend.url.href));
    }
    return this.#members;
  }

  /** Not supported: membership is the balancer pool's. */
  override add(): void {
    throw new TypeError("A pool view is changed through the balancer's pool");
  }

  /** Not supported: membership is the balancer pool's. */
  override remove(): boolean {
    throw new TypeError("A pool view is changed through the balancer's pool");
  }

  /** Not supported: membership is the balancer pool's. */
  override replace(): void {
    throw new TypeError("A pool view is changed through the balancer's pool");
  }

  /** This pool's backend with the URL, if any. */
  override find(href: string): Backend | undefined {
    return this.backends.find((backend) => backend.url.href === href);
  }

  /** How many of this pool's backends take traffic now. */
  override get healthyCount(): number {
    let count = 0;
    for (const backend of this.backends) if (backend.isHealthy) count++;
    return count;
  }

  /** In-flight requests over this pool's backends. */
  override get inFlight(): number {
    let count = 0;
    for (const backend of this.backends) count += backend.inFlight;
    return count;
  }
}
