/**
 * `--chart FILE.svg`: throughput (with the target rate of open-model runs), p50/p95/p99 latency
 * and the error rate against concurrency or rate (a sweep spanning a wide range is spaced on a
 * log scale), or against time for a single rate or a ramp, as a self-contained SVG with axes,
 * labels and a legend.
 *
 * @module
 */
import { stageRateAt } from "./arrivals.ts";
import { LatencyHistogram } from "./histogram.ts";
import type { LoadReport } from "./report.ts";
import type { RunStats } from "./stats.ts";

/** One point on the x axis with its measurements. */
export interface ChartPoint {
  /** Concurrency, rate or second. */
  readonly x: number;
  /** Completed requests per second. */
  readonly rps: number;
  /** Median latency in ms. */
  readonly p50Ms: number;
  /** 95th percentile in ms. */
  readonly p95Ms: number;
  /** 99th percentile in ms. */
  readonly p99Ms: number;
  /** Failed share of the completed requests, in percent. */
  readonly errorPercent: number;
  /** Open model: the planned arrival rate, in requests per second. */
  readonly targetRps?: number;
}

/** The data behind a chart. */
export interface ChartData {
  /** Label of the x axis. */
  readonly xLabel: string;
  /** Points in x order. */
  readonly points: readonly ChartPoint[];
  /** How the x axis is spaced: by value, or by the logarithm of the value (a wide sweep). */
  readonly xScale: "linear" | "log";
  /** Whether x is time (ticks cover the run at even steps) rather than the levels run. */
  readonly isTimeline: boolean;
}

/** A sweep whose highest level is at least this many times its lowest is drawn on a log axis. */
const LOG_SCALE_RATIO = 8;

function point(
  x: number,
  rps: number,
  histogram: LatencyHistogram,
  counts: { readonly ok: number; readonly errors: number },
  targetRps: number | undefined,
): ChartPoint {
  const completed = counts.ok + counts.errors;
  return {
    x,
    rps,
    p50Ms: histogram.percentile(50) / 1000,
    p95Ms: histogram.percentile(95) / 1000,
    p99Ms: histogram.percentile(99) / 1000,
    errorPercent: completed > 0 ? (counts.errors / completed) * 100 : 0,
    ...(targetRps === undefined ? {} : { targetRps }),
  };
}

/**
 * What to plot: per level (rounds of a level combined: throughput over their summed time,
 * percentiles from their merged histograms), or per second for a single-rate run.
 *
 * @param report The results.
 * @returns The x-axis label and the points.
 */
export function chartData(report: LoadReport): ChartData {
  const levels = [...new Set(report.runs.map((run) => run.level))].sort((a, b) => a - b);
  const isTimeline = report.model === "open" && levels.length === 1 &&
    report.runs.every((run) => run.stats.timeline !== undefined);
  if (isTimeline) {
    const points: ChartPoint[] = [];
    let offset = 0;
    for (const run of report.runs) {
      for (const bucket of run.stats.timeline ?? []) {
        const seconds = Math.min(1, Math.max(0.001, run.stats.elapsedMs / 1000 - bucket.second));
        const stages = report.stages;
        const target = stages === undefined
          ? run.level
          : stageRateAt(stages, (bucket.second + seconds / 2) * 1000);
        points.push(
          point(
            offset + bucket.second,
            (bucket.ok + bucket.errors) / seconds,
            LatencyHistogram.decode(bucket.histogram),
            bucket,
            target,
          ),
        );
      }
      offset += Math.ceil(run.stats.elapsedMs / 1000);
    }
    return { xLabel: "Time (s)", points, xScale: "linear", isTimeline: true };
  }
  const points = levels.map((level) => {
    const runs: RunStats[] = report.runs.filter((run) => run.level === level).map((run) =>
      run.stats
    );
    const histogram = new LatencyHistogram();
    for (const stats of runs) histogram.add(LatencyHistogram.decode(stats.histogram));
    const requests = runs.reduce((sum, stats) => sum + stats.requests, 0);
    const seconds = runs.reduce((sum, stats) => sum + stats.elapsedMs, 0) / 1000;
    const counts = {
      ok: runs.reduce((sum, stats) => sum + stats.ok, 0),
      errors: runs.reduce((sum, stats) => sum + stats.errors, 0),
    };
    const target = report.model === "open" ? level : undefined;
    return point(level, seconds > 0 ? requests / seconds : 0, histogram, counts, target);
  });
  const low = levels[0] ?? 0;
  const high = levels[levels.length - 1] ?? 0;
  return {
    xLabel: report.model === "closed" ? "Concurrency" : "Rate (req/s)",
    points,
    xScale: levels.length >= 3 && low > 0 && high / low >= LOG_SCALE_RATIO ? "log" : "linear",
    isTimeline: false,
  };
}

