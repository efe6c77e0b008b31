/**
 * The names of the selection policies, derived from the registry, for configuration to
 * validate `--policy` against. Policy files never import this module, so there is no cycle.
 *
 * @module
 */
import { POLICY_REGISTRY } from "./registry.ts";

/** A policy name. */
export type PolicyName = typeof POLICY_REGISTRY[number]["name"];

/** The names of the available policies, the default first. */
export const POLICY_NAMES: readonly [PolicyName, ...PolicyName[]] = [
  POLICY_REGISTRY[0].name,
  ...POLICY_REGISTRY.slice(1).map((policy) => policy.name),
];
