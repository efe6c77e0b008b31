import { UsageError } from "../../lib/shared/command.ts";
import { type LoadPlan, parseLoadArgs } from "../../load/options.ts";
import { assertEquals, assertThrows, fail } from "../support/assert.ts";

function plan(args: string[]): LoadPlan {
  const command = parseLoadArgs(args);
  if (command.kind !== "run") fail(`expected a run, got ${command.kind}`);
  return command.plan;
}

Deno.test("parseLoadArgs() applies the original Python load tester's defaults", () => {
  const p = plan([]);
  assertEquals(p.request.url.href, "http://127.0.0.1:9090/");
  assertEquals(p.stop, { kind: "count", total: 200 });
  assertEquals(p.levels, [50]);
  assertEquals(p.request.timeoutMs, 5000);
  assertEquals(p.rounds, 1);
  assertEquals(p.model, "closed");
  assertEquals(p.request.method, "GET");
  assertEquals(p.request.keepAlive, true);
  assertEquals(p.successStatuses, [[200, 399]]);
  assertEquals(p.transport, "auto");
  assertEquals(p.workers, undefined);
  assertEquals(p.warmupMs, 0);
});

Deno.test("parseLoadArgs() reads the original Python load tester's command exactly as typed", () => {
  const p = plan([
    "--url",
    "http://127.0.0.1:9090/",
    "--total",
    "800",
    "--concurrency",
    "25",
    "50",
    "100",
    "150",
    "200",
    "250",
    "--rounds",
    "2",
    "--timeout",
    "4",
  ]);
  assertEquals(p.levels, [25, 50, 100, 150, 200, 250]);
  assertEquals(p.stop, { kind: "count", total: 800 });
  assertEquals(p.rounds, 2);
  assertEquals(p.request.timeoutMs, 4000);
});

Deno.test("parseLoadArgs() accepts comma-separated, = and -c lists", () => {
  assertEquals(plan(["--concurrency", "25,50,100"]).levels, [25, 50, 100]);
  assertEquals(plan(["--concurrency=25", "50"]).levels, [25, 50]);
  assertEquals(plan(["-c", "5", "10", "--total", "10"]).levels, [5, 10]);
  assertEquals(plan(["--concurrency", "25, 50", "75"]).levels, [25, 50, 75]);
});

Deno.test("parseLoadArgs() builds an open-model plan from --rate and --duration", () => {
  const p = plan([
    "--rate",
    "100",
    "250.5",
    "--duration",
    "30s",
    "--warmup",
    "2s",
    "--max-in-flight",
    "64",
  ]);
  assertEquals(p.model, "open");
  assertEquals(p.levels, [100, 250.5]);
  assertEquals(p.stop, { kind: "time", durationMs: 30_000 });
  assertEquals(p.warmupMs, 2000);
  assertEquals(p.maxInFlight, 64);
});

Deno.test("parseLoadArgs() reads request, output and threshold flags", () => {
  const p = plan([
    "--method",
    "post",
    "-H",
    "X-A: 1",
    "--header",
    "Content-Type: text/plain",
    "--body",
    "hi",
    "--no-keepalive",
    "--success",
    "2xx,404",
    "--workers",
    "3",
    "--transport",
    "fetch",
    "--json",
    "out.json",
    "--csv",
    "out.csv",
    "--chart",
    "out.svg",
    "--markdown",
    "--max-error-rate",
    "1%",
    "--max-p99",
    "0.2",
    "--find-capacity",
  ]);
  assertEquals(p.request.method, "POST");
  assertEquals(p.request.headers, [["X-A", "1"], ["Content-Type", "text/plain"]]);
  assertEquals(new TextDecoder().decode(p.request.body), "hi");
  assertEquals(p.request.keepAlive, false);
  assertEquals(p.successStatuses, [[200, 299], [404, 404]]);
  assertEquals(p.workers, 3);
  assertEquals(p.transport, "fetch");
  assertEquals(p.outputs, {
    jsonFile: "out.json",
    csvFile: "out.csv",
    chartFile: "out.svg",
    markdown: true,
    quiet: false,
  });
  assertEquals(p.thresholds, { maxErrorRate: 0.01, maxP99Ms: 200 });
  assertEquals(p.findCapacity, true);
});

Deno.test("parseLoadArgs() reads --body-file through the injected reader", () => {
  const command = parseLoadArgs(["--body-file", "b.bin"], {
    readFile: (path) => new TextEncoder().encode(`from ${path}`),
  });
  if (command.kind !== "run") fail("expected a run");
  assertEquals(new TextDecoder().decode(command.plan.request.body), "from b.bin");
});

Deno.test("parseLoadArgs() recognises help and merge", () => {
  assertEquals(parseLoadArgs(["--help"]), { kind: "help" });
  assertEquals(parseLoadArgs(["-h"]), { kind: "help" });
  assertEquals(parseLoadArgs(["merge", "a.json", "b.json", "--markdown", "--max-p99", "1s"]), {
    kind: "merge",
    files: ["a.json", "b.json"],
    outputs: { markdown: true, quiet: false },
    thresholds: { maxP99Ms: 1000 },
    warnings: [],
  });
});

