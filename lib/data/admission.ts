/**
 * Admission of a request to a backend under in-flight limits (`--max-in-flight`, a backend's
 * own `maxInFlight`): the policy skips a full backend (`isCandidate`), and when every
 * available backend is full the request waits in a bounded FIFO queue for a slot, woken when
 * any backend's in-flight count drops, until `--queue-timeout`; past `--queue-size` or the
 * timeout it is refused (the handler answers 503 with `Retry-After`). HAProxy's per-server
 * `maxconn` with its queue and `timeout queue` work the same way.
 *
 * Limits and queue are the whole balancer's: in-flight counts and the queue's length live in
 * shared memory (`shared_state.ts`), so with `--workers N` a backend never has more than its
 * limit in flight and no more than `--queue-size` requests wait, over every isolate. Each
 * isolate keeps its own waiters in FIFO order; while other isolates serve, it looks for a freed
 * slot every {@linkcode QUEUE_POLL_MS} as well as whenever one of its own requests ends.
 *
 * The picked backend is `tryBegin()`-ed here, right after the pick: the check against the limit
 * and the count are one atomic step, so two isolates (or two wake-ups) can never both take a
 * backend's last slot; one that loses the race picks again.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import { type Deadline, DeadlineQueue } from "../shared/deadlines.ts";
import type { PickContext, Policy } from "../policies/policy.ts";
import type { Pool } from "../core/pool.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { SharedQueue } from "../core/shared_state.ts";

/** How often an isolate with waiters looks for slots freed by other isolates, in ms. */
export const QUEUE_POLL_MS = 2;

/** The in-flight limits and queue bounds, as configured. */
export interface InFlightLimits {
  /** Requests each backend takes at once, over the whole balancer; 0 is no limit. */
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

/** The outcome of {@linkcode Admission.admit}: a backend, already begun, or a refusal. */
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
  /** The queue's whole-balancer count. Default: this admission's own. */
  readonly queue?: SharedQueue;
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
  readonly #shared: SharedQueue;
  /** Looks for slots other isolates freed while this one has waiters. */
  #isWatching = false;
  /** The pool's list the limits were last applied to (the pool replaces it on a change). */
  #applied: readonly Backend[] | undefined;

  /** @param options Pool, policy, limits and clock. */
  constructor(options: AdmissionOptions) {
    this.#pool = options.pool;
    this.#policy = options.policy;
    this.#limits = options.limits ?? NO_IN_FLIGHT_LIMITS;
    this.#clock = options.clock ?? systemClock;
    this.#deadlines = new DeadlineQueue({ clock: this.#clock });
    this.#shared = options.queue ?? new SharedQueue();
  }

  /** Requests waiting for a slot. */
  get queuedCount(): number {
    return this.#queue.length;
  }

  /**
   * Picks a backend and begins a request on it, or queues the request while every available backend
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
      const backend = this.#take(backends, request, context);
      if (backend !== undefined) return backend;
    }
    if (!backends.some(isFullButAvailable)) return "no-backend";
    const clientSignal = signal ?? request.signal;
    if (clientSignal.aborted) return "client-abort";
    const { queueSize } = this.#limits;
    if (queueSize <= 0 || !this.#shared.waiting.tryAcquire(queueSize)) return "queue-full";
    return this.#enqueue(request, context, clientSignal);
  }

  /**
   * Picks a backend with room and counts the request on it; a pick that loses the last slot to
   * another isolate between the pick and the count picks again, a bounded number of times.
   */
  #take(backends: readonly Backend[], request: Request, context: PickContext): Backend | undefined {
    for (let tries = 0; tries <= backends.length; tries++) {
      const backend = this.#policy.pick(backends, request, undefined, context);
      if (backend === undefined || backend.tryBegin()) return backend;
    }
    return undefined;
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
      const backend = this.#take(backends, waiter.request, waiter.context);
      if (backend === undefined) {
        // Nothing is full any more, only unavailable: waiting would be for nothing.
        if (!backends.some(isFullButAvailable)) this.#refuseAll("no-backend");
        return;
      }
      queue.shift();
      this.#settle(waiter, backend);
    }
  }

  /** While waiters are here and other isolates serve, looks for their freed slots. */
  #watchOthers(): void {
    if (this.#isWatching || this.#queue.length === 0 || !this.#shared.isShared) return;
    this.#isWatching = true;
    void this.#clock.sleep(QUEUE_POLL_MS).then(() => {
      this.#isWatching = false;
      this.release();
      this.#watchOthers();
    });
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
      this.#watchOthers();
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
    this.#shared.waiting.release();
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
