/**
 * Round-robin: each available (healthy, not draining) backend in turn, weighted with nginx's
 * smooth algorithm so weights 5,1,1 give a a b a c a a rather than five a's in a row.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import { configuredWeight, isCandidate, type Policy, type PolicyDeps } from "./policy.ts";

/**
 * Creates a round-robin policy.
 *
 * Each pick adds every candidate's weight to its current weight, takes the highest (ties go to
 * the first at or after the cursor) and subtracts the candidates' total from it: nginx's smooth
 * weighted round-robin. With equal weights this is plain round-robin from the cursor. When the
 * available backends or their weights change, the current weights restart from zero while the
 * cursor stays, so a backend that turns unhealthy is skipped without shifting the others.
 *
 * Weights are read through `deps.weightOf` at each pick, so a backend that slow start is ramping
 * up gets a share that grows with its effective weight; only the configured weights (and the
 * available set) restart the current weights.
 *
 * @param deps `weightOf`, the effective weight. Default: the configured weight.
 * @returns A round-robin policy with its own cursor and current weights.
 */
export function createRoundRobin(deps: Pick<PolicyDeps, "weightOf"> = {}): Policy {
  const weightOf = deps.weightOf ?? configuredWeight;
  let cursor = 0;
  let current = new Map<Backend, number>();
  let signature: ReadonlyArray<readonly [Backend, number]> = [];
  return {
    name: "round-robin",
    pick(
      backends: readonly Backend[],
      _request: Request,
      exclude?: ReadonlySet<Backend>,
    ): Backend | undefined {
      const available = backends.filter((backend) => backend.isAvailable);
      if (!isSameSignature(signature, available)) {
        signature = available.map((backend) => [backend, backend.weight] as const);
        current = new Map();
      }
      // A pick with backends excluded is a retry: the round already happened when the failed
      // backend was picked, so the turn passes to the next candidate without a new round of
      // weights (which would hand that candidate a second turn in a row).
      const isRetry = exclude !== undefined && exclude.size > 0;
      const count = backends.length;
      let best: Backend | undefined;
      let bestIndex = 0;
      let bestWeight = -Infinity;
      // Walking from the cursor makes ties go to the next backend in pool order.
      for (let step = 0; step < count; step++) {
        const index = (cursor + step) % count;
        const backend = backends[index];
        if (backend === undefined || !isCandidate(backend, exclude)) continue;
        const weight = (current.get(backend) ?? 0) + (isRetry ? 0 : weightOf(backend));
        current.set(backend, weight);
        if (weight > bestWeight) {
          best = backend;
          bestIndex = index;
          bestWeight = weight;
        }
      }
      if (best === undefined) return undefined;
      // A retry charges the full round too, so the pick after it starts a fresh turn.
      const total = available.reduce((sum, backend) => sum + weightOf(backend), 0);
      current.set(best, bestWeight - total);
      cursor = (bestIndex + 1) % count;
      return best;
    },
  };
}

function isSameSignature(
  signature: ReadonlyArray<readonly [Backend, number]>,
  available: readonly Backend[],
): boolean {
  return signature.length === available.length &&
    signature.every(([backend, weight], i) =>
      available[i] === backend && backend.weight === weight
    );
}
