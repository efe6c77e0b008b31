/**
 * `--html FILE.html`: the whole report as one self-contained page (inline style and SVG, no
 * script, no external asset): the run's settings, the summary table, the charts, and each run's
 * block with its latency histogram and status distribution. Nothing here prints.
 *
 * @module
 */
import { renderChart } from "./chart.ts";
import {
  formatCapacityLine,
  formatRunBlock,
  type LoadReport,
  shortLabel,
  summaryHeaders,
  summaryRows,
} from "./report.ts";

// On a phone (390 px wide) the page keeps its width: long words and URLs wrap, and the wide
// summary table and run blocks scroll sideways inside their own boxes instead of the page.
const STYLE =
  `body{font-family:system-ui,sans-serif;margin:2rem auto;padding:0 1rem;max-width:60rem;
color:#222}
h1,p,summary{overflow-wrap:anywhere}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
table.summary th,table.summary td{white-space:nowrap}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
table.settings td{text-align:left}
pre{background:#f6f6f6;padding:.75rem;overflow-x:auto;font-size:.8rem}
.chart svg{max-width:100%;height:auto}
@media (max-width:40rem){body{margin:1rem auto;padding:0 .5rem}h1{font-size:1.15rem}
th,td{padding:.2rem .35rem;font-size:.85rem}}`;

const escapeHtml = (text: string): string =>
  text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll(
    '"',
    "&quot;",
  );

/**
 * Renders the page.
 *
 * @param report The results.
 * @param settings What the run was asked to do, as name and value pairs (shown first).
 * @returns HTML text.
 *
 * @example
 * ```ts
 * import { renderHtml } from "./html_report.ts";
 * const html = renderHtml({
 *   version: 3, url: "http://127.0.0.1/", method: "GET", model: "closed",
 *   stop: { kind: "count", total: 1 }, sources: 1, isInterrupted: false, runs: [],
 * }, [["Model", "closed"]]);
 * if (!html.startsWith("<!doctype html>") || html.includes("<script")) throw new Error();
 * ```
 */
export function renderHtml(
  report: LoadReport,
  settings: ReadonlyArray<readonly [string, string]>,
): string {
  const title = `Load test: ${report.method} ${report.url}`;
  const settingRows = settings.map(([name, value]) =>
    `<tr><th scope="row">${escapeHtml(name)}</th><td>${escapeHtml(value)}</td></tr>`
  );
  const head = summaryHeaders(report.runs).map((name) => `<th>${escapeHtml(name)}</th>`);
  const rows = summaryRows(report.runs).map((row) =>
    `<tr>${row.map((cell) => `<td>${escapeHtml(cell)}</td>`).join("")}</tr>`
  );
  const runs = report.runs.map((run) =>
    `<details open id="${escapeHtml(shortLabel(run))}"><summary>${
      escapeHtml(shortLabel(run))
    }</summary><pre>${escapeHtml(formatRunBlock(run, report))}</pre></details>`
  );
  return [
    "<!doctype html>",
    '<html lang="en">',
    '<head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${STYLE}</style></head>`,
    "<body>",
    `<h1>${escapeHtml(title)}</h1>`,
    report.isInterrupted
      ? "<p><strong>Interrupted: the remaining runs were skipped.</strong></p>"
      : "",
    "<h2>Settings</h2>",
    `<div class="scroll"><table class="settings">${settingRows.join("")}</table></div>`,
    "<h2>Summary</h2>",
    `<div class="scroll"><table class="summary"><thead><tr>${head.join("")}</tr></thead><tbody>${
      rows.join("")
    }</tbody></table></div>`,
    `<p>${escapeHtml(formatCapacityLine(report.runs).trim())}</p>`,
    "<h2>Charts</h2>",
    `<div class="chart">${renderChart(report)}</div>`,
    "<h2>Runs</h2>",
    ...runs,
    "</body></html>",
    "",
  ].join("\n");
}
