/**
 * A data-plane worker's side of passive health: the control plane holds the one outlier
 * detector, and the failure streaks are counted in shared memory (each backend's slot), once
 * for the whole balancer: a counted failure in any isolate adds one, a success in any isolate
 * ends the streak. The worker tells the control plane only when a streak reaches the threshold
 * (or a multiple of it, as the detector starts over after sparing a backend), so neither a
 * success nor an ordinary failure costs a message.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import { type AttemptResult, classifyAttempt, type OutlierSettings } from "../core/outlier.ts";

/** Counts one isolate's attempt outcomes into the shared streaks. */
export class OutlierRelay {
  readonly #send: (href: string, result: AttemptResult) => void;
  #settings: Pick<OutlierSettings, "failures" | "kinds">;

  /**
   * @param settings Whether detection is on, and which failures count.
   * @param send Tells the control plane a backend's streak reached the threshold, with the
   *   failure that did it.
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
  }

  /**
   * The handler's `onAttempt`: counts a failure into the backend's shared streak, or ends the
   * streak on a success.
   *
   * @param backend The backend tried.
   * @param result Its status code, or the forward's failure reason.
   */
  readonly observe = (backend: Backend, result: AttemptResult): void => {
    const { failures } = this.#settings;
    if (failures <= 0) return;
    const kind = classifyAttempt(result, this.#settings.kinds);
    if (kind === undefined) return;
    if (kind === "success") {
      backend.shared.clearStreak();
      return;
    }
    // Outcomes of requests in flight when it was ejected do not count (as in the detector).
    if (backend.isEjected) return;
    if (backend.shared.addFailure() % failures === 0) this.#send(backend.url.href, result);
  };
}
