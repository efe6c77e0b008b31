/**
 * Selection policies: which backend gets the next request.
 *
 * A policy is pure: it reads the backends' state and its own cursor, does no I/O and is never
 * async, so every policy runs the same conformance suite (`tests/policy_conformance_test.ts`).
 *
 * @module
 */
import type { Backend } from "./backend.ts";
import { createRoundRobin } from "./policies/round_robin.ts";

/** Chooses a backend for a request. */
export interface Policy {
  /** The policy's name as given in configuration. */
  readonly name: PolicyName;
  /**
   * Picks a healthy backend.
   *
   * @param backends The candidates, in configuration order (unhealthy ones are skipped).
   * @param request The client's request (for hashing policies).
   * @returns The chosen backend, or `undefined` when none is healthy.
   */
  pick(backends: readonly Backend[], request: Request): Backend | undefined;
}

/** The names of the available policies. */
export const POLICY_NAMES = ["round-robin"] as const;

/** A policy name. */
export type PolicyName = typeof POLICY_NAMES[number];

/**
 * Creates a policy by name.
 *
 * @param name The policy's name.
 * @returns A new policy with its own state.
 */
export function createPolicy(name: PolicyName): Policy {
  switch (name) {
    case "round-robin":
      return createRoundRobin();
  }
}
