/**
 * The `loadtest` command: flags to plan, plan to runs (in-process or over workers), runs to
 * reports, thresholds to the exit code. Also `loadtest merge`.
 *
 * Exit codes: 0 done; 1 a threshold was breached, a run had no success at all, the test was
 * interrupted, or `--find-capacity` found no level that held. Usage errors (bad flags, unreadable or mismatched
 * merge inputs) are thrown as {@linkcode UsageError} for `main.ts` to print and map to 2; other
 * failures (a worker that cannot start, an output file that cannot be written) are thrown as is
 * and map to 1.
 *
 * @module
 */
import { type Clock, systemClock } from "../lib/shared/clock.ts";
import { type CommandContext, EXIT, UsageError, type WriteText } from "../lib/shared/command.ts";
import { formatDuration } from "../lib/shared/duration.ts";
import { findCapacity, formatCapacityResult } from "./capacity.ts";
import { formatStages } from "./arrivals.ts";
import { renderChart } from "./chart.ts";
import { renderHtml } from "./html_report.ts";
import { LOADTEST_HELP } from "./help.ts";
import { mergeReports, parseLoadReport } from "./merge.ts";
import { type LoadPlan, type OutputOptions, parseLoadArgs, STDOUT } from "./options.ts";
import { checkOutputPath, type OutputPathDeps } from "./output_paths.ts";
import { readDescriptorLimit } from "./descriptor_limit.ts";
import { LiveStats } from "./live_stats.ts";
import { type Progress, startProgress } from "./progress.ts";
import {
  allFailedLine,
  formatRunBlock,
  formatSummary,
  formatSummaryTable,
  type LoadReport,
  REPORT_VERSION,
  shortLabel,
} from "./report.ts";
import { formatCsv, formatJson, formatMarkdown } from "./report_formats.ts";
import { reportJsonSchema } from "./report_schema.ts";
import { type RunRecord, runSweep, type SweepHooks } from "./sweep.ts";
import type { Thresholds } from "./threshold_rules.ts";
import { checkThresholds } from "./thresholds.ts";
import { createDispatchingFactory, type TransportFactories } from "./transports.ts";
import { chooseWorkers, startExecutor } from "./worker_choice.ts";
import { errorText } from "../lib/shared/error_text.ts";

// `main.ts` takes the help from the command it describes.
export { LOADTEST_HELP };

/** Dependencies of {@linkcode loadtestCommand} (tests override them). */
export interface LoadtestDeps {
  /** Source of time. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /** Transport overrides. Default: the built-in transports. */
  readonly factories?: TransportFactories;
  /** CPU count for the default worker count. Default: `navigator.hardwareConcurrency`. */
  readonly cores?: number;
  /** Writes an output file. Default: `Deno.writeTextFile`. */
  readonly writeTextFile?: (path: string, text: string) => Promise<void>;
  /** Reads a merge input. Default: `Deno.readTextFile`. */
  readonly readTextFile?: (path: string) => Promise<string>;
  /** Reads `--body-file`, `--targets` and target bodies. Default: `Deno.readFileSync`. */
  readonly readFile?: (path: string) => Uint8Array;
  /** The open-files soft limit. Default: read from `/proc/self/limits` where there is one. */
  readonly descriptorLimit?: number;
  /** File system calls of the output path check. Default: the real ones. */
  readonly paths?: OutputPathDeps;
}

/**
 * Runs `loadtest` (or `loadtest merge`).
 *
 * @param args Arguments after the subcommand name.
 * @param ctx Output, terminal flag, cancellation and the worker module.
 * @param deps Overrides for tests.
 * @returns The exit code: {@linkcode EXIT.ok}, or {@linkcode EXIT.failure} on a threshold
 * breach, an interruption or no capacity found.
 * @throws {UsageError} For bad flags or unusable merge inputs.
 */
export async function loadtestCommand(
  args: readonly string[],
  ctx: CommandContext,
  deps: LoadtestDeps = {},
): Promise<number> {
  const command = parseLoadArgs(
    args,
    deps.readFile === undefined ? {} : { readFile: deps.readFile },
  );
  if (command.kind === "help") {
    ctx.stdout(LOADTEST_HELP);
    return EXIT.ok;
  }
  if (command.kind === "schema") {
    ctx.stdout(JSON.stringify(reportJsonSchema(), null, 2) + "\n");
    return EXIT.ok;
  }
  for (const warning of command.warnings) ctx.stderr(warning + "\n");
  await checkOutputs(command.kind === "merge" ? command.outputs : command.plan.outputs, deps);
  // With `--json -` or `--csv -` the data owns stdout and the human report moves to stderr.
  const outputs = command.kind === "merge" ? command.outputs : command.plan.outputs;
  const human = outputs.jsonFile === STDOUT || outputs.csvFile === STDOUT ? ctx.stderr : ctx.stdout;
  if (command.kind === "merge") {
    return await mergeCommand(command.files, command.outputs, command.thresholds, ctx, human, deps);
  }
  return await runCommand(command.plan, ctx, human, deps);
}

