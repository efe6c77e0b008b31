/**
 * One suite every registered selection policy runs (as Hono runs one router suite over every
 * router). Registering a policy without an expected sequence below is a type error.
 */
import { DEFAULT_BALANCER_CONFIG } from "../../lib/config/config.ts";
import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import {
  createPolicy as createRealPolicy,
  type PickContext,
  type Policy,
  POLICY_NAMES,
  type PolicyName,
} from "../../lib/policies/registry.ts";
import { seededRandom } from "./seeded_random.ts";
import { assert, assertEquals, assertStrictEquals } from "../support/assert.ts";

const REQUEST = new Request("http://127.0.0.1:9090/some/path?q=1");

/** A policy whose randomness is seeded, so its picks repeat from run to run. */
function createPolicy(name: PolicyName): Policy {
  return createRealPolicy(name, DEFAULT_BALANCER_CONFIG, { random: seededRandom(7) });
}

/** The `i`th of many different clients, so a hashing policy sees many keys. */
function contextFor(i: number): PickContext {
  return { clientIp: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` };
}

function makeBackends(count: number): Backend[] {
  return Array.from(
    { length: count },
    (_, i) => new Backend(parseBackendUrl(`10.0.0.${i + 1}:80`)),
  );
}

/** Picks `count` times and returns the indexes of the chosen backends (-1 for none). */
function pickIndexes(name: PolicyName, backends: readonly Backend[], count: number): number[] {
  const policy = createPolicy(name);
  return Array.from({ length: count }, (_, i) => {
    const picked = policy.pick(backends, REQUEST, undefined, contextFor(i));
    return picked === undefined ? -1 : backends.indexOf(picked);
  });
}

/**
 * Each policy's exact picks over 4 healthy equal-weight backends, then over the same backends
 * with index 1 unhealthy (a fresh policy each time).
 */
const EXPECTED_SEQUENCES: Readonly<
  Record<PolicyName, { readonly allHealthy: number[]; readonly oneDown: number[] }>
> = {
  "round-robin": {
    allHealthy: [0, 1, 2, 3, 0, 1, 2, 3],
    oneDown: [0, 2, 3, 0, 2, 3, 0, 2],
  },
  // With nothing in flight every backend ties, and ties go round-robin.
  "least-in-flight": {
    allHealthy: [0, 1, 2, 3, 0, 1, 2, 3],
    oneDown: [0, 2, 3, 0, 2, 3, 0, 2],
  },
  // Seeded randomness (seed 7): the exact draws are pinned so a change to them is seen.
  random: {
    allHealthy: [0, 0, 3, 2, 2, 1, 1, 0],
    oneDown: [0, 0, 3, 3, 2, 2, 2, 0],
  },
  p2c: {
    allHealthy: [0, 3, 2, 1, 2, 1, 3, 0],
    oneDown: [0, 3, 2, 2, 2, 0, 3, 0],
  },
  // Client i hashes to the same backend both times unless it was on the one now down.
  hash: {
    allHealthy: [0, 3, 1, 3, 3, 1, 1, 0],
    oneDown: [0, 3, 2, 3, 3, 2, 2, 0],
  },
  // Requests without the affinity cookie go round-robin.
  cookie: {
    allHealthy: [0, 1, 2, 3, 0, 1, 2, 3],
    oneDown: [0, 2, 3, 0, 2, 3, 0, 2],
  },
};

for (const name of POLICY_NAMES) {
  Deno.test(`${name}: pick() from an empty pool returns undefined`, () => {
    assertStrictEquals(createPolicy(name).pick([], REQUEST), undefined);
  });

  Deno.test(`${name}: pick() returns undefined when every backend is unhealthy`, () => {
    const backends = makeBackends(3);
    for (const backend of backends) backend.setHealth("unhealthy");
    assertEquals(pickIndexes(name, backends, 6), [-1, -1, -1, -1, -1, -1]);
  });

  Deno.test(`${name}: pick() follows its sequence over a fixed pool`, () => {
    const expected = EXPECTED_SEQUENCES[name];
    const backends = makeBackends(4);
    assertEquals(pickIndexes(name, backends, expected.allHealthy.length), expected.allHealthy);
    backends[1]?.setHealth("unhealthy");
    assertEquals(pickIndexes(name, backends, expected.oneDown.length), expected.oneDown);
  });

  Deno.test(`${name}: pick() skips unhealthy backends under every mix of health`, () => {
    const backends = makeBackends(4);
    for (let mask = 0; mask < 1 << backends.length; mask++) {
      backends.forEach((backend, i) =>
        backend.setHealth((mask >> i) & 1 ? "healthy" : "unhealthy")
      );
      const policy = createPolicy(name);
      for (let round = 0; round < 12; round++) {
        const picked = policy.pick(backends, REQUEST, undefined, contextFor(round));
        if (mask === 0) {
          assertStrictEquals(picked, undefined);
        } else {
          assert(picked !== undefined, `mask ${mask}: a healthy backend exists`);
          assert(backends.includes(picked), `mask ${mask}: picks from the list given`);
          assert(picked.isHealthy, `mask ${mask}: picked ${picked.name}, which is unhealthy`);
        }
      }
    }
  });

  Deno.test(`${name}: pick() skips draining backends and picks them again once undrained`, () => {
    const backends = makeBackends(3);
    backends[0]?.setDraining(true);
    backends[2]?.setDraining(true);
    const policy = createPolicy(name);
    for (let round = 0; round < 6; round++) {
      assertStrictEquals(policy.pick(backends, REQUEST), backends[1]);
    }
    backends[1]?.setDraining(true);
    assertStrictEquals(policy.pick(backends, REQUEST), undefined);
    for (const backend of backends) backend.setDraining(false);
    const seen = new Set(
      Array.from(
        { length: 60 },
        (_, i) => policy.pick(backends, REQUEST, undefined, contextFor(i)),
      ),
    );
    assertEquals(seen.size, 3);
  });

  Deno.test(`${name}: pick() never returns an excluded backend`, () => {
    const backends = makeBackends(3);
    const policy = createPolicy(name);
    const tried = new Set([backends[0], backends[2]].filter((b) => b !== undefined));
    for (let round = 0; round < 6; round++) {
      assertStrictEquals(policy.pick(backends, REQUEST, tried, contextFor(round)), backends[1]);
    }
    backends[1]?.setHealth("unhealthy");
    assertStrictEquals(policy.pick(backends, REQUEST, tried), undefined);
    assertStrictEquals(policy.pick(backends, REQUEST, new Set(backends)), undefined);
  });

  Deno.test(`${name}: pick() brings a recovered backend back`, () => {
    const backends = makeBackends(2);
    const policy = createPolicy(name);
    backends[0]?.setHealth("unhealthy");
    backends[1]?.setHealth("unhealthy");
    assertStrictEquals(policy.pick(backends, REQUEST), undefined);
    backends[1]?.setHealth("healthy");
    assertStrictEquals(policy.pick(backends, REQUEST), backends[1]);
  });

  Deno.test(`${name}: pick() over 10k requests respects weights 1,2,3,4 within 10%`, () => {
    const backends = [1, 2, 3, 4].map((weight, i) =>
      new Backend(parseBackendUrl(`10.0.0.${i + 1}:80`), { weight })
    );
    const policy = createPolicy(name);
    const counts = [0, 0, 0, 0];
    const picks = 10_000;
    for (let i = 0; i < picks; i++) {
      const picked = policy.pick(backends, REQUEST, undefined, contextFor(i));
      assert(picked !== undefined);
      const index = backends.indexOf(picked);
      counts[index] = (counts[index] ?? 0) + 1;
    }
    backends.forEach((backend, i) => {
      const expected = (picks * backend.weight) / 10;
      const got = counts[i] ?? 0;
      assert(
        Math.abs(got - expected) <= expected * 0.1,
        `weight ${backend.weight}: ${got} picks, expected ${expected} (counts ${counts})`,
      );
    });
  });

  Deno.test(`${name}: pick() never returns an excluded backend over many requests`, () => {
    const backends = makeBackends(5);
    const policy = createPolicy(name);
    const tried = new Set([backends[1], backends[3]].filter((b) => b !== undefined));
    for (let i = 0; i < 500; i++) {
      const picked = policy.pick(backends, REQUEST, tried, contextFor(i));
      assert(picked !== undefined && !tried.has(picked), `request ${i}: picked an excluded one`);
    }
  });

  Deno.test(`${name}: pick() is synchronous and leaves backend state alone`, () => {
    const backends = makeBackends(3);
    const policy = createPolicy(name);
    assertEquals(policy.name, name);
    const picked: unknown = policy.pick(backends, REQUEST);
    assert(!(picked instanceof Promise));
    assertEquals(backends.map((b) => [b.inFlight, b.requests, b.health]), [
      [0, 0, "healthy"],
      [0, 0, "healthy"],
      [0, 0, "healthy"],
    ]);
  });
}

Deno.test("round-robin: 30 picks over 3 backends land 10/10/10 in order", () => {
  const indexes = pickIndexes("round-robin", makeBackends(3), 30);
  assertEquals(indexes, Array.from({ length: 30 }, (_, i) => i % 3));
  const counts = [0, 0, 0];
  for (const index of indexes) counts[index] = (counts[index] ?? 0) + 1;
  assertEquals(counts, [10, 10, 10]);
});

Deno.test("round-robin: a backend that goes down is skipped without shifting the others", () => {
  const backends = makeBackends(3);
  const policy = createPolicy("round-robin");
  const next = () => {
    const picked = policy.pick(backends, REQUEST);
    return picked === undefined ? -1 : backends.indexOf(picked);
  };
  assertEquals([next(), next()], [0, 1]);
  backends[1]?.setHealth("unhealthy");
  assertEquals([next(), next(), next(), next()], [2, 0, 2, 0]);
  backends[1]?.setHealth("healthy");
  assertEquals([next(), next(), next()], [1, 2, 0]);
});

Deno.test("round-robin: each policy instance keeps its own cursor", () => {
  const backends = makeBackends(3);
  const first = createPolicy("round-robin");
  const second = createPolicy("round-robin");
  assertStrictEquals(first.pick(backends, REQUEST), backends[0]);
  assertStrictEquals(first.pick(backends, REQUEST), backends[1]);
  assertStrictEquals(second.pick(backends, REQUEST), backends[0]);
});
