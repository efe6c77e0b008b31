/**
 * The human-readable report of a load test, as strings: the block per run (as
 * the original Python load tester printed it), the
 * summary table and the capacity estimate, plus the {@linkcode LoadReport} they all format. The
 * machine-readable writers (JSON, CSV, Markdown) live in `report_formats.ts`. Nothing here
 * prints.
 *
 * @module
 */
import { formatDuration } from "../lib/shared/duration.ts";
import { formatStages } from "./arrivals.ts";
import { LatencyHistogram } from "./histogram.ts";
import { DEFAULT_LATE_AFTER_MS } from "./scheduler.ts";
import type { ComputedStats, LoadReportJson, RunStats } from "./report_schema.ts";
import { formatLatencyHistogram, formatStatusBreakdown } from "./run_breakdown.ts";
import { computeStats } from "./run_summary.ts";
import { errorRate } from "./stats.ts";
import type { RunRecord } from "./sweep.ts";

export { REPORT_VERSION } from "./report_schema.ts";

/**
 * The full result of a load test in memory: the JSON report (`report_schema.ts`) with runs as
 * measured, before labels and computed statistics are added by `formatJson`.
 */
export type LoadReport = Readonly<Omit<LoadReportJson, "runs"> & { runs: readonly RunRecord[] }>;

/** A run with its derived numbers, computed once for formatting. */
interface RunView {
  readonly record: RunRecord;
  readonly stats: RunStats;
  readonly computed: ComputedStats;
}

function view(record: RunRecord): RunView {
  return { record, stats: record.stats, computed: computeStats(record.stats) };
}

/** What every report prints for a statistic that has no value (nothing succeeded). */
const NOT_AVAILABLE = "n/a";

/** A computed latency in ms with two decimals (`"1.50"`), or {@linkcode NOT_AVAILABLE}. */
function formatMaybeMs(ms: number | null): string {
  return ms === null ? NOT_AVAILABLE : ms.toFixed(2);
}

/** Requests per second with one decimal (`"123.4"`), or {@linkcode NOT_AVAILABLE}. */
function formatRps(rps: number | null): string {
  return rps === null ? NOT_AVAILABLE : rps.toFixed(1);
}

/**
 * The short run label, as the original Python load tester wrote it: `c25-r1` (concurrency 25,
 * round 1), or `rate500-r1` for a rate.
 *
 * @param record The run.
 * @returns The label.
 *
 * @example
 * ```ts
 * import { shortLabel } from "./report.ts";
 * if (shortLabel({ round: 1, model: "closed", level: 25 }) !== "c25-r1") throw new Error();
 * ```
 */
export function shortLabel(
  record: Pick<RunRecord, "round" | "model" | "level" | "isStaged">,
): string {
  if (record.isStaged === true) return `stages-r${record.round}`;
  return `${record.model === "closed" ? "c" : "rate"}${record.level}-r${record.round}`;
}

/**
 * Whether a run's never-sent requests are the target's doing: the in-flight cap was reached
 * (the target answered too slowly for the rate). Otherwise the generator itself fell behind.
 * One function decides it for every report line and the capacity estimate.
 *
 * @param stats The run.
 * @returns True when the open model's cap was reached.
 */
export function isCapReached(stats: RunStats): boolean {
  return stats.inFlightCap > 0 && stats.peakInFlight >= stats.inFlightCap;
}

/**
 * The line that says the in-flight cap made requests late, or `undefined` when it did not (no
 * late request, or the cap was never reached).
 */
function inFlightCapLine(stats: RunStats): string | undefined {
  const heldBack = stats.late - stats.lateByGenerator + stats.unsent;
  if (!isCapReached(stats) || heldBack === 0) return undefined;
  return `The in-flight cap (${stats.inFlightCap}, --max-in-flight) was reached: ${heldBack} requests started late or never, as the target answered too slowly for this rate with ${stats.inFlightCap} in flight; lower the rate, or raise --max-in-flight (the descriptor limit allowing)`;
}

const msText = (microseconds: number): string => (microseconds / 1000).toFixed(2);

/**
 * The line that says the load generator fell behind its own schedule (a late timer, a busy
 * CPU) rather than the target, or `undefined` when it kept up: requests it started late while
 * users were free, and planned requests never sent while the in-flight cap was not reached.
 *
 * @param stats The run.
 * @returns The line, or `undefined`.
 */
