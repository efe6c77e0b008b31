/**
 * Least-in-flight: the available backend with the fewest requests in flight for its weight;
 * ties are broken by (smooth weighted) round-robin, so an idle pool is spread evenly.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import { configuredWeight, isCandidate, type Policy, type PolicyDeps } from "./policy.ts";
import { createRoundRobin } from "./round_robin.ts";

/**
 * Creates a least-in-flight policy. A backend's load is its in-flight count over its weight, so
 * a weight-2 backend is as loaded with 2 requests as a weight-1 backend with 1. The weight is
 * the effective one (`deps.weightOf`): a backend slow start is ramping up takes its share of
 * the concurrency in step with its weight instead of every request while it has none.
 *
 * @param deps `weightOf`, the effective weight (default: the configured weight), and the
 *   tie-break's rotation (default: a private one).
 * @returns A least-in-flight policy.
 */
export function createLeastInFlight(
  deps: Pick<PolicyDeps, "weightOf" | "rotation"> = {},
): Policy {
  const weightOf = deps.weightOf ?? configuredWeight;
  const tieBreaker = createRoundRobin(deps);
  const load = (backend: Backend) => backend.inFlight / weightOf(backend);
  return {
    name: "least-in-flight",
    pick(
      backends: readonly Backend[],
      request: Request,
      exclude?: ReadonlySet<Backend>,
    ): Backend | undefined {
      let least = Infinity;
      for (const backend of backends) {
        if (isCandidate(backend, exclude)) least = Math.min(least, load(backend));
      }
      if (least === Infinity) return undefined;
      // The round-robin sees the whole pool with the busier backends excluded, so its cursor
      // and current weights carry over from one pick to the next.
      const busier = new Set(backends.filter((backend) => load(backend) > least));
      for (const backend of exclude ?? []) busier.add(backend);
      return tieBreaker.pick(backends, request, busier);
    },
  };
}
