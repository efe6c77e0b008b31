/**
 * The two load generators of the benchmark table, each run for one timed slice: `wrk` (with its
 * latency distribution) and our own `main.ts loadtest` (closed model, its JSON report).
 * Benchmarks only; tests never import it.
 *
 * @module
 */
import { requestsPerSecond, wrkErrors } from "./bench_support.ts";

const MAIN = new URL("../../main.ts", import.meta.url);
/** A slice's tool gets this long beyond the slice before it is killed. */
const GRACE_MS = 30_000;

/** What one tool measured in one slice. */
export interface SliceResult {
  /** Successful requests per second. */
  readonly requestsPerSecond: number;
  /** Median latency, ms. */
  readonly p50Ms: number;
  /** 99th percentile latency, ms. */
  readonly p99Ms: number;
  /** Failed requests (statuses outside 2xx/3xx and socket errors). */
  readonly errors: number;
}

/**
 * A wrk latency such as `812.00us`, `1.23ms` or `2.01s`, in milliseconds.
 *
 * @param text The figure with its unit.
 * @returns Milliseconds (NaN when unreadable).
 *
 * @example
 * ```ts
 * import { wrkLatencyMs } from "./bench_drivers.ts";
 * if (wrkLatencyMs("812.00us") !== 0.812 || wrkLatencyMs("2s") !== 2000) throw new Error();
 * ```
 */
export function wrkLatencyMs(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (match === null) return Number.NaN;
  const scale: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };
  return Number(match[1]) * (scale[match[2] ?? ""] ?? Number.NaN);
}

/**
 * Reads a percentile of `wrk --latency`'s "Latency Distribution".
 *
 * @param text wrk's output.
 * @param percent 50, 75, 90 or 99.
 * @returns Milliseconds (NaN when absent).
 */
export function wrkPercentileMs(text: string, percent: number): number {
  const match = new RegExp(`^\\s+${percent}%\\s+(\\S+)`, "m").exec(text);
  return match?.[1] === undefined ? Number.NaN : wrkLatencyMs(match[1]);
}

async function runBounded(command: string, args: readonly string[], limitMs: number) {
  const output = await new Deno.Command(command, {
    args: [...args],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(limitMs),
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr).trim().split("\n").at(-1);
    throw new Error(`${command} exited with code ${output.code}: ${stderr ?? ""}`);
  }
  return text;
}

/**
 * Runs `wrk -t1 -cC -dDs --latency URL` for one slice.
 *
 * @param url The target.
 * @param connections Open connections.
 * @param sliceMs The slice, rounded to whole seconds.
 * @returns Its rate, p50, p99 and errors.
 */
export async function wrkSlice(
  url: string,
  connections: number,
  sliceMs: number,
): Promise<SliceResult> {
  const seconds = Math.max(1, Math.round(sliceMs / 1000));
  const text = await runBounded(
    "wrk",
    ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", url],
    seconds * 1000 + GRACE_MS,
  );
  return {
    requestsPerSecond: requestsPerSecond("wrk", text),
    p50Ms: wrkPercentileMs(text, 50),
    p99Ms: wrkPercentileMs(text, 99),
    errors: wrkErrors(text),
  };
}

/**
 * Runs `main.ts loadtest -c C --duration D --workers 1` (closed model, one isolate, as wrk's
 * one thread) for one slice and reads its JSON report.
 *
 * @param url The target.
 * @param connections Concurrency.
 * @param sliceMs The slice, rounded to whole seconds.
 * @param jsonPath Where the report goes (overwritten).
 * @returns Its rate (successes per elapsed second), p50, p99 and errors.
 */
export async function loadtestSlice(
  url: string,
  connections: number,
  sliceMs: number,
  jsonPath: string,
): Promise<SliceResult> {
  const seconds = Math.max(1, Math.round(sliceMs / 1000));
  await runBounded(Deno.execPath(), [
    "run",
    "-A",
    MAIN.pathname,
    "loadtest",
    "--url",
    url,
    "--concurrency",
    String(connections),
    "--duration",
    `${seconds}s`,
    "--workers",
    "1",
    "--quiet",
    "--json",
    jsonPath,
  ], seconds * 1000 + GRACE_MS);
  const report = JSON.parse(await Deno.readTextFile(jsonPath)) as {
    runs?: { stats?: Record<string, unknown> }[];
  };
  const stats = report.runs?.[0]?.stats ?? {};
  const { ok, errors, elapsedMs, p50Ms, p99Ms } = stats;
  if (typeof ok !== "number" || typeof errors !== "number" || typeof elapsedMs !== "number") {
    throw new Error("Cannot read runs[0].stats of the loadtest JSON report");
  }
  return {
    requestsPerSecond: ok / (elapsedMs / 1000),
    p50Ms: typeof p50Ms === "number" ? p50Ms : Number.NaN,
    p99Ms: typeof p99Ms === "number" ? p99Ms : Number.NaN,
    errors,
  };
}
