import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { RUN_PERMISSIONS, runDeno } from "../support/subprocess.ts";
import { refusedUrl, startQuarterFailingBackend } from "./load_fixtures.ts";
import { assertValidReport } from "./report_validation.ts";

const loadtest = (args: readonly string[]) =>
  runDeno(["run", ...RUN_PERMISSIONS, "main.ts", "loadtest", ...args]);

Deno.test("main.ts loadtest --json - keeps stdout pure JSON and reports on stderr", async () => {
  await using backend = startQuarterFailingBackend();
  const result = await loadtest([
    "--url",
    backend.url.href,
    "--total",
    "20",
    "-c",
    "2",
    "--json",
    "-",
  ]);
  assertEquals(result.code, 0, result.stderr);
  const report = assertValidReport(result.stdout) as { runs: Array<{ label: string }> };
  assertEquals(report.runs[0]?.label, "c2-r1");
  assertStringIncludes(result.stderr, "Run 1/1 @ concurrency=2");
  assertStringIncludes(result.stderr, "c2-r1  1/1");
});

Deno.test("main.ts loadtest exits 1 when nothing succeeded, 2 for an unwritable output", async () => {
  const url = refusedUrl();
  const failed = await loadtest(["--url", url.href, "--total", "5", "-c", "1"]);
  assertEquals(failed.code, 1);
  assertStringIncludes(failed.stdout, "n/a");
  assertStringIncludes(failed.stderr, "Nothing succeeded in c1-r1");
  const unwritable = await loadtest(["--url", url.href, "--json", "/nonexistent/dir/x.json"]);
  assertEquals(unwritable.code, 2);
  assertEquals(unwritable.stderr.trim().split("\n").length, 1, unwritable.stderr);
  assertStringIncludes(
    unwritable.stderr,
    'Invalid --json "/nonexistent/dir/x.json": cannot write there (its directory does not exist)',
  );
  assert(!unwritable.stderr.includes("    at "), "no stack trace for a user mistake");
});
