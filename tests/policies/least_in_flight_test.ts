import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { createLeastInFlight } from "../../lib/policies/least_in_flight.ts";
import { assertEquals, assertStrictEquals } from "../support/assert.ts";

const REQUEST = new Request("http://127.0.0.1:9090/");

function makeBackends(weights: readonly number[]): Backend[] {
  return weights.map((weight, i) => new Backend(parseBackendUrl(`10.0.0.${i + 1}:80`), { weight }));
}

/** Puts `count` requests in flight on `backend`, as the handler does. */
function load(backend: Backend | undefined, count: number): void {
  for (let i = 0; i < count; i++) backend?.begin();
}

Deno.test("least-in-flight: picks the backend with the fewest requests in flight", () => {
  const backends = makeBackends([1, 1, 1]);
  load(backends[0], 3);
  load(backends[1], 1);
  load(backends[2], 2);
  assertStrictEquals(createLeastInFlight().pick(backends, REQUEST), backends[1]);
});

Deno.test("least-in-flight: ties are broken round-robin", () => {
  const backends = makeBackends([1, 1, 1]);
  load(backends[0], 5);
  const policy = createLeastInFlight();
  const picks = Array.from({ length: 4 }, () => {
    const picked = policy.pick(backends, REQUEST);
    return picked === undefined ? -1 : backends.indexOf(picked);
  });
  assertEquals(picks, [1, 2, 1, 2]);
});

Deno.test("least-in-flight: in-flight counts are weighed against weight", () => {
  const backends = makeBackends([1, 4]);
  load(backends[0], 1);
  load(backends[1], 3);
  // 1/1 against 3/4: the heavier backend is the less loaded one.
  assertStrictEquals(createLeastInFlight().pick(backends, REQUEST), backends[1]);
});

Deno.test("least-in-flight: the least loaded but excluded backend is passed over", () => {
  const backends = makeBackends([1, 1, 1]);
  load(backends[1], 2);
  load(backends[2], 1);
  const tried = new Set([backends[0]].filter((b) => b !== undefined));
  assertStrictEquals(createLeastInFlight().pick(backends, REQUEST, tried), backends[2]);
});

Deno.test("least-in-flight: a backend slow start is ramping counts at its effective weight", () => {
  const backends = makeBackends([1, 1, 1]);
  load(backends[0], 5);
  load(backends[1], 5);
  load(backends[2], 1);
  const ramping = backends[2];
  // At 10% of its weight, 1 request in flight weighs as 10: the others (5 each) are less loaded.
  const policy = createLeastInFlight({ weightOf: (b) => b === ramping ? 0.1 : b.weight });
  const picked = policy.pick(backends, REQUEST);
  assertEquals(picked === backends[0] || picked === backends[1], true);
  // At its full weight it is the least loaded.
  assertStrictEquals(createLeastInFlight().pick(backends, REQUEST), ramping);
});
