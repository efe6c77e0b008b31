import { UsageError } from "../../lib/shared/command.ts";
import { LOADTEST_HELP, loadtestCommand } from "../../load/cli.ts";
import { parseLoadReport } from "../../load/merge.ts";
import type { Outcome, Transport } from "../../load/transport.ts";
import {
  assertEquals,
  assertGreater,
  assertRejects,
  assertStringIncludes,
} from "../support/assert.ts";
import { captureContext, startBackend, startQuarterFailingBackend } from "./load_fixtures.ts";
import { assertValidReport } from "./report_validation.ts";

Deno.test("loadtestCommand() runs the original sweep and prints blocks, summary and capacity", async () => {
  await using backend = startQuarterFailingBackend();
  const { ctx, stdout } = captureContext();
  const code = await loadtestCommand([
    "--url",
    backend.url.href,
    "--total",
    "20",
    "--concurrency",
    "2",
    "4",
    "--rounds",
    "2",
    "--timeout",
    "4",
  ], ctx);
  assertEquals(code, 0);
  assertEquals(backend.requests(), 80);
  const out = stdout();
  for (
    const label of [
      "Run 1/2 @ concurrency=2",
      "Run 2/2 @ concurrency=2",
      "Run 1/2 @ concurrency=4",
      "Run 2/2 @ concurrency=4",
    ]
  ) {
    assertStringIncludes(out, label);
  }
  assertStringIncludes(out, `URL:          ${backend.url.href}`);
  assertStringIncludes(out, "Successes:    15");
  assertStringIncludes(out, "Errors:       5 (25.00%)");
  assertStringIncludes(
    out,
    "  Status distribution:\n    [200]  15 (75.00%)\n    [500]   5 (25.00%) failed\n",
  );
  assertStringIncludes(out, "  Latency histogram (ms, up to):\n");
  assertStringIncludes(out, "HTTP 500 Internal Server Error (x5)");
  assertStringIncludes(out, "Run  Conc  Total  OK  Err");
  assertStringIncludes(out, "Avg ms");
  assertStringIncludes(
    out,
    "Capacity estimate: errors first appeared at concurrency=2 (every level tried had errors)",
  );
});

Deno.test("loadtestCommand() estimates no failing level against a healthy backend", async () => {
  await using backend = startBackend();
  const { ctx, stdout } = captureContext();
  const code = await loadtestCommand(
    ["--url", backend.url.href, "--total", "10", "-c", "1,2"],
    ctx,
  );
  assertEquals(code, 0);
  assertStringIncludes(
    stdout(),
    "Capacity estimate: no errors up to concurrency=2 (the highest level tried)",
  );
});

Deno.test("loadtestCommand() exits 1 with a line per breached threshold", async () => {
  await using backend = startQuarterFailingBackend();
  const { ctx, stderr } = captureContext();
  const code = await loadtestCommand([
    "--url",
    backend.url.href,
    "--total",
    "20",
    "-c",
    "2",
    "--max-error-rate",
    "0.01",
    "--max-p99",
    "1us",
  ], ctx);
  assertEquals(code, 1);
  assertStringIncludes(
    stderr(),
    "Threshold breached: error rate 25.00% exceeds --max-error-rate 1.00% by 24.00 percentage points in Run 1/1 @ concurrency=2",
  );
  assertStringIncludes(stderr(), "Threshold breached: p99 latency ");
  assertStringIncludes(stderr(), "exceeds --max-p99 0.001ms by ");
});

Deno.test("loadtestCommand() exits 0 when thresholds hold", async () => {
  await using backend = startBackend();
  const { ctx, stderr } = captureContext();
  const code = await loadtestCommand([
    "--url",
    backend.url.href,
    "--total",
    "10",
    "-c",
    "2",
    "--max-error-rate",
    "0",
  ], ctx);
  assertEquals(code, 0);
  assertStringIncludes(stderr(), "Thresholds met");
});

