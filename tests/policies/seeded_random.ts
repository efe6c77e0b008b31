/**
 * A seeded source of uniform random numbers for policy tests (mulberry32), so a random policy's
 * picks repeat exactly from run to run.
 *
 * @module
 */

/**
 * Creates a seeded random number generator.
 *
 * @param seed Any 32-bit integer.
 * @returns A function returning numbers in [0, 1), the same sequence for the same seed.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
