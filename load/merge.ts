/**
 * `loadtest merge a.json b.json ...`: combines reports made at the same time on several machines
 * into one. The n-th run of every report is one slice of the n-th combined run: counts add up,
 * levels (concurrency or rate) add up, histograms merge exactly, and the elapsed time is the
 * longest slice's.
 *
 * @module
 */
import { type LoadReport, REPORT_VERSION } from "./report.ts";
import { mergeInputSchema } from "./report_schema.ts";
import { mergeRunStats, type RunStats } from "./stats.ts";
import type { RunRecord } from "./sweep.ts";

/**
 * Parses and validates a JSON report written by `--json`.
 *
 * @param text The file's text.
 * @param name The file name, for messages.
 * @returns The report.
 * @throws {SyntaxError} When the text is not JSON or not a load report.
 */
export function parseLoadReport(text: string, name: string): LoadReport {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    const block = reportInLog(text);
    try {
      if (block === undefined) throw error;
      data = JSON.parse(block);
    } catch {
      throw new SyntaxError(`Cannot parse "${name}": not JSON`, { cause: error });
    }
  }
  const result = mergeInputSchema.safeParse(data);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue === undefined
      ? ""
      : ` at ${issue.path.join(".") || "top level"}: ${issue.message}`;
    throw new SyntaxError(`Cannot read "${name}" as a loadtest --json report${where}`, {
      cause: result.error,
    });
  }
  const report = result.data;
  // The computed statistics and labels are derived again from the counters and histograms.
  const runs: RunRecord[] = report.runs.map(({ round, rounds, model, level, isStaged, stats }) => {
    const raw: RunStats = {
      requests: stats.requests,
      ok: stats.ok,
      errors: stats.errors,
      statuses: stats.statuses,
      // Version 1 reports did not say which statuses failed: the default rule (not 2xx/3xx).
      failedStatuses: stats.failedStatuses ??
        Object.fromEntries(Object.entries(stats.statuses).filter(([code]) => !/^[23]/.test(code))),
      networkErrors: stats.networkErrors,
      cutOff: stats.cutOff,
      late: stats.late,
      // Before version 3 nothing was censored or resent, and lateness was not kept apart.
      lateByGenerator: stats.lateByGenerator ?? 0,
      unsent: stats.unsent,
      censored: stats.censored ?? 0,
      resent: stats.resent ?? 0,
      peakInFlight: stats.peakInFlight ?? 0,
      inFlightCap: stats.inFlightCap ?? 0,
      bodyBytes: stats.bodyBytes,
      elapsedMs: stats.elapsedMs,
      errorSamples: stats.errorSamples,
      histogram: stats.histogram,
      lateness: stats.lateness ?? "",
    };
    return {
      round,
      rounds,
      model,
      level,
      ...(isStaged === true ? { isStaged } : {}),
      stats: stats.timeline === undefined ? raw : { ...raw, timeline: stats.timeline },
    };
  });
  return { ...report, version: REPORT_VERSION, runs };
}

/**
 * The `--json -` report in a log that holds the text report and other lines too (`kubectl logs`
 * of a `kube loadtest` pod, where stdout and stderr meet): the lines from a line `{` to the last
 * line `}`, keeping only the indented ones between, as `JSON.stringify(report, null, 2)` writes
 * them (so a stray line of the other stream in between is dropped).
 *
 * @param text The log.
 * @returns The report's JSON text, or `undefined` when there is none.
 *
 * @example
 * ```ts
 * import { reportInLog } from "./merge.ts";
 * const log = 'Load test: GET http://a/\n{\n  "version": 4\n}\nThresholds met\n';
 * if (reportInLog(log) !== '{\n  "version": 4\n}') throw new Error();
 * ```
 */
export function reportInLog(text: string): string | undefined {
  const lines = text.split(/\r?\n/);
  const start = lines.indexOf("{");
  const end = lines.lastIndexOf("}");
  if (start === -1 || end <= start) return undefined;
  const inner = lines.slice(start + 1, end).filter((line) => line.startsWith("  "));
  return ["{", ...inner, "}"].join("\n");
}

/**
 * Combines reports of one test run from several machines.
 *
 * @param reports The reports with their file names (for messages).
 * @returns The combined report.
 * @throws {RangeError} When the reports do not describe the same test: a different URL,
 * model, stop condition or number of runs.
 * @throws {SyntaxError} When a histogram cannot be decoded.
 */
export function mergeReports(
  reports: ReadonlyArray<{ readonly name: string; readonly report: LoadReport }>,
): LoadReport {
  const first = reports[0];
  if (first === undefined) throw new RangeError("Cannot merge no reports: give at least one file");
  for (const { name, report } of reports.slice(1)) {
    const mismatch = (what: string, theirs: string, ours: string) =>
      new RangeError(
        `Cannot merge "${name}" with "${first.name}": ${what} "${theirs}" differs from "${ours}"`,
      );
    if (report.model !== first.report.model) {
      throw mismatch("model", report.model, first.report.model);
    }
    if (report.runs.length !== first.report.runs.length) {
      throw mismatch("run count", String(report.runs.length), String(first.report.runs.length));
    }
    if (report.method !== first.report.method) {
      throw mismatch("method", report.method, first.report.method);
    }
    if (report.stop.kind !== first.report.stop.kind) {
      throw mismatch("stop condition", report.stop.kind, first.report.stop.kind);
    }
  }
  const urls = [...new Set(reports.map(({ report }) => report.url))];
  const runs = first.report.runs.map((run, index): RunRecord => {
    const slices = reports.map(({ report }) => report.runs[index] ?? run);
    return {
      round: run.round,
      rounds: run.rounds,
      model: run.model,
      level: slices.reduce((sum, slice) => sum + slice.level, 0),
      ...(run.isStaged === true ? { isStaged: true } : {}),
      stats: mergeRunStats(slices.map((slice) => slice.stats)),
    };
  });
  return {
    version: REPORT_VERSION,
    url: urls.join(", "),
    method: first.report.method,
    model: first.report.model,
    // Slices ran side by side: their totals add up, a duration stays the same.
    stop: first.report.stop.kind === "count"
      ? {
        kind: "count",
        total: reports.reduce(
          (sum, { report }) => sum + (report.stop.kind === "count" ? report.stop.total : 0),
          0,
        ),
      }
      : first.report.stop,
    // Slices of a ramp ran the same stages side by side: their rates add up.
    ...(first.report.stages === undefined ? {} : {
      stages: first.report.stages.map((stage, index) => ({
        durationMs: stage.durationMs,
        targetRate: reports.reduce(
          (sum, { report }) => sum + (report.stages?.[index]?.targetRate ?? 0),
          0,
        ),
      })),
    }),
    sources: reports.reduce((sum, { report }) => sum + report.sources, 0),
    isInterrupted: reports.some(({ report }) => report.isInterrupted),
    runs,
  };
}