async function checkOutputs(outputs: OutputOptions, deps: LoadtestDeps): Promise<void> {
  const paths = [
    ["--json", outputs.jsonFile],
    ["--csv", outputs.csvFile],
    ["--chart", outputs.chartFile],
    ["--html", outputs.htmlFile],
  ] as const;
  for (const [flag, path] of paths) {
    if (path !== undefined && path !== STDOUT) await checkOutputPath(flag, path, deps.paths);
  }
}

async function runCommand(
  parsed: LoadPlan,
  ctx: CommandContext,
  human: WriteText,
  deps: LoadtestDeps,
): Promise<number> {
  const descriptorLimit = deps.descriptorLimit ?? readDescriptorLimit();
  const plan: LoadPlan = descriptorLimit === undefined ? parsed : { ...parsed, descriptorLimit };
  const clock = deps.clock ?? systemClock;
  const { workers, reason } = chooseWorkers(plan, deps.cores ?? navigator.hardwareConcurrency ?? 1);
  const createTransport = createDispatchingFactory(plan.transport, deps.factories);
  const executor = await startExecutor(plan, workers, {
    clock,
    createTransport,
    workerUrl: ctx.workerUrl,
  });
  const counter = new LiveStats();
  const mode = plan.outputs.quiet ? "off" : ctx.isTerminal ? "terminal" : "lines";
  let progress: Progress | undefined;
  const hooks: SweepHooks = {
    onRunStart: ({ round, level, job }) => {
      const label = shortLabel({
        round,
        model: plan.model,
        level,
        ...(plan.stages === undefined ? {} : { isStaged: true }),
      });
      progress = startProgress(label, job.stop, counter, { write: ctx.stderr, mode, clock });
    },
    onRunEnd: (record) => {
      progress?.stop();
      if (!plan.outputs.markdown) {
        const context = {
          url: targetUrls(plan),
          stop: plan.stop,
          ...(plan.stages === undefined ? {} : { stages: plan.stages }),
        };
        human(formatRunBlock(record, context) + "\n");
      }
    },
  };
  const sweepOptions = { signal: ctx.signal, progress: counter, hooks };
  const what = plan.targets === undefined
    ? `${plan.request.method} ${plan.request.url.href}`
    : `${plan.targets.length} targets (${targetUrls(plan)})`;
  ctx.stderr(
    `Load test: ${what}, ${plan.model} model, ` +
      `${workers === 1 ? "in-process" : `${workers} workers`} (${reason})` +
      (plan.warmupMs > 0 ? `, warm-up ${formatDuration(plan.warmupMs)}` : "") + "\n",
  );
  let records: RunRecord[];
  let capacityLine = "";
  let isCapacityFound = true;
  try {
    if (plan.findCapacity) {
      const found = await findCapacity(plan, executor, sweepOptions);
      records = found.runs;
      capacityLine = formatCapacityResult(found.result, plan.model);
      isCapacityFound = found.result.held !== undefined;
    } else {
      records = await runSweep(plan, executor, sweepOptions);
    }
  } finally {
    progress?.stop();
    await executor.close?.();
  }
  const expectedRuns = plan.levels.length * plan.rounds;
  const report: LoadReport = {
    version: REPORT_VERSION,
    url: targetUrls(plan),
    method: plan.request.method,
    model: plan.model,
    stop: plan.stop,
    ...(plan.stages === undefined ? {} : { stages: plan.stages }),
    sources: 1,
    isInterrupted: ctx.signal.aborted || (!plan.findCapacity && records.length < expectedRuns),
    runs: records,
  };
  if (plan.outputs.markdown) {
    human(formatMarkdown(report) + (capacityLine === "" ? "" : `\n${capacityLine}`));
  } else if (plan.findCapacity) {
    human(`Summary\n${formatSummaryTable(records)}\n${capacityLine}`);
  } else human(formatSummary(report));
  await writeOutputs(report, plan.outputs, ctx, deps, planSettings(plan, workers));
  // With --find-capacity the thresholds judge each level and a level where nothing succeeded is
  // one that failed; they are not an SLO for every run.
  const isBreached = !plan.findCapacity &&
    (reportThresholds(report, plan.thresholds, ctx) || reportAllFailed(report, ctx));
  return isBreached || report.isInterrupted || !isCapacityFound ? EXIT.failure : EXIT.ok;
}

