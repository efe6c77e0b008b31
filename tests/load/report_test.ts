import { judgeLevel, nextLevel } from "../../load/capacity.ts";
import { chartData, niceScale, renderChart } from "../../load/chart.ts";
import {
  estimateCapacity,
  formatCapacityLine,
  formatRunBlock,
  formatSummaryTable,
  type LoadReport,
  REPORT_VERSION,
  runLabel,
} from "../../load/report.ts";
import { emptyRunStats, RunRecorder, type RunStats } from "../../load/stats.ts";
import type { RunRecord } from "../../load/sweep.ts";
import { histogramBars } from "../../load/run_breakdown.ts";
import { checkThresholds } from "../../load/thresholds.ts";
import { assertEquals, assertStringIncludes } from "../support/assert.ts";

function stats(ok: number, failed: number, latencyMs = 2): RunStats {
  const recorder = new RunRecorder({ timeline: true });
  for (let i = 0; i < ok; i++) {
    recorder.record(0, latencyMs, { ok: true, status: 200, bodyBytes: 1 });
  }
  for (let i = 0; i < failed; i++) {
    recorder.record(0, latencyMs, { ok: true, status: 502, bodyBytes: 1 });
  }
  return recorder.finish(1000);
}

const run = (level: number, s: RunStats, model: "closed" | "open" = "closed"): RunRecord => ({
  round: 1,
  rounds: 1,
  model,
  level,
  stats: s,
});

Deno.test("runLabel() names the round and the level", () => {
  assertEquals(
    runLabel({ ...run(25, emptyRunStats()), round: 1, rounds: 2 }),
    "Run 1/2 @ concurrency=25",
  );
  assertEquals(runLabel(run(500, emptyRunStats(), "open")), "Run 1/1 @ rate=500/s");
});

Deno.test("formatRunBlock() shows the original fields and the breakdowns", () => {
  const block = formatRunBlock(run(10, stats(9, 1)), {
    url: "http://x/",
    stop: { kind: "count", total: 10 },
  });
  assertStringIncludes(block, "Run 1/1 @ concurrency=10\n");
  assertStringIncludes(block, "  URL:          http://x/\n");
  assertStringIncludes(block, "  Total:        10 requests (10 completed)\n");
  assertStringIncludes(block, "  Concurrency:  10\n");
  assertStringIncludes(block, "  Elapsed:      1.00s (10.0 req/s)\n");
  assertStringIncludes(block, "  Successes:    9\n");
  assertStringIncludes(block, "  Errors:       1 (10.00%)\n");
  assertStringIncludes(block, "  Latency ms:   avg 2.00  p50 2.00  p95 2.00  max 2.00\n");
  assertStringIncludes(block, "p90 2.00  p99 2.00  p99.9 2.00\n");
  assertStringIncludes(block, "    [200]  9 (90.00%)\n    [502]  1 (10.00%) failed\n");
  // Every latency is 2 ms: one bar holds all ten responses.
  assertStringIncludes(
    block,
    "  Latency histogram (ms, up to):\n    2.000 [10] |" + "#".repeat(40),
  );
  assertStringIncludes(block, "    HTTP 502 Bad Gateway (x1)\n");
});

Deno.test("formatSummaryTable() has the original columns and more", () => {
  const table = formatSummaryTable([run(5, stats(10, 0)), run(50, stats(8, 2))]).split("\n");
  assertEquals(table[0]?.split(/\s+/), [
    "Label",
    "Run",
    "Conc",
    "Total",
    "OK",
    "Err",
    "Req/s",
    "Avg",
    "ms",
    "p50",
    "p95",
    "p99",
    "max",
  ]);
  assertEquals(table[2]?.trim().split(/\s+/), [
    "c50-r1",
    "1/1",
    "50",
    "10",
    "8",
    "2",
    "10.0",
    "2.00",
    "2.00",
    "2.00",
    "2.00",
    "2.00",
  ]);
});

Deno.test("estimateCapacity() finds the first level with errors", () => {
  const runs = [
    run(10, stats(5, 0)),
    run(20, stats(5, 0)),
    run(40, stats(4, 1)),
    run(80, stats(5, 0)),
  ];
  assertEquals(estimateCapacity(runs), { firstFailingLevel: 40, lastCleanLevel: 20 });
  assertEquals(
    formatCapacityLine(runs),
    "Capacity estimate: errors first appeared at concurrency=40 (last level without errors: 20)\n",
  );
  assertEquals(
    formatCapacityLine(runs.slice(0, 2)),
    "Capacity estimate: no errors up to concurrency=20 (the highest level tried)\n",
  );
});

