/**
 * The names of the selection policies, apart from their code so that configuration can validate
 * a name without loading any policy.
 *
 * @module
 */

/** The names of the available policies. */
export const POLICY_NAMES = ["round-robin"] as const;

/** A policy name. */
export type PolicyName = typeof POLICY_NAMES[number];
