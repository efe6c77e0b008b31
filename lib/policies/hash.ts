/**
 * Hash: requests with the same key (client address, path, a header or a cookie) go to the same
 * backend over a consistent ring; requests without the key go round-robin.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import type { HashKey } from "../shared/hash_key.ts";
import { readHashKey } from "./hash_key.ts";
import { buildHashRing, type HashRing, lookupHashRing } from "./hash_ring.ts";
import { isCandidate, type PickContext, type Policy } from "./policy.ts";
import { createRoundRobin } from "./round_robin.ts";
import type { Rotation } from "../core/shared_state.ts";

/**
 * Creates a hash policy. The ring is rebuilt only when the pool's backends or weights change;
 * an unavailable or excluded backend's keys go to the next owner clockwise and come back when
 * it does.
 *
 * @param key What to hash.
 * @param rotation The rotation requests without the key take turns in. Default: a private one.
 * @returns A hash policy.
 */
export function createHash(key: HashKey, rotation?: Rotation): Policy {
  const keyless = createRoundRobin(rotation === undefined ? {} : { rotation });
  let ring: HashRing = buildHashRing([]);
  let built: ReadonlyArray<readonly [Backend, number]> = [];
  return {
    name: "hash",
    pick(
      backends: readonly Backend[],
      request: Request,
      exclude?: ReadonlySet<Backend>,
      context?: PickContext,
    ): Backend | undefined {
      const value = readHashKey(key, request, context);
      if (value === undefined) return keyless.pick(backends, request, exclude);
      const isSamePool = built.length === backends.length &&
        built.every(([backend, weight], i) => backends[i] === backend && backend.weight === weight);
      if (!isSamePool) {
        ring = buildHashRing(backends);
        built = backends.map((backend) => [backend, backend.weight] as const);
      }
      return lookupHashRing(ring, value, (backend) => isCandidate(backend, exclude));
    },
  };
}
