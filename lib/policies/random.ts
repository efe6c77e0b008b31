/**
 * Random: an available backend chosen at random in proportion to its weight.
 *
 * @module
 */
import { z } from "zod";
import type { Backend } from "../backend.ts";
import {
  definePolicy,
  isCandidate,
  type Policy,
  type PolicyDeps,
  type RegisteredPolicy,
} from "./policy.ts";
import { pickWeighted } from "./weighted_choice.ts";

/** `random`: no options. */
export const RANDOM: RegisteredPolicy<"random"> = definePolicy({
  name: "random",
  optionsSchema: z.object({}),
  create: (_options, deps) => createRandom(deps),
});

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
