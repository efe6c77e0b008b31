/**
 * What every selection policy is: the interface each file in `policies/` implements; the
 * registry (`policies/registry.ts`) creates them by name.
 *
 * A policy is pure: it reads the backends' state and its own cursor, does no I/O, is never
 * async and gets randomness injected, so every policy runs the same conformance suite
 * (`tests/policy_conformance_test.ts`).
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import type { Rotation } from "../core/shared_state.ts";

/** What a policy may know about a request beyond the `Request` itself. */
export interface PickContext {
  /** The client's address as the balancer saw it. Default: unknown. */
  readonly clientIp?: string;
}

/** Chooses a backend for a request. */
export interface Policy {
  /** The policy's name as given in configuration. */
  readonly name: string;
  /**
   * Picks an available (healthy, not draining) backend.
   *
   * Retries pass the whole pool again with the backends already tried in `exclude`, rather
   * than a filtered list, so a policy's position in the pool (round-robin's cursor) stays
   * meaningful and a failed backend does not starve the one after it.
   *
   * @param backends The whole pool, in configuration order (unavailable ones are skipped).
   * @param request The client's request (for hashing policies).
   * @param exclude Backends not to pick (already tried for this request). Default: none.
   * @param context The client's address, for hashing on it. Default: none.
   * @returns The chosen backend, or `undefined` when no available backend is left.
   */
  pick(
    backends: readonly Backend[],
    request: Request,
    exclude?: ReadonlySet<Backend>,
    context?: PickContext,
  ): Backend | undefined;
  /**
   * Header fields to add to the response the client gets from `backend` (the `cookie` policy's
   * `Set-Cookie`). Pure and synchronous like `pick()`; most policies do not have it.
   *
   * @param backend The backend that answered.
   * @param request The client's request.
   * @returns The fields to append, or `undefined` for none.
   */
  responseHeaders?(
    backend: Backend,
    request: Request,
  ): ReadonlyArray<readonly [name: string, value: string]> | undefined;
}

/**
 * The balancer settings policies read, shaped as `config/settings.ts` declares them (the whole
 * balancer configuration is one), so no policy keeps a default of its own.
 */
export interface PolicySettings {
  /** What `hash` hashes: `client-ip`, `path`, `header:NAME` or `cookie:NAME`. */
  readonly hashKey: string;
  /** The `cookie` policy's cookie. */
  readonly affinityCookie: {
    /** The cookie's name. */
    readonly name: string;
    /** The key it is signed with; none gives each policy a random key. */
    readonly secret?: string | undefined;
    /** The cookie's `Max-Age` in ms; 0 is a session cookie. */
    readonly maxAgeMs: number;
  };
}

/** What a policy is given rather than reaching for. */
export interface PolicyDeps {
  /** Uniform random numbers in [0, 1). */
  readonly random: () => number;
  /**
   * A backend's weight for this pick: slow start's ramp (`slow_start.ts`) gives a backend that
   * just came back less than its configured weight. Weighted policies read weights only through
   * it. Default: the configured weight.
   */
  readonly weightOf?: (backend: Backend) => number;
  /**
   * Round-robin's rotation (cursor and smooth weights): the balancer's shared one, so every
   * isolate's picks are one sequence. Default: a private one per policy.
   */
  readonly rotation?: Rotation;
}

/**
 * The configured weight: {@linkcode PolicyDeps.weightOf}'s default.
 *
 * @param backend A backend.
 * @returns Its weight.
 */
export function configuredWeight(backend: Backend): number {
  return backend.weight;
}

/**
 * Whether a policy may pick `backend`: available, not at its in-flight limit, not excluded.
 *
 * @param backend A backend of the pool.
 * @param exclude Backends already tried.
 * @returns Whether it is a candidate.
 */
export function isCandidate(backend: Backend, exclude: ReadonlySet<Backend> | undefined): boolean {
  return backend.isAvailable && !backend.isFull && exclude?.has(backend) !== true;
}
