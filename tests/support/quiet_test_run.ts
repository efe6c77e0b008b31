/**
 * `deno task test` and `deno task test:fast`: runs `deno test` with the arguments given and
 * prints only what needs reading. A passing test's line and its output (logs of the balancers
 * it started) are dropped; a failing test's line and output, ignored tests, the errors and
 * failures sections, anything unrecognised, and the summary line
 * (`ok | 360 passed | 0 failed | 1 ignored (9s)`, which `.ci/run` reads) are kept. The whole
 * run's output is written to a file whose path is printed when something failed.
 *
 * With `--fast` it runs the unit tests only: the test files under `tests/` that start no
 * server, subprocess or browser and open no socket (see {@linkcode isUnitTestFile}).
 *
 * @module
 */
import { REPO_ROOT } from "./subprocess.ts";

/**
 * What a test file uses when it is not a unit test: sockets, servers, subprocesses, browsers
 * and the helpers that start them.
 */
const NOT_UNIT = [
  /\bDeno\.(serve|listen|listenTls|connect|connectTls|Command|run)\b/,
  /\bstart(Server|Balancer|LbProcess|Process|RawBackend|ScriptedBackend|DataPlane|Serving)\b/,
  /\b(runDeno|serveBackend|launchChromium|chromiumTest|backendsCommand)\b/,
  /\bfetch\(|\bnew WebSocket\(/,
  /\b(demoCommand|lbCommand|main)\(/,
  /support\/(servers|subprocess|raw_backend|raw_http|chromium|files)\.ts/,
  /test_servers\.ts|scripted_backend\.ts|load_fixtures\.ts/,
  /\bnew Worker\(|\bWorkerPool\b|\brunLoadWorker\b/,
];

/**
 * Whether a test file is a unit test: nothing in it starts a server, a subprocess or a
 * browser, or opens a socket.
 *
 * @param text The file's source.
 * @returns True for a unit test.
 *
 * @example
 * ```ts
 * import { isUnitTestFile } from "./quiet_test_run.ts";
 * if (!isUnitTestFile('Deno.test("pick()", () => {});')) throw new Error();
 * if (isUnitTestFile("await fetch(url);")) throw new Error();
 * ```
 */
export function isUnitTestFile(text: string): boolean {
  return !NOT_UNIT.some((pattern) => pattern.test(text));
}

/** Every `*_test.ts` file under `tests/` that {@linkcode isUnitTestFile} accepts, sorted. */
async function unitTestFiles(): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: URL, relative: string): Promise<void> => {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${relative}${entry.name}`;
      if (entry.isDirectory) await walk(new URL(`${entry.name}/`, dir), `${path}/`);
      else if (entry.name.endsWith("_test.ts")) {
        if (isUnitTestFile(await Deno.readTextFile(new URL(entry.name, dir)))) found.push(path);
      }
    }
  };
  await walk(new URL("tests/", REPO_ROOT), "tests/");
  return found.sort();
}

const OUTPUT_START = /^------- (post-test )?output -------$/;
const OUTPUT_END = /----- (post-test )?output end -----$/;
const RESULT = / \.\.\. (ok|FAILED|ignored)\b/;

/**
 * Keeps what a reader needs from the pretty reporter's output: see the module's description.
 *
 * @param lines The output of `deno test`, line by line.
 * @returns The lines to print.
 *
 * @example
 * ```ts
 * import { quietLines } from "./quiet_test_run.ts";
 * const kept = quietLines([
 *   "------- output -------", "noise", "./a_test.ts => passes ...----- output end -----",
 *   "./a_test.ts => passes ... ok (1ms)", "", "ok | 1 passed | 0 failed (5ms)",
 * ]);
 * if (kept.join("|") !== "ok | 1 passed | 0 failed (5ms)") throw new Error(kept.join("|"));
 * ```
 */
export function quietLines(lines: readonly string[]): string[] {
  const kept: string[] = [];
  let block: string[] | undefined;
  let pending: string[] = [];
  for (const line of lines) {
    if (block !== undefined) {
      block.push(line);
      if (OUTPUT_END.test(line)) {
        pending = block;
        block = undefined;
      }
      continue;
    }
    if (OUTPUT_START.test(line)) {
      block = [line];
      continue;
    }
    const result = RESULT.exec(line);
    if (result !== null) {
      if (result[1] !== "ok") kept.push(...pending, line);
      pending = [];
      continue;
    }
    kept.push(...pending);
    pending = [];
    // File headers, blank lines and a test's start line ("name ...") say nothing on their own.
    if (
      /^(Check|Download|running \d+ tests? from) /.test(line) || /^\S.* \.\.\.$|^\s*$/.test(line)
    ) {
      continue;
    }
    kept.push(line);
  }
  kept.push(...pending, ...(block ?? []));
  return kept;
}

const SUMMARY =
  /^(ok|FAILED) \| (\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed(?: \((\d+) steps?\))?(?: \| (\d+) ignored(?: \((\d+) steps?\))?)?/;

/** Runs `deno test` with `args`; resolves with its exit status and its whole output. */
async function runDenoTest(args: readonly string[]): Promise<{ code: number; output: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", ...args],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Both streams into one text, in the order they arrive.
  let output = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) output += text;
  };
  await Promise.all([pump(child.stdout), pump(child.stderr)]);
  // Colour codes would hide the results and the summary from the patterns above.
  // deno-lint-ignore no-control-regex
  return { code: (await child.status).code, output: output.replace(/\x1b\[[0-9;]*m/g, "") };
}

if (import.meta.main) {
  const isFast = Deno.args.includes("--fast");
  const args = Deno.args.filter((arg) => arg !== "--fast");
  const files = isFast ? await unitTestFiles() : [];
  // `--ignore` replaces deno.json's `exclude`, so it names `dist/` (the bundle) again.
  const runs = [await runDenoTest([...args, "--ignore=dist/", ...files])];
  const encoder = new TextEncoder();
  const kept: string[] = [];
  const totals = { passed: 0, failed: 0, ignored: 0, ignoredSteps: 0 };
  let summaries = 0;
  for (const run of runs) {
    for (const line of quietLines(run.output.split("\n"))) {
      const summary = SUMMARY.exec(line);
      if (summary === null) {
        kept.push(line);
        continue;
      }
      summaries++;
      totals.passed += Number(summary[2]);
      totals.failed += Number(summary[4]);
      totals.ignored += Number(summary[6] ?? 0);
      totals.ignoredSteps += Number(summary[7] ?? 0);
    }
  }
  const code = runs.find((run) => run.code !== 0)?.code ?? 0;
  if (code !== 0) {
    const log = await Deno.makeTempFile({ prefix: "denolb-test-", suffix: ".log" });
    await Deno.writeTextFile(log, runs.map((run) => run.output).join("\n"));
    kept.push(`The whole output of deno test is in ${log}`);
  }
  if (summaries === runs.length) {
    kept.push(
      `${code === 0 ? "ok" : "FAILED"} | ${totals.passed} passed | ${totals.failed} failed | ` +
        `${totals.ignored} ignored` +
        (totals.ignoredSteps === 0 ? "" : ` (${totals.ignoredSteps} step)`),
    );
  }
  await Deno.stdout.write(encoder.encode(kept.join("\n") + "\n"));
  Deno.exit(code);
}
