/**
 * Admission of a request to a backend under in-flight limits (`--max-in-flight`, a backend's
 * own `maxInFlight`): the policy skips a full backend (`isCandidate`), and when every
 * available backend is full the request waits in a bounded FIFO queue for a slot, woken when
 * any backend's in-flight count drops, until `--queue-timeout`; past `--queue-size` or the
 * timeout it is refused (the handler answers 503 with `Retry-After`). HAProxy's per-server
 * `maxconn` with its queue and `timeout queue` work the same way.
 *
 * Limits and queue are per isolate: with `--workers N` each isolate counts its own requests,
 * so a backend may have up to N times its limit in flight from the whole process.
 *
 * The picked backend is `begin()`-ed here, in the same synchronous step as the pick, so two
 * wake-ups can never both take a backend's last slot.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import { type Deadline, DeadlineQueue } from "../shared/deadlines.ts";
import type { PickContext, Policy } from "../policies/policy.ts";
import type { Pool } from "../core/pool.ts";
import { type Clock, systemClock } from "../shared/clock.ts";

/** The in-flight limits and queue bounds, as configured. */
export interface InFlightLimits {
  /** Requests each backend takes at once, per isolate; 0 is no limit. */
  readonly maxInFlight: number;
  /** A backend's own limit by its base URL (`url.href`), overriding `maxInFlight`. */
  readonly byBackend: ReadonlyMap<string, number>;
  /** Requests that may wait for a slot; 0 refuses at once. */
  readonly queueSize: number;
  /** The longest wait for a slot, in milliseconds. */
  readonly queueTimeoutMs: number;
}

/** No limits: every pick goes straight through. */
export const NO_IN_FLIGHT_LIMITS: InFlightLimits = {
  maxInFlight: 0,
  byBackend: new Map(),
  queueSize: 0,
  queueTimeoutMs: 1,
};

/**
 * Reads the limits from a configuration's `limits` and `backends`.
 *
 * @param config The configuration (only `limits` and `backends` are read).
 * @returns The limits.
 *
 * @example
 * ```ts
 * import { inFlightLimitsOf } from "./admission.ts";
 * const limits = inFlightLimitsOf({
 *   limits: { maxInFlight: 10, queueSize: 5, queueTimeoutMs: 1000 },
 *   backends: [{ url: new URL("http://a/"), maxInFlight: 2 }, { url: new URL("http://b/") }],
 * });
 * if (limits.byBackend.get("http://a/") !== 2 || limits.byBackend.has("http://b/")) throw new Error();
 * ```
 */
export function inFlightLimitsOf(config: {
  readonly limits: Pick<InFlightLimits, "maxInFlight" | "queueSize" | "queueTimeoutMs">;
  readonly backends: ReadonlyArray<{ readonly url: URL; readonly maxInFlight?: number }>;
}): InFlightLimits {
  const byBackend = new Map<string, number>();
  for (const backend of config.backends) {
    if (backend.maxInFlight !== undefined) byBackend.set(backend.url.href, backend.maxInFlight);
  }
  const { maxInFlight, queueSize, queueTimeoutMs } = config.limits;
  return { maxInFlight, byBackend, queueSize, queueTimeoutMs };
}

/** Why a request got no backend. */
export type Refusal =
  /** No backend is available at all (none healthy, all draining or ejected). */
  | "no-backend"
  /** Every available backend is full and the queue is too. */
  | "queue-full"
  /** Every available backend stayed full for the whole queue timeout. */
  | "queue-timeout"
  /** The client went away while its request waited. */
  | "client-abort";

/** The outcome of {@linkcode Admission.admit}: a backend, already `begin()`-ed, or a refusal. */
export type Admitted = Backend | Refusal;

/** Options for {@linkcode Admission}. */
export interface AdmissionOptions {
  /** The backends. */
  readonly pool: Pool;
  /** Picks among them; it skips full backends. */
  readonly policy: Policy;
  /** The limits. Default: {@linkcode NO_IN_FLIGHT_LIMITS}. */
  readonly limits?: InFlightLimits;
  /** Runs the queue timeouts. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
}

/** A request waiting for a slot. */
interface Waiter {
  readonly request: Request;
  readonly context: PickContext;
  readonly resolve: (admitted: Admitted) => void;
  readonly signal: AbortSignal;
  readonly onAbort: () => void;
  deadline: Deadline | undefined;
}

/** Picks a backend for each request, queueing it while every available backend is full. */
export class Admission {
  readonly #pool: Pool;
  readonly #policy: Policy;
  readonly #limits: InFlightLimits;
  readonly #deadlines: DeadlineQueue;
  readonly #clock: Clock;
  readonly #queue: Waiter[] = [];
  /** The pool's list the limits were last applied to (the pool replaces it on a change). */
  #applied: readonly Backend[] | undefined;

