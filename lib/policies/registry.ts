/**
 * Every selection policy, listed once. A new policy is one file exporting its `definePolicy`
 * result plus one line here; `POLICY_NAMES`, `--policy`'s rule and the conformance suite follow.
 *
 * @module
 */
import { COOKIE } from "./cookie.ts";
import { HASH } from "./hash.ts";
import { LEAST_IN_FLIGHT } from "./least_in_flight.ts";
import { P2C } from "./p2c.ts";
import { RANDOM } from "./random.ts";
import { ROUND_ROBIN } from "./round_robin.ts";

/** The registered policies; the first is the default. */
export const POLICY_REGISTRY = [ROUND_ROBIN, LEAST_IN_FLIGHT, RANDOM, P2C, HASH, COOKIE] as const;
