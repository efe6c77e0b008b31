/**
 * The names of the selection policies, the default first. Configuration validates `--policy`
 * against them and the registry (`policies/registry.ts`) must have a factory for each: a new
 * policy is its file, its name here and one line there.
 *
 * @module
 */

/** The names of the available policies, the default first. */
export const POLICY_NAMES = [
  "round-robin",
  "least-in-flight",
  "random",
  "p2c",
  "hash",
  "cookie",
] as const;

/** A policy name. */
export type PolicyName = typeof POLICY_NAMES[number];