export function generatorBehindLine(stats: RunStats): string | undefined {
  const unsent = isCapReached(stats) ? 0 : stats.unsent;
  if (stats.lateByGenerator + unsent === 0) return undefined;
  const lateness = LatencyHistogram.decode(stats.lateness).summary();
  const parts = [
    ...(stats.lateByGenerator > 0
      ? [
        `${stats.lateByGenerator} requests started over ${DEFAULT_LATE_AFTER_MS} ms late while users were free (generator lateness max ${
          msText(lateness.max)
        } ms)`,
      ]
      : []),
    ...(unsent > 0 ? [`${unsent} planned requests were never sent below the in-flight cap`] : []),
  ];
  return `The load generator fell behind its own schedule, not the target: ${
    parts.join("; ")
  }. Its timers or CPU were late, so the target saw less than the rate asked for; give it more CPU (--workers, a quieter machine) or lower the rate`;
}

/**
 * The line that says which latencies are lower bounds (censored samples).
 *
 * @param stats The run.
 * @returns For example `Censored: 12 latencies are lower bounds: 10 timed out (at the timeout), 2 in flight at the end (the time they had waited)`.
 */
export function censoredLine(stats: RunStats): string {
  const timeouts = stats.censored - stats.cutOff - stats.unsent;
  const parts = [
    ...(timeouts > 0 ? [`${timeouts} timed out (recorded at the timeout)`] : []),
    ...(stats.cutOff > 0
      ? [`${stats.cutOff} in flight at the end (the time they had waited)`]
      : []),
    ...(stats.unsent > 0 ? [`${stats.unsent} never sent (their lateness at the end)`] : []),
  ];
  return `Censored: ${stats.censored} latencies are lower bounds, in the percentiles and thresholds: ${
    parts.join(", ")
  }`;
}

/** A closed-model max this many times its p99.9 means a stall the model mostly hid. */
const STALL_RATIO = 10;
/** ...and at least this far above it, so a 0.1 ms p99.9 with a 2 ms max says nothing. */
const STALL_MIN_GAP_US = 100_000;

/**
 * The line that says a closed-model run's max stands far above its p99.9, which is what a
 * stall looks like when users wait instead of arriving: during a one-second freeze N users send
 * N requests, not a second's worth, so the percentiles barely move. `undefined` otherwise.
 *
 * @param record The run.
 * @returns The warning, or `undefined`.
 */
export function closedModelStallLine(record: RunRecord): string | undefined {
  if (record.model !== "closed") return undefined;
  const latency = LatencyHistogram.decode(record.stats.histogram).summary();
  if (latency.count === 0) return undefined;
  const isStall = latency.max >= latency.p999 * STALL_RATIO &&
    latency.max - latency.p999 >= STALL_MIN_GAP_US;
  if (!isStall) return undefined;
  const rps = computeStats(record.stats).rps;
  const rate = rps === null || rps <= 0 ? "" : ` ${Math.max(1, Math.round(rps))}`;
  return `Warning: max ${msText(latency.max)} ms is ${
    Math.round(latency.max / Math.max(1, latency.p999))
  }x p99.9 (${
    msText(latency.p999)
  } ms). The closed model hides stalls: while the target stalled its ${record.level} users waited instead of sending, so few requests recorded it. Run the open model (--rate${rate}) to see what users arriving at that rate would wait`;
}

/**
 * The line that says a run had no success at all, or `undefined` when something succeeded.
 *
 * @param record The run.
 * @returns For example `Nothing succeeded in c25-r1: all 200 requests failed (refused=200)`.
 */
export function allFailedLine(record: RunRecord): string | undefined {
  const computed = computeStats(record.stats);
  if (!computed.isAllFailed) return undefined;
  const classes = Object.entries(computed.errorsByClass).map(([name, n]) => `${name}=${n}`);
  return `Nothing succeeded in ${shortLabel(record)} (${
    runLabel(record)
  }): all ${record.stats.requests} requests failed (${
    classes.join(" ")
  }); throughput and latency are n/a`;
}

const levelName = (
  model: "closed" | "open",
): string => (model === "closed" ? "concurrency" : "rate");
const levelText = (model: "closed" | "open", level: number): string =>
  model === "closed" ? String(level) : `${formatNumber(level)}/s`;

function formatNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

/**
 * The run's label, as the original Python load tester printed it.
 *
 * @param record The run.
 * @returns For example `Run 1/2 @ concurrency=25` or `Run 1/1 @ rate=500/s`.
 *
 * @example
 * ```ts
 * import { runLabel } from "./report.ts";
 * import { emptyRunStats } from "./stats.ts";
 * const label = runLabel({ round: 1, rounds: 2, model: "closed", level: 25, stats: emptyRunStats() });
 * if (label !== "Run 1/2 @ concurrency=25") throw new Error(label);
 * ```
 */
