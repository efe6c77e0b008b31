/**
 * A consistent hash ring over a pool: each backend owns points on a 32-bit circle (more for a
 * higher weight) and a key goes to the first owner clockwise from its hash, so removing one of
 * N backends moves only the keys it owned, about 1/N of them.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";

/** Points per unit of weight: enough that shares stay within a few percent of the weights. */
const POINTS_PER_WEIGHT = 160;

/** A built ring: sorted points and the backend owning each. */
export interface HashRing {
  /** Point positions, ascending. */
  readonly points: Uint32Array;
  /** The owner of each point, index for index. */
  readonly owners: readonly Backend[];
}

/**
 * Builds the ring for a pool. Points hash from the backend's name, not its position, and two
 * backends' equal points are ordered by URL, so the ring depends only on which backends there
 * are: balancers that found the same pool in a different order (DNS answers, admin additions)
 * send every key to the same backend, and a backend keeps its points when others come or go.
 *
 * @param backends The whole pool.
 * @returns The ring.
 */
export function buildHashRing(backends: readonly Backend[]): HashRing {
  const entries: Array<readonly [number, Backend]> = [];
  for (const backend of backends) {
    const count = Math.max(1, Math.round(POINTS_PER_WEIGHT * backend.weight));
    for (let i = 0; i < count; i++) entries.push([hash32(`${backend.name}#${i}`), backend]);
  }
  entries.sort((a, b) =>
    a[0] - b[0] || (a[1].url.href < b[1].url.href ? -1 : a[1].url.href > b[1].url.href ? 1 : 0)
  );
  return {
    points: Uint32Array.from(entries, ([point]) => point),
    owners: entries.map(([, backend]) => backend),
  };
}

/**
 * The first backend clockwise from `key`'s hash that `isCandidate` accepts.
 *
 * @param ring The ring.
 * @param key The request's key.
 * @param isCandidate Whether a backend may be picked (available, not excluded).
 * @returns The backend, or `undefined` when none is a candidate.
 */
export function lookupHashRing(
  ring: HashRing,
  key: string,
  isCandidate: (backend: Backend) => boolean,
): Backend | undefined {
  const { points, owners } = ring;
  const target = hash32(key);
  let low = 0;
  let high = points.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((points[middle] ?? 0) < target) low = middle + 1;
    else high = middle;
  }
  for (let step = 0; step < owners.length; step++) {
    const owner = owners[(low + step) % owners.length];
    if (owner !== undefined && isCandidate(owner)) return owner;
  }
  return undefined;
}

/**
 * A 32-bit hash: FNV-1a, then murmur3's finalizer to spread nearby strings around the circle.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { hash32 } from "./hash_ring.ts";
 * assertEquals(hash32("a"), hash32("a"));
 * ```
 *
 * @param text What to hash.
 * @returns An unsigned 32-bit integer.
 */
export function hash32(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  }
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  return (hash ^ (hash >>> 16)) >>> 0;
}
