import { UsageError } from "../../lib/shared/command.ts";
import { constantArrivals, parseStages, stagedArrivals } from "../../load/arrivals.ts";
import { loadtestCommand } from "../../load/cli.ts";
import { parseLoadArgs } from "../../load/options.ts";
import { createRateScheduler } from "../../load/scheduler.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { captureContext, startBackend } from "./load_fixtures.ts";
import { assertValidReport } from "./report_validation.ts";

const never = new AbortController().signal;

Deno.test("stagedArrivals() spaces slots by the area under a linear ramp", () => {
  // 0 -> 10/s over 1 s: N(t) = 5t², so slot i is due at sqrt(i / 5) s.
  const ramp = stagedArrivals([{ durationMs: 1000, targetRate: 10 }]);
  for (const i of [0, 1, 2, 3, 4]) {
    assertEquals(Math.round(ramp.offsetOf(i)), Math.round(Math.sqrt(i / 5) * 1000));
  }
  assertEquals(ramp.countBefore(1000), 5);
  assertEquals(ramp.offsetOf(6), Number.POSITIVE_INFINITY);
  // A flat stage after the ramp matches a constant rate shifted by the ramp's arrivals.
  const hold = stagedArrivals([
    { durationMs: 1000, targetRate: 10 },
    { durationMs: 1000, targetRate: 10 },
  ]);
  assertEquals(Math.round(hold.offsetOf(5)), 1000);
  assertEquals(Math.round(hold.offsetOf(10)), 1500);
  assertEquals(hold.countBefore(2000), 15);
  // Ramp down to 0: the same number of arrivals as the way up, mirrored.
  const down = stagedArrivals([
    { durationMs: 1000, targetRate: 10 },
    { durationMs: 1000, targetRate: 0 },
  ]);
  assertEquals(down.countBefore(2000), 10);
  assertEquals(Math.round(down.offsetOf(9)), Math.round(2000 - Math.sqrt(1 / 5) * 1000));
  assertEquals(constantArrivals(100).countBefore(1000), 100);
});

Deno.test("createRateScheduler() with stages hands out the ramp's intended start times", async () => {
  const clock = new FakeClock(500);
  const scheduler = createRateScheduler({
    clock,
    ratePerSecond: 10,
    arrivals: stagedArrivals([{ durationMs: 1000, targetRate: 10 }]),
    stop: { kind: "time", durationMs: 1000 },
  });
  assertEquals(scheduler.acquire(never), 500);
  const second = scheduler.acquire(never);
  assert(second instanceof Promise);
  await clock.advance(400);
  let value: number | undefined;
  void second.then((v) => value = v);
  await clock.advance(100);
  assertEquals(Math.round(value ?? 0), 500 + Math.round(Math.sqrt(1 / 5) * 1000));
  await clock.advance(600);
  assertEquals(scheduler.dueBy(clock.now()), 5);
});

Deno.test("parseLoadArgs() reads --stages as an open-model run as long as its stages", () => {
  const command = parseLoadArgs(["--stages", "30s:100,1m:500,30s:0"]);
  assert(command.kind === "run");
  assertEquals(command.plan.model, "open");
  assertEquals(command.plan.levels, [500]);
  assertEquals(command.plan.stop, { kind: "time", durationMs: 120_000 });
  assertEquals(command.plan.stages?.length, 3);
  for (
    const [args, message] of [
      [["--stages", "30s"], 'Invalid --stages "30s": Cannot parse stage "30s"'],
      [["--stages", "1s:0"], "every rate is 0"],
      [["--stages", "1s:-5"], 'Cannot parse stage "1s:-5"'],
      [["--stages", "1s:5", "--rate", "5"], "Cannot combine --stages and --rate"],
      [["--stages", "1s:5", "--duration", "5s"], "Cannot combine --stages and --duration"],
    ] as const
  ) {
    assertThrows(() => parseLoadArgs([...args]), UsageError, message);
  }
  assertEquals(parseStages("2:10")[0]?.durationMs, 2000, "a bare duration is seconds");
});

Deno.test("loadtest --stages ramps up and down against a real server", async () => {
  await using backend = startBackend();
  const { ctx, stdout, stderr } = captureContext();
  // 0 -> 100/s over 300 ms, then back to 0 over 300 ms: 15 + 15 = 30 arrivals.
  const code = await loadtestCommand(
    ["--url", backend.url.href, "--stages", "300ms:100,300ms:0", "--json", "-", "--quiet"],
    ctx,
  );
  assertEquals(code, 0);
  assertEquals(backend.requests(), 30);
  const report = assertValidReport(stdout()) as {
    stages: unknown;
    runs: Array<{ label: string; stats: { requests: number; unsent: number } }>;
  };
  assertEquals(report.stages, [
    { durationMs: 300, targetRate: 100 },
    { durationMs: 300, targetRate: 0 },
  ]);
  // Labelled by its plan, not by its peak as if it had run at 100/s throughout.
  assertEquals(report.runs[0]?.label, "stages-r1");
  assertEquals(report.runs[0]?.stats.requests, 30);
  assertEquals(report.runs[0]?.stats.unsent, 0);
  assert(stderr().includes("Run 1/1 @ stages (peak 100/s)"), stderr());
  assert(stderr().includes("Stages:       --stages 300ms:100,300ms:0 (peak 100 req/s)"), stderr());
  assert(/^stages-r1 +1\/1 +≤100\/s +30 /m.test(stderr()), stderr());
});
