import { LatencyHistogram } from "../../load/histogram.ts";
import {
  emptyRunStats,
  errorRate,
  latencySummary,
  mergeRunStats,
  parseStatusRanges,
  RunRecorder,
  throughput,
} from "../../load/stats.ts";
import { assertAlmostEquals, assertEquals, assertThrows } from "../support/assert.ts";

Deno.test("LatencyHistogram reports exact percentiles of small values", () => {
  // Values below 2048 are exact at 3 significant digits.
  const histogram = new LatencyHistogram();
  for (let value = 1; value <= 1000; value++) histogram.record(value);
  const summary = histogram.summary();
  assertEquals(summary.count, 1000);
  assertEquals(summary.min, 1);
  assertEquals(summary.p50, 500);
  assertEquals(summary.p90, 900);
  assertEquals(summary.p95, 950);
  assertEquals(summary.p99, 990);
  assertEquals(summary.p999, 999);
  assertEquals(summary.max, 1000);
  assertEquals(summary.mean, 500.5);
});

Deno.test("LatencyHistogram keeps 3 significant digits for large values", () => {
  const histogram = new LatencyHistogram();
  for (let value = 1; value <= 100_000; value++) histogram.record(value * 10);
  for (const [percentile, exact] of [[50, 500_000], [99, 990_000], [99.9, 999_000]] as const) {
    const value = histogram.percentile(percentile);
    if (Math.abs(value - exact) / exact > 0.001) {
      throw new Error(`p${percentile} = ${value}, expected ${exact} within 0.1%`);
    }
  }
});

Deno.test("LatencyHistogram of nothing reports zeros", () => {
  assertEquals(new LatencyHistogram().summary(), {
    count: 0,
    mean: 0,
    min: 0,
    p50: 0,
    p90: 0,
    p95: 0,
    p99: 0,
    p999: 0,
    max: 0,
  });
  assertEquals(new LatencyHistogram().encode(), "");
  assertEquals(LatencyHistogram.decode("").count, 0);
});

Deno.test("LatencyHistogram merged by encoding equals one histogram of all values", () => {
  const whole = new LatencyHistogram();
  const parts = [new LatencyHistogram(), new LatencyHistogram(), new LatencyHistogram()];
  for (let i = 0; i < 3000; i++) {
    const value = (i * 7919) % 50_000 + 1;
    whole.record(value);
    parts[i % 3]?.record(value);
  }
  const merged = new LatencyHistogram();
  for (const part of parts) merged.add(LatencyHistogram.decode(part.encode()));
  // Both sides decoded: a decoded histogram reports each bucket's highest equivalent value.
  assertEquals(merged.summary(), LatencyHistogram.decode(whole.encode()).summary());
});

Deno.test("LatencyHistogram.decode() rejects text that is no histogram", () => {
  assertThrows(() => LatencyHistogram.decode("garbage!"), SyntaxError, "Cannot decode histogram");
});

Deno.test("parseStatusRanges() reads codes, classes and ranges", () => {
  assertEquals(parseStatusRanges("2xx,3xx"), [[200, 299], [300, 399]]);
  assertEquals(parseStatusRanges("200, 204-206,5XX"), [[200, 200], [204, 206], [500, 599]]);
  assertThrows(() => parseStatusRanges("abc"), SyntaxError, 'Cannot parse status "abc"');
  assertThrows(() => parseStatusRanges("300-200"), SyntaxError);
  assertThrows(() => parseStatusRanges("600"), SyntaxError);
});

