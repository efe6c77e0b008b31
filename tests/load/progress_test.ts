import { LiveStats } from "../../load/live_stats.ts";
import {
  formatProgressLine,
  PROGRESS_LINE_MS,
  PROGRESS_REDRAW_MS,
  startProgress,
} from "../../load/progress.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";

Deno.test("formatProgressLine() shows share, count, elapsed, req/s, percentiles and errors", () => {
  assertEquals(
    formatProgressLine({
      label: "c2-r1",
      stop: { kind: "count", total: 200 },
      completed: 50,
      elapsedMs: 1500,
      rps: 33.4,
      errors: { "5xx": 3, refused: 1 },
      p50Ms: 1.25,
      p99Ms: 8,
    }),
    "c2-r1 [#####---------------]  25% 50/200  1.5s  33 req/s  p50 1.25ms  p99 8.00ms  " +
      "errors 5xx=3 refused=1",
  );
  assertStringIncludes(
    formatProgressLine({
      label: "R",
      stop: { kind: "time", durationMs: 2000 },
      completed: 10,
      elapsedMs: 1000,
      rps: 0,
      errors: {},
    }),
    " 50% 10  1.0s  0 req/s  p50 -  p99 -  errors 0",
  );
});

Deno.test("startProgress() redraws one line in place on a terminal, with rolling latencies", async () => {
  const clock = new FakeClock(1000);
  const live = new LiveStats();
  let written = "";
  const progress = startProgress("c1-r1", { kind: "count", total: 10 }, live, {
    write: (text) => written += text,
    mode: "terminal",
    clock,
  });
  assertStringIncludes(written, "\r\x1b[2Kc1-r1 [");
  for (let i = 0; i < 4; i++) live.record(2000, undefined);
  live.record(undefined, "refused");
  written = "";
  await clock.advance(PROGRESS_REDRAW_MS);
  assert(written.startsWith("\r\x1b[2K") && !written.includes("\n"), JSON.stringify(written));
  assertStringIncludes(
    written,
    " 50% 5/10  0.3s  20 req/s  p50 2.00ms  p99 2.00ms  errors refused=1",
  );
  progress.stop();
  progress.stop();
  assertEquals(written.endsWith("\r\x1b[2K"), true);
  written = "";
  await clock.advance(PROGRESS_REDRAW_MS * 4);
  assertEquals(written, "", "nothing is drawn after stop()");
});

Deno.test("startProgress() prints plain lines when stderr is not a terminal, nothing when quiet", async () => {
  const clock = new FakeClock();
  const live = new LiveStats();
  let lines = "";
  let quiet = "";
  const progress = startProgress("rate10-r1", { kind: "time", durationMs: 20_000 }, live, {
    write: (text) => lines += text,
    mode: "lines",
    clock,
  });
  const silent = startProgress("rate10-r1", { kind: "time", durationMs: 20_000 }, live, {
    write: (text) => quiet += text,
    mode: "off",
    clock,
  });
  assertEquals(lines, "", "no line before the first interval");
  live.record(1000, undefined);
  await clock.advance(PROGRESS_LINE_MS);
  assertEquals(lines.split("\n").length, 2);
  assertStringIncludes(lines, "rate10-r1 [#####---------------]  25% 1  5.0s");
  assert(!lines.includes("\r") && !lines.includes("\x1b"), "no terminal codes in a log");
  await clock.advance(PROGRESS_LINE_MS);
  assertEquals(lines.split("\n").length, 3);
  progress.stop();
  silent.stop();
  assertEquals(quiet, "");
});

Deno.test("LiveStats drains deltas that add up to the totals on another side", () => {
  const worker = new LiveStats();
  const main = new LiveStats();
  worker.record(1000, undefined);
  worker.record(undefined, "timeout");
  main.add(worker.drain());
  worker.record(3000, "5xx");
  main.add(worker.drain());
  main.add(worker.drain());
  assertEquals(main.completed, 3);
  assertEquals(main.errors(), { timeout: 1, "5xx": 1 });
  assertEquals(main.takeWindow().count, 2);
  assertEquals(main.takeWindow().count, 0);
});
