/**
 * The balancer's shared state as several isolates see it: each "isolate" here is its own set of
 * `Backend` objects, policy and admission over views of one `SharedArrayBuffer`, as
 * `SharedState.attach` gives a data-plane worker. (Real workers: `e2e/workers_shared_state_test.ts`.)
 */
import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { Admission } from "../../lib/data/admission.ts";
import { RetryBudget } from "../../lib/data/retry_budget.ts";
import type { Policy } from "../../lib/policies/registry.ts";
import { createLeastInFlight } from "../../lib/policies/least_in_flight.ts";
import { createRoundRobin } from "../../lib/policies/round_robin.ts";
import { Pool } from "../../lib/core/pool.ts";
import { SharedState } from "../../lib/core/shared_state.ts";
import { SlowStart } from "../../lib/policies/slow_start.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";

const REQUEST = new Request("http://lb/");
const NAMES = ["a", "b", "c", "d"] as const;
const urlOf = (i: number) => parseBackendUrl(`10.0.0.${i + 1}:80`);

/** One isolate's view: its own Backend objects over the shared slots, its own policy. */
interface Isolate {
  readonly pool: Pool;
  readonly policy: Policy;
  readonly slowStart: SlowStart;
}

function isolateOf(
  state: SharedState,
  slots: readonly number[],
  weights: readonly number[],
  clock: FakeClock,
): Isolate {
  const pool = new Pool(
    slots.map((slot, i) =>
      new Backend(urlOf(i), { weight: weights[i] ?? 1, shared: state.slot(slot) })
    ),
  );
  const slowStart = new SlowStart(clock);
  const policy = createRoundRobin({
    rotation: state.rotation,
    weightOf: slowStart.weigher(10_000),
  });
  return { pool, policy, slowStart };
}

function nameOf(backend: Backend | undefined): string {
  if (backend === undefined) return "-";
  return NAMES[Number(backend.url.hostname.split(".")[3]) - 1] ?? "?";
}

/** A balancer of `count` isolates over backends of `weights`; picks go round the isolates. */
function balancer(count: number, weights: readonly number[], clock: FakeClock) {
  const state = SharedState.create(8);
  const slots = weights.map(() => state.allocate().index);
  const isolates = Array.from(
    { length: count },
    (_, i) => isolateOf(i === 0 ? state : SharedState.attach(state.buffer), slots, weights, clock),
  );
  let turn = 0;
  return {
    state,
    isolates,
    /** The control plane's objects: the first isolate's. */
    control: isolates[0] as Isolate,
    pick(): string {
      const isolate = isolates[turn++ % count] as Isolate;
      return nameOf(isolate.policy.pick(isolate.pool.backends, REQUEST));
    },
    picks(n: number): string {
      return Array.from({ length: n }, () => this.pick()).join(" ");
    },
  };
}

Deno.test("round-robin over two isolates is one rotation: a b c a b c", () => {
  const lb = balancer(2, [1, 1, 1], new FakeClock());
  assertEquals(lb.picks(9), "a b c a b c a b c");
});

Deno.test("smooth weights 5,1,1 over three isolates: a a b a c a a, 50/10/10 of 70", () => {
  const lb = balancer(3, [5, 1, 1], new FakeClock());
  const picks = lb.picks(70).split(" ");
  assertEquals(picks.slice(0, 7).join(" "), "a a b a c a a");
  assertEquals(picks.join(" "), Array(10).fill("a a b a c a a").join(" "));
  const count = (name: string) => picks.filter((p) => p === name).length;
  assertEquals([count("a"), count("b"), count("c")], [50, 10, 10]);
});

