/**
 * Passive health as the control plane runs it: the one {@linkcode OutlierDetector} of the
 * process, fed every forwarding attempt's outcome by the handler in this isolate, or by
 * data-plane workers the news that a backend's failure streak (counted once, in shared memory,
 * `data/outlier_relay.ts`) reached the threshold; it ejects backends in the pool (the flag is in
 * the shared state, so every isolate sees it at once), returns them when their time is up (a
 * `sleep` on the injected clock, never `setInterval`), and tells the metrics and the log about
 * each flip, once.
 *
 * Ejected and active health combine in {@linkcode Backend.isAvailable}: a backend whose ejection
 * ends returns only if its probes still pass; one that failed them meanwhile stays out until it
 * rises.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Backend } from "../core/backend.ts";
import { getModuleLogger } from "../process/log.ts";
import type { Metrics } from "../core/metrics.ts";
import { type AttemptResult, OutlierDetector, type OutlierSettings } from "../core/outlier.ts";
import type { Pool } from "../core/pool.ts";
import { type Clock, systemClock } from "../shared/clock.ts";

/** Options for {@linkcode PassiveHealth}. */
export interface PassiveHealthOptions {
  /** Drives ejection times. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /** Wall-clock time, for the `untilMs` shown in `/status`. Default: `Date.now`. */
  readonly wallNow?: () => number;
  /** Receives each ejection (WARN) and return (INFO). Default: `["denolb", "outlier"]`. */
  readonly logger?: Logger;
  /** Counts ejections. Default: none. */
  readonly metrics?: Metrics;
  /** Called after any backend is ejected or returns (publishes the pool). Default: none. */
  readonly onChange?: () => void;
}

/** The control plane's outlier detection over one pool. */
export class PassiveHealth implements AsyncDisposable {
  readonly #pool: Pool;
  readonly #detector: OutlierDetector<Backend>;
  readonly #clock: Clock;
  readonly #wallNow: () => number;
  readonly #logger: Logger;
  readonly #metrics: Metrics | undefined;
  readonly #onChange: (() => void) | undefined;
  readonly #stop = new AbortController();
  /** Aborted to wake the return loop when an ejection may end sooner than it waits for. */
  #wake = new AbortController();
  #loop: Promise<void> | undefined;

  /**
   * @param pool The backends.
   * @param settings Threshold, counted kinds, ejection times and share cap.
   * @param options Clock, logger, metrics and the change callback.
   */
  constructor(pool: Pool, settings: OutlierSettings, options: PassiveHealthOptions = {}) {
    this.#pool = pool;
    this.#clock = options.clock ?? systemClock;
    this.#detector = new OutlierDetector(settings, { clock: this.#clock });
    this.#wallNow = options.wallNow ?? Date.now;
    this.#logger = options.logger ?? getModuleLogger("outlier");
    this.#metrics = options.metrics;
    this.#onChange = options.onChange;
  }

  /**
   * Counts one forwarding attempt (the handler's `onAttempt`). Never throws: a failure here
   * must not fail the request.
   *
   * @param backend The backend tried.
   * @param result Its status code, or the forward's failure reason.
   */
  readonly observe = (backend: Backend, result: AttemptResult): void => {
    try {
      const verdict = this.#detector.record(backend, result, this.#pool.backends.length);
      if (verdict === undefined) return;
      // An attempt that was in flight when its backend was removed must not eject a stranger.
      if (this.#pool.find(backend.url.href) !== backend) {
        this.#detector.forget(backend);
        return;
      }
      if (verdict.kind === "spared") {
        this.#logger.warn("Backend not ejected: the most of the pool is ejected already", {
          backend: backend.name,
          reason: verdict.reason,
          failures: verdict.failures,
          ejected: verdict.ejected,
          maxEjectedPercent: this.#detector.settings.maxEjectedPercent,
        });
        return;
      }
      backend.setEjection({
        untilMs: this.#wallNow() + verdict.durationMs,
        count: verdict.ejections,
        reason: verdict.reason,
      });
      this.#metrics?.recordEjection(backend);
      this.#logger.warn("Backend ejected", {
        backend: backend.name,
        reason: verdict.reason,
        failures: verdict.failures,
        ejections: verdict.ejections,
        ejectedMs: verdict.durationMs,
      });
      this.#changed();
      this.#wake.abort();
    } catch (error) {
      this.#logger.error("Passive health failed", { backend: backend.name, error });
    }
  };

  /**
   * Counts a failure that brought the backend's shared streak (every isolate's consecutive
   * failures) to the threshold: a worker saw it, so the detector decides as if it had counted
   * the whole streak itself. Never throws.
   *
   * @param backend The backend.
   * @param result The failure that reached the threshold.
   */
  readonly observeStreak = (backend: Backend, result: AttemptResult): void => {
    this.#detector.reachThreshold(backend);
    this.observe(backend, result);
  };

  /**
   * Finds the pool's backend by URL and counts its attempt.
   *
   * @param href The backend's base URL.
   * @param result Its status code, or the forward's failure reason.
   */
  observeByUrl(href: string, result: AttemptResult): void {
    const backend = this.#pool.find(href);
    if (backend !== undefined) this.observe(backend, result);
  }

  /**
   * Applies new settings. Turning detection off returns every ejected backend at once.
   *
   * @param settings The new settings (already validated).
   */
  reconfigure(settings: OutlierSettings): void {
    this.#detector.reconfigure(settings);
    if (!this.#detector.isEnabled) this.#returnAll(this.#detector.returnAll());
  }

  /**
   * Forgets a backend removed from the pool, so it no longer counts as ejected.
   *
   * @param backend The removed backend.
   */
  forget(backend: Backend): void {
    this.#detector.forget(backend);
  }

  /** Starts returning backends when their ejection ends. Calling it again does nothing. */
  start(): void {
    this.#loop ??= this.#returnLoop();
  }

  /**
   * Stops the return loop, leaving no timer behind. Idempotent.
   *
   * @returns Resolves when the loop has ended.
   */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  /** Same as {@linkcode stop}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #returnLoop(): Promise<void> {
    while (!this.#stop.signal.aborted) {
      this.#wake = new AbortController();
      const signal = AbortSignal.any([this.#stop.signal, this.#wake.signal]);
      const nextMs = this.#detector.nextReturnMs();
      try {
        if (nextMs === undefined) await untilAborted(signal);
        else await this.#clock.sleep(nextMs - this.#clock.now(), signal);
      } catch {
        // Woken: an ejection was added (or the loop stops); look again.
        continue;
      }
      this.#returnAll(this.#detector.returnDue());
    }
  }

  #returnAll(backends: readonly Backend[]): void {
    if (backends.length === 0) return;
    for (const backend of backends) {
      const ejection = backend.ejection;
      backend.setEjection(undefined);
      this.#logger.info("Backend returned from ejection", {
        backend: backend.name,
        ejections: ejection?.count ?? 0,
        isHealthy: backend.isHealthy,
      });
    }
    this.#changed();
  }

  #changed(): void {
    try {
      this.#onChange?.();
    } catch (error) {
      this.#logger.error("Passive health listener failed", { error });
    }
  }
}

/** Resolves never; rejects when `signal` aborts. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}
