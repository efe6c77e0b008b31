/**
 * Round-robin: each available (healthy, not draining) backend in turn, as the seed balancer did.
 *
 * @module
 */
import type { Backend } from "../backend.ts";
import type { Policy } from "./policy.ts";

/**
 * Creates a round-robin policy. The cursor advances past the backend it picked, so a backend
 * that turns unhealthy is skipped without shifting the order of the others.
 *
 * @returns A round-robin policy with its own cursor.
 */
export function createRoundRobin(): Policy {
  let cursor = 0;
  return {
    name: "round-robin",
    pick(
      backends: readonly Backend[],
      _request: Request,
      exclude?: ReadonlySet<Backend>,
    ): Backend | undefined {
      const count = backends.length;
      for (let step = 0; step < count; step++) {
        const index = (cursor + step) % count;
        const backend = backends[index];
        if (backend?.isAvailable && exclude?.has(backend) !== true) {
          cursor = (index + 1) % count;
          return backend;
        }
      }
      return undefined;
    },
  };
}
