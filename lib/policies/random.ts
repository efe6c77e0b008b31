/**
 * Random: an available backend chosen at random in proportion to its weight.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import { isCandidate, type Policy, type PolicyDeps } from "./policy.ts";
import { pickWeighted } from "./weighted_choice.ts";

/**
 * Creates a weighted random policy.
 *
 * @param deps The source of randomness.
 * @returns A random policy.
 */
export function createRandom(deps: PolicyDeps): Policy {
  return {
    name: "random",
    pick(
      backends: readonly Backend[],
      _request: Request,
      exclude?: ReadonlySet<Backend>,
    ): Backend | undefined {
      const candidates = backends.filter((b) => isCandidate(b, exclude));
      return pickWeighted(candidates, deps.random, deps.weightOf);
    },
  };
}