export function runLabel(record: RunRecord): string {
  if (record.isStaged === true) {
    return `Run ${record.round}/${record.rounds} @ stages (peak ${
      levelText(record.model, record.level)
    })`;
  }
  return `Run ${record.round}/${record.rounds} @ ${levelName(record.model)}=${
    levelText(record.model, record.level)
  }`;
}

/**
 * The per-run block: label, target, load, elapsed time, successes and errors, latency
 * percentiles, sample errors, then a text latency histogram and the status distribution (as
 * hey and oha end a run), and a line when nothing succeeded.
 *
 * @param record The run.
 * @param report The report it belongs to (URL, stop condition).
 * @returns Lines ending in a newline.
 */
export function formatRunBlock(
  record: RunRecord,
  report: Pick<LoadReport, "url" | "stop" | "stages">,
): string {
  const { stats, computed } = view(record);
  const lines = [runLabel(record)];
  const row = (name: string, value: string) =>
    lines.push(`  ${(name === "" ? "" : name + ":").padEnd(14)}${value}`);
  row("URL", report.url);
  const total = report.stop.kind === "count"
    ? `${report.stop.total} requests`
    : `${formatDuration(report.stop.durationMs)} run`;
  row("Total", `${total} (${stats.requests} completed)`);
  if (record.model === "closed") row("Concurrency", String(record.level));
  else if (report.stages === undefined) row("Rate", `${formatNumber(record.level)} req/s`);
  else {
    row(
      "Stages",
      `--stages ${formatStages(report.stages)} (peak ${formatNumber(record.level)} req/s)`,
    );
  }
  row(
    "Elapsed",
    `${(stats.elapsedMs / 1000).toFixed(2)}s (${formatRps(computed.rps)} req/s)`,
  );
  row("Successes", String(stats.ok));
  row("Errors", `${stats.errors} (${(errorRate(stats) * 100).toFixed(2)}%)`);
  const ms = formatMaybeMs;
  row(
    "Latency ms",
    `avg ${ms(computed.meanMs)}  p50 ${ms(computed.p50Ms)}  p95 ${ms(computed.p95Ms)}  max ${
      ms(computed.maxMs)
    }`,
  );
  row("", `p90 ${ms(computed.p90Ms)}  p99 ${ms(computed.p99Ms)}  p99.9 ${ms(computed.p999Ms)}`);
  if (stats.cutOff > 0 || report.stop.kind === "time") {
    row("In flight", `${stats.cutOff} at the end (in the latency with the time they had waited)`);
  }
  if (record.model === "open") {
    row(
      "Late",
      `${stats.late} (started over ${DEFAULT_LATE_AFTER_MS} ms after their planned time)`,
    );
    row("Unsent", `${stats.unsent} (planned but never sent; in the latency with their lateness)`);
    const lateness = LatencyHistogram.decode(stats.lateness).summary();
    if (lateness.count > 0) {
      row(
        "Schedule",
        `generator lateness p50 ${msText(lateness.p50)}  p99 ${msText(lateness.p99)}  max ${
          msText(lateness.max)
        } ms (kept out of the latency)`,
      );
    }
    const capLine = inFlightCapLine(stats);
    if (capLine !== undefined) lines.push(`  ${capLine}`);
    const generatorLine = generatorBehindLine(stats);
    if (generatorLine !== undefined) lines.push(`  ${generatorLine}`);
  }
  if (stats.censored > 0) lines.push(`  ${censoredLine(stats)}`);
  if (stats.resent > 0) {
    row(
      "Resent",
      `${stats.resent} (the server had closed the idle connection before they were written; sent once, on a new one)`,
    );
  }
  const stallLine = closedModelStallLine(record);
  if (stallLine !== undefined) lines.push(`  ${stallLine}`);
  if (stats.errorSamples.length > 0) {
    lines.push("  Sample errors:");
    for (const sample of stats.errorSamples) lines.push(`    ${sample.message} (x${sample.count})`);
  }
  const failed = allFailedLine(record);
  return lines.join("\n") + "\n" + formatLatencyHistogram(stats) + formatStatusBreakdown(stats) +
    (failed === undefined ? "" : `  ${failed}\n`);
}

const SUMMARY_HEADERS = [
  "Label",
  "Run",
  "Conc",
  "Total",
  "OK",
  "Err",
  "Req/s",
  "Avg ms",
  "p50",
  "p95",
  "p99",
  "max",
];

/**
 * The cells of the summary table, one row per run, in the order of {@linkcode summaryHeaders}.
 *
 * @param runs The runs.
 * @returns One row of cells per run (latencies in ms).
 */
