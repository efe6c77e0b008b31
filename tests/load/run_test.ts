import { LiveStats } from "../../load/live_stats.ts";
import { systemClock } from "../../lib/shared/clock.ts";
import { toWireJob } from "../../load/protocol.ts";
import { type RunJob, runOnce, splitJob } from "../../load/run.ts";
import { latencySummary, type RunStats } from "../../load/stats.ts";
import type { RequestSpec } from "../../load/transport.ts";
import { selectTransportFactory, type TransportMode } from "../../load/transports.ts";
import { runLoadWorker } from "../../load/worker.ts";
import { WorkerPool } from "../../load/worker_pool.ts";
import { assert, assertEquals, fail } from "../support/assert.ts";
import {
  refusedUrl,
  startBackend,
  startQuarterFailingBackend,
  startSilentServer,
} from "./load_fixtures.ts";

function request(url: URL, timeoutMs = 5000): RequestSpec {
  return { url, method: "GET", headers: [], keepAlive: true, timeoutMs };
}

function closedJob(url: URL, concurrency: number, total: number, timeoutMs?: number): RunJob {
  return {
    request: request(url, timeoutMs),
    load: { model: "closed", concurrency },
    stop: { kind: "count", total },
    successStatuses: [[200, 399]],
    timeline: false,
  };
}

function run(job: RunJob, mode: TransportMode): Promise<RunStats> {
  const createTransport = selectTransportFactory(job.request.url, mode);
  return runOnce(job, { clock: systemClock, createTransport });
}

for (const mode of ["http1", "fetch"] as const) {
  Deno.test(`runOnce() over ${mode} counts exactly against a backend failing every 4th request`, async () => {
    await using backend = startQuarterFailingBackend();
    const stats = await run(closedJob(backend.url, 4, 40), mode);
    assertEquals(backend.requests(), 40);
    assertEquals(stats.requests, 40);
    assertEquals(stats.ok, 30);
    assertEquals(stats.errors, 10);
    assertEquals(stats.statuses, { "200": 30, "500": 10 });
    assertEquals(stats.errorSamples, [{ message: "HTTP 500 Internal Server Error", count: 10 }]);
    assertEquals(stats.bodyBytes, 30 * 2 + 10 * 4);
  });

  Deno.test(`runOnce() over ${mode} classifies a server that never answers as timeout`, async () => {
    await using server = startSilentServer();
    const stats = await run(closedJob(server.url, 2, 2, 100), mode);
    assertEquals(stats.networkErrors, { timeout: 2, refused: 0, reset: 0, network: 0 });
    assertEquals(stats.errors, 2);
    assertEquals(stats.ok, 0);
  });

  Deno.test(`runOnce() over ${mode} classifies a closed port as refused`, async () => {
    const stats = await run(closedJob(refusedUrl(), 1, 3, 1000), mode);
    assertEquals(stats.networkErrors, { timeout: 0, refused: 3, reset: 0, network: 0 });
    assertEquals(stats.errors, 3);
  });
}

Deno.test("runOnce() records requests in flight when a timed run ends with the time they had waited", async () => {
  await using server = startSilentServer();
  const job: RunJob = { ...closedJob(server.url, 3, 1), stop: { kind: "time", durationMs: 100 } };
  const stats = await run(job, "auto");
  assertEquals(stats.requests, 0);
  assertEquals(stats.cutOff, 3);
  assertEquals(stats.censored, 3);
  assertEquals(stats.errors, 0);
  // Each had waited the whole run: about 100 ms, a lower bound.
  const latency = latencySummary(stats);
  assertEquals(latency.count, 3);
  assert(latency.min >= 90_000 && latency.max < 1_000_000, JSON.stringify(latency));
});

Deno.test("runOnce() honours a custom success rule", async () => {
  await using backend = startBackend(() => new Response(null, { status: 404 }));
  const stats = await run(
    { ...closedJob(backend.url, 2, 6), successStatuses: [[404, 404]] },
    "auto",
  );
  assertEquals(stats.ok, 6);
  assertEquals(stats.errors, 0);
});

Deno.test("splitJob() shares concurrency, totals and rates out exactly", () => {
  const job = closedJob(new URL("http://127.0.0.1:1/"), 5, 11);
  const slices = splitJob(job, 3);
  assertEquals(slices.map((s) => s.load.model === "closed" ? s.load.concurrency : 0), [1, 2, 2]);
  assertEquals(slices.map((s) => s.stop.kind === "count" ? s.stop.total : 0), [3, 4, 4]);
  assertEquals(splitJob(closedJob(new URL("http://127.0.0.1:1/"), 2, 10), 4).length, 2);
  const open = splitJob({
    ...job,
    load: { model: "open", ratePerSecond: 300, maxInFlight: 10 },
    stop: { kind: "time", durationMs: 1000 },
  }, 3);
  assertEquals(open.map((s) => s.load.model === "open" ? s.load.ratePerSecond : 0), [
    100,
    100,
    100,
  ]);
  assertEquals(open.map((s) => s.load.model === "open" ? s.load.maxInFlight : 0), [3, 3, 4]);
});

Deno.test("WorkerPool merges the slices of two workers exactly", async () => {
  await using backend = startQuarterFailingBackend();
  await using pool = await WorkerPool.start(
    new URL("../../load/worker_entry.ts", import.meta.url),
    2,
    "auto",
  );
  const progress = new LiveStats();
  const stats = await pool.execute(closedJob(backend.url, 4, 40), { progress });
  assertEquals(backend.requests(), 40);
  assertEquals(stats.requests, 40);
  assertEquals(stats.statuses, { "200": 30, "500": 10 });
  // The workers' live deltas add up to the exact totals.
  assertEquals(progress.completed, 40);
  assertEquals(progress.errors(), { "5xx": 10 });
});

Deno.test("runLoadWorker() runs a posted job and posts its stats back", async () => {
  await using backend = startQuarterFailingBackend();
  const scope = new EventTarget();
  const posted: unknown[] = [];
  let onResult = () => {};
  const result = new Promise<void>((resolve) => onResult = resolve);
  Object.assign(scope, {
    postMessage(message: unknown) {
      posted.push(message);
      if ((message as { type?: string }).type === "result") onResult();
    },
  });
  runLoadWorker(scope);
  assertEquals(posted[0], { type: "ready" });
  const job = toWireJob(closedJob(backend.url, 2, 8), "fetch");
  scope.dispatchEvent(
    new MessageEvent("message", { data: { type: "run", id: 7, job, progressIntervalMs: 0 } }),
  );
  await result;
  const message = posted[1] as { type: string; id: number; stats: RunStats };
  if (message.type !== "result") fail(`expected a result, got ${message.type}`);
  assertEquals(message.id, 7);
  assertEquals(message.stats.statuses, { "200": 6, "500": 2 });
});
