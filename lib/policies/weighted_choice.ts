/**
 * A weighted random choice among backends, shared by `random` and `p2c`.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";

/**
 * Picks one of `candidates` with probability proportional to its weight.
 *
 * @example
 * ```ts
 * import { assertStrictEquals } from "@std/assert";
 * import { Backend, parseBackendUrl } from "../core/backend.ts";
 * import { pickWeighted } from "./weighted_choice.ts";
 * const a = new Backend(parseBackendUrl("10.0.0.1:80"), { weight: 3 });
 * const b = new Backend(parseBackendUrl("10.0.0.2:80"), { weight: 1 });
 * assertStrictEquals(pickWeighted([a, b], () => 0.7), a);
 * assertStrictEquals(pickWeighted([a, b], () => 0.8), b);
 * ```
 *
 * @param candidates The backends to choose from.
 * @param random Uniform random numbers in [0, 1).
 * @param weightOf A backend's effective weight (slow start). Default: its configured weight.
 * @returns The chosen backend, or `undefined` when there are none.
 */
export function pickWeighted(
  candidates: readonly Backend[],
  random: () => number,
  weightOf: (backend: Backend) => number = (backend) => backend.weight,
): Backend | undefined {
  const total = candidates.reduce((sum, backend) => sum + weightOf(backend), 0);
  let point = random() * total;
  for (const backend of candidates) {
    point -= weightOf(backend);
    if (point < 0) return backend;
  }
  // Rounding can leave the point at the very end: it belongs to the last backend.
  return candidates.at(-1);
}
