/**
 * Selection policies: which backend gets the next request. The interface lives in
 * `policies/policy.ts`, the list in `policies/registry.ts` and the names in
 * `policies/names.ts`, so a policy's own file never imports this one.
 *
 * @module
 */
import type { Policy, PolicyDeps, PolicySettings } from "./policies/policy.ts";
import type { PolicyName } from "./policies/names.ts";
import { POLICY_REGISTRY } from "./policies/registry.ts";

export { POLICY_NAMES, type PolicyName } from "./policies/names.ts";
export type { PickContext, Policy, PolicySettings } from "./policies/policy.ts";

/**
 * Creates a policy by name.
 *
 * @param name The policy's name.
 * @param settings The settings its options come from (`hashKey`). Default: none.
 * @param deps Randomness. Default: `Math.random`.
 * @returns A new policy with its own state.
 * @throws {RangeError} When the settings break the policy's options schema.
 */
export function createPolicy(
  name: PolicyName,
  settings: PolicySettings = {},
  deps: PolicyDeps = { random: Math.random },
): Policy {
  const definition = POLICY_REGISTRY.find((policy) => policy.name === name);
  if (definition === undefined) {
    throw new RangeError(`Invalid --policy "${name}": must be one of the registered policies`);
  }
  return definition.create(settings, deps);
}