const WIDTH = 820;
const PANEL_HEIGHT = 230;
const MARGIN = { left: 80, right: 150, top: 50, gap: 70 };
const COLORS = {
  rps: "#1f77b4",
  // Near black, dashed and drawn last: a measured rate that meets its target hides under it
  // otherwise (grey dashes over the blue line all but vanished).
  target: "#111111",
  p50: "#2ca02c",
  p95: "#ff7f0e",
  p99: "#d62728",
  errors: "#9467bd",
};
const PANELS = 3;

/**
 * A "nice" axis maximum and step (1, 2 or 5 times a power of ten).
 *
 * @param max The largest value to show.
 * @param ticks About how many ticks.
 * @returns The axis top and the step.
 *
 * @example
 * ```ts
 * import { niceScale } from "./chart.ts";
 * const { top, step } = niceScale(87, 5);
 * if (top !== 100 || step !== 20) throw new Error(`${top} ${step}`);
 * ```
 */
export function niceScale(max: number, ticks: number): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.2 };
  const rough = max / ticks;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? 10 * power;
  // toPrecision drops binary noise such as 0.30000000000000004.
  return { top: Number((Math.ceil(max / step) * step).toPrecision(12)), step };
}

const escape = (text: string): string =>
  text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll(
    '"',
    "&quot;",
  );

const label = (value: number): string =>
  value >= 10_000
    ? `${(value / 1000).toFixed(0)}k`
    : Number.isInteger(value)
    ? String(value)
    : value.toFixed(value < 1 ? 2 : 1);

interface Series {
  readonly name: string;
  readonly color: string;
  readonly values: readonly number[];
  /** Drawn dashed without markers (a plan rather than a measurement). */
  readonly isDashed?: boolean;
}

/** The x axis of every panel: positions and ticks. */
interface XAxis {
  readonly position: (x: number) => number;
  readonly ticks: readonly number[];
  readonly label: string;
}

/**
 * The x axis of a chart: log-spaced sweeps, time ticks at even steps from 0 to the end of the
 * run, or the levels run on a linear axis.
 */
function xAxis(data: ChartData): XAxis {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const xs = data.points.map((p) => p.x);
  if (data.isTimeline) {
    const { top, step } = niceScale(Math.max(1, ...xs.map((x) => x + 1)), 8);
    const ticks: number[] = [];
    for (let t = 0; t <= top + step / 2; t += step) ticks.push(Number(t.toPrecision(12)));
    return {
      position: (x) => MARGIN.left + (x / top) * plotWidth,
      ticks,
      label: data.xLabel,
    };
  }
  const transform = data.xScale === "log" ? Math.log : (x: number) => x;
  const low = transform(Math.min(...xs));
  const high = transform(Math.max(...xs));
  const ticks = xs.length <= 12 ? xs : xs.filter((_, i) => i % Math.ceil(xs.length / 12) === 0);
  return {
    position: (x) =>
      MARGIN.left +
      (high === low ? plotWidth / 2 : ((transform(x) - low) / (high - low)) * plotWidth),
    ticks,
    label: data.xScale === "log" ? `${data.xLabel}, log scale` : data.xLabel,
  };
}

