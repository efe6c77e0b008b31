import { type RunJob, runOnce } from "../../load/run.ts";
import { createClosedScheduler, createRateScheduler } from "../../load/scheduler.ts";
import { latencySummary } from "../../load/stats.ts";
import type { Outcome, Transport, TransportFactory } from "../../load/transport.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { assertEquals, assertInstanceOf } from "../support/assert.ts";

const never = new AbortController().signal;

Deno.test("createRateScheduler() hands out slots at intended start times", async () => {
  const clock = new FakeClock(1000);
  const scheduler = createRateScheduler({
    clock,
    ratePerSecond: 100,
    stop: { kind: "count", total: 4 },
  });
  assertEquals(scheduler.acquire(never), 1000);
  const second = scheduler.acquire(never);
  assertInstanceOf(second, Promise);
  let resolved: number | undefined;
  void second.then((value) => resolved = value);
  await clock.advance(9);
  assertEquals(resolved, undefined);
  await clock.advance(1);
  assertEquals(resolved, 1010);
  const third = scheduler.acquire(never);
  await clock.advance(10);
  assertEquals(await third, 1020);
  await clock.advance(10);
  assertEquals(scheduler.acquire(never), 1030);
  assertEquals(await scheduler.acquire(never), undefined);
  assertEquals(scheduler.dueBy(clock.now()), 4);
});

Deno.test("createRateScheduler() gives overdue slots their planned time, not the send time", async () => {
  const clock = new FakeClock();
  const scheduler = createRateScheduler({
    clock,
    ratePerSecond: 100,
    stop: { kind: "time", durationMs: 50 },
  });
  assertEquals(scheduler.acquire(never), 0);
  await clock.advance(35);
  // Slots 10, 20 and 30 are overdue: each comes back at once with its planned time.
  assertEquals(scheduler.acquire(never), 10);
  assertEquals(scheduler.acquire(never), 20);
  assertEquals(scheduler.acquire(never), 30);
  const fourth = scheduler.acquire(never);
  await clock.advance(5);
  assertEquals(await fourth, 40);
  await clock.advance(10);
  assertEquals(await scheduler.acquire(never), undefined);
  assertEquals(scheduler.dueBy(clock.now()), 5);
});

Deno.test("createRateScheduler() releases parked users when aborted", async () => {
  const clock = new FakeClock();
  const scheduler = createRateScheduler({
    clock,
    ratePerSecond: 10,
    stop: { kind: "count", total: 100 },
  });
  const abort = new AbortController();
  scheduler.acquire(abort.signal);
  const waiting = [scheduler.acquire(abort.signal), scheduler.acquire(abort.signal)];
  abort.abort();
  assertEquals(await Promise.all(waiting), [undefined, undefined]);
  assertEquals(clock.pendingSleeps, 0);
});

Deno.test("createClosedScheduler() stops after the total or at the deadline", async () => {
  const clock = new FakeClock();
  const counted = createClosedScheduler({ clock, stop: { kind: "count", total: 2 } });
  assertEquals([counted.acquire(never), counted.acquire(never), counted.acquire(never)], [
    0,
    0,
    undefined,
  ]);
  const timed = createClosedScheduler({ clock, stop: { kind: "time", durationMs: 100 } });
  assertEquals(timed.acquire(never), 0);
  await clock.advance(100);
  assertEquals(timed.acquire(never), undefined);
  assertEquals(timed.dueBy(clock.now()), 1);
});

/** A transport whose every request takes `latencyMs` of fake time and honours the signal. */
function slowTransport(clock: FakeClock, latencyMs: number): TransportFactory {
  return (): Transport => ({
    resent: 0,
    async send(signal?: AbortSignal): Promise<Outcome> {
      try {
        await clock.sleep(latencyMs, signal);
        return { ok: true, status: 200, bodyBytes: 0 };
      } catch {
        return { ok: false, error: "network", message: "aborted" };
      }
    },
    close: () => Promise.resolve(),
  });
}

