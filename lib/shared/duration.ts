/**
 * Durations as people type them (`250ms`, `5s`, `1m30s`, `2h`), shared by the balancer's and the
 * load tester's flags.
 *
 * @module
 */

/**
 * The longest delay a JavaScript timer honours: 2^31-1 ms (about 24.8 days). A longer
 * `setTimeout` fires at once, so a duration above it is rejected rather than trusted.
 */
export const MAX_TIMER_MS: number = 2 ** 31 - 1;

const UNIT_MS: Readonly<Record<string, number>> = {
  us: 0.001,
  µs: 0.001,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a duration into milliseconds. A bare number is read in `defaultUnit`.
 *
 * @param text The duration, such as `"250ms"`, `"5s"`, `"1m30s"` or `"4"`.
 * @param defaultUnit The unit of a bare number. Default: `"s"` (as in `--timeout 4`).
 * @returns The duration in milliseconds.
 * @throws {SyntaxError} When the text is not a duration, or so long it is not finite.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./duration.ts";
 * if (parseDuration("1m30s") !== 90_000) throw new Error("bad");
 * if (parseDuration("4") !== 4000) throw new Error("bad");
 * if (parseDuration("250", "ms") !== 250) throw new Error("bad");
 * ```
 */
export function parseDuration(text: string, defaultUnit: "ms" | "s" = "s"): number {
  const trimmed = text.trim();
  const total = /^\d+(\.\d+)?$/.test(trimmed)
    ? Number(trimmed) * (UNIT_MS[defaultUnit] ?? Number.NaN)
    : sumParts(trimmed);
  // A bare number of 400 digits is Infinity: as unusable as a typo.
  if (!Number.isFinite(total)) {
    throw new SyntaxError(
      `Cannot parse duration "${text}": use a number with a unit such as 250ms, 5s, 1m or 1m30s`,
    );
  }
  return total;
}

/** Adds up `1m30s`-style parts; NaN unless the parts cover the whole text. */
function sumParts(text: string): number {
  let total = 0;
  let consumed = 0;
  for (const match of text.matchAll(/(\d+(?:\.\d+)?)(us|µs|ms|s|m|h)/gy)) {
    total += Number(match[1]) * (UNIT_MS[match[2] ?? ""] ?? Number.NaN);
    consumed += match[0].length;
  }
  return text === "" || consumed !== text.length ? Number.NaN : total;
}

/**
 * Formats milliseconds for people: `850ms`, `4.2s`, `2m05s`.
 *
 * @param ms The duration in milliseconds.
 * @returns A short human-readable duration.
 *
 * @example
 * ```ts
 * import { formatDuration } from "./duration.ts";
 * if (formatDuration(4200) !== "4.2s") throw new Error("bad");
 * ```
 */
export function formatDuration(ms: number): string {
  if (ms < 1) return `${(ms * 1000).toFixed(0)}µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : 0)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1000);
  return `${minutes}m${String(seconds).padStart(2, "0")}s`;
}

/**
 * Formats milliseconds the way {@linkcode parseDuration} reads them, exactly and briefly:
 * `250ms`, `10s`, `1m30s`, `2h`, `596h31m23.647s`. For help texts and limits in messages.
 *
 * @param ms The duration in milliseconds, 0 or more.
 * @returns The duration as a flag value.
 *
 * @example
 * ```ts
 * import { formatDurationText, parseDuration } from "./duration.ts";
 * if (formatDurationText(90_000) !== "1m30s") throw new Error("bad");
 * if (formatDurationText(250) !== "250ms") throw new Error("bad");
 * if (parseDuration(formatDurationText(2 ** 31 - 1)) !== 2 ** 31 - 1) throw new Error("bad");
 * ```
 */
export function formatDurationText(ms: number): string {
  if (ms === 0) return "0s";
  if (ms < 1000) return `${ms}ms`;
  const hours = Math.floor(ms / 3_600_000);
  const minutes = Math.floor((ms % 3_600_000) / 60_000);
  const seconds = (ms % 60_000) / 1000;
  return (hours > 0 ? `${hours}h` : "") + (minutes > 0 ? `${minutes}m` : "") +
    (seconds > 0 ? `${seconds}s` : "");
}