  /** @param options Pool, policy, limits and clock. */
  constructor(options: AdmissionOptions) {
    this.#pool = options.pool;
    this.#policy = options.policy;
    this.#limits = options.limits ?? NO_IN_FLIGHT_LIMITS;
    this.#clock = options.clock ?? systemClock;
    this.#deadlines = new DeadlineQueue({ clock: this.#clock });
  }

  /** Requests waiting for a slot. */
  get queuedCount(): number {
    return this.#queue.length;
  }

  /**
   * Picks a backend and `begin()`s it, or queues the request while every available backend
   * is full. Synchronous unless it queues.
   *
   * @param request The client's request.
   * @param context What the policy may know of the client.
   * @param signal Aborts the wait when the client goes away. Default: `request.signal`, read
   *   only when the request queues (reading it costs Deno an operation).
   * @returns The backend, or why there is none; a promise of either when queued.
   */
  admit(
    request: Request,
    context: PickContext,
    signal?: AbortSignal,
  ): Admitted | Promise<Admitted> {
    const backends = this.#applyLimits();
    // Waiting requests go first: a newcomer may not overtake them.
    if (this.#queue.length > 0) this.release();
    if (this.#queue.length === 0) {
      const backend = this.#policy.pick(backends, request, undefined, context);
      if (backend !== undefined) {
        backend.begin();
        return backend;
      }
    }
    if (!backends.some(isFullButAvailable)) return "no-backend";
    if (this.#queue.length >= this.#limits.queueSize) return "queue-full";
    const clientSignal = signal ?? request.signal;
    if (clientSignal.aborted) return "client-abort";
    return this.#enqueue(request, context, clientSignal);
  }

  /**
   * Says a slot may have freed (a request to some backend ended): admits waiting requests,
   * oldest first, while the policy finds them a backend. Cheap when none waits.
   */
  release(): void {
    const queue = this.#queue;
    while (queue.length > 0) {
      const waiter = queue[0] as Waiter;
      const backends = this.#pool.backends;
      const backend = this.#policy.pick(backends, waiter.request, undefined, waiter.context);
      if (backend === undefined) {
        // Nothing is full any more, only unavailable: waiting would be for nothing.
        if (!backends.some(isFullButAvailable)) this.#refuseAll("no-backend");
        return;
      }
      queue.shift();
      backend.begin();
      this.#settle(waiter, backend);
    }
  }

  #enqueue(request: Request, context: PickContext, signal: AbortSignal): Promise<Admitted> {
    return new Promise<Admitted>((resolve) => {
      const waiter: Waiter = {
        request,
        context,
        resolve,
        signal,
        onAbort: () => this.#leave(waiter, "client-abort"),
        deadline: undefined,
      };
      waiter.deadline = this.#deadlines.add(
        this.#clock.now() + this.#limits.queueTimeoutMs,
        (w: Waiter) => this.#leave(w, "queue-timeout"),
        waiter,
      );
      signal.addEventListener("abort", waiter.onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  /** Takes a waiter out of the queue with a refusal. */
  #leave(waiter: Waiter, refusal: Refusal): void {
    const index = this.#queue.indexOf(waiter);
    if (index < 0) return;
    this.#queue.splice(index, 1);
    this.#settle(waiter, refusal);
  }

  #refuseAll(refusal: Refusal): void {
    for (const waiter of this.#queue.splice(0)) this.#settle(waiter, refusal);
  }

  #settle(waiter: Waiter, admitted: Admitted): void {
    if (waiter.deadline !== undefined) this.#deadlines.cancel(waiter.deadline);
    waiter.deadline = undefined;
    waiter.signal.removeEventListener("abort", waiter.onAbort);
    waiter.resolve(admitted);
  }

  /** Gives every backend its limit, once per change of the pool's list. */
  #applyLimits(): readonly Backend[] {
    const backends = this.#pool.backends;
    if (backends === this.#applied) return backends;
    const { maxInFlight, byBackend } = this.#limits;
    for (const backend of backends) {
      backend.setMaxInFlight(byBackend.get(backend.url.href) ?? maxInFlight);
    }
    this.#applied = backends;
    return backends;
  }
}

function isFullButAvailable(backend: Backend): boolean {
  return backend.isAvailable && backend.isFull;
}
