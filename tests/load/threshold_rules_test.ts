import { UsageError } from "../../lib/shared/command.ts";
import { loadtestCommand } from "../../load/cli.ts";
import { parseLoadArgs } from "../../load/options.ts";
import { parseThresholdRule } from "../../load/threshold_rules.ts";
import { checkRun } from "../../load/thresholds.ts";
import { RunRecorder } from "../../load/stats.ts";
import { assertEquals, assertStringIncludes, assertThrows } from "../support/assert.ts";
import { captureContext, refusedUrl, startQuarterFailingBackend } from "./load_fixtures.ts";

Deno.test("parseThresholdRule() reads latency, error and rps rules", () => {
  assertEquals(parseThresholdRule("p95<200ms"), {
    stat: "p95",
    op: "<",
    limit: 200,
    text: "p95<200ms",
  });
  assertEquals(parseThresholdRule("p99.9 <= 1.5").limit, 1500, "a bare number is seconds");
  assertEquals(parseThresholdRule("errors<1%").limit, 0.01);
  assertEquals(parseThresholdRule("errors<0.05").limit, 0.05);
  assertEquals(parseThresholdRule("rps>=1000").op, ">=");
  for (const bad of ["p42<1s", "p95=200ms", "p95<fast", "errors<200%", "rps>many", ""]) {
    assertThrows(() => parseThresholdRule(bad), SyntaxError);
  }
  assertThrows(
    () => parseLoadArgs(["--threshold", "p95<fast"]),
    UsageError,
    'Invalid --threshold "p95<fast": the p95 limit must be a duration',
  );
});

Deno.test("checkRun() judges every rule and says by how much", () => {
  const recorder = new RunRecorder();
  for (let i = 0; i < 9; i++) recorder.record(0, 10, { ok: true, status: 200, bodyBytes: 0 });
  recorder.record(0, 10, { ok: false, error: "reset", message: "reset" });
  const stats = recorder.finish(1000);
  const rules = ["p95<5ms", "p95<=11ms", "errors<1%", "errors<20%", "rps>100", "rps>=10"]
    .map(parseThresholdRule);
  const breaches = checkRun(stats, { rules }, "c1-r1");
  assertEquals(breaches.map((breach) => breach.message), [
    // HdrHistogram reports a bucket at its highest equivalent value: 10 ms reads as 10.01 ms.
    "Threshold breached: p95 10.01ms fails --threshold 'p95<5ms' by 5.01ms in c1-r1",
    "Threshold breached: errors 10.00% fails --threshold 'errors<1%' by 9.00 percentage points in c1-r1",
    "Threshold breached: rps 10.0 req/s fails --threshold 'rps>100' by 90.0 req/s in c1-r1",
  ]);
});

Deno.test("loadtest --threshold exits 1 on a breach against a real server, 0 when rules hold", async () => {
  await using backend = startQuarterFailingBackend();
  const failing = captureContext();
  const code = await loadtestCommand([
    "--url",
    backend.url.href,
    "--total",
    "20",
    "-c",
    "2",
    "--threshold",
    "errors<1%",
    "--threshold",
    "p99<10s",
  ], failing.ctx);
  assertEquals(code, 1);
  assertStringIncludes(
    failing.stderr(),
    "Threshold breached: errors 25.00% fails --threshold 'errors<1%' by 24.00 percentage points in Run 1/1 @ concurrency=2",
  );
  const passing = captureContext();
  assertEquals(
    await loadtestCommand([
      "--url",
      backend.url.href,
      "--total",
      "8",
      "-c",
      "2",
      "--threshold",
      "errors<=30%",
      "--threshold",
      "p95<10s",
    ], passing.ctx),
    0,
  );
  assertStringIncludes(passing.stderr(), "Thresholds met");
});

Deno.test("a latency rule never passes on a run where nothing succeeded", async () => {
  const { ctx, stderr } = captureContext();
  const code = await loadtestCommand(
    ["--url", refusedUrl().href, "--total", "4", "-c", "1", "--threshold", "p95<10s"],
    ctx,
  );
  assertEquals(code, 1);
  assertStringIncludes(
    stderr(),
    "Threshold breached: p95 n/a (nothing succeeded) fails --threshold 'p95<10s' in Run 1/1 @ concurrency=1",
  );
});