const REQUEST = {
  url: new URL("http://127.0.0.1:1/"),
  method: "GET",
  headers: [],
  keepAlive: true,
  timeoutMs: 1000,
} as const;

Deno.test("runOnce() open model times from intended starts and counts late, unsent and cut-off requests", async () => {
  const clock = new FakeClock();
  const job: RunJob = {
    request: REQUEST,
    load: { model: "open", ratePerSecond: 100, maxInFlight: 2 },
    stop: { kind: "time", durationMs: 100 },
    successStatuses: [[200, 399]],
    timeline: true,
  };
  const running = runOnce(job, { clock, createTransport: slowTransport(clock, 30) });
  await clock.advance(200);
  const stats = await running;
  // Two users, 30 ms per request, a slot every 10 ms: user A sends slots 0, 2, 4, 6 at 0, 30,
  // 60, 90; user B slots 1, 3, 5 at 10, 40, 70. Slots 5 and 6 are in flight at 100 ms.
  assertEquals(stats.requests, 5);
  assertEquals(stats.ok, 5);
  assertEquals(stats.cutOff, 2);
  // Slots 4, 5 and 6 started 20, 20 and 30 ms after their planned time (over the 10 ms grace).
  assertEquals(stats.late, 3);
  // Ten slots were due before 100 ms; seven started.
  assertEquals(stats.unsent, 3);
  assertEquals(stats.elapsedMs, 100);
  // Slots 4, 5 and 6 each waited for a user freed while both were busy: the in-flight cap, not
  // the generator, held them back, so they are timed from their planned start.
  assertEquals(stats.lateByGenerator, 0);
  // Responses from planned start to end: 30, 30, 40, 40, 50 ms. Censored lower bounds: slots 5
  // and 6 in flight at 100 ms (planned at 50 and 60: 50 and 40 ms) and slots 7, 8 and 9 never
  // sent (planned at 70, 80 and 90: 30, 20 and 10 ms late at the end).
  assertEquals(stats.censored, 5);
  const latency = latencySummary(stats);
  assertEquals(latency.count, 10);
  // Whole milliseconds: above 2048 µs the histogram keeps 3 significant digits.
  assertEquals([latency.min, latency.p50, latency.max].map((us) => Math.round(us / 1000)), [
    10,
    30,
    50,
  ]);
  assertEquals(stats.timeline?.map((bucket) => bucket.ok), [5]);
});

Deno.test("runOnce() closed model sends exactly the total over N users", async () => {
  const clock = new FakeClock();
  const job: RunJob = {
    request: REQUEST,
    load: { model: "closed", concurrency: 3 },
    stop: { kind: "count", total: 10 },
    successStatuses: [[200, 399]],
    timeline: false,
  };
  const running = runOnce(job, { clock, createTransport: slowTransport(clock, 10) });
  await clock.advance(100);
  const stats = await running;
  assertEquals(stats.requests, 10);
  assertEquals(stats.late, 0);
  assertEquals(stats.unsent, 0);
  // Rounds of 3, 3, 3 and 1 requests, 10 ms each.
  assertEquals(stats.elapsedMs, 40);
  assertEquals(Math.round(latencySummary(stats).max / 1000), 10);
});

Deno.test("runOnce() closed model with a duration cuts off what is in flight at the end", async () => {
  const clock = new FakeClock();
  const job: RunJob = {
    request: REQUEST,
    load: { model: "closed", concurrency: 2 },
    stop: { kind: "time", durationMs: 45 },
    successStatuses: [[200, 399]],
    timeline: false,
  };
  const running = runOnce(job, { clock, createTransport: slowTransport(clock, 10) });
  await clock.advance(100);
  const stats = await running;
  assertEquals(stats.requests, 8);
  assertEquals(stats.cutOff, 2);
  assertEquals(stats.elapsedMs, 45);
});