/** The URL a report names: the target's, or each distinct one of a targets file. */
function targetUrls(plan: LoadPlan): string {
  if (plan.targets === undefined) return plan.request.url.href;
  return [...new Set(plan.targets.map((target) => target.spec.url.href))].join(", ");
}

async function mergeCommand(
  files: readonly string[],
  outputs: OutputOptions,
  thresholds: Thresholds,
  ctx: CommandContext,
  human: WriteText,
  deps: LoadtestDeps,
): Promise<number> {
  const read = deps.readTextFile ?? Deno.readTextFile;
  const inputs = [];
  for (const name of files) {
    let text: string;
    try {
      text = await read(name);
    } catch (error) {
      throw new UsageError(
        `Cannot read "${name}": ${errorText(error)}`,
        {
          cause: error,
        },
      );
    }
    try {
      inputs.push({ name, report: parseLoadReport(text, name) });
    } catch (error) {
      throw new UsageError(errorText(error), {
        cause: error,
      });
    }
  }
  let report: LoadReport;
  try {
    report = mergeReports(inputs);
  } catch (error) {
    throw new UsageError(errorText(error), { cause: error });
  }
  human(
    outputs.markdown
      ? formatMarkdown(report)
      : report.runs.map((run) => formatRunBlock(run, report) + "\n").join("") +
        formatSummary(report),
  );
  await writeOutputs(report, outputs, ctx, deps, [
    ["Merged from", files.join(", ")],
    ["Model", report.model],
  ]);
  const isBreached = reportThresholds(report, thresholds, ctx);
  return isBreached || reportAllFailed(report, ctx) ? EXIT.failure : EXIT.ok;
}

/** The settings a page shows first: what the run was asked to do. */
function planSettings(plan: LoadPlan, workers: number): Array<[string, string]> {
  const settings: Array<[string, string]> = [
    ["Target", targetUrls(plan)],
    ["Method", plan.targets === undefined ? plan.request.method : "from --targets"],
    ["Model", plan.model === "closed" ? "closed (concurrency)" : "open (arrival rate)"],
    [
      plan.model === "closed" ? "Concurrency" : "Rate (req/s)",
      plan.stages === undefined ? plan.levels.join(", ") : `stages ${formatStages(plan.stages)}`,
    ],
    [
      "Each run",
      plan.stop.kind === "count"
        ? `${plan.stop.total} requests`
        : formatDuration(plan.stop.durationMs),
    ],
    ["Rounds", String(plan.rounds)],
    ["Timeout", formatDuration(plan.request.timeoutMs)],
    ["Keep-alive", plan.request.keepAlive ? "yes" : "no"],
    ["Workers", workers === 1 ? "in-process" : String(workers)],
    ["Transport", plan.transport],
  ];
  if (plan.warmupMs > 0) settings.push(["Warm-up", formatDuration(plan.warmupMs)]);
  if (plan.maxInFlight !== undefined) settings.push(["Max in flight", String(plan.maxInFlight)]);
  return settings;
}

async function writeOutputs(
  report: LoadReport,
  outputs: OutputOptions,
  ctx: CommandContext,
  deps: LoadtestDeps,
  settings: ReadonlyArray<readonly [string, string]>,
): Promise<void> {
  const write = deps.writeTextFile ??
    ((path: string, text: string) => Deno.writeTextFile(path, text));
  const files: Array<[string | undefined, () => string, string]> = [
    [outputs.jsonFile, () => formatJson(report), "JSON"],
    [outputs.csvFile, () => formatCsv(report), "CSV"],
    [outputs.chartFile, () => renderChart(report), "chart"],
    [outputs.htmlFile, () => renderHtml(report, settings), "HTML report"],
  ];
  for (const [path, render, what] of files) {
    if (path === undefined) continue;
    if (path === STDOUT) {
      ctx.stdout(render());
      continue;
    }
    await write(path, render());
    ctx.stderr(`Wrote ${what} to ${path}\n`);
  }
}

/** Prints a line per run in which nothing succeeded; returns whether there was one. */
function reportAllFailed(report: LoadReport, ctx: CommandContext): boolean {
  const lines = report.runs.map(allFailedLine).filter((line) => line !== undefined);
  for (const line of lines) ctx.stderr(line + "\n");
  return lines.length > 0;
}

/** Prints one line per breach on stderr; returns whether any threshold was breached. */
function reportThresholds(
  report: LoadReport,
  thresholds: Thresholds,
  ctx: CommandContext,
): boolean {
  if (
    thresholds.maxErrorRate === undefined && thresholds.maxP99Ms === undefined &&
    (thresholds.rules ?? []).length === 0
  ) return false;
  const breaches = checkThresholds(report.runs, thresholds);
  for (const breach of breaches) ctx.stderr(breach.message + "\n");
  if (breaches.length === 0) ctx.stderr("Thresholds met\n");
  return breaches.length > 0;
}
