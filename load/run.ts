/**
 * The runner: one set of virtual users, each with its own transport, asking a scheduler for
 * slots and folding every outcome into a {@linkcode RunRecorder}. The same loop serves the
 * closed and the open model; only the scheduler differs. {@linkcode runPlan} walks a plan's
 * levels and rounds through an {@linkcode Executor} (in-process, or a pool of workers).
 *
 * @module
 */
import type { Clock } from "../lib/shared/clock.ts";
import { type Stage, stagedArrivals } from "./arrivals.ts";
import { createTargetsFactory, type Target } from "./targets.ts";
import { createClosedScheduler, createRateScheduler, type Stop } from "./scheduler.ts";
import type { LiveStats } from "./live_stats.ts";
import { RunRecorder, type RunStats, type StatusRanges } from "./stats.ts";
import type { Outcome, RequestSpec, Transport, TransportFactory } from "./transport.ts";

/** The load of one run: N closed-model users, or a fixed arrival rate. */
export type LoadShape =
  | { readonly model: "closed"; readonly concurrency: number }
  | {
    readonly model: "open";
    /** The constant rate, or the peak of `stages`. */
    readonly ratePerSecond: number;
    readonly maxInFlight: number;
    /** A ramping arrival rate (`--stages`) instead of the constant rate. */
    readonly stages?: readonly Stage[];
  };

/** One run (or one worker's slice of it). */
export interface RunJob {
  /** What every request sends. */
  readonly request: RequestSpec;
  /** Closed users or open rate. */
  readonly load: LoadShape;
  /** When the run stops. */
  readonly stop: Stop;
  /** Statuses that count as success. */
  readonly successStatuses: StatusRanges;
  /** Keep per-second buckets (rate runs, for the chart against time). */
  readonly timeline: boolean;
  /** A mix of requests (`--targets`) sent instead of `request`. Default: none. */
  readonly targets?: readonly Target[];
}

/** What {@linkcode runOnce} needs from outside. */
export interface RunDeps {
  /** Source of time. */
  readonly clock: Clock;
  /** Creates each user's transport. */
  readonly createTransport: TransportFactory;
  /**
   * Ends the run early: requests in flight are recorded with the time they had waited.
   * Default: none.
   */
  readonly signal?: AbortSignal;
  /** Live counters for the progress view, fed per finished request. Default: none. */
  readonly progress?: LiveStats;
}

const BROKEN: Outcome = { ok: false, error: "network", message: "transport failed" };

/**
 * Executes one run in this isolate.
 *
 * @param job The load, stop condition and request.
 * @param deps Clock, transport factory, cancellation and progress.
 * @returns The run's statistics.
 */
export async function runOnce(job: RunJob, deps: RunDeps): Promise<RunStats> {
  const { clock, progress } = deps;
  const run = new AbortController();
  const stopRun = () => run.abort();
  deps.signal?.addEventListener("abort", stopRun, { once: true });
  if (deps.signal?.aborted) run.abort();
  const signal = run.signal;

  const startMs = clock.now();
  const recorder = new RunRecorder({
    successStatuses: job.successStatuses,
    timeline: job.timeline,
    startMs,
  });
  const scheduler = job.load.model === "closed"
    ? createClosedScheduler({ clock, stop: job.stop, startMs })
    : createRateScheduler({
      clock,
      stop: job.stop,
      startMs,
      ratePerSecond: job.load.ratePerSecond,
      ...(job.load.stages === undefined ? {} : { arrivals: stagedArrivals(job.load.stages) }),
    });
  const lateAfterMs = scheduler.lateAfterMs;
  const createTransport = job.targets === undefined
    ? deps.createTransport
    : createTargetsFactory(job.targets, deps.createTransport);
  const users = job.load.model === "closed" ? job.load.concurrency : job.load.maxInFlight;

  // A timed run ends at its deadline even when requests are still in flight.
  const deadline = new AbortController();
  const deadlineDone = job.stop.kind === "time"
    ? clock.sleep(job.stop.durationMs, deadline.signal).then(stopRun, () => {})
    : Promise.resolve();

  let started = 0;
  let inFlight = 0;
  const isOpen = job.load.model === "open";
  if (isOpen) recorder.inFlightCap = users;
  const transports: Transport[] = [];
  const user = async (): Promise<void> => {
    let transport: Transport | undefined;
    // Whether this user's last request ended while every user was busy: the slot it claims
    // next waited for a free user, which is the target's slowness rather than the generator's.
    let wasFreedFromFull = false;
    for (;;) {
      let intended = scheduler.acquire(signal);
      if (intended instanceof Promise) intended = await intended;
      if (intended === undefined || signal.aborted) return;
      if (transport === undefined) {
        transport = createTransport(job.request);
        transports.push(transport);
      }
      const begin = clock.now();
      started++;
      // The latency's origin. A slot that waited because every user was busy is timed from its
      // planned start (no coordinated omission); a slot the generator itself started late (a
      // late timer, a busy CPU) is timed from when it was sent, and its lateness is kept apart.
      let origin = begin;
      if (isOpen) {
        const latenessMs = begin - intended;
        const isHeldByCap = wasFreedFromFull && latenessMs > 0;
        if (isHeldByCap) origin = intended;
        else recorder.recordLateness(latenessMs);
        if (latenessMs > lateAfterMs) {
          recorder.late++;
          if (!isHeldByCap) recorder.lateByGenerator++;
        }
      }
      let outcome: Outcome;
      inFlight++;
      if (inFlight > recorder.peakInFlight) recorder.peakInFlight = inFlight;
      try {
        outcome = await transport.send(signal);
      } catch {
        outcome = BROKEN;
      } finally {
        wasFreedFromFull = inFlight === users;
        inFlight--;
      }
      const endMs = clock.now();
      if (!outcome.ok && signal.aborted) {
        recorder.recordCensored("inFlight", origin, endMs);
        return;
      }
      const isOk = recorder.record(origin, endMs, outcome);
      progress?.record(
        outcome.ok ? (endMs - origin) * 1000 : undefined,
        isOk ? undefined : outcome.ok ? `${Math.floor(outcome.status / 100)}xx` : outcome.error,
      );
    }
  };

  try {
    const loops: Promise<void>[] = [];
    for (let i = 0; i < users; i++) loops.push(user());
    await Promise.all(loops);
  } finally {
    deadline.abort();
    await deadlineDone;
    deps.signal?.removeEventListener("abort", stopRun);
    await Promise.all(transports.map((transport) => transport.close()));
  }
  const endMs = clock.now();
  const elapsedMs = job.stop.kind === "time"
    ? Math.min(endMs - startMs, job.stop.durationMs)
    : endMs - startMs;
  recorder.resent = transports.reduce((sum, transport) => sum + transport.resent, 0);
  // Slots due within the lateness grace of the end were not missed yet: only timer jitter
  // stood between them and the deadline.
  const runEndMs = Math.min(
    endMs,
    startMs + (job.stop.kind === "time" ? job.stop.durationMs : Infinity),
  );
  const dueMs = runEndMs - (Number.isFinite(lateAfterMs) ? lateAfterMs : 0);
  // Each slot planned and never sent was a user kept waiting until the end: it enters the
  // latency with its lateness then, a lower bound.
  const due = scheduler.dueBy(dueMs);
  for (let index = started; index < due; index++) {
    recorder.recordCensored("unsent", scheduler.slotAt(index), runEndMs);
  }
  return recorder.finish(elapsedMs);
}

