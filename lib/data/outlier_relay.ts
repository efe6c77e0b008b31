/**
 * A data-plane worker's side of passive health: the control plane holds the one outlier
 * detector, so a worker relays the attempt outcomes that can change its decision. Every counted
 * failure is relayed at once (a dead backend is ejected after a handful of them, so they are
 * few), and of the successes only the one that ends a streak this worker relayed. Successes on
 * a backend with no streak, the common case, cost no message.
 *
 * The detector's count is thus every isolate's consecutive failures added up, each isolate's
 * own success resetting it: across isolates "consecutive" is approximate, within one exact.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import { type AttemptResult, classifyAttempt, type OutlierSettings } from "../core/outlier.ts";

/** Filters one isolate's attempt outcomes down to those the control plane must hear. */
export class OutlierRelay {
  readonly #send: (href: string, result: AttemptResult) => void;
  /** Backends with failures relayed and no success since. */
  readonly #streaks = new Set<string>();
  #settings: Pick<OutlierSettings, "failures" | "kinds">;

  /**
   * @param settings Whether detection is on, and which failures count.
   * @param send Posts one outcome to the control plane.
   */
  constructor(
    settings: Pick<OutlierSettings, "failures" | "kinds">,
    send: (href: string, result: AttemptResult) => void,
  ) {
    this.#settings = settings;
    this.#send = send;
  }

  /**
   * Applies a reload's settings.
   *
   * @param settings The new threshold and counted kinds.
   */
  configure(settings: Pick<OutlierSettings, "failures" | "kinds">): void {
    this.#settings = settings;
    if (settings.failures <= 0) this.#streaks.clear();
  }

  /**
   * The handler's `onAttempt`: relays a counted failure, or the success that ends a streak.
   *
   * @param backend The backend tried.
   * @param result Its status code, or the forward's failure reason.
   */
  readonly observe = (backend: Backend, result: AttemptResult): void => {
    if (this.#settings.failures <= 0) return;
    const kind = classifyAttempt(result, this.#settings.kinds);
    if (kind === undefined) return;
    const href = backend.url.href;
    if (kind === "success") {
      if (this.#streaks.size === 0 || !this.#streaks.delete(href)) return;
    } else {
      this.#streaks.add(href);
    }
    this.#send(href, result);
  };
}
