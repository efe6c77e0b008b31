/**
 * The live progress bar on stderr: redrawn a few times a second while a run is going, and only
 * when stderr is a terminal (a pipe or a CI log gets nothing).
 *
 * @module
 */
import type { Clock } from "../lib/shared/clock.ts";
import type { WriteText } from "../lib/shared/command.ts";
import type { ProgressCounter } from "./run.ts";
import type { Stop } from "./scheduler.ts";

/** How often the bar is redrawn. */
export const PROGRESS_REDRAW_MS = 100;

const BAR_WIDTH = 30;

/**
 * One line of the bar: done fraction by requests (count runs) or by time (timed runs).
 *
 * @param label The run label.
 * @param stop The run's stop condition.
 * @param completed Requests finished.
 * @param elapsedMs Time since the run started.
 * @returns The line, without newline.
 *
 * @example
 * ```ts
 * import { formatProgressLine } from "./progress.ts";
 * const line = formatProgressLine("Run 1/1", { kind: "count", total: 100 }, 50, 1000);
 * if (!line.includes(" 50%") || !line.includes("50/100")) throw new Error(line);
 * ```
 */
export function formatProgressLine(
  label: string,
  stop: Stop,
  completed: number,
  elapsedMs: number,
): string {
  const fraction = stop.kind === "count"
    ? completed / Math.max(1, stop.total)
    : elapsedMs / Math.max(1, stop.durationMs);
  const clamped = Math.max(0, Math.min(1, fraction));
  const filled = Math.round(clamped * BAR_WIDTH);
  const bar = "#".repeat(filled) + "-".repeat(BAR_WIDTH - filled);
  const rate = elapsedMs > 0 ? completed / (elapsedMs / 1000) : 0;
  const count = stop.kind === "count" ? `${completed}/${stop.total}` : `${completed}`;
  return `${label} [${bar}] ${String(Math.floor(clamped * 100)).padStart(3)}% ${count} ${
    rate.toFixed(0)
  } req/s`;
}

/** A running progress display. */
export interface Progress {
  /** Stops redrawing and clears the line. Idempotent. */
  stop(): void;
}

/** Options of {@linkcode startProgress}. */
export interface ProgressOptions {
  /** Where to draw (stderr). */
  readonly write: WriteText;
  /** Whether `write` goes to a terminal; nothing is drawn otherwise. */
  readonly isTerminal: boolean;
  /** Source of time. */
  readonly clock: Clock;
}

/**
 * Starts redrawing a progress line for one run.
 *
 * @param label The run label.
 * @param stop The run's stop condition.
 * @param counter The runner's counter.
 * @param options Output, terminal flag and clock.
 * @returns A handle whose `stop()` clears the line.
 */
export function startProgress(
  label: string,
  stop: Stop,
  counter: ProgressCounter,
  options: ProgressOptions,
): Progress {
  if (!options.isTerminal) return { stop() {} };
  const { write, clock } = options;
  const startMs = clock.now();
  const base = counter.completed;
  const draw = () =>
    write(
      `\r\x1b[2K${
        formatProgressLine(label, stop, counter.completed - base, clock.now() - startMs)
      }`,
    );
  draw();
  const timer = setInterval(draw, PROGRESS_REDRAW_MS);
  let isStopped = false;
  return {
    stop() {
      if (isStopped) return;
      isStopped = true;
      clearInterval(timer);
      write("\r\x1b[2K");
    },
  };
}