Deno.test("two isolates pick exactly what one does through flips, drains, reweights and slow start", async () => {
  const clock = new FakeClock();
  const one = balancer(1, [3, 1, 1, 2], clock);
  const two = balancer(2, [3, 1, 1, 2], clock);
  const both = (change: (lb: ReturnType<typeof balancer>) => void) => {
    change(one);
    change(two);
  };
  const backend = (lb: ReturnType<typeof balancer>, isolate: number, i: number) =>
    lb.isolates[isolate]?.pool.backends[i] as Backend;
  const script: Array<() => void | Promise<void>> = [
    () => both((lb) => backend(lb, 0, 1).setHealth("unhealthy")),
    () => both((lb) => backend(lb, 0, 2).setDraining(true)),
    () => both((lb) => backend(lb, 0, 1).setHealth("healthy")), // returns: slow start ramps it
    () => clock.advance(5_000),
    () => both((lb) => lb.isolates.forEach((_, i) => backend(lb, i, 3).setWeight(5))),
    () => both((lb) => backend(lb, 0, 2).setDraining(false)),
    () => clock.advance(6_000),
  ];
  const seen: string[] = [];
  for (const step of script) {
    await step();
    const expected = one.picks(12);
    assertEquals(two.picks(12), expected);
    seen.push(expected);
  }
  assert(seen[0]?.includes("b") === false, "an unhealthy backend gets nothing");
  assert(!/[bc]/.test(seen[1] ?? ""), "b unhealthy, c draining: only a and d");
  assert(seen[2]?.includes("c") === false, "c still draining");
  assert(seen[6]?.includes("b") === true && seen[6]?.includes("c") === true, "all back");
});

Deno.test("least-in-flight sees the in-flight requests of every isolate", () => {
  const state = SharedState.create(4);
  const slots = [state.allocate(), state.allocate()];
  const view = (s: SharedState) =>
    slots.map((slot, i) => new Backend(urlOf(i), { shared: s.slot(slot.index) }));
  const mine = view(state);
  const theirs = view(SharedState.attach(state.buffer));
  // The other isolate has two requests on a; this one must send to b.
  (theirs[0] as Backend).begin();
  (theirs[0] as Backend).begin();
  const policy = createLeastInFlight({ rotation: state.rotation });
  assertEquals(nameOf(policy.pick(mine, REQUEST)), "b");
  assertEquals((mine[0] as Backend).inFlight, 2);
});

Deno.test("maxInFlight is the whole balancer's: a slot taken in one isolate is gone in the other", () => {
  const state = SharedState.create(2);
  const slot = state.allocate();
  const here = new Backend(urlOf(0), { shared: slot });
  const there = new Backend(urlOf(0), { shared: SharedState.attach(state.buffer).slot(0) });
  here.setMaxInFlight(2);
  there.setMaxInFlight(2);
  assert(here.tryBegin() && there.tryBegin());
  assert(!here.tryBegin() && !there.tryBegin(), "two in flight: both isolates are full");
  assert(here.isFull && there.isFull);
  here.end(false);
  assert(there.tryBegin(), "a slot freed in one isolate is taken in the other");
  assertEquals([here.localCounts.requests, there.localCounts.requests], [1, 2]);
});

Deno.test("the queue's size bounds the waiters of every isolate", async () => {
  const state = SharedState.create(2);
  const slot = state.allocate();
  const clock = new FakeClock();
  const limits = { maxInFlight: 1, byBackend: new Map(), queueSize: 1, queueTimeoutMs: 1_000 };
  const admissionOf = (s: SharedState) => {
    const pool = new Pool([new Backend(urlOf(0), { shared: s.slot(slot.index) })]);
    return new Admission({
      pool,
      policy: createRoundRobin({ rotation: s.rotation }),
      limits,
      clock,
      queue: s.queue,
    });
  };
  const here = admissionOf(state);
  const there = admissionOf(SharedState.attach(state.buffer));
  const first = here.admit(REQUEST, {});
  assert(first instanceof Backend);
  const waiting = there.admit(REQUEST, {});
  assert(waiting instanceof Promise, "the backend is full: the other isolate's request waits");
  assertEquals(here.admit(REQUEST, {}), "queue-full", "one waits already, in the other isolate");
  assertEquals(state.queue.waiting.value, 1);
  first.end(false);
  there.release();
  assert((await waiting) instanceof Backend);
  assertEquals(state.queue.waiting.value, 0);
});

