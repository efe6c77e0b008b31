/**
 * The balancer's membership: which backends are in the pool, and how one joins (slow-started,
 * or held back until its first probe when DNS found it) or leaves (drained first). Backends come
 * from the configuration, the admin API and DNS discovery; a backend listed in the
 * configuration stays when DNS drops it, and DNS keeps one a reload unlists.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { Backend } from "../core/backend.ts";
import type { BackendConfig, BalancerConfig } from "../config/settings.ts";
import type { Pool } from "../core/pool.ts";
import type { SharedState } from "../core/shared_state.ts";
import type { Clock } from "../shared/clock.ts";
import { errorText } from "../shared/error_text.ts";
import type { HealthChecker } from "./health.ts";
import type { PassiveHealth } from "./passive_health.ts";
import type { Serving } from "./serving.ts";

/** How often a removed backend is checked for its last in-flight request. */
const RETIRE_POLL_MS = 50;

/** What a {@linkcode BackendSet} changes and tells when its membership changes. */
export interface BackendSetDeps {
  /** The backends. */
  readonly pool: Pool;
  /** Where each backend's slot is allocated and freed. */
  readonly shared: SharedState;
  /** Probes each backend in the pool. */
  readonly health: HealthChecker;
  /** Forgets a removed backend's ejection. */
  readonly passive: PassiveHealth;
  /** Told each membership or weight change (workers mirror the pool). */
  readonly serving: Pick<Serving, "publish">;
  /** Receives a record per backend added, kept and removed. */
  readonly logger: Logger;
  /** Runs a removal's drain deadline. */
  readonly clock: Clock;
}

/** The backends in the pool, and the steps by which they join and leave it. */
export class BackendSet {
  readonly #deps: BackendSetDeps;
  /** The configuration in force: the listed backends, the pools, the drain timeout. */
  #config: BalancerConfig;
  /** Backends being drained for removal; taking one out of here cancels its removal. */
  readonly #leaving = new Set<Backend>();
  /** Backends DNS gives now, by URL. */
  #discovered = new Map<string, BackendConfig>();
  /** Removals under way: a drain waits for them. */
  readonly #tasks = new Set<Promise<void>>();

  /**
   * @param config The configuration in force.
   * @param deps The pool, health checkers, data plane, logger and clock.
   */
  constructor(config: BalancerConfig, deps: BackendSetDeps) {
    this.#config = config;
    this.#deps = deps;
  }

  /**
   * Takes a reloaded configuration as the one in force (call it once the reload's own
   * additions and removals are made).
   *
   * @param config The new configuration.
   */
  reconfigure(config: BalancerConfig): void {
    this.#config = config;
  }

  /**
   * The named pool of a backend under the configuration in force.
   *
   * @param href The backend's base URL.
   * @returns The pool's name; `undefined` without routes or when no pool lists it.
   */
  poolOf(href: string): string | undefined {
    for (const [name, poolConfig] of Object.entries(this.#config.pools)) {
      if (poolConfig.backends.some((b) => b.url.href === href)) return name;
    }
    return undefined;
  }

  /**
   * Whether DNS gives this backend now.
   *
   * @param href The backend's base URL.
   * @returns True when the last answer listed it.
   */
  isDiscovered(href: string): boolean {
    return this.#discovered.has(href);
  }

  /**
   * Adds a backend, or keeps one still draining for removal. A backend joining a serving pool
   * is slow-started; one found in DNS takes no traffic until its first probe passes.
   *
   * @param backendConfig Its URL and weight.
   * @param isDiscovered Whether DNS found it. Default: false.
   * @returns The backend in the pool.
   * @throws {RangeError} When its URL is in the pool already (and it was not leaving).
   */
  add(backendConfig: BackendConfig, isDiscovered = false): Backend {
    const { pool, shared, health, serving, logger } = this.#deps;
    const returning = pool.find(backendConfig.url.href);
    if (returning !== undefined && this.#leaving.delete(returning)) {
      // Removed earlier and still draining: it simply stays.
      returning.setDraining(false);
      returning.setWeight(backendConfig.weight);
      serving.publish();
      logger.info("Backend kept", { backend: returning.name, weight: returning.weight });
      return returning;
    }
    if (returning !== undefined && isDiscovered) return returning;
    const backend = new Backend(backendConfig.url, {
      weight: backendConfig.weight,
      shared: shared.allocate(isDiscovered ? "unhealthy" : "healthy", 1),
    });
    pool.add(backend);
    health.track(backend, { isFirstProbeDecisive: isDiscovered });
    serving.publish();
    logger.info("Backend added", { backend: backend.name, weight: backend.weight });
    return backend;
  }

  /**
   * Drains a backend in the background, then takes it out of the pool and stops probing it;
   * {@linkcode BackendSet.settle} waits for it.
   *
   * @param backend The backend to remove.
   */
  remove(backend: Backend): void {
    this.#own(this.#retire(backend));
  }

  /**
   * Applies DNS's latest answer: adds what is new, reweighs what changed, removes what it no
   * longer gives, leaving backends the configuration lists alone.
   *
   * @param next Every backend DNS gives now.
   */
  syncDiscovered(next: readonly BackendConfig[]): void {
    const { pool, serving, logger } = this.#deps;
    const nextByHref = new Map(next.map((b) => [b.url.href, b]));
    let isReweighted = false;
    for (const backendConfig of next) {
      const href = backendConfig.url.href;
      if (this.#isListed(href)) continue;
      const before = this.#discovered.get(href);
      const backend = pool.find(href);
      if (before === undefined || backend === undefined || this.#leaving.has(backend)) {
        try {
          this.add(backendConfig, true);
        } catch (error) {
          logger.error("Cannot add a backend found in DNS", {
            backend: backendConfig.url.host,
            error: errorText(error),
          });
          continue;
        }
      } else if (before.weight !== backendConfig.weight) {
        backend.setWeight(backendConfig.weight);
        isReweighted = true;
      }
    }
    if (isReweighted) serving.publish();
    for (const href of this.#discovered.keys()) {
      if (nextByHref.has(href) || this.#isListed(href)) continue;
      const backend = pool.find(href);
      if (backend !== undefined) this.remove(backend);
    }
    this.#discovered = nextByHref;
  }

  /** Resolves once every removal under way has finished. */
  async settle(): Promise<void> {
    await Promise.all(this.#tasks);
  }

  /** Keeps a removal's promise until it settles, for {@linkcode BackendSet.settle}. */
  #own(task: Promise<void>): void {
    this.#tasks.add(task);
    void task.finally(() => this.#tasks.delete(task));
  }

  /** Whether the configuration in force lists this backend. */
  #isListed(href: string): boolean {
    return this.#config.backends.some((b) => b.url.href === href);
  }

  /** Drains a backend, then takes it out of the pool and stops probing it. */
  async #retire(backend: Backend): Promise<void> {
    const { pool, shared, health, passive, serving, logger, clock } = this.#deps;
    if (this.#leaving.has(backend)) return;
    this.#leaving.add(backend);
    backend.setDraining(true);
    const deadline = clock.now() + this.#config.drainTimeoutMs;
    while (backend.inFlight > 0 && clock.now() < deadline && this.#leaving.has(backend)) {
      await clock.sleep(RETIRE_POLL_MS);
    }
    if (!this.#leaving.delete(backend)) return; // added back meanwhile
    pool.remove(backend);
    health.untrack(backend);
    passive.forget(backend);
    serving.publish();
    shared.free(backend.shared);
    logger.info("Backend removed", { backend: backend.name, inFlight: backend.inFlight });
  }
}
