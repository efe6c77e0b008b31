/**
 * Passive health (outlier detection), Envoy's model as a pure detector: consecutive failed
 * attempts of the configured kinds eject a backend for the base ejection time times the number
 * of times it has been ejected (capped), never ejecting more than a share of the pool; after its
 * time it returns. A success (any response that is not a counted failure) resets the count.
 *
 * The detector only counts and decides, on an injected clock. Logging, metrics, the pool and
 * the timer that returns backends are `control/passive_health.ts`'s.
 *
 * @module
 */
import type { ForwardFailureReason } from "./forward_failure.ts";
import type { Clock } from "../shared/clock.ts";

/** The kinds of failed attempt the detector can count. */
export const OUTLIER_KINDS = ["connect", "timeout", "5xx"] as const;

/** A kind of failed attempt: no connection (or one broken before a response), no response in time, or a 5xx response. */
export type OutlierKind = typeof OUTLIER_KINDS[number];

/**
 * What one forwarding attempt ended with, as the handler knows it: the backend's status code,
 * or why no response came.
 */
export type AttemptResult = number | ForwardFailureReason;

/** The detector's settings (`BalancerConfig.outlier`). */
export interface OutlierSettings {
  /** Consecutive failures that eject a backend; 0 turns passive health off. */
  readonly failures: number;
  /** Which failed attempts count. */
  readonly kinds: readonly OutlierKind[];
  /** The first ejection's length, in ms; the n-th lasts n times this. */
  readonly baseEjectionMs: number;
  /** The longest ejection, in ms (the base when that is longer). */
  readonly maxEjectionMs: number;
  /** The most of the pool ejected at once, in percent of its backends. */
  readonly maxEjectedPercent: number;
}

/** A decision {@linkcode OutlierDetector.record} made. */
export type OutlierVerdict =
  | {
    readonly kind: "ejected";
    /** What the last failure was. */
    readonly reason: OutlierKind;
    /** The consecutive failures that ejected it. */
    readonly failures: number;
    /** How many times in a row (decaying) it has been ejected, this one included. */
    readonly ejections: number;
    /** How long it is out, in ms. */
    readonly durationMs: number;
    /** When it returns, on the detector's clock. */
    readonly untilMs: number;
  }
  | {
    readonly kind: "spared";
    /** What the last failure was. */
    readonly reason: OutlierKind;
    /** The consecutive failures that would have ejected it. */
    readonly failures: number;
    /** How many backends are ejected already. */
    readonly ejected: number;
  };

/**
 * The failure reasons that are the backend's, by the kind they count as. A connect timeout is a
 * connect failure (the request was never sent); reasons missing here (the client's, the
 * balancer's own descriptors) are nobody's fault but the load's.
 */
const FAILURE_KINDS: Readonly<Partial<Record<string, OutlierKind>>> = {
  connect: "connect",
  "connect-timeout": "connect",
  protocol: "connect",
  timeout: "timeout",
  "response-timeout": "timeout",
};

/**
 * Classifies an attempt for the detector: a counted failure, a success, or neither (failures
 * that are not the backend's: the client went away, the balancer ran out of descriptors).
 * A connection that timed out or broke before any response counts as `connect`; a response is a
 * success unless it is a 5xx and `5xx` is counted.
 *
 * @param result The backend's status code, or the forward's failure reason.
 * @param kinds The kinds counted.
 * @returns The failure's kind, `"success"`, or `undefined`.
 *
 * @example
 * ```ts
 * import { classifyAttempt } from "./outlier.ts";
 * if (classifyAttempt("protocol", ["connect"]) !== "connect") throw new Error();
 * if (classifyAttempt(503, ["connect", "timeout"]) !== "success") throw new Error();
 * if (classifyAttempt(503, ["5xx"]) !== "5xx") throw new Error();
 * if (classifyAttempt("client-abort", ["connect"]) !== undefined) throw new Error();
 * ```
 */