Deno.test("estimateCapacity() blames a level for unsent requests only when its cap was reached", () => {
  // The generator fell behind (cap 100 never reached): the target is not to blame.
  const behind = { ...stats(5, 0), unsent: 3, inFlightCap: 100, peakInFlight: 12 };
  // The target answered too slowly: every slot under the cap was taken.
  const capped = { ...stats(5, 0), unsent: 3, inFlightCap: 100, peakInFlight: 100 };
  assertEquals(estimateCapacity([run(10, behind)]), { highestLevel: 10 });
  assertEquals(estimateCapacity([run(10, behind), run(20, capped)]), {
    firstFailingLevel: 20,
    lastCleanLevel: 10,
  });
});

Deno.test("checkThresholds() says which threshold and by how much", () => {
  const breaches = checkThresholds([run(10, stats(9, 1, 300))], {
    maxErrorRate: 0.05,
    maxP99Ms: 200,
  });
  assertEquals(breaches.map((b) => b.message), [
    "Threshold breached: error rate 10.00% exceeds --max-error-rate 5.00% by 5.00 percentage points in Run 1/1 @ concurrency=10",
    "Threshold breached: p99 latency 300.03ms exceeds --max-p99 200ms by 100.03ms in Run 1/1 @ concurrency=10",
  ]);
  assertEquals(checkThresholds([run(10, stats(10, 0))], { maxErrorRate: 0, maxP99Ms: 200 }), []);
});

Deno.test("nextLevel() ramps, bisects and stops", () => {
  assertEquals(nextLevel({ held: 50, steps: 1 }, "closed"), 100);
  assertEquals(nextLevel({ held: 100, failed: 200, steps: 3 }, "closed"), 150);
  assertEquals(nextLevel({ held: 100, failed: 105, steps: 5 }, "closed"), undefined);
  assertEquals(nextLevel({ failed: 8, steps: 1 }, "closed"), 4);
  assertEquals(nextLevel({ failed: 1, steps: 1 }, "closed"), undefined);
  assertEquals(nextLevel({ held: 100, steps: 16 }, "closed"), undefined);
  assertEquals(nextLevel({ held: 250, failed: 500, steps: 3 }, "open"), 375);
});

Deno.test("judgeLevel() fails on errors, unsent requests and p99", () => {
  assertEquals(judgeLevel(stats(10, 0), {}).isHeld, true);
  assertEquals(judgeLevel(stats(9, 1), {}), { isHeld: false, reason: "10.00% errors" });
  assertEquals(judgeLevel(stats(9, 1), { maxErrorRate: 0.2 }).isHeld, true);
  assertEquals(judgeLevel({ ...stats(10, 0), unsent: 3 }, {}), {
    isHeld: false,
    reason: "3 requests never sent (the generator fell behind)",
  });
  assertEquals(judgeLevel(stats(10, 0, 50), { maxP99Ms: 20 }).isHeld, false);
  assertEquals(judgeLevel(emptyRunStats(), {}).isHeld, false);
});

Deno.test("chartData() plots levels, or seconds for a single rate", () => {
  const base: Omit<LoadReport, "runs" | "model"> = {
    version: REPORT_VERSION,
    url: "http://x/",
    method: "GET",
    stop: { kind: "count", total: 10 },
    sources: 1,
    isInterrupted: false,
  };
  const closed = chartData({
    ...base,
    model: "closed",
    runs: [run(20, stats(10, 0)), run(10, stats(10, 0))],
  });
  assertEquals(closed.xLabel, "Concurrency");
  assertEquals(closed.points.map((p) => [p.x, p.rps]), [[10, 10], [20, 10]]);
  const open = chartData({ ...base, model: "open", runs: [run(100, stats(10, 0), "open")] });
  assertEquals(open.xLabel, "Time (s)");
  assertEquals(open.points.map((p) => p.x), [0]);
  const svg = renderChart({ ...base, model: "open", runs: [run(100, stats(10, 0), "open")] });
  assertStringIncludes(svg, "Time (s)");
  assertStringIncludes(svg, "</svg>");
});

Deno.test("niceScale() rounds the axis to 1, 2 or 5 steps", () => {
  assertEquals(niceScale(87, 5), { top: 100, step: 20 });
  assertEquals(niceScale(0.3, 5), { top: 0.3, step: 0.1 });
  assertEquals(niceScale(0, 5), { top: 1, step: 0.2 });
});

Deno.test("histogramBars() spreads latencies over equal buckets from min to max", () => {
  const bars = histogramBars([[1000, 1], [1500, 2], [5000, 4], [11_000, 1]], 10);
  assertEquals(bars.length, 10);
  assertEquals(bars.map((bar) => bar.count), [3, 0, 0, 4, 0, 0, 0, 0, 0, 1]);
  assertEquals(bars[9]?.upToMs, 11);
  assertEquals(bars.reduce((sum, bar) => sum + bar.count, 0), 8);
  assertEquals(histogramBars([]), []);
});