Deno.test("RunRecorder counts statuses, success and network errors", () => {
  const recorder = new RunRecorder({ successStatuses: [[200, 299]] });
  recorder.record(0, 1, { ok: true, status: 200, bodyBytes: 10 });
  recorder.record(0, 2, { ok: true, status: 200, bodyBytes: 10 });
  recorder.record(0, 3, { ok: true, status: 302, bodyBytes: 0 });
  recorder.record(0, 4, { ok: true, status: 503, bodyBytes: 5 });
  recorder.record(0, 5, { ok: false, error: "timeout", message: "slow" });
  recorder.record(0, 6, { ok: false, error: "refused", message: "nobody home" });
  recorder.recordCensored("inFlight", 0, 7);
  recorder.recordCensored("inFlight", 3, 7);
  const stats = recorder.finish(1000);
  assertEquals(stats.requests, 6);
  assertEquals(stats.ok, 2);
  assertEquals(stats.errors, 4);
  assertEquals(stats.statuses, { "200": 2, "302": 1, "503": 1 });
  assertEquals(stats.networkErrors, { timeout: 1, refused: 1, reset: 0, network: 0 });
  assertEquals(stats.cutOff, 2);
  assertEquals(stats.bodyBytes, 25);
  assertEquals(stats.errorSamples, [
    { message: "HTTP 302 Found", count: 1 },
    { message: "HTTP 503 Service Unavailable", count: 1 },
    { message: "timeout: slow", count: 1 },
    { message: "refused: nobody home", count: 1 },
  ]);
  // Responses are timed (1, 2, 3 and 4 ms), and so are the censored samples, as lower bounds:
  // the timeout at 5 ms and the two requests in flight at the end (7 and 4 ms); the refused
  // request has no latency.
  assertEquals(latencySummary(stats).count, 7);
  assertEquals(stats.censored, 3);
  assertAlmostEquals(latencySummary(stats).max, 7000, 7);
  assertEquals(throughput(stats), 6);
  assertEquals(errorRate(stats), 4 / 6);
});

Deno.test("RunRecorder keeps at most five distinct error samples", () => {
  const recorder = new RunRecorder();
  for (let i = 0; i < 8; i++) {
    recorder.record(0, 1, { ok: false, error: "network", message: `m${i}` });
  }
  recorder.record(0, 1, { ok: false, error: "network", message: "m0" });
  const samples = recorder.finish(1).errorSamples;
  assertEquals(samples.length, 5);
  assertEquals(samples[0], { message: "network: m0", count: 2 });
});

Deno.test("RunRecorder buckets a timeline by second of completion", () => {
  const recorder = new RunRecorder({ timeline: true, startMs: 1000 });
  recorder.record(1000, 1500, { ok: true, status: 200, bodyBytes: 0 });
  recorder.record(2000, 2100, { ok: true, status: 500, bodyBytes: 0 });
  recorder.record(2500, 3200, { ok: false, error: "reset", message: "x" });
  const timeline = recorder.finish(2200).timeline ?? [];
  assertEquals(timeline.map(({ second, ok, errors }) => ({ second, ok, errors })), [
    { second: 0, ok: 1, errors: 0 },
    { second: 1, ok: 0, errors: 1 },
    { second: 2, ok: 0, errors: 1 },
  ]);
});

Deno.test("mergeRunStats() adds counts, merges histograms and keeps the longest elapsed time", () => {
  const a = new RunRecorder();
  const b = new RunRecorder();
  const whole = new RunRecorder();
  for (let i = 1; i <= 100; i++) {
    const outcome = i % 10 === 0
      ? { ok: true as const, status: 500, bodyBytes: 1 }
      : { ok: true as const, status: 200, bodyBytes: 1 };
    (i % 2 === 0 ? a : b).record(0, i, outcome);
    whole.record(0, i, outcome);
  }
  a.cutOff = 1;
  b.late = 2;
  const merged = mergeRunStats([a.finish(300), b.finish(500)]);
  const expected = whole.finish(500);
  assertEquals(merged.requests, 100);
  assertEquals(merged.ok, 90);
  assertEquals(merged.errors, 10);
  assertEquals(merged.statuses, { "200": 90, "500": 10 });
  assertEquals(merged.cutOff, 1);
  assertEquals(merged.late, 2);
  assertEquals(merged.elapsedMs, 500);
  assertEquals(latencySummary(merged), latencySummary(expected));
  assertEquals(merged.errorSamples, [{ message: "HTTP 500 Internal Server Error", count: 10 }]);
  assertEquals(mergeRunStats([]).requests, emptyRunStats().requests);
});
