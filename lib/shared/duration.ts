/**
 * Durations as people type them (`250ms`, `5s`, `1m30s`, `2h`), shared by the balancer's and the
 * load tester's flags.
 *
 * @module
 */

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
 * @param defaultUnit The unit of a bare number. Default: `"s"` (as the seed's `--timeout 4`).
 * @returns The duration in milliseconds.
 * @throws {SyntaxError} When the text is not a duration.
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
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed) * (UNIT_MS[defaultUnit] ?? 1);
  const part = /(\d+(?:\.\d+)?)(us|µs|ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  for (const match of trimmed.matchAll(part)) {
    total += Number(match[1]) * (UNIT_MS[match[2] ?? ""] ?? Number.NaN);
    consumed += match[0].length;
  }
  if (trimmed === "" || consumed !== trimmed.length || !Number.isFinite(total)) {
    throw new SyntaxError(
      `Cannot parse duration "${text}": use a number with a unit such as 250ms, 5s, 1m or 1m30s`,
    );
  }
  return total;
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
