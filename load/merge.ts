/**
 * `loadtest merge a.json b.json ...`: combines reports made at the same time on several machines
 * into one. The n-th run of every report is one slice of the n-th combined run: counts add up,
 * levels (concurrency or rate) add up, histograms merge exactly, and the elapsed time is the
 * longest slice's.
 *
 * @module
 */
import { z } from "zod";
import { type LoadReport, REPORT_VERSION } from "./report.ts";
import { mergeRunStats, type RunStats } from "./stats.ts";
import type { RunRecord } from "./sweep.ts";

const count = z.number().int().nonnegative();
const statsSchema = z.object({
  requests: count,
  ok: count,
  errors: count,
  statuses: z.record(z.string().regex(/^\d{3}$/), count),
  networkErrors: z.object({ timeout: count, refused: count, reset: count, network: count }),
  cutOff: count,
  late: count,
  unsent: count,
  bodyBytes: count,
  elapsedMs: z.number().nonnegative(),
  errorSamples: z.array(z.object({ message: z.string(), count })),
  histogram: z.string(),
  timeline: z.array(z.object({ second: count, ok: count, errors: count, histogram: z.string() }))
    .optional(),
});
const reportSchema = z.object({
  version: z.literal(REPORT_VERSION),
  url: z.string(),
  method: z.string(),
  model: z.enum(["closed", "open"]),
  stop: z.discriminatedUnion("kind", [
    z.object({ kind: z.literal("count"), total: count }),
    z.object({ kind: z.literal("time"), durationMs: z.number().positive() }),
  ]),
  sources: z.number().int().positive(),
  isInterrupted: z.boolean(),
  runs: z.array(z.object({
    round: z.number().int().positive(),
    rounds: z.number().int().positive(),
    model: z.enum(["closed", "open"]),
    level: z.number().positive(),
    stats: statsSchema,
  })),
});

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
    throw new SyntaxError(`Cannot parse "${name}": not JSON`, { cause: error });
  }
  const result = reportSchema.safeParse(data);
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
  const runs: RunRecord[] = report.runs.map((run) => {
    const { timeline, ...rest } = run.stats;
    const stats: RunStats = timeline === undefined ? rest : { ...rest, timeline };
    return { ...run, stats };
  });
  return { ...report, runs };
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
    sources: reports.reduce((sum, { report }) => sum + report.sources, 0),
    isInterrupted: reports.some(({ report }) => report.isInterrupted),
    runs,
  };
}
