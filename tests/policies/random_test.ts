import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { createRandom } from "../../lib/policies/random.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { seededRandom } from "./seeded_random.ts";

const REQUEST = new Request("http://127.0.0.1:9090/");

Deno.test("random: the same seed gives the same picks, another seed others", () => {
  const backends = Array.from(
    { length: 4 },
    (_, i) => new Backend(parseBackendUrl(`10.0.0.${i + 1}:80`)),
  );
  const run = (seed: number): number[] => {
    const policy = createRandom({ random: seededRandom(seed) });
    return Array.from({ length: 20 }, () => {
      const picked = policy.pick(backends, REQUEST);
      return picked === undefined ? -1 : backends.indexOf(picked);
    });
  };
  assertEquals(run(1), run(1));
  assert(run(1).join() !== run(2).join());
});

Deno.test("random: a draw maps onto the weights' cumulative ranges", () => {
  const backends = [3, 1].map((weight, i) =>
    new Backend(parseBackendUrl(`10.0.0.${i + 1}:80`), { weight })
  );
  const picks = [0, 0.74, 0.75, 0.999].map((draw) => {
    const picked = createRandom({ random: () => draw }).pick(backends, REQUEST);
    return picked === undefined ? -1 : backends.indexOf(picked);
  });
  assertEquals(picks, [0, 0, 1, 1]);
});