export function classifyAttempt(
  result: AttemptResult,
  kinds: readonly OutlierKind[],
): OutlierKind | "success" | undefined {
  const kind = typeof result === "number"
    ? (result < 500 ? undefined : "5xx")
    : FAILURE_KINDS[result];
  if (kind === undefined) return typeof result === "number" ? "success" : undefined;
  return kinds.includes(kind) ? kind : "success";
}

/**
 * How long the `ejections`-th ejection in a row lasts: `ejections` times the base, at most the
 * maximum (or the base, when that is longer).
 *
 * @param ejections 1 for the first.
 * @param settings The base and maximum ejection times.
 * @returns Milliseconds.
 *
 * @example
 * ```ts
 * import { ejectionMs } from "./outlier.ts";
 * const s = { baseEjectionMs: 30_000, maxEjectionMs: 300_000 };
 * if (ejectionMs(2, s) !== 60_000 || ejectionMs(20, s) !== 300_000) throw new Error();
 * ```
 */
export function ejectionMs(
  ejections: number,
  settings: Pick<OutlierSettings, "baseEjectionMs" | "maxEjectionMs">,
): number {
  const cap = Math.max(settings.maxEjectionMs, settings.baseEjectionMs);
  return Math.min(settings.baseEjectionMs * ejections, cap);
}

/** What the detector knows of one backend. */
interface Track {
  /** Consecutive counted failures. */
  failures: number;
  /** Ejections in a row; one is forgiven per base ejection time back in rotation. */
  ejections: number;
  /** When the current ejection ends; `undefined` when it is in rotation. */
  untilMs: number | undefined;
  /** When it last returned (or was first seen). */
  returnedAtMs: number;
  /** Whether a spared ejection was already reported in this streak. */
  isSpareReported: boolean;
}

/**
 * Counts attempt outcomes per backend and decides ejections. Keys are the backends (any
 * object); the pool's size is passed with each outcome, as backends come and go.
 *
 * ```ts ignore
 * const detector = new OutlierDetector(config.outlier, { clock });
 * const verdict = detector.record(backend, "connect", pool.backends.length);
 * ```
 */
export class OutlierDetector<Key extends object> {
  #settings: OutlierSettings;
  readonly #clock: Pick<Clock, "now">;
  readonly #tracks = new Map<Key, Track>();
  #ejectedCount = 0;

  /**
   * @param settings Threshold, counted kinds, ejection times and the share cap.
   * @param deps The clock ejection times are measured on.
   */
  constructor(settings: OutlierSettings, deps: { readonly clock: Pick<Clock, "now"> }) {
    this.#settings = settings;
    this.#clock = deps.clock;
  }

  /** The settings in force. */
  get settings(): OutlierSettings {
    return this.#settings;
  }

  /** Whether passive health is on (`failures` above 0). */
  get isEnabled(): boolean {
    return this.#settings.failures > 0;
  }

  /** How many backends are ejected now. */
  get ejectedCount(): number {
    return this.#ejectedCount;
  }

  /**
   * Changes the settings; ejections under way keep their end time. Turning detection off does
   * not return ejected backends by itself: call {@linkcode returnAll}.
   *
   * @param settings The new settings (already validated).
   */
  reconfigure(settings: OutlierSettings): void {
    this.#settings = settings;
  }

