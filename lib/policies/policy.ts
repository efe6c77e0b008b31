/**
 * What every selection policy is: the interface each file in `policies/` implements.
 *
 * A policy is pure: it reads the backends' state and its own cursor, does no I/O and is never
 * async, so every policy runs the same conformance suite (`tests/policy_conformance_test.ts`).
 *
 * @module
 */
import type { Backend } from "../backend.ts";
import type { PolicyName } from "./names.ts";

/** Chooses a backend for a request. */
export interface Policy {
  /** The policy's name as given in configuration. */
  readonly name: PolicyName;
  /**
   * Picks a healthy backend.
   *
   * Retries pass the whole pool again with the backends already tried in `exclude`, rather
   * than a filtered list, so a policy's position in the pool (round-robin's cursor) stays
   * meaningful and a failed backend does not starve the one after it.
   *
   * @param backends The whole pool, in configuration order (unhealthy ones are skipped).
   * @param request The client's request (for hashing policies).
   * @param exclude Backends not to pick (already tried for this request). Default: none.
   * @returns The chosen backend, or `undefined` when no healthy backend is left.
   */
  pick(
    backends: readonly Backend[],
    request: Request,
    exclude?: ReadonlySet<Backend>,
  ): Backend | undefined;
}
