/**
 * The machine-readable writers of a load test report, as strings: JSON (what `merge` reads
 * back), one CSV row per run, and Markdown for pull requests and wikis. Nothing here prints.
 *
 * @module
 */
import { formatDuration } from "../lib/shared/duration.ts";
import {
  formatCapacityLine,
  formatMs,
  type LoadReport,
  runLabel,
  summaryHeaders,
  summaryRows,
} from "./report.ts";
import { latencySummary, throughput } from "./stats.ts";

/**
 * The JSON report, including every run's encoded histogram.
 *
 * @param report The results.
 * @returns Pretty-printed JSON with a trailing newline.
 */
export function formatJson(report: LoadReport): string {
  return JSON.stringify(report, null, 2) + "\n";
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
];

/**
 * One CSV row per run (RFC 4180 quoting), latencies in ms.
 *
 * @param report The results.
 * @returns CSV text with a header row.
 */
export function formatCsv(report: LoadReport): string {
  const quote = (cell: string) => (/[",\n]/.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell);
  const rows = report.runs.map((record, index) => {
    const stats = record.stats;
    const latency = latencySummary(stats);
    const rps = throughput(stats);
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
      rps.toFixed(1),
      formatMs(latency.mean),
      formatMs(latency.p50),
      formatMs(latency.p90),
      formatMs(latency.p95),
      formatMs(latency.p99),
      formatMs(latency.p999),
      formatMs(latency.max),
      stats.networkErrors.timeout,
      stats.networkErrors.refused,
      stats.networkErrors.reset,
      stats.networkErrors.network,
      Object.entries(stats.statuses).map(([status, count]) => `${status}=${count}`).join(" "),
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
    `| ${head.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
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
        `- ${runLabel(run)}: ${run.stats.errors} errors, ${run.stats.cutOff} cut off; statuses ${
          statuses || "none"
        }; ${samples || "no samples"}`,
      );
    }
    lines.push("");
  }
  if (report.isInterrupted) lines.push("_Interrupted: the remaining runs were skipped._", "");
  return lines.join("\n");
}