Deno.test("loadtestCommand() throws UsageError for a bad flag", async () => {
  const { ctx } = captureContext();
  await assertRejects(
    () => loadtestCommand(["--total", "-1"], ctx),
    UsageError,
    'Invalid --total "-1"',
  );
});

Deno.test("loadtestCommand() prints help naming every flag", async () => {
  const { ctx, stdout } = captureContext();
  assertEquals(await loadtestCommand(["--help"], ctx), 0);
  assertEquals(stdout(), LOADTEST_HELP);
  for (
    const flag of [
      "--url",
      "--method",
      "--header",
      "--body",
      "--body-file",
      "--timeout",
      "--no-keepalive",
      "--success",
      "--concurrency",
      "--total",
      "--duration",
      "--rounds",
      "--warmup",
      "--rate",
      "--max-in-flight",
      "--workers",
      "--transport",
      "--json",
      "--csv",
      "--markdown",
      "--chart",
      "--max-error-rate",
      "--max-p99",
      "--find-capacity",
      "--stages",
      "--threshold",
      "--targets",
      "--html",
      "--quiet",
      "merge",
      "schema",
    ]
  ) assertStringIncludes(LOADTEST_HELP, flag);
});

Deno.test("loadtestCommand() spreads load over workers and counts exactly", async () => {
  await using backend = startQuarterFailingBackend();
  const { ctx, stdout } = captureContext();
  const code = await loadtestCommand([
    "--url",
    backend.url.href,
    "--total",
    "40",
    "-c",
    "4",
    "--workers",
    "2",
  ], ctx);
  assertEquals(code, 0);
  assertEquals(backend.requests(), 40);
  assertStringIncludes(stdout(), "    [200]  30 (75.00%)\n    [500]  10 (25.00%) failed\n");
});

