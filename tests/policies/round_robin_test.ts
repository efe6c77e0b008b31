import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { createRoundRobin } from "../../lib/policies/round_robin.ts";
import { assertEquals } from "../support/assert.ts";

const REQUEST = new Request("http://127.0.0.1:9090/");

function weighted(weights: readonly number[]): Backend[] {
  return weights.map((weight, i) => new Backend(parseBackendUrl(`10.0.0.${i + 1}:80`), { weight }));
}

function names(backends: readonly Backend[], count: number): string {
  const policy = createRoundRobin();
  const letters = "abcdefgh";
  return Array.from({ length: count }, () => {
    const picked = policy.pick(backends, REQUEST);
    return picked === undefined ? "-" : letters[backends.indexOf(picked)];
  }).join(" ");
}

Deno.test("round-robin: weights 5,1,1 interleave as nginx's smooth algorithm does", () => {
  const backends = weighted([5, 1, 1]);
  assertEquals(names(backends, 14), "a a b a c a a a a b a c a a");
});

Deno.test("round-robin: weights 2,1 give a b a, repeating", () => {
  assertEquals(names(weighted([2, 1]), 6), "a b a a b a");
});

Deno.test("round-robin: a weight change takes effect at the next pick", () => {
  const backends = weighted([1, 1]);
  const policy = createRoundRobin();
  const pick = (): number => {
    const picked = policy.pick(backends, REQUEST);
    return picked === undefined ? -1 : backends.indexOf(picked);
  };
  assertEquals([pick(), pick()], [0, 1]);
  backends[1]?.setWeight(3);
  assertEquals([pick(), pick(), pick(), pick()], [1, 0, 1, 1]);
});

Deno.test("round-robin: an excluded backend is passed over and the order resumes", () => {
  const backends = weighted([1, 1, 1]);
  const policy = createRoundRobin();
  const tried = new Set([backends[0]].filter((b) => b !== undefined));
  assertEquals(policy.pick(backends, REQUEST, tried), backends[1]);
  assertEquals(policy.pick(backends, REQUEST), backends[2]);
  assertEquals(policy.pick(backends, REQUEST), backends[0]);
});
