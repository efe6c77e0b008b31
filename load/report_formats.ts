/**
 * The machine-readable writers of a load test report, as strings: JSON (what `merge` reads
 * back), one CSV row per run, and Markdown for pull requests and wikis. Nothing here prints.
 *
 * @module
 */
import { formatDuration } from "../lib/shared/duration.ts";
import {
  formatCapacityLine,
  type LoadReport,
  runLabel,
  shortLabel,
  summaryHeaders,
  summaryRows,
} from "./report.ts";
import type { LoadReportJson } from "./report_schema.ts";
import { computeStats } from "./run_summary.ts";

/**
 * The report as JSON data: every run with its short label and its computed statistics
 * (`p99Ms`, `rps`, ...) beside the measured counters and encoded histogram.
 *
 * @param report The results.
 * @returns Data that `loadReportSchema` accepts.
 */
export function toReportJson(report: LoadReport): LoadReportJson {
  return {
    ...report,
    runs: report.runs.map((run) => ({
      label: shortLabel(run),
      ...run,
      stats: { ...computeStats(run.stats), ...run.stats },
    })),
  };
}

/**
 * The JSON report (see `loadtest schema`), including every run's encoded histogram.
 *
 * @param report The results.
 * @returns Pretty-printed JSON with a trailing newline.
 */
export function formatJson(report: LoadReport): string {
  return JSON.stringify(toReportJson(report), null, 2) + "\n";
}

const CSV_HEADERS = [
  "run",
  "round",
  "rounds",
  "model",
  "level",
  "requests",
  "ok",
  "errors",
  "cut_off",
  "late",
  "unsent",
  "elapsed_ms",
  "req_per_s",
  "mean_ms",
  "p50_ms",
  "p90_ms",
  "p95_ms",
  "p99_ms",
  "p999_ms",
  "max_ms",
  "timeout",
  "refused",
  "reset",
  "network",
  "statuses",
  "label",
];

/**
 * One CSV row per run (RFC 4180 quoting), latencies in ms; a statistic with no value (nothing
 * succeeded) is an empty cell.
 *
 * @param report The results.
 * @returns CSV text with a header row.
 */
export function formatCsv(report: LoadReport): string {
  const quote = (cell: string) => (/[",\n]/.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell);
  const rows = report.runs.map((record, index) => {
    const stats = record.stats;
    const computed = computeStats(stats);
    const cell = (value: number | null, digits: number) =>
      value === null ? "" : value.toFixed(digits);
    return [
      index + 1,
      record.round,
      record.rounds,
      record.model,
      record.level,
      stats.requests,
      stats.ok,
      stats.errors,
      stats.cutOff,
      stats.late,
      stats.unsent,
      stats.elapsedMs.toFixed(1),
      cell(computed.rps, 1),
      cell(computed.meanMs, 2),
      cell(computed.p50Ms, 2),
      cell(computed.p90Ms, 2),
      cell(computed.p95Ms, 2),
      cell(computed.p99Ms, 2),
      cell(computed.p999Ms, 2),
      cell(computed.maxMs, 2),
      stats.networkErrors.timeout,
      stats.networkErrors.refused,
      stats.networkErrors.reset,
      stats.networkErrors.network,
      Object.entries(stats.statuses).map(([status, count]) => `${status}=${count}`).join(" "),
      shortLabel(record),
    ].map((cell) => quote(String(cell))).join(",");
  });
  return [CSV_HEADERS.join(","), ...rows].join("\n") + "\n";
}

/**
 * The report in Markdown: target, summary table, capacity line and status breakdown.
 *
 * @param report The results.
 * @returns Markdown text.
 */
export function formatMarkdown(report: LoadReport): string {
  const lines = [`## Load test: ${report.method} ${report.url}`, ""];
  const stop = report.stop.kind === "count"
    ? `${report.stop.total} requests per run`
    : `${formatDuration(report.stop.durationMs)} per run`;
  lines.push(
    `${report.model === "closed" ? "Closed model" : "Open model"}, ${stop}` +
      (report.sources > 1 ? `, merged from ${report.sources} reports.` : "."),
    "",
  );
  const head = summaryHeaders(report.runs);
  lines.push(
    `| ${head.join(" | ")} |`,
    `| ${head.map((_, i) => (i <= 1 ? "---" : "---:")).join(" | ")} |`,
  );
  for (const row of summaryRows(report.runs)) lines.push(`| ${row.join(" | ")} |`);
  lines.push("", formatCapacityLine(report.runs).trimEnd(), "");
  const details = report.runs.filter((run) => run.stats.errors > 0 || run.stats.cutOff > 0);
  if (details.length > 0) {
    lines.push("### Errors", "");
    for (const run of details) {
      const samples = run.stats.errorSamples.map((s) => `${s.message} (x${s.count})`).join("; ");
      const statuses = Object.entries(run.stats.statuses).map(([s, n]) => `${s}=${n}`).join(" ");
      lines.push(
        `- ${
          runLabel(run)
        }: ${run.stats.errors} errors, ${run.stats.cutOff} in flight at the end; statuses ${
          statuses || "none"
        }; ${samples || "no samples"}`,
      );
    }
    lines.push("");
  }
  if (report.isInterrupted) lines.push("_Interrupted: the remaining runs were skipped._", "");
  return lines.join("\n");
}
