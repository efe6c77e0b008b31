/**
 * Power of two random choices: two distinct available backends drawn at random (weighted), the
 * one with fewer requests in flight for its weight wins. Nearly as even as least-in-flight,
 * without every balancer isolate herding onto the same idle backend.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import { configuredWeight, isCandidate, type Policy, type PolicyDeps } from "./policy.ts";
import { pickWeighted } from "./weighted_choice.ts";

/**
 * Creates a power-of-two-choices policy.
 *
 * @param deps The source of randomness.
 * @returns A p2c policy.
 */
export function createP2c(deps: PolicyDeps): Policy {
  const weightOf = deps.weightOf ?? configuredWeight;
  return {
    name: "p2c",
    pick(
      backends: readonly Backend[],
      _request: Request,
      exclude?: ReadonlySet<Backend>,
    ): Backend | undefined {
      const candidates = backends.filter((b) => isCandidate(b, exclude));
      const first = pickWeighted(candidates, deps.random, weightOf);
      if (first === undefined || candidates.length === 1) return first;
      const second = pickWeighted(candidates.filter((b) => b !== first), deps.random, weightOf);
      if (second === undefined) return first;
      // On a tie the first draw wins, so an idle pool is split by weight.
      return second.inFlight / weightOf(second) < first.inFlight / weightOf(first) ? second : first;
    },
  };
}