export function summaryRows(runs: readonly RunRecord[]): string[][] {
  return runs.map((record) => {
    const { stats, computed } = view(record);
    return [
      shortLabel(record),
      `${record.round}/${record.rounds}`,
      record.isStaged === true
        ? `≤${levelText(record.model, record.level)}`
        : levelText(record.model, record.level),
      String(stats.requests),
      String(stats.ok),
      String(stats.errors),
      formatRps(computed.rps),
      formatMaybeMs(computed.meanMs),
      formatMaybeMs(computed.p50Ms),
      formatMaybeMs(computed.p95Ms),
      formatMaybeMs(computed.p99Ms),
      formatMaybeMs(computed.maxMs),
    ];
  });
}

/**
 * The header row of the summary table: `Conc` becomes `Rate` for open-model runs.
 *
 * @param runs The runs.
 * @returns The column names.
 */
export function summaryHeaders(runs: readonly RunRecord[]): string[] {
  const isOpen = runs[0]?.model === "open";
  return SUMMARY_HEADERS.map((name) => (name === "Conc" && isOpen ? "Rate" : name));
}

/**
 * The summary table: one row per run with Label (`c25-r1`),
 * Run, Conc (or Rate), Total, OK, Err, Req/s, Avg ms,
 * p50, p95, p99 and max (latencies in ms).
 *
 * @param runs The runs.
 * @returns The aligned table, ending in a newline.
 */
export function formatSummaryTable(runs: readonly RunRecord[]): string {
  const table = [summaryHeaders(runs), ...summaryRows(runs)];
  const widths =
    table[0]?.map((_, column) => Math.max(...table.map((row) => (row[column] ?? "").length))) ?? [];
  return table
    .map((row) =>
      row.map((
        cell,
        column,
      ) => (column <= 1 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0)))
        .join("  ")
    )
    .join("\n") + "\n";
}

/** Where errors started, by level. */
export interface CapacityEstimate {
  /** The first level (in plan order) where any run had errors, or requests the cap kept unsent. */
  readonly firstFailingLevel?: number;
  /** The last level before it with no such run. */
  readonly lastCleanLevel?: number;
  /** The highest level tried. */
  readonly highestLevel?: number;
}

/**
 * The capacity estimate of the original Python load tester: the first level that produced errors.
 *
 * @param runs The runs, in plan order.
 * @returns The first failing and last clean levels.
 */
export function estimateCapacity(runs: readonly RunRecord[]): CapacityEstimate {
  const levels = [...new Set(runs.map((run) => run.level))];
  let lastCleanLevel: number | undefined;
  for (const level of levels) {
    // Requests the generator failed to send (its own lateness) say nothing about the target.
    const isFailing = runs.some((run) =>
      run.level === level &&
      (run.stats.errors > 0 || (run.stats.unsent > 0 && isCapReached(run.stats)))
    );
    if (isFailing) {
      return {
        firstFailingLevel: level,
        ...(lastCleanLevel === undefined ? {} : { lastCleanLevel }),
      };
    }
    lastCleanLevel = level;
  }
  const highestLevel = levels[levels.length - 1];
  return highestLevel === undefined ? {} : { highestLevel };
}

/**
 * The capacity estimate as one line.
 *
 * @param runs The runs, in plan order.
 * @returns For example `Capacity estimate: errors first appeared at concurrency=150 (last level without errors: 100)`.
 */
export function formatCapacityLine(runs: readonly RunRecord[]): string {
  const model = runs[0]?.model ?? "closed";
  const name = levelName(model);
  const estimate = estimateCapacity(runs);
  if (estimate.firstFailingLevel !== undefined) {
    const clean = estimate.lastCleanLevel === undefined
      ? "every level tried had errors"
      : `last level without errors: ${levelText(model, estimate.lastCleanLevel)}`;
    return `Capacity estimate: errors first appeared at ${name}=${
      levelText(model, estimate.firstFailingLevel)
    } (${clean})\n`;
  }
  if (estimate.highestLevel === undefined) return "Capacity estimate: no runs finished\n";
  return `Capacity estimate: no errors up to ${name}=${
    levelText(model, estimate.highestLevel)
  } (the highest level tried)\n`;
}

/**
 * The part printed after the runs: the summary table and the capacity line.
 *
 * @param report The results.
 * @returns The text.
 */
export function formatSummary(report: LoadReport): string {
  const merged = report.sources > 1 ? ` (merged from ${report.sources} reports)` : "";
  const interrupted = report.isInterrupted ? "Interrupted: the remaining runs were skipped\n" : "";
  return `${interrupted}Summary${merged}\n${formatSummaryTable(report.runs)}\n${
    formatCapacityLine(report.runs)
  }`;
}
