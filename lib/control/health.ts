/**
 * Active health checking: probe every backend's health path at start and then every interval,
 * and flip a backend in or out of rotation after `rise` / `fall` consecutive results.
 *
 * The decision is the pure {@linkcode nextHealth}; one probe is {@linkcode runProbe} in
 * `probe.ts`; the timing is a `sleep` chain on an injected {@linkcode Clock} (never
 * `setInterval`), one chain per backend so a slow backend delays only its own probes, and by at
 * most the timeout.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Backend, HealthState } from "../core/backend.ts";
import { getModuleLogger } from "../process/log.ts";
import type { Pool } from "../core/pool.ts";
import { describeError, type ProbeFetch, type ProbeResult, runProbe } from "./probe.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import type { HealthSettings } from "../config/settings.ts";

// ---------------------------------------------------------------------------------------------
// The pure transition.

/** What the health checker knows about one backend between probes. */
export interface HealthStatus {
  /** The backend's state. */
  readonly state: HealthState;
  /** Consecutive successful probes up to now (0 after a failure). */
  readonly successes: number;
  /** Consecutive failed probes up to now (0 after a success). */
  readonly failures: number;
  /** Whether any probe has finished yet. */
  readonly isProbed: boolean;
}

/** How many consecutive results flip a backend. */
export interface HealthThresholds {
  /** Consecutive successes that make an unhealthy backend healthy (1 or more). */
  readonly rise: number;
  /** Consecutive failures that make a healthy backend unhealthy (1 or more). */
  readonly fall: number;
}

/** The outcome of {@linkcode nextHealth}. */
export interface HealthTransition {
  /** The status after the probe. */
  readonly status: HealthStatus;
  /** Whether the state changed. */
  readonly flipped: boolean;
}

/**
 * The status of a backend that has not been probed yet.
 *
 * @param state Its state before the first probe.
 * @returns A status with no probes counted.
 */
export function initialHealthStatus(state: HealthState): HealthStatus {
  return { state, successes: 0, failures: 0, isProbed: false };
}

/**
 * Applies one probe result. The first probe's result applies at once (a backend that is down
 * at start-up leaves rotation after one probe, not `fall`); after that a healthy backend turns
 * unhealthy after `fall` consecutive failures and back after `rise` consecutive successes.
 *
 * @param current The status before the probe.
 * @param isSuccess Whether the probe passed.
 * @param thresholds The rise and fall counts.
 * @returns The new status and whether the state flipped.
 *
 * @example
 * ```ts
 * import { initialHealthStatus, nextHealth } from "./health.ts";
 * const first = nextHealth(initialHealthStatus("healthy"), false, { rise: 2, fall: 3 });
 * if (first.status.state !== "unhealthy" || !first.flipped) throw new Error("first applies");
 * const second = nextHealth(first.status, true, { rise: 2, fall: 3 });
 * if (second.status.state !== "unhealthy" || second.flipped) throw new Error("rise is 2");
 * ```
 */
export function nextHealth(
  current: HealthStatus,
  isSuccess: boolean,
  thresholds: HealthThresholds,
): HealthTransition {
  const successes = isSuccess ? current.successes + 1 : 0;
  const failures = isSuccess ? 0 : current.failures + 1;
  let state: HealthState = current.state;
  if (!current.isProbed) {
    state = isSuccess ? "healthy" : "unhealthy";
  } else if (state === "unhealthy" && successes >= thresholds.rise) {
    state = "healthy";
  } else if (state === "healthy" && failures >= thresholds.fall) {
    state = "unhealthy";
  }
  return {
    status: { state, successes, failures, isProbed: true },
    flipped: state !== current.state,
  };
}

// ---------------------------------------------------------------------------------------------
// The checker.

/**
 * Options for {@linkcode HealthChecker}: the `health` settings as `settings.ts` declares them
 * (path, interval, timeout, rise, fall), and the checker's dependencies.
 */
export interface HealthCheckerOptions extends HealthSettings {
  /** Drives the schedule and the timeouts. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /** Fetches probe URLs. Default: the global `fetch` (with `client`, if given). */
  readonly fetch?: ProbeFetch;
  /** The HTTP client the default `fetch` uses. Default: Deno's shared client. */
  readonly client?: Deno.HttpClient;
  /** Receives flips (INFO/WARN) and per-probe DEBUG records. Default: `["denolb", "health"]`. */
  readonly logger?: Logger;
  /** Called after a backend's state flips (for metrics). Default: none. */
  readonly onChange?: (backend: Backend, state: HealthState) => void;
  /** Called after every probe's result is applied (for metrics and tests). Default: none. */
  readonly onProbe?: (backend: Backend, result: ProbeResult) => void;
  /**
   * A backend's own probe path (its pool's, when the balancer routes), read when it is tracked
   * and at each {@linkcode HealthChecker.reconfigure}; `undefined` keeps `path`. Default: none.
   */
  readonly pathOf?: (backend: Backend) => string | undefined;
}

interface Tracked {
  readonly backend: Backend;
  url: URL;
  status: HealthStatus;
  /** Stops this backend's loop alone (untracked), or with the whole checker. */
  readonly stop: AbortController;
}

