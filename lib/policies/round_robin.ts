/**
 * Round-robin: each available (healthy, not draining) backend in turn, weighted with nginx's
 * smooth algorithm so weights 5,1,1 give a a b a c a a rather than five a's in a row.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import { Rotation } from "../core/shared_state.ts";
import { configuredWeight, type Policy, type PolicyDeps } from "./policy.ts";

/**
 * Creates a round-robin policy.
 *
 * Each pick adds every candidate's weight to its current weight, takes the highest (ties go to
 * the first at or after the cursor) and subtracts the candidates' total from it: nginx's smooth
 * weighted round-robin. With equal weights this is plain round-robin from the cursor. When the
 * available backends or their weights change, the current weights restart from zero while the
 * cursor stays, so a backend that turns unhealthy is skipped without shifting the others.
 *
 * The cursor and current weights live in a {@linkcode Rotation}, by pool position, and a pick
 * holds its lock: with the balancer's shared rotation, the picks of every isolate are one
 * sequence, so a client sees with `--workers N` exactly the order one isolate gives. (A
 * precomputed schedule indexed by a shared counter would pick without a lock, but it cannot
 * follow slow start's continuously changing weights or keep the "restart on change, cursor
 * stays" rule without the same shared state; the lock is held for one pass over the pool.)
 * Positions rather than backend objects key the state, as each isolate has its own objects for
 * the same pool; the signature of the available positions and their configured weights tells
 * when to restart.
 *
 * Weights are read through `deps.weightOf` at each pick, so a backend that slow start is ramping
 * up gets a share that grows with its effective weight; only the configured weights (and the
 * available set) restart the current weights.
 *
 * @param deps `weightOf`, the effective weight (default: the configured weight), and the
 *   rotation (default: a private one).
 * @returns A round-robin policy.
 */
export function createRoundRobin(deps: Pick<PolicyDeps, "weightOf" | "rotation"> = {}): Policy {
  const weightOf = deps.weightOf ?? configuredWeight;
  const rotation = deps.rotation ?? new Rotation();
  // Each backend's availability, read once per pick (one atomic load each).
  let isUp = new Uint8Array(8);
  return {
    name: "round-robin",
    pick(
      backends: readonly Backend[],
      _request: Request,
      exclude?: ReadonlySet<Backend>,
    ): Backend | undefined {
      const count = backends.length;
      if (count > isUp.length) isUp = new Uint8Array(count * 2);
      let signature = FNV_OFFSET;
      for (let index = 0; index < count; index++) {
        const backend = backends[index] as Backend;
        const isAvailable = backend.isAvailable;
        isUp[index] = isAvailable ? 1 : 0;
        if (!isAvailable) continue;
        signature = Math.imul(signature ^ index, FNV_PRIME);
        signature = Math.imul(signature ^ ((backend.weight * 1000) | 0), FNV_PRIME);
      }
      // A pick with backends excluded is a retry: the round already happened when the failed
      // backend was picked, so the turn passes to the next candidate without a new round of
      // weights (which would hand that candidate a second turn in a row).
      const isRetry = exclude !== undefined && exclude.size > 0;
      rotation.acquire();
      try {
        rotation.adopt(signature, count);
        const cursor = count === 0 ? 0 : rotation.cursor % count;
        let best: Backend | undefined;
        let bestIndex = 0;
        let bestWeight = -Infinity;
        let total = 0;
        // Walking from the cursor makes ties go to the next backend in pool order.
        for (let step = 0; step < count; step++) {
          const index = (cursor + step) % count;
          if (isUp[index] === 0) continue;
          const backend = backends[index] as Backend;
          const effective = weightOf(backend);
          total += effective;
          // isCandidate(), with availability already read.
          if (backend.isFull || (isRetry && exclude.has(backend))) continue;
          const weight = rotation.weightAt(index) + (isRetry ? 0 : effective);
          rotation.setWeightAt(index, weight);
          if (weight > bestWeight) {
            best = backend;
            bestIndex = index;
            bestWeight = weight;
          }
        }
        if (best === undefined) return undefined;
        // A retry charges the full round too, so the pick after it starts a fresh turn.
        rotation.setWeightAt(bestIndex, bestWeight - total);
        rotation.cursor = (bestIndex + 1) % count;
        return best;
      } finally {
        rotation.release();
      }
    },
  };
}

const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 16777619;