/**
 * Splits a run into `parts` concurrent slices whose loads add up to the whole: concurrency,
 * rate, in-flight cap and request total are shared out as evenly as integers allow. Slices that
 * would get no load are dropped.
 *
 * @param job The whole run.
 * @param parts How many slices (workers).
 * @returns Between 1 and `parts` slices.
 *
 * @example
 * ```ts
 * import { splitJob } from "./run.ts";
 * const job = {
 *   request: { url: new URL("http://127.0.0.1/"), method: "GET", headers: [], keepAlive: true, timeoutMs: 1000 },
 *   load: { model: "closed", concurrency: 5 }, stop: { kind: "count", total: 11 },
 *   successStatuses: [[200, 399]], timeline: false,
 * } as const;
 * const slices = splitJob(job, 2);
 * if (slices.length !== 2) throw new Error("bad");
 * ```
 */
export function splitJob(job: RunJob, parts: number): RunJob[] {
  const load = job.load;
  const count = Math.max(1, Math.min(parts, load.model === "closed" ? load.concurrency : parts));
  const share = (whole: number, index: number) =>
    Math.floor((whole * (index + 1)) / count) - Math.floor((whole * index) / count);
  const slices: RunJob[] = [];
  for (let i = 0; i < count; i++) {
    const sliceLoad: LoadShape = load.model === "closed"
      ? { model: "closed", concurrency: share(load.concurrency, i) }
      : {
        model: "open",
        ratePerSecond: load.ratePerSecond / count,
        maxInFlight: Math.max(1, share(load.maxInFlight, i)),
        ...(load.stages === undefined ? {} : {
          stages: load.stages.map((stage) => ({ ...stage, targetRate: stage.targetRate / count })),
        }),
      };
    const stop: Stop = job.stop.kind === "count"
      ? { kind: "count", total: share(job.stop.total, i) }
      : job.stop;
    if (stop.kind === "count" && stop.total === 0) continue;
    slices.push({ ...job, load: sliceLoad, stop });
  }
  return slices;
}

/** Runs jobs somewhere: in this isolate, or spread over workers. */
export interface Executor {
  /**
   * Executes one run.
   *
   * @param job The run.
   * @param options Cancellation and progress.
   * @returns The run's statistics (merged over workers).
   */
  execute(
    job: RunJob,
    options: { readonly signal?: AbortSignal; readonly progress?: LiveStats },
  ): Promise<RunStats>;
}

/**
 * An executor that runs every job in this isolate.
 *
 * @param clock Source of time.
 * @param createTransport Transport factory.
 * @returns The executor.
 */
export function createInProcessExecutor(
  clock: Clock,
  createTransport: TransportFactory,
): Executor {
  return {
    execute(job, options): Promise<RunStats> {
      return runOnce(job, { clock, createTransport, ...options });
    },
  };
}