Deno.test("parseLoadArgs() warns that --max-p99 200 means 200 seconds", () => {
  const run = parseLoadArgs(["--max-p99", "200"]);
  assertEquals(run.kind === "run" ? run.plan.thresholds.maxP99Ms : undefined, 200_000);
  assertEquals(run.kind === "run" ? run.warnings : undefined, [
    "Warning: --max-p99 200 means 200 seconds (a bare number is seconds), which no request can reach with --timeout 5.0s; write --max-p99 200ms if you meant milliseconds",
  ]);
  const merge = parseLoadArgs(["merge", "a.json", "--max-p99", "250"]);
  assertEquals(merge.kind === "merge" ? merge.warnings : undefined, [
    "Warning: --max-p99 250 means 250 seconds (a bare number is seconds); write --max-p99 250ms if you meant milliseconds",
  ]);
  // A unit, or a bare number a p99 could sensibly be, draws no warning.
  for (const text of ["200ms", "200s", "0.2", "2"]) {
    const command = parseLoadArgs(["--max-p99", text]);
    assertEquals(command.kind === "run" ? command.warnings : undefined, [], text);
  }
});

const REJECTIONS: ReadonlyArray<readonly [string[], string]> = [
  [["--bogus"], 'Unknown flag "--bogus": run "loadtest --help" for the flags'],
  [["extra"], 'Unexpected argument "extra": loadtest takes flags only (or "merge FILE...")'],
  [["--total", "0"], 'Invalid --total "0": must be a positive integer'],
  [["--total", "-3"], 'Invalid --total "-3": must be a positive integer'],
  [["--total", "abc"], 'Invalid --total "abc": must be a positive integer'],
  [["--total", "1.5"], 'Invalid --total "1.5": must be a positive integer'],
  [
    ["--concurrency", "25", "0"],
    'Invalid --concurrency "25,0": each value must be a positive integer, not "0"',
  ],
  [
    ["--concurrency", "x"],
    'Invalid --concurrency "x": each value must be a positive integer, not "x"',
  ],
  [["--concurrency", ","], 'Invalid --concurrency ",": give at least one value'],
  [["--rate", "-5"], 'Invalid --rate "-5": each value must be a positive number, not "-5"'],
  [["--rounds", "0"], 'Invalid --rounds "0": must be a positive integer'],
  [
    ["--timeout", "soon"],
    'Invalid --timeout "soon": use a duration such as 250ms, 5s or 1m (a bare number is seconds)',
  ],
  [["--timeout", "0"], 'Invalid --timeout "0": must be more than zero'],
  [
    ["--duration", "1x"],
    'Invalid --duration "1x": use a duration such as 250ms, 5s or 1m (a bare number is seconds)',
  ],
  [
    ["--warmup", "later"],
    'Invalid --warmup "later": use a duration such as 250ms, 5s or 1m (a bare number is seconds)',
  ],
  [
    ["--max-p99", "fast"],
    'Invalid --max-p99 "fast": use a duration such as 250ms, 5s or 1m (a bare number is seconds)',
  ],
  [
    ["--max-error-rate", "2"],
    'Invalid --max-error-rate "2": must be a fraction between 0 and 1 (0.01) or a percentage (1%)',
  ],
  [
    ["--max-error-rate", "lots"],
    'Invalid --max-error-rate "lots": must be a fraction between 0 and 1 (0.01) or a percentage (1%)',
  ],
  [["--url", "nope"], 'Invalid --url "nope": not an absolute URL'],
  [["--url", "ftp://x/"], 'Invalid --url "ftp://x/": protocol must be http or https'],
  [["--method", "GE T"], 'Invalid --method "GE T": must be an HTTP method token such as GET'],
  [["--header", "NoColon"], 'Invalid --header "NoColon": use "Name: value" with a token name'],
  [
    ["--body", "a", "--body-file", "b"],
    "Cannot combine --body and --body-file: give the body one way",
  ],
  [
    ["--success", "7xx"],
    'Invalid --success "7xx": use codes (200), classes (2xx) or ranges (200-204) between 100 and 599',
  ],
  [["--transport", "h3"], 'Invalid --transport "h3": must be one of auto, fetch, http1'],
  [
    ["--transport", "http1", "--url", "https://example.test/"],
    'Invalid --transport "http1" for "https://example.test/": the HTTP/1.1 client speaks plain http only',
  ],
  [["--workers", "0"], 'Invalid --workers "0": must be a positive integer'],
  [["--workers", "1000"], 'Invalid --workers "1000": must be at most 256'],
  [
    ["--max-in-flight", "10"],
    'Invalid --max-in-flight "10": it caps the open model, so it needs --rate',
  ],
  [
    ["--concurrency", "5", "--rate", "10"],
    "Cannot combine --concurrency and --rate: --concurrency sets closed-model users, --rate an open-model arrival rate",
  ],
  [
    ["--total", "5", "--duration", "1s"],
    "Cannot combine --total and --duration: a run stops after a number of requests or after a time, not both",
  ],
  [["--json", ""], 'Invalid --json "": give a file path'],
  [["merge"], "Missing files for merge: give one or more JSON results of --json"],
  [
    ["merge", "a.json", "--total", "5"],
    'Unexpected flag "--total" for merge: merge takes JSON files, outputs and thresholds',
  ],
];

for (const [args, message] of REJECTIONS) {
  Deno.test(`parseLoadArgs() rejects ${args.join(" ")}`, () => {
    const error = assertThrows(() => parseLoadArgs(args), UsageError);
    assertEquals(error.message, message);
  });
}

Deno.test("parseLoadArgs() names the file --body-file cannot read", () => {
  const error = assertThrows(
    () =>
      parseLoadArgs(["--body-file", "missing.bin"], {
        readFile: () => {
          throw new Deno.errors.NotFound("No such file or directory");
        },
      }),
    UsageError,
  );
  assertEquals(error.message, 'Cannot read --body-file "missing.bin": No such file or directory');
});
