import { chartData, renderChart } from "../../load/chart.ts";
import { type LoadReport, REPORT_VERSION } from "../../load/report.ts";
import { RunRecorder, type RunStats } from "../../load/stats.ts";
import type { RunRecord } from "../../load/sweep.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";

const base = {
  version: REPORT_VERSION,
  url: "http://127.0.0.1/",
  method: "GET",
  stop: { kind: "time", durationMs: 5000 },
  sources: 1,
  isInterrupted: false,
} as const;

/** A run whose every 4th request failed, spread over `seconds` seconds. */
function stats(seconds: number): RunStats {
  const recorder = new RunRecorder({ timeline: true, startMs: 0 });
  for (let i = 0; i < seconds * 8; i++) {
    const endMs = (i / 8) * 1000 + 5;
    recorder.record(endMs - 5, endMs, { ok: true, status: i % 4 === 3 ? 500 : 200, bodyBytes: 0 });
  }
  return recorder.finish(seconds * 1000);
}

function run(level: number, model: "closed" | "open", seconds = 1): RunRecord {
  return { round: 1, rounds: 1, model, level, stats: stats(seconds) };
}

/** The x coordinates of a polyline's points, by its series name. */
function xsOf(svg: string, series: string): number[] {
  const match = new RegExp(`<polyline points="([^"]*)"[^>]*data-series="${series}"`).exec(svg);
  return (match?.[1] ?? "").split(" ").map((pair) => Number(pair.split(",")[0]));
}

Deno.test("a wide concurrency sweep is spaced on a log scale", () => {
  const report: LoadReport = {
    ...base,
    model: "closed",
    runs: [run(1, "closed"), run(10, "closed"), run(100, "closed")],
  };
  assertEquals(chartData(report).xScale, "log");
  const svg = renderChart(report);
  assertStringIncludes(svg, "Concurrency, log scale");
  const [x1 = 0, x10 = 0, x100 = 0] = xsOf(svg, "req/s");
  assert(Math.abs((x10 - x1) - (x100 - x10)) < 0.5, `${x1} ${x10} ${x100} evenly spaced by decade`);
  const narrow: LoadReport = { ...report, runs: [run(10, "closed"), run(20, "closed")] };
  assertEquals(chartData(narrow).xScale, "linear");
});

Deno.test("the chart draws the error rate and, for a rate sweep, the target rate", () => {
  const report: LoadReport = {
    ...base,
    model: "open",
    runs: [run(50, "open"), run(100, "open")],
  };
  const data = chartData(report);
  assertEquals(data.points.map((p) => p.targetRps), [50, 100]);
  assertEquals(data.points.map((p) => p.errorPercent), [25, 25]);
  const svg = renderChart(report);
  assertStringIncludes(
    svg,
    'stroke="#111111" stroke-width="2" stroke-dasharray="6 4" data-series="target"',
  );
  // The target line is drawn over the measured line and its points, so a rate that meets its
  // target does not hide it.
  const measured = svg.indexOf('data-series="req/s"');
  const lastPoint = svg.lastIndexOf("<circle", svg.indexOf('data-series="target"'));
  assert(measured > 0 && lastPoint > measured);
  assert(svg.indexOf('data-series="target"') > lastPoint);
  assertStringIncludes(svg, 'data-series="error %"');
  assertStringIncludes(svg, ">Errors<");
});

Deno.test("a ramp's chart runs against time with ticks to the end and the planned rate", () => {
  const report: LoadReport = {
    ...base,
    model: "open",
    stages: [{ durationMs: 2000, targetRate: 10 }, { durationMs: 3000, targetRate: 10 }],
    runs: [run(10, "open", 5)],
  };
  const data = chartData(report);
  assert(data.isTimeline);
  assertEquals(data.points.map((p) => p.x), [0, 1, 2, 3, 4]);
  assertEquals(data.points.map((p) => p.targetRps), [2.5, 7.5, 10, 10, 10]);
  const svg = renderChart(report);
  const ticks = [...svg.matchAll(/class="xtick">([^<]*)</g)].map((m) => Number(m[1]));
  assertEquals(ticks[0], 0);
  assert((ticks[ticks.length - 1] ?? 0) >= 5, `ticks ${ticks} cover the 5 s run`);
});