Deno.test("the retry budget counts every isolate's requests and retries once", () => {
  const state = SharedState.create(1);
  const here = new RetryBudget({
    retryBudgetPercent: 20,
    retryBudgetMinPerSecond: 0,
    storage: state.retryBudget,
  });
  const there = new RetryBudget({
    retryBudgetPercent: 20,
    retryBudgetMinPerSecond: 0,
    storage: SharedState.attach(state.buffer).retryBudget,
  });
  for (let i = 0; i < 5; i++) here.recordRequest(0);
  for (let i = 0; i < 5; i++) there.recordRequest(0);
  // 20% of the balancer's 10 requests: two retries in all, wherever they are asked for.
  assert(here.tryRetry(0) && there.tryRetry(0));
  assert(!here.tryRetry(0) && !there.tryRetry(0));
  assertEquals([here.requestCount, there.retryCount], [10, 2]);
});

Deno.test("open connections are counted once against --max-connections", () => {
  const state = SharedState.create(1);
  const other = SharedState.attach(state.buffer);
  assert(state.connections.tryAcquire(2) && other.connections.tryAcquire(2));
  assert(!state.connections.tryAcquire(2), "two open in all");
  other.connections.release();
  assert(state.connections.tryAcquire(2));
  assert(state.connections.tryAcquire(0) && state.connections.value === 3, "0 is no limit");
});

Deno.test("health, drain and ejection written by the control plane are read by every isolate", () => {
  const state = SharedState.create(2);
  const control = new Backend(urlOf(0), { shared: state.allocate() });
  const worker = new Backend(urlOf(0), { shared: SharedState.attach(state.buffer).slot(0) });
  control.setHealth("unhealthy");
  assert(!worker.isAvailable && worker.health === "unhealthy");
  control.setHealth("healthy");
  control.setDraining(true);
  assert(!worker.isAvailable && worker.isDraining);
  control.setDraining(false);
  control.setEjection({ untilMs: 1234.5, count: 2, reason: "5xx" });
  assertEquals(worker.ejection, { untilMs: 1234.5, count: 2, reason: "5xx" });
  control.setEjection(undefined);
  assert(worker.isAvailable);
  assertEquals(worker.returnCount, 3, "each return into rotation counts, for slow start");
});

Deno.test("slots: fresh ones first, a freed one is reused last, and the capacity is named", () => {
  const state = SharedState.create(3);
  const [a, b, c] = [state.allocate(), state.allocate(), state.allocate()];
  assertEquals([a.index, b.index, c.index], [0, 1, 2]);
  b.begin(); // a request that outlives its backend's removal
  state.free(b);
  state.free(a);
  const reused = state.allocate("unhealthy", 1);
  assertEquals(reused.index, 1, "freed longest ago");
  assertEquals([reused.inFlight, reused.health, reused.returnCount], [0, "unhealthy", 1]);
  reused.end(); // the old request ends late: never a negative count
  assertEquals(reused.inFlight, 0);
  assertEquals(state.allocate().index, 0);
  const error = assertThrows(() => state.allocate(), RangeError);
  assertEquals(error.message, "Cannot add a backend: one balancer holds at most 3");
  assertThrows(() => state.slot(3), RangeError, 'Invalid backend slot "3": must be 0 to 2');
});

Deno.test("slow start ramps a returning backend on one time for every isolate", async () => {
  const state = SharedState.create(1);
  const control = new Backend(urlOf(0), { weight: 10, shared: state.allocate() });
  const worker = new Backend(urlOf(0), { weight: 10, shared: state.slot(0) });
  const clock = new FakeClock();
  // The worker's clock started 250 ms after the control plane's: its delta says so.
  const here = new SlowStart(clock);
  const there = new SlowStart({ now: () => clock.now() - 250 }, 250);
  control.setHealth("unhealthy");
  control.setHealth("healthy");
  await clock.advance(1_000);
  assertEquals(here.effectiveWeight(control, 10_000), 1, "the floor, 10%: the ramp starts now");
  await clock.advance(4_000);
  // The worker picks it first only now, yet it ramps from when the first isolate did.
  assertEquals(there.effectiveWeight(worker, 10_000), 4);
  assertEquals(here.effectiveWeight(control, 10_000), 4);
});
