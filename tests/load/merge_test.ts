import { LatencyHistogram } from "../../load/histogram.ts";
import { mergeReports, parseLoadReport } from "../../load/merge.ts";
import { type LoadReport, REPORT_VERSION } from "../../load/report.ts";
import { formatJson } from "../../load/report_formats.ts";
import { latencySummary, RunRecorder, type RunStats } from "../../load/stats.ts";
import { assertEquals, assertThrows } from "../support/assert.ts";
import { assertValidReport } from "./report_validation.ts";

function stats(seed: number, count: number): RunStats {
  const recorder = new RunRecorder();
  for (let i = 1; i <= count; i++) {
    recorder.record(
      0,
      (i * seed) % 97 + 1,
      i % 5 === 0
        ? { ok: true, status: 503, bodyBytes: 2 }
        : { ok: true, status: 200, bodyBytes: 2 },
    );
  }
  recorder.record(0, 1, { ok: false, error: "reset", message: "peer left" });
  return recorder.finish(1000 + seed);
}

function report(seed: number): LoadReport {
  return {
    version: REPORT_VERSION,
    url: "http://127.0.0.1:9090/",
    method: "GET",
    model: "closed",
    stop: { kind: "count", total: 100 },
    sources: 1,
    isInterrupted: false,
    runs: [
      { round: 1, rounds: 1, model: "closed", level: 10, stats: stats(seed, 50) },
      { round: 1, rounds: 1, model: "closed", level: 20, stats: stats(seed + 1, 99) },
    ],
  };
}

Deno.test("parseLoadReport() round-trips the JSON report", () => {
  const original = report(3);
  assertValidReport(formatJson(original));
  assertEquals(parseLoadReport(formatJson(original), "a.json"), original);
});

Deno.test("mergeReports() adds counts and levels and merges histograms exactly", () => {
  const a = parseLoadReport(formatJson(report(3)), "a.json");
  const b = parseLoadReport(formatJson(report(7)), "b.json");
  const merged = mergeReports([{ name: "a.json", report: a }, { name: "b.json", report: b }]);
  for (const each of [a, b, merged]) assertValidReport(formatJson(each));
  assertEquals(merged.sources, 2);
  // The merged computed statistics come from the merged counters and histogram.
  const computed = JSON.parse(formatJson(merged)).runs[0].stats;
  assertEquals(computed.errorsByClass, { "5xx": 20, reset: 2 });
  assertEquals(merged.stop, { kind: "count", total: 200 });
  assertEquals(merged.runs.map((run) => run.level), [20, 40]);
  const first = merged.runs[0]?.stats;
  assertEquals(first?.requests, 102);
  assertEquals(first?.statuses, { "200": 80, "503": 20 });
  assertEquals(first?.networkErrors.reset, 2);
  assertEquals(first?.elapsedMs, 1007);
  assertEquals(first?.errorSamples, [
    { message: "HTTP 503 Service Unavailable", count: 20 },
    { message: "reset: peer left", count: 2 },
  ]);
  const expected = LatencyHistogram.decode(a.runs[0]?.stats.histogram ?? "");
  expected.add(LatencyHistogram.decode(b.runs[0]?.stats.histogram ?? ""));
  assertEquals(latencySummary(first ?? stats(1, 1)), expected.summary());
});

Deno.test("mergeReports() refuses reports of different tests", () => {
  const a = report(1);
  const b = { ...report(2), runs: report(2).runs.slice(1) };
  const error = assertThrows(
    () => mergeReports([{ name: "a.json", report: a }, { name: "b.json", report: b }]),
    RangeError,
  );
  assertEquals(
    error.message,
    'Cannot merge "b.json" with "a.json": run count "1" differs from "2"',
  );
  const open: LoadReport = { ...report(2), model: "open" };
  assertThrows(
    () => mergeReports([{ name: "a.json", report: a }, { name: "c.json", report: open }]),
    RangeError,
    'model "open" differs from "closed"',
  );
});

Deno.test("parseLoadReport() names the file and the problem", () => {
  const notJson = assertThrows(() => parseLoadReport("{", "x.json"), SyntaxError);
  assertEquals(notJson.message, 'Cannot parse "x.json": not JSON');
  const broken = JSON.parse(formatJson(report(1)));
  broken.runs[0].level = "ten";
  const wrong = assertThrows(() => parseLoadReport(JSON.stringify(broken), "y.json"), SyntaxError);
  assertEquals(
    wrong.message.startsWith('Cannot read "y.json" as a loadtest --json report at runs.0.level:'),
    true,
  );
});

Deno.test("parseLoadReport() reads the report out of a log where other lines mix in", () => {
  const original = report(3);
  // `kubectl logs` of a kube loadtest pod: stderr's lines around (and, rarely, inside) stdout's.
  const log = "Load test: GET http://127.0.0.1:9090/, closed model, in-process\n" +
    formatJson(original).replace('  "url"', 'Stray stderr line\n  "url"') + "Thresholds met\n";
  assertEquals(parseLoadReport(log, "pod-0.log"), original);
  assertThrows(() => parseLoadReport("no report\n{\n", "x.log"), SyntaxError, "not JSON");
});