function panel(
  top: number,
  title: string,
  yLabel: string,
  xs: readonly number[],
  axis: XAxis,
  series: readonly Series[],
): string {
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const bottom = top + PANEL_HEIGHT;
  const xScale = axis.position;
  const { top: yTop, step } = niceScale(Math.max(0, ...series.flatMap((s) => s.values)), 5);
  const yScale = (y: number) => bottom - (y / yTop) * PANEL_HEIGHT;
  const out: string[] = [];
  out.push(`<text x="${MARGIN.left}" y="${top - 12}" class="title">${escape(title)}</text>`);
  for (let y = 0; y <= yTop + step / 2; y += step) {
    const py = yScale(y).toFixed(1);
    out.push(
      `<line x1="${MARGIN.left}" y1="${py}" x2="${
        MARGIN.left + plotWidth
      }" y2="${py}" class="grid"/>`,
    );
    out.push(`<text x="${MARGIN.left - 8}" y="${py}" class="ytick">${label(y)}</text>`);
  }
  for (const x of axis.ticks) {
    const px = xScale(x).toFixed(1);
    out.push(`<line x1="${px}" y1="${bottom}" x2="${px}" y2="${bottom + 5}" class="axis"/>`);
    out.push(`<text x="${px}" y="${bottom + 20}" class="xtick">${label(x)}</text>`);
  }
  out.push(
    `<line x1="${MARGIN.left}" y1="${bottom}" x2="${
      MARGIN.left + plotWidth
    }" y2="${bottom}" class="axis"/>`,
  );
  out.push(
    `<line x1="${MARGIN.left}" y1="${top}" x2="${MARGIN.left}" y2="${bottom}" class="axis"/>`,
  );
  out.push(
    `<text x="${MARGIN.left + plotWidth / 2}" y="${bottom + 40}" class="xlabel">${
      escape(axis.label)
    }</text>`,
  );
  const yMid = top + PANEL_HEIGHT / 2;
  out.push(
    `<text x="${MARGIN.left - 55}" y="${yMid}" class="ylabel" transform="rotate(-90 ${
      MARGIN.left - 55
    } ${yMid})">${escape(yLabel)}</text>`,
  );
  // Measured lines (with their points) first, then dashed reference lines over them.
  const ordered = [
    ...series.filter((s) => s.isDashed !== true),
    ...series.filter((s) => s.isDashed === true),
  ];
  ordered.forEach((s, index) => {
    const coords = s.values.map((v, i) =>
      `${xScale(xs[i] ?? 0).toFixed(1)},${yScale(v).toFixed(1)}`
    );
    const dash = s.isDashed === true ? ' stroke-dasharray="6 4"' : "";
    out.push(
      `<polyline points="${
        coords.join(" ")
      }" fill="none" stroke="${s.color}" stroke-width="2"${dash} data-series="${escape(s.name)}"/>`,
    );
    if (coords.length <= 60 && s.isDashed !== true) {
      for (const c of coords) {
        const [cx, cy] = c.split(",");
        out.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${s.color}"/>`);
      }
    }
    const ly = top + 10 + index * 20;
    const lx = MARGIN.left + plotWidth + 20;
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${
        lx + 24
      }" y2="${ly}" stroke="${s.color}" stroke-width="3"${dash}/>`,
    );
    out.push(`<text x="${lx + 30}" y="${ly + 4}" class="legend">${escape(s.name)}</text>`);
  });
  return out.join("\n");
}

/**
 * Renders the chart.
 *
 * @param report The results.
 * @returns SVG text.
 */
export function renderChart(report: LoadReport): string {
  const data = chartData(report);
  const height = MARGIN.top + PANELS * PANEL_HEIGHT + (PANELS - 1) * MARGIN.gap + 70;
  const head = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif">`,
    `<style>.title{font-size:15px;font-weight:bold}.grid{stroke:#e3e3e3}.axis{stroke:#333}` +
    `.ytick{font-size:11px;text-anchor:end;dominant-baseline:middle}.xtick{font-size:11px;text-anchor:middle}` +
    `.xlabel,.ylabel{font-size:12px;text-anchor:middle}.legend{font-size:12px}</style>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${MARGIN.left}" y="22" class="title">${
      escape(`Load test: ${report.method} ${report.url}`)
    }</text>`,
  ];
  if (data.points.length === 0) {
    return [...head, `<text x="${MARGIN.left}" y="80">No data</text>`, "</svg>"].join("\n") + "\n";
  }
  const xs = data.points.map((p) => p.x);
  const axis = xAxis(data);
  const panelTop = (index: number) => MARGIN.top + 20 + index * (PANEL_HEIGHT + MARGIN.gap);
  const targets = data.points.map((p) => p.targetRps);
  const hasTarget = targets.every((target) => target !== undefined);
  const throughputPanel = panel(panelTop(0), "Throughput", "Requests per second", xs, axis, [
    { name: "req/s", color: COLORS.rps, values: data.points.map((p) => p.rps) },
    ...(hasTarget
      ? [{
        name: "target",
        color: COLORS.target,
        values: targets.map((target) => target ?? 0),
        isDashed: true,
      }]
      : []),
  ]);
  const latencyPanel = panel(panelTop(1), "Latency", "Milliseconds", xs, axis, [
    { name: "p50", color: COLORS.p50, values: data.points.map((p) => p.p50Ms) },
    { name: "p95", color: COLORS.p95, values: data.points.map((p) => p.p95Ms) },
    { name: "p99", color: COLORS.p99, values: data.points.map((p) => p.p99Ms) },
  ]);
  const errorPanel = panel(panelTop(2), "Errors", "Failed requests (%)", xs, axis, [
    { name: "error %", color: COLORS.errors, values: data.points.map((p) => p.errorPercent) },
  ]);
  return [...head, throughputPanel, latencyPanel, errorPanel, "</svg>"].join("\n") + "\n";
}