Deno.test("loadtestCommand() writes JSON that merge combines, plus CSV, chart and Markdown", async () => {
  await using backend = startQuarterFailingBackend();
  const dir = await Deno.makeTempDir();
  try {
    for (const name of ["a", "b"]) {
      const { ctx } = captureContext();
      const code = await loadtestCommand([
        "--url",
        backend.url.href,
        "--total",
        "8",
        "-c",
        "2",
        "--json",
        `${dir}/${name}.json`,
      ], ctx);
      assertEquals(code, 0);
    }
    const { ctx, stdout } = captureContext();
    const code = await loadtestCommand([
      "merge",
      `${dir}/a.json`,
      `${dir}/b.json`,
      "--json",
      `${dir}/m.json`,
      "--csv",
      `${dir}/m.csv`,
      "--chart",
      `${dir}/m.svg`,
    ], ctx);
    assertEquals(code, 0);
    assertStringIncludes(stdout(), "Summary (merged from 2 reports)");
    assertStringIncludes(stdout(), "Run 1/1 @ concurrency=4");
    for (const name of ["a", "b", "m"]) {
      assertValidReport(await Deno.readTextFile(`${dir}/${name}.json`));
    }
    const merged = parseLoadReport(await Deno.readTextFile(`${dir}/m.json`), "m.json");
    assertEquals(merged.sources, 2);
    assertEquals(merged.runs[0]?.stats.requests, 16);
    assertEquals(merged.runs[0]?.stats.statuses, { "200": 12, "500": 4 });
    const csv = (await Deno.readTextFile(`${dir}/m.csv`)).trim().split("\n");
    assertEquals(csv.length, 2);
    assertStringIncludes(csv[0] ?? "", "run,round,rounds,model,level,requests,ok,errors");
    assertStringIncludes(csv[1] ?? "", "1,1,1,closed,4,16,12,4,");
    const svg = await Deno.readTextFile(`${dir}/m.svg`);
    for (const text of ["<svg", "Throughput", "Latency", "Concurrency", ">p99<", ">req/s<"]) {
      assertStringIncludes(svg, text);
    }
    const markdown = captureContext();
    assertEquals(await loadtestCommand(["merge", `${dir}/a.json`, "--markdown"], markdown.ctx), 0);
    assertStringIncludes(
      markdown.stdout(),
      "| Run | Conc | Total | OK | Err | Req/s | Avg ms | p50 | p95 | p99 | max |",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadtestCommand() merge rejects a file that is not a report", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/x.json`, "[]");
    const { ctx } = captureContext();
    await assertRejects(
      () => loadtestCommand(["merge", `${dir}/x.json`], ctx),
      UsageError,
      "as a loadtest --json report",
    );
    await assertRejects(
      () => loadtestCommand(["merge", `${dir}/none.json`], ctx),
      UsageError,
      "Cannot read",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadtestCommand() runs an open-model rate test", async () => {
  await using backend = startBackend();
  const { ctx, stdout } = captureContext();
  const code = await loadtestCommand(
    ["--url", backend.url.href, "--rate", "200", "--total", "20"],
    ctx,
  );
  assertEquals(code, 0);
  assertEquals(backend.requests(), 20);
  assertStringIncludes(stdout(), "Run 1/1 @ rate=200/s");
  assertStringIncludes(stdout(), "  Late:         ");
  assertStringIncludes(stdout(), "  Unsent:       ");
});

Deno.test("loadtestCommand() --find-capacity reports the highest level that held", async () => {
  // A fake transport that fails whenever more than 5 requests are in flight: every user sends
  // its first request in the same tick, so levels above 5 always fail and the rest never do.
  let inFlight = 0;
  const transport = (): Transport => ({
    resent: 0,
    async send(): Promise<Outcome> {
      inFlight++;
      const isOver = inFlight > 5;
      await new Promise((resolve) => setTimeout(resolve, 0));
      inFlight--;
      return { ok: true, status: isOver ? 503 : 200, bodyBytes: 0 };
    },
    close: () => Promise.resolve(),
  });
  const { ctx, stdout } = captureContext();
  const code = await loadtestCommand(
    [
      "--url",
      "http://127.0.0.1:1/",
      "--find-capacity",
      "-c",
      "1",
      "--total",
      "12",
      "--transport",
      "fetch",
      "--workers",
      "1",
    ],
    ctx,
    { factories: { fetch: transport } },
  );
  assertEquals(code, 0);
  // Ramp 1, 2, 4, 8 (fails), then bisect 6 (fails) and 5 (holds).
  assertStringIncludes(
    stdout(),
    "Capacity: highest level that held: concurrency=5 (concurrency=6 failed: ",
  );
  for (const level of [1, 2, 4, 5, 6, 8]) {
    assertStringIncludes(stdout(), `Run 1/1 @ concurrency=${level}\n`);
  }
});

Deno.test("loadtestCommand() does not record the warm-up", async () => {
  await using backend = startBackend();
  const { ctx, stdout, stderr } = captureContext();
  const code = await loadtestCommand([
    "--url",
    backend.url.href,
    "--total",
    "10",
    "-c",
    "2",
    "--warmup",
    "300ms",
  ], ctx);
  assertEquals(code, 0);
  assertStringIncludes(stderr(), "warm-up 300ms");
  assertStringIncludes(stdout(), "Total:        10 requests (10 completed)");
  assertGreater(backend.requests(), 10);
});

Deno.test("loadtestCommand() exits 1 and reports what ran when interrupted", async () => {
  await using backend = startBackend();
  const abort = new AbortController();
  abort.abort();
  const { ctx, stdout } = captureContext(abort.signal);
  const code = await loadtestCommand(
    ["--url", backend.url.href, "--total", "10", "-c", "1", "2"],
    ctx,
  );
  assertEquals(code, 1);
  assertStringIncludes(stdout(), "Interrupted: the remaining runs were skipped");
  assertEquals(backend.requests(), 0);
});
