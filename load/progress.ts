/**
 * The live view on stderr while a run is going: done share, elapsed time, req/s, failures by
 * class and rolling p50/p99. On a terminal one line is redrawn in place a few times a second;
 * otherwise (a pipe, a CI log) a plain line is printed every few seconds; `--quiet` shows
 * nothing. Ticks come from the injected clock, so tests drive it with a fake one.
 *
 * @module
 */
import type { Clock } from "../lib/shared/clock.ts";
import type { WriteText } from "../lib/shared/command.ts";
import { LatencyHistogram } from "./histogram.ts";
import type { LiveStats } from "./live_stats.ts";
import type { Stop } from "./scheduler.ts";

/** How often the terminal line is redrawn. */
export const PROGRESS_REDRAW_MS = 250;
/** How often a plain progress line is printed when stderr is not a terminal. */
export const PROGRESS_LINE_MS = 5000;
/** Span of the rolling req/s and percentiles. */
const ROLLING_WINDOW_MS = 1000;

const BAR_WIDTH = 20;

/** How the live view shows itself. */
export type ProgressMode = "terminal" | "lines" | "off";

/** What one live line shows. */
export interface LiveLine {
  /** The run's label. */
  readonly label: string;
  /** The run's stop condition. */
  readonly stop: Stop;
  /** Requests finished in this run. */
  readonly completed: number;
  /** Time since the run started. */
  readonly elapsedMs: number;
  /** Completions per second over the rolling window. */
  readonly rps: number;
  /** Failures by class in this run. */
  readonly errors: Readonly<Record<string, number>>;
  /** Rolling median in ms, `undefined` when no response arrived in the window. */
  readonly p50Ms?: number;
  /** Rolling 99th percentile in ms. */
  readonly p99Ms?: number;
}

/**
 * One line of the live view.
 *
 * @param line What to show.
 * @returns The line, without newline.
 *
 * @example
 * ```ts
 * import { formatProgressLine } from "./progress.ts";
 * const text = formatProgressLine({
 *   label: "c2-r1", stop: { kind: "count", total: 100 }, completed: 50, elapsedMs: 1000,
 *   rps: 50, errors: { "5xx": 2 }, p50Ms: 1.5, p99Ms: 9,
 * });
 * if (!text.includes(" 50%") || !text.includes("5xx=2") || !text.includes("p99 9.00ms")) {
 *   throw new Error(text);
 * }
 * ```
 */
export function formatProgressLine(line: LiveLine): string {
  const { stop, completed, elapsedMs } = line;
  const fraction = stop.kind === "count"
    ? completed / Math.max(1, stop.total)
    : elapsedMs / Math.max(1, stop.durationMs);
  const clamped = Math.max(0, Math.min(1, fraction));
  const filled = Math.round(clamped * BAR_WIDTH);
  const bar = "#".repeat(filled) + "-".repeat(BAR_WIDTH - filled);
  const count = stop.kind === "count" ? `${completed}/${stop.total}` : `${completed}`;
  const errors = Object.entries(line.errors).map(([name, n]) => `${name}=${n}`);
  const latency = line.p50Ms === undefined || line.p99Ms === undefined
    ? "p50 -  p99 -"
    : `p50 ${line.p50Ms.toFixed(2)}ms  p99 ${line.p99Ms.toFixed(2)}ms`;
  return `${line.label} [${bar}] ${String(Math.floor(clamped * 100)).padStart(3)}% ${count}  ${
    (elapsedMs / 1000).toFixed(1)
  }s  ${line.rps.toFixed(0)} req/s  ${latency}  errors ${
    errors.length === 0 ? "0" : errors.join(" ")
  }`;
}

/** A running live view. */
export interface Progress {
  /** Stops drawing and clears the terminal line. Idempotent. */
  stop(): void;
}

/** Options of {@linkcode startProgress}. */
export interface ProgressOptions {
  /** Where to draw (stderr). */
  readonly write: WriteText;
  /** Redrawn line, plain lines, or nothing. */
  readonly mode: ProgressMode;
  /** Source of time and ticks. */
  readonly clock: Clock;
}

interface Sample {
  readonly atMs: number;
  readonly completed: number;
  readonly window: LatencyHistogram;
}

/**
 * Starts the live view of one run.
 *
 * @param label The run label.
 * @param stop The run's stop condition.
 * @param live The run's live counters (shared with the runner or fed by the workers).
 * @param options Output, mode and clock.
 * @returns A handle whose `stop()` ends the view.
 */
export function startProgress(
  label: string,
  stop: Stop,
  live: LiveStats,
  options: ProgressOptions,
): Progress {
  if (options.mode === "off") return { stop() {} };
  const { write, clock, mode } = options;
  const startMs = clock.now();
  const baseCompleted = live.completed;
  const baseErrors = live.errors();
  live.takeWindow();
  const samples: Sample[] = [{ atMs: startMs, completed: 0, window: new LatencyHistogram() }];
  const render = (): string => {
    const now = clock.now();
    const completed = live.completed - baseCompleted;
    samples.push({ atMs: now, completed, window: live.takeWindow() });
    while (samples.length > 2 && (samples[1]?.atMs ?? now) <= now - ROLLING_WINDOW_MS) {
      samples.shift();
    }
    const oldest = samples[0] ?? { atMs: startMs, completed: 0 };
    const rolling = new LatencyHistogram();
    for (const sample of samples.slice(1)) rolling.add(sample.window);
    const errors: Record<string, number> = {};
    for (const [name, count] of Object.entries(live.errors())) {
      const runCount = count - (baseErrors[name] ?? 0);
      if (runCount > 0) errors[name] = runCount;
    }
    const spanMs = now - oldest.atMs;
    return formatProgressLine({
      label,
      stop,
      completed,
      elapsedMs: now - startMs,
      rps: spanMs > 0 ? ((completed - oldest.completed) * 1000) / spanMs : 0,
      errors,
      ...(rolling.count === 0 ? {} : {
        p50Ms: rolling.percentile(50) / 1000,
        p99Ms: rolling.percentile(99) / 1000,
      }),
    });
  };
  const draw = () => mode === "terminal" ? write(`\r\x1b[2K${render()}`) : write(`${render()}\n`);
  if (mode === "terminal") draw();
  const ticking = new AbortController();
  const intervalMs = mode === "terminal" ? PROGRESS_REDRAW_MS : PROGRESS_LINE_MS;
  const loop = async () => {
    for (;;) {
      await clock.sleep(intervalMs, ticking.signal);
      draw();
    }
  };
  // The loop ends by its sleep rejecting when stop() aborts it; nothing else can fail in it.
  loop().catch(() => {});
  let isStopped = false;
  return {
    stop() {
      if (isStopped) return;
      isStopped = true;
      ticking.abort();
      if (mode === "terminal") write("\r\x1b[2K");
    },
  };
}