  /**
   * Counts one attempt's outcome.
   *
   * Outcomes of a backend already ejected (requests that were in flight) are ignored. When the
   * failures reach the threshold the backend is ejected, unless that would put more than
   * `maxEjectedPercent` of `poolSize` out; then the streak starts over and the first such
   * refusal of a streak is reported as `spared`.
   *
   * @param key The backend.
   * @param result Its status code or failure reason.
   * @param poolSize How many backends the pool has.
   * @returns The decision, or `undefined` when nothing changed that anyone must hear about.
   */
  record(key: Key, result: AttemptResult, poolSize: number): OutlierVerdict | undefined {
    if (this.#settings.failures <= 0) return undefined;
    const kind = classifyAttempt(result, this.#settings.kinds);
    if (kind === undefined) return undefined;
    let track = this.#tracks.get(key);
    if (kind === "success") {
      // The common case allocates nothing: no track, or a streak of zero.
      if (track !== undefined && track.untilMs === undefined) {
        track.failures = 0;
        track.isSpareReported = false;
      }
      return undefined;
    }
    const now = this.#clock.now();
    if (track === undefined) {
      track = {
        failures: 0,
        ejections: 0,
        untilMs: undefined,
        returnedAtMs: now,
        isSpareReported: false,
      };
      this.#tracks.set(key, track);
    }
    if (track.untilMs !== undefined) return undefined;
    track.failures++;
    if (track.failures < this.#settings.failures) return undefined;
    const failures = track.failures;
    track.failures = 0;
    // Envoy's check: an ejection may not take the ejected share past the maximum.
    if ((this.#ejectedCount + 1) * 100 > this.#settings.maxEjectedPercent * poolSize) {
      if (track.isSpareReported) return undefined;
      track.isSpareReported = true;
      return { kind: "spared", reason: kind, failures, ejected: this.#ejectedCount };
    }
    // A backend that stayed in rotation is forgiven one ejection per base time it stayed.
    const forgiven = Math.floor((now - track.returnedAtMs) / this.#settings.baseEjectionMs);
    track.ejections = Math.max(0, track.ejections - forgiven) + 1;
    const durationMs = ejectionMs(track.ejections, this.#settings);
    track.untilMs = now + durationMs;
    track.isSpareReported = false;
    this.#ejectedCount++;
    return {
      kind: "ejected",
      reason: kind,
      failures,
      ejections: track.ejections,
      durationMs,
      untilMs: track.untilMs,
    };
  }

  /**
   * Sets a backend's streak one short of the threshold, so the next counted failure decides:
   * the streak was counted elsewhere (the balancer's shared memory, over every isolate).
   *
   * @param key The backend.
   */
  reachThreshold(key: Key): void {
    const track = this.#tracks.get(key);
    if (track === undefined) {
      this.#tracks.set(key, {
        failures: Math.max(0, this.#settings.failures - 1),
        ejections: 0,
        untilMs: undefined,
        returnedAtMs: this.#clock.now(),
        isSpareReported: false,
      });
    } else if (track.untilMs === undefined) {
      track.failures = Math.max(track.failures, this.#settings.failures - 1);
    }
  }

  /**
   * When the next ejected backend is due back, on the detector's clock.
   *
   * @returns The earliest end of an ejection, or `undefined` when none is ejected.
   */
  nextReturnMs(): number | undefined {
    let next: number | undefined;
    for (const track of this.#tracks.values()) {
      if (track.untilMs !== undefined && (next === undefined || track.untilMs < next)) {
        next = track.untilMs;
      }
    }
    return next;
  }

  /**
   * Returns every backend whose ejection has ended; each starts a new streak.
   *
   * @returns The returned backends.
   */
  returnDue(): Key[] {
    const now = this.#clock.now();
    const returned: Key[] = [];
    for (const [key, track] of this.#tracks) {
      if (track.untilMs !== undefined && track.untilMs <= now) {
        this.#return(track, now);
        returned.push(key);
      }
    }
    return returned;
  }

  /**
   * Returns every ejected backend now (detection turned off).
   *
   * @returns The returned backends.
   */
  returnAll(): Key[] {
    const now = this.#clock.now();
    const returned: Key[] = [];
    for (const [key, track] of this.#tracks) {
      if (track.untilMs !== undefined) {
        this.#return(track, now);
        returned.push(key);
      }
    }
    return returned;
  }

  /**
   * Forgets a backend removed from the pool (an ejection under way no longer counts).
   *
   * @param key The backend.
   */
  forget(key: Key): void {
    const track = this.#tracks.get(key);
    if (track?.untilMs !== undefined) this.#ejectedCount--;
    this.#tracks.delete(key);
  }

  #return(track: Track, now: number): void {
    track.untilMs = undefined;
    track.failures = 0;
    track.returnedAtMs = now;
    this.#ejectedCount--;
  }
}