/** The settings {@linkcode HealthChecker.reconfigure} can change while probing: `health`. */
export type { HealthSettings };

/**
 * Probes every backend of a pool and sets its health state.
 *
 * ```ts ignore
 * await using checker = new HealthChecker(pool, { ...config.health, logger });
 * checker.start();
 * ```
 */
export class HealthChecker implements AsyncDisposable {
  readonly #tracked = new Map<Backend, Tracked>();
  #intervalMs: number;
  #timeoutMs: number;
  #thresholds: HealthThresholds;
  #relativePath: string;
  readonly #pathOf: ((backend: Backend) => string | undefined) | undefined;
  readonly #clock: Clock;
  readonly #fetch: ProbeFetch;
  readonly #logger: Logger;
  readonly #onChange: ((backend: Backend, state: HealthState) => void) | undefined;
  readonly #onProbe: ((backend: Backend, result: ProbeResult) => void) | undefined;
  readonly #tasks = new Set<Promise<void>>();
  readonly #firstRound = Promise.withResolvers<void>();
  #isStarted = false;
  #stopped: Promise<void> | undefined;

  /**
   * @param pool The backends to probe; each starts in its current state.
   * @param options Path, timing, thresholds and dependencies.
   * @throws {RangeError} When the interval or timeout is not positive, or rise or fall is not a
   *   whole number of 1 or more.
   */
  constructor(pool: Pool, options: HealthCheckerOptions) {
    this.#intervalMs = options.intervalMs;
    this.#timeoutMs = options.timeoutMs;
    const { rise, fall } = options;
    if (!(this.#intervalMs > 0) || !(this.#timeoutMs > 0)) {
      throw new RangeError(
        `Cannot check health every ${this.#intervalMs}ms with a ${this.#timeoutMs}ms timeout: both must be positive`,
      );
    }
    if (!Number.isInteger(rise) || rise < 1 || !Number.isInteger(fall) || fall < 1) {
      throw new RangeError(
        `Cannot use rise ${rise} and fall ${fall}: both must be whole numbers, 1 or more`,
      );
    }
    this.#thresholds = { rise, fall };
    this.#clock = options.clock ?? systemClock;
    const client = options.client;
    this.#fetch = options.fetch ??
      ((url, init) => fetch(url, client === undefined ? init : { ...init, client }));
    this.#logger = options.logger ?? getModuleLogger("health");
    this.#onChange = options.onChange;
    this.#onProbe = options.onProbe;
    this.#relativePath = options.path.replace(/^\/+/, "");
    this.#pathOf = options.pathOf;
    for (const backend of pool.backends) this.#add(backend, initialHealthStatus(backend.health));
  }

  #add(backend: Backend, status: HealthStatus): Tracked {
    const tracked: Tracked = {
      backend,
      url: this.#probeUrl(backend),
      status,
      stop: new AbortController(),
    };
    this.#tracked.set(backend, tracked);
    return tracked;
  }

