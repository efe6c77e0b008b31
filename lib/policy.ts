/**
 * Selection policies: which backend gets the next request. The interface lives in
 * `policies/policy.ts` and the names in `policies/names.ts`, so a policy's own file never
 * imports this one.
 *
 * @module
 */
import type { Policy } from "./policies/policy.ts";
import type { PolicyName } from "./policies/names.ts";
import { createRoundRobin } from "./policies/round_robin.ts";

export { POLICY_NAMES, type PolicyName } from "./policies/names.ts";
export type { Policy } from "./policies/policy.ts";

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
