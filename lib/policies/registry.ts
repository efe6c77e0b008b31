/**
 * Every selection policy by name: one factory each. A new policy is its own file, its name in
 * `core/policy_names.ts` and one line here (the type makes a missing one a compile error); the
 * conformance suite then runs it.
 *
 * @module
 */
import type { PolicyName } from "../core/policy_names.ts";
import { HASH_KEY_RULE, parseHashKey } from "../shared/hash_key.ts";
import { createCookieAffinity } from "./cookie.ts";
import { createHash } from "./hash.ts";
import { createLeastInFlight } from "./least_in_flight.ts";
import { createP2c } from "./p2c.ts";
import type { Policy, PolicyDeps, PolicySettings } from "./policy.ts";
import { createRandom } from "./random.ts";
import { createRoundRobin } from "./round_robin.ts";

export { POLICY_NAMES, type PolicyName } from "../core/policy_names.ts";
export type { PickContext, Policy, PolicyDeps, PolicySettings } from "./policy.ts";

const FACTORIES: {
  readonly [Name in PolicyName]: (settings: PolicySettings, deps: PolicyDeps) => Policy;
} = {
  "round-robin": (_settings, deps) => createRoundRobin(deps),
  "least-in-flight": (_settings, deps) => createLeastInFlight(deps),
  random: (_settings, deps) => createRandom(deps),
  p2c: (_settings, deps) => createP2c(deps),
  hash: (settings, deps) => {
    const key = parseHashKey(settings.hashKey);
    if (key === undefined) {
      throw new RangeError(`Invalid --hash-key "${settings.hashKey}": ${HASH_KEY_RULE}`);
    }
    return createHash(key, deps.rotation);
  },
  cookie: ({ affinityCookie }, deps) =>
    createCookieAffinity({
      ...affinityCookie,
      ...(deps.rotation === undefined ? {} : { rotation: deps.rotation }),
    }),
};

/**
 * Creates a policy by name.
 *
 * @param name The policy's name.
 * @param settings The settings its options come from (the balancer configuration).
 * @param deps Randomness and weights. Default: `Math.random`, configured weights.
 * @returns A new policy with its own state.
 * @throws {RangeError} When `name` is no policy, or its settings break its rules.
 */
export function createPolicy(
  name: PolicyName,
  settings: PolicySettings,
  deps: PolicyDeps = { random: Math.random },
): Policy {
  const create = FACTORIES[name];
  if (create === undefined) {
    throw new RangeError(`Invalid --policy "${name}": must be one of the registered policies`);
  }
  return create(settings, deps);
}