  /**
   * Starts probing a backend added to the pool (at once, then every interval). Its current
   * state stands until `rise` or `fall` consecutive results flip it, or, with
   * `isFirstProbeDecisive`, until its first result. Does nothing for a backend already tracked
   * or after {@linkcode stop}.
   *
   * @param backend The new backend.
   * @param options `isFirstProbeDecisive`: the first result applies at once (a discovered
   *   backend that starts unhealthy takes traffic once a probe passes). Default: false.
   */
  track(backend: Backend, options: { readonly isFirstProbeDecisive?: boolean } = {}): void {
    if (this.#tracked.has(backend) || this.#stopped !== undefined) return;
    // Marked as probed: a reload must not flip a backend on one result.
    const isProbed = options.isFirstProbeDecisive !== true;
    const tracked = this.#add(backend, { ...initialHealthStatus(backend.health), isProbed });
    if (this.#isStarted) this.#own(this.#loop(tracked, () => {}));
  }

  /**
   * Stops probing a backend removed from the pool; a probe in flight is abandoned.
   *
   * @param backend The removed backend.
   */
  untrack(backend: Backend): void {
    const tracked = this.#tracked.get(backend);
    if (tracked === undefined) return;
    this.#tracked.delete(backend);
    tracked.stop.abort(new DOMException("Backend removed", "AbortError"));
  }

  /**
   * Changes the probe settings; the next probe of each backend uses them.
   *
   * @param settings The new path, interval, timeout and thresholds (already validated).
   */
  reconfigure(settings: HealthSettings): void {
    this.#intervalMs = settings.intervalMs;
    this.#timeoutMs = settings.timeoutMs;
    this.#thresholds = { rise: settings.rise, fall: settings.fall };
    this.#relativePath = settings.path.replace(/^\/+/, "");
    for (const tracked of this.#tracked.values()) {
      tracked.url = this.#probeUrl(tracked.backend);
    }
  }

  /** The URL a backend's probes go to: its own path, else the checker's, after its base path. */
  #probeUrl(backend: Backend): URL {
    const own = this.#pathOf?.(backend);
    return new URL(own === undefined ? this.#relativePath : own.replace(/^\/+/, ""), backend.url);
  }

  /**
   * Resolves once {@linkcode start}'s first probe of every backend has been applied (or when
   * the checker stops first).
   */
  get firstRound(): Promise<void> {
    return this.#firstRound.promise;
  }

  /**
   * Starts probing: every backend at once, then every interval. Calling it again does nothing.
   *
   * @throws {Error} When the checker has been stopped.
   */
  start(): void {
    if (this.#stopped !== undefined) {
      throw new Error("Cannot start a stopped health checker: create a new one");
    }
    if (this.#isStarted) return;
    this.#isStarted = true;
    const firsts = [...this.#tracked.values()].map((tracked) => {
      const first = Promise.withResolvers<void>();
      this.#own(this.#loop(tracked, first.resolve));
      return first.promise;
    });
    void Promise.all(firsts).then(() => this.#firstRound.resolve());
  }

  /**
   * Probes every backend once now, besides the schedule, and applies the results.
   *
   * @returns Resolves when every probe has been applied (at once when stopped).
   */
  checkNow(): Promise<void> {
    if (this.#stopped !== undefined) return Promise.resolve();
    const round = Promise.all(
      [...this.#tracked.values()].map((tracked) => this.#probeOnce(tracked)),
    )
      .then(() => undefined);
    this.#own(round);
    return round;
  }

  /**
   * Stops probing: aborts probes in flight and waits for them, leaving no timer behind.
   * Idempotent.
   *
   * @returns Resolves when nothing is left running.
   */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      const reason = new DOMException("Health checker stopped", "AbortError");
      for (const tracked of this.#tracked.values()) tracked.stop.abort(reason);
      while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
      this.#firstRound.resolve();
    })();
    return this.#stopped;
  }

  /** Same as {@linkcode stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #own(task: Promise<void>): void {
    this.#tasks.add(task);
    void task.finally(() => this.#tasks.delete(task));
  }

  async #loop(tracked: Tracked, onFirst: () => void): Promise<void> {
    const signal = tracked.stop.signal;
    let nextAt = this.#clock.now();
    try {
      await this.#probeOnce(tracked);
      onFirst();
      while (!signal.aborted) {
        nextAt += this.#intervalMs;
        const now = this.#clock.now();
        // A probe that overran its slot shifts the schedule instead of firing a burst.
        if (nextAt < now) nextAt = now;
        await this.#clock.sleep(nextAt - now, signal);
        await this.#probeOnce(tracked);
      }
    } catch (error) {
      if (!signal.aborted) {
        this.#logger.error("Health check loop failed", {
          backend: tracked.backend.name,
          error: describeError(error),
        });
      }
    } finally {
      onFirst();
    }
  }

  async #probeOnce(tracked: Tracked): Promise<void> {
    const signal = tracked.stop.signal;
    const result = await runProbe(tracked.url, {
      fetch: this.#fetch,
      clock: this.#clock,
      timeoutMs: this.#timeoutMs,
      signal,
    });
    // A probe cut short by stop() says nothing about the backend.
    if (signal.aborted) return;
    this.#apply(tracked, result);
  }

  #apply(tracked: Tracked, result: ProbeResult): void {
    const { backend } = tracked;
    // Another owner (passive outlier detection) may have changed the state since: start there.
    const current = { ...tracked.status, state: backend.health };
    const { status, flipped } = nextHealth(current, result.ok, this.#thresholds);
    tracked.status = status;
    const fields = {
      backend: backend.name,
      url: tracked.url.href,
      ...(result.ok ? {} : { reason: result.reason }),
      ...(result.status === undefined ? {} : { status: result.status }),
      latencyMs: Math.round(result.latencyMs * 10) / 10,
    };
    this.#logger.debug("Probe finished", {
      ...fields,
      ok: result.ok,
      state: status.state,
      successes: status.successes,
      failures: status.failures,
    });
    if (flipped) {
      backend.setHealth(status.state);
      const isFirstProbe = !current.isProbed;
      if (status.state === "healthy") {
        this.#logger.info("Backend is healthy", {
          ...fields,
          successes: status.successes,
          isFirstProbe,
        });
      } else {
        this.#logger.warn("Backend is unhealthy", {
          ...fields,
          failures: status.failures,
          isFirstProbe,
        });
      }
    }
    this.#notify(backend, result, flipped ? status.state : undefined);
  }

  #notify(backend: Backend, result: ProbeResult, flippedTo: HealthState | undefined): void {
    // A failing listener must neither stop the loop nor starve the other listener.
    if (flippedTo !== undefined && this.#onChange !== undefined) {
      try {
        this.#onChange(backend, flippedTo);
      } catch (error) {
        this.#listenerFailed(backend, "onChange", error);
      }
    }
    if (this.#onProbe !== undefined) {
      try {
        this.#onProbe(backend, result);
      } catch (error) {
        this.#listenerFailed(backend, "onProbe", error);
      }
    }
  }

  #listenerFailed(backend: Backend, listener: string, error: unknown): void {
    this.#logger.error("Health listener failed", {
      backend: backend.name,
      listener,
      error: describeError(error),
    });
  }
}
