import { UsageError } from "../../lib/shared/command.ts";
import { loadtestCommand } from "../../load/cli.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "../support/assert.ts";
import {
  captureContext,
  refusedUrl,
  startBackend,
  startQuarterFailingBackend,
} from "./load_fixtures.ts";
import { assertValidReport } from "./report_validation.ts";

/** The fields of a run a script reads, as `jq '.runs[0].stats.p99Ms'` would. */
interface JsonRun {
  readonly label: string;
  readonly stats: {
    readonly requests: number;
    readonly ok: number;
    readonly isAllFailed: boolean;
    readonly errorsByClass: Record<string, number>;
    readonly rps: number | null;
    readonly meanMs: number | null;
    readonly p50Ms: number | null;
    readonly p99Ms: number | null;
    readonly maxMs: number | null;
  };
}

function runsOf(text: string): JsonRun[] {
  return (assertValidReport(text) as { runs: JsonRun[] }).runs;
}

Deno.test("a run in which every request failed shows n/a, says so and exits 1", async () => {
  const url = refusedUrl();
  const { ctx, stdout, stderr } = captureContext();
  const code = await loadtestCommand(
    ["--url", url.href, "--total", "20", "-c", "2", "--json", "-"],
    ctx,
  );
  assertEquals(code, 1);
  const [run] = runsOf(stdout());
  assertEquals(run?.label, "c2-r1");
  assertEquals(run?.stats.requests, 20);
  assertEquals(run?.stats.ok, 0);
  assertEquals(run?.stats.isAllFailed, true);
  assertEquals(run?.stats.errorsByClass, { refused: 20 });
  assertEquals(run?.stats.rps, null);
  assertEquals(run?.stats.p99Ms, null);
  const err = stderr();
  assertStringIncludes(err, "(n/a req/s)");
  assertStringIncludes(err, "Latency ms:   avg n/a  p50 n/a  p95 n/a  max n/a");
  assertStringIncludes(
    err,
    "Nothing succeeded in c2-r1 (Run 1/1 @ concurrency=2): all 20 requests failed (refused=20)",
  );
  assert(!err.includes("0.00  "), "no latency of 0 for a run with no response");
});

Deno.test("a run answered only with 500s is a run in which nothing succeeded", async () => {
  await using backend = startBackend(() => new Response("no", { status: 500 }));
  const { ctx, stdout, stderr } = captureContext();
  const code = await loadtestCommand(["--url", backend.url.href, "--total", "8", "-c", "2"], ctx);
  assertEquals(code, 1);
  assertStringIncludes(stdout(), "c2-r1  1/1");
  assertStringIncludes(stdout(), "n/a");
  assertStringIncludes(stderr(), "all 8 requests failed (5xx=8)");
});

Deno.test("--json - writes computed statistics to stdout and the text report to stderr", async () => {
  await using backend = startQuarterFailingBackend();
  const { ctx, stdout, stderr } = captureContext();
  const code = await loadtestCommand(
    ["--url", backend.url.href, "--total", "20", "-c", "2", "4", "--json", "-"],
    ctx,
  );
  assertEquals(code, 0);
  const runs = runsOf(stdout());
  assertEquals(runs.map((run) => run.label), ["c2-r1", "c4-r1"]);
  const first = runs[0]?.stats;
  assertEquals(first?.errorsByClass, { "5xx": 5 });
  assertEquals(first?.isAllFailed, false);
  assert(typeof first?.p99Ms === "number" && first.p99Ms > 0, `p99Ms ${first?.p99Ms}`);
  assert(typeof first?.rps === "number" && first.rps > 0, `rps ${first?.rps}`);
  assert((first?.p50Ms ?? 0) <= (first?.p99Ms ?? 0) && (first?.p99Ms ?? 0) <= (first?.maxMs ?? 0));
  assertStringIncludes(stderr(), "Run 1/1 @ concurrency=2");
  assertStringIncludes(stderr(), "Summary");
});

Deno.test("--csv - writes CSV to stdout with the run label", async () => {
  await using backend = startBackend();
  const { ctx, stdout, stderr } = captureContext();
  const code = await loadtestCommand(
    ["--url", backend.url.href, "--total", "4", "-c", "1", "--csv", "-"],
    ctx,
  );
  assertEquals(code, 0);
  const lines = stdout().trim().split("\n");
  assertEquals(lines.length, 2);
  assert(lines[0]?.endsWith(",label") === true, lines[0]);
  assert(lines[1]?.endsWith(",c1-r1") === true, lines[1]);
  assertStringIncludes(stderr(), "Summary");
});

Deno.test("output paths are checked before any request is sent", async () => {
  await using backend = startBackend();
  const dir = await Deno.makeTempDir();
  try {
    const cases: Array<[string[], string]> = [
      [["--json", `${dir}/missing/x.json`], `Invalid --json "${dir}/missing/x.json": cannot write`],
      [["--csv", dir], `Invalid --csv "${dir}": it is a directory`],
      [["--chart", `${dir}/x.png`], `Invalid --chart "${dir}/x.png": the chart is SVG`],
      [["--json", "-", "--csv", "-"], "Cannot combine --json - and --csv -"],
    ];
    for (const [flags, message] of cases) {
      const { ctx } = captureContext();
      await assertRejects(
        () => loadtestCommand(["--url", backend.url.href, "--total", "4", ...flags], ctx),
        UsageError,
        message,
      );
    }
    assertEquals(backend.requests(), 0);
    assertEquals([...Deno.readDirSync(dir)].length, 0, "the check leaves no file behind");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadtest schema prints the published JSON Schema", async () => {
  const { ctx, stdout } = captureContext();
  assertEquals(await loadtestCommand(["schema"], ctx), 0);
  const published = await Deno.readTextFile(
    new URL("../../load/report.schema.json", import.meta.url),
  );
  assertEquals(
    stdout(),
    published,
    'load/report.schema.json is stale: run "deno task loadtest schema > load/report.schema.json"',
  );
});

Deno.test("merge reads a version 1 report and writes a valid version 2 one", async () => {
  const v1 = {
    version: 1,
    url: "http://127.0.0.1:1/",
    method: "GET",
    model: "closed",
    stop: { kind: "count", total: 2 },
    sources: 1,
    isInterrupted: false,
    runs: [{
      round: 1,
      rounds: 1,
      model: "closed",
      level: 2,
      stats: {
        requests: 2,
        ok: 1,
        errors: 1,
        statuses: { "200": 1, "503": 1 },
        networkErrors: { timeout: 0, refused: 0, reset: 0, network: 0 },
        cutOff: 0,
        late: 0,
        unsent: 0,
        bodyBytes: 2,
        elapsedMs: 10,
        errorSamples: [{ message: "HTTP 503 Service Unavailable", count: 1 }],
        histogram: "",
      },
    }],
  };
  const { ctx, stdout } = captureContext();
  const code = await loadtestCommand(["merge", "old.json", "--json", "-"], ctx, {
    readTextFile: () => Promise.resolve(JSON.stringify(v1)),
  });
  assertEquals(code, 0);
  const [run] = runsOf(stdout());
  assertEquals(run?.label, "c2-r1");
  assertEquals(run?.stats.errorsByClass, { "5xx": 1 });
});
