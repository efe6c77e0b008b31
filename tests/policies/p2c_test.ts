import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { createP2c } from "../../lib/policies/p2c.ts";
import { assert, assertStrictEquals } from "../support/assert.ts";
import { seededRandom } from "./seeded_random.ts";

const REQUEST = new Request("http://127.0.0.1:9090/");

function makeBackends(count: number): Backend[] {
  return Array.from(
    { length: count },
    (_, i) => new Backend(parseBackendUrl(`10.0.0.${i + 1}:80`)),
  );
}

Deno.test("p2c: of the two drawn, the one with fewer in flight wins", () => {
  const backends = makeBackends(3);
  backends[0]?.begin();
  backends[0]?.begin();
  // Draws 0.1 then 0.9: backend 0, then the last of the remaining two (backend 2).
  const draws = [0.1, 0.9];
  const policy = createP2c({ random: () => draws.shift() ?? 0 });
  assertStrictEquals(policy.pick(backends, REQUEST), backends[2]);
});

Deno.test("p2c: never picks the most loaded of three backends", () => {
  const backends = makeBackends(3);
  for (let i = 0; i < 5; i++) backends[1]?.begin();
  const policy = createP2c({ random: seededRandom(3) });
  for (let i = 0; i < 200; i++) {
    assert(policy.pick(backends, REQUEST) !== backends[1], `pick ${i} chose the busy backend`);
  }
});

Deno.test("p2c: spreads load evenly when picks stay in flight (max - min <= 2 over 1000)", () => {
  const backends = makeBackends(5);
  const policy = createP2c({ random: seededRandom(11) });
  for (let i = 0; i < 1000; i++) policy.pick(backends, REQUEST)?.begin();
  const counts = backends.map((backend) => backend.inFlight);
  const spread = Math.max(...counts) - Math.min(...counts);
  assert(spread <= 2, `in flight per backend ${counts}: spread ${spread}`);
});
