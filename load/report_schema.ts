/**
 * The JSON report of `loadtest --json`, declared once as a zod schema: `merge` validates its
 * inputs with it, the report types derive from it, and `loadtest schema` publishes it as JSON
 * Schema (`load/report.schema.json` is a copy a test keeps current).
 *
 * @module
 */
import { z } from "zod";

/** Version of the JSON report layout (2 added computed statistics and run labels; 3 puts
 * censored samples in the histogram and adds censored, resent, lateness and lateByGenerator). */
export const REPORT_VERSION = 3;

const count = z.number().int().nonnegative();
/** A statistic that has no value when nothing succeeded: JSON `null`, shown as `n/a`. */
const maybeMs = (what: string) =>
  z.number().nonnegative().nullable().describe(
    `${what} in milliseconds, timed from the intended start; null when no request succeeded`,
  );

const timelineBucketSchema = z.object({
  second: count.describe("Seconds since the run started (bucket start)"),
  ok: count.describe("Successful responses completed in this second"),
  errors: count.describe("Failed requests completed in this second"),
  histogram: z.string().describe("Encoded latency histogram (µs) of this second's responses"),
});

/** The measured part of a run: what workers send back and `merge` adds up. */
const runStatsSchema = z.object({
  requests: count.describe("Completed requests: responses of any status plus network errors"),
  ok: count.describe("Responses whose status counts as success"),
  errors: count.describe("Failed requests: unsuccessful statuses plus network errors"),
  statuses: z.record(z.string().regex(/^\d{3}$/), count).describe("Responses by status code"),
  failedStatuses: z.record(z.string().regex(/^\d{3}$/), count).describe(
    "Responses whose status the success rule rejects, by status code (part of statuses)",
  ),
  networkErrors: z.object({ timeout: count, refused: count, reset: count, network: count })
    .describe("Requests that ended without an HTTP response, by kind"),
  cutOff: count.describe(
    "Requests in flight when the run ended; not in requests, but in the histogram with the time they had waited",
  ),
  late: count.describe("Open model: requests that started later than planned"),
  lateByGenerator: count.describe(
    "Open model: late requests held back by the load generator itself (timers, CPU), not by the in-flight cap",
  ),
  unsent: count.describe(
    "Open model: requests planned before the end that never started; in the histogram with their lateness at the end",
  ),
  censored: count.describe(
    "Latencies in the histogram that are lower bounds: timeouts (at the timeout), cutOff and unsent",
  ),
  resent: count.describe(
    "Requests sent on a new connection because the server had closed the idle one before they were written (each reached the server once)",
  ),
  peakInFlight: count.describe("Most requests in flight at once"),
  inFlightCap: count.describe("Open model: the cap on requests in flight (0 in the closed model)"),
  bodyBytes: count.describe("Response body bytes read"),
  elapsedMs: z.number().nonnegative().describe("Wall time of the run in milliseconds"),
  errorSamples: z.array(z.object({ message: z.string(), count }))
    .describe("Up to 5 distinct error messages with their counts"),
  histogram: z.string().describe(
    "Latency histogram (µs) of every response, timeout, request in flight at the end and unsent request (see censored), HdrHistogram V2 compressed base64; empty when none",
  ),
  lateness: z.string().describe(
    "Open model: histogram (µs) of how late the generator started requests the in-flight cap did not hold back; kept out of histogram",
  ),
  timeline: z.array(timelineBucketSchema).optional().describe(
    "Per-second buckets, kept for rate runs",
  ),
});

/** Statistics computed from {@linkcode runStatsSchema}, written beside it for scripts. */
const computedStatsSchema = z.object({
  isAllFailed: z.boolean().describe("Requests completed and none of them succeeded"),
  errorsByClass: z.record(z.string(), count).describe(
    'Failed requests by class: status classes such as "5xx", or a network error kind',
  ),
  rps: z.number().nonnegative().nullable().describe(
    "Completed requests per second; null when no request succeeded",
  ),
  meanMs: maybeMs("Mean latency"),
  p50Ms: maybeMs("Median latency"),
  p90Ms: maybeMs("90th percentile latency"),
  p95Ms: maybeMs("95th percentile latency"),
  p99Ms: maybeMs("99th percentile latency"),
  p999Ms: maybeMs("99.9th percentile latency"),
  maxMs: maybeMs("Highest latency"),
});

const model = z.enum(["closed", "open"]);

/** One run as the JSON report writes it. */
const reportRunSchema = z.object({
  label: z.string().describe('The short run label, such as "c25-r1" or "rate500-r1"'),
  round: z.number().int().positive().describe("Round of this level, from 1"),
  rounds: z.number().int().positive().describe("Rounds per level"),
  model: model.describe("closed (concurrency) or open (arrival rate)"),
  level: z.number().positive().describe(
    "Concurrency, or rate in requests per second (the peak of the plan for a --stages run)",
  ),
  isStaged: z.boolean().optional().describe(
    "The run followed the report's --stages plan (labelled by the plan, not its peak)",
  ),
  stats: runStatsSchema.extend(computedStatsSchema.shape),
});

const stopSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("count"), total: count }),
  z.object({ kind: z.literal("time"), durationMs: z.number().positive() }),
]).describe("When each run stopped: after a number of requests or after a duration");

/** The whole JSON report. */
export const loadReportSchema = z.object({
  version: z.literal(REPORT_VERSION),
  url: z.string().describe("Target URL (several, comma-separated, after a merge)"),
  method: z.string(),
  model,
  stop: stopSchema,
  stages: z.array(z.object({
    durationMs: z.number().positive(),
    targetRate: z.number().nonnegative(),
  })).readonly().optional().describe(
    "Ramping arrival rate (--stages): each stage moves the rate linearly to its target",
  ),
  sources: z.number().int().positive().describe("How many reports were merged into this one"),
  isInterrupted: z.boolean().describe("Whether the test was interrupted before its last run"),
  runs: z.array(reportRunSchema),
}).meta({
  title: "denolb loadtest --json report",
  description: "Latencies in milliseconds unless the name says µs; one entry in runs per run",
});

/**
 * What `merge` accepts: this version's reports, and version 1 reports (written before the
 * computed statistics and labels existed; they are recomputed anyway).
 */
export const mergeInputSchema = loadReportSchema.extend({
  version: z.union([z.literal(1), z.literal(2), z.literal(REPORT_VERSION)]),
  runs: z.array(
    reportRunSchema.partial({ label: true }).extend({
      stats: runStatsSchema.partial({
        failedStatuses: true,
        peakInFlight: true,
        inFlightCap: true,
        lateByGenerator: true,
        censored: true,
        resent: true,
        lateness: true,
      })
        .extend(
          computedStatsSchema.partial().shape,
        ),
    }),
  ),
});

/** Statistics measured in one run (or one worker's slice of it); plain JSON-safe data. */
export type RunStats = z.infer<typeof runStatsSchema>;
/** Statistics derived from a run's {@linkcode RunStats}. */
export type ComputedStats = z.infer<typeof computedStatsSchema>;
/** One run as written to JSON. */
export type ReportRun = z.infer<typeof reportRunSchema>;
/** The JSON report as written. */
export type LoadReportJson = z.infer<typeof loadReportSchema>;

/**
 * The report's JSON Schema (draft 2020-12), generated from {@linkcode loadReportSchema}.
 *
 * @returns The schema as a plain object.
 */
export function reportJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(loadReportSchema) as Record<string, unknown>;
}
