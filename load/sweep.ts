/**
 * The original Python load tester's sweep: every level of a plan (concurrency or rate) for the
 * given rounds, after an
 * unrecorded warm-up, one {@linkcode RunRecord} per run.
 *
 * @module
 */
import type { LoadPlan } from "./options.ts";
import { MAX_DEFAULT_IN_FLIGHT } from "./options.ts";
import type { LiveStats } from "./live_stats.ts";
import type { Executor, RunJob } from "./run.ts";
import type { Stop } from "./scheduler.ts";
import type { ReportRun, RunStats } from "./report_schema.ts";

/**
 * The result of one run of a plan: a report run (`report_schema.ts`) before its label and
 * computed statistics are added for output.
 */
export type RunRecord = Readonly<Omit<ReportRun, "label" | "stats"> & { stats: RunStats }>;

/** Called around each run, for streaming output and the progress bar. */
export interface SweepHooks {
  /** Before a run starts. Default: nothing. */
  readonly onRunStart?: (
    info: { readonly round: number; readonly level: number; readonly job: RunJob },
  ) => void;
  /** After a run ends. Default: nothing. */
  readonly onRunEnd?: (record: RunRecord) => void;
}

/** Options of {@linkcode runSweep}. */
export interface SweepOptions {
  /** Stops the sweep: the current run ends, its in-flight requests recorded as waited so far. Default: none. */
  readonly signal?: AbortSignal;
  /** Live counters for the progress view. Default: none. */
  readonly progress?: LiveStats;
  /** Streaming callbacks. Default: none. */
  readonly hooks?: SweepHooks;
}

/** Descriptors kept free for everything but the load's sockets (files, workers, stdio). */
const DESCRIPTOR_RESERVE = 64;

/**
 * The default in-flight cap of an open-model run: enough users to keep the rate even if every
 * request takes the full timeout, but at most {@linkcode MAX_DEFAULT_IN_FLIGHT} (thousands of
 * sockets opened at once can take the target down) and never more sockets than the process's
 * descriptor limit allows.
 *
 * @param ratePerSecond Arrival rate.
 * @param timeoutMs Per-request timeout.
 * @param descriptorLimit Open-files soft limit of the process. Default: no limit known.
 * @param connectionsPerUser Sockets one user may hold (one per target). Default: 1.
 * @returns The cap.
 *
 * @example
 * ```ts
 * import { defaultMaxInFlight } from "./sweep.ts";
 * if (defaultMaxInFlight(100, 5000) !== 500) throw new Error("rate x timeout");
 * if (defaultMaxInFlight(8000, 5000) !== 1000) throw new Error("bounded");
 * if (defaultMaxInFlight(8000, 5000, 256) !== 192) throw new Error("descriptors");
 * ```
 */
export function defaultMaxInFlight(
  ratePerSecond: number,
  timeoutMs: number,
  descriptorLimit: number = Number.POSITIVE_INFINITY,
  connectionsPerUser = 1,
): number {
  const bySockets = Math.floor((descriptorLimit - DESCRIPTOR_RESERVE) / connectionsPerUser);
  return Math.max(
    1,
    Math.min(MAX_DEFAULT_IN_FLIGHT, Math.ceil((ratePerSecond * timeoutMs) / 1000), bySockets),
  );
}

/**
 * The job of one level of a plan.
 *
 * @param plan The plan.
 * @param level Concurrency or rate.
 * @param stop Stop condition. Default: the plan's.
 * @returns The job.
 */
export function jobForLevel(plan: LoadPlan, level: number, stop: Stop = plan.stop): RunJob {
  return {
    request: plan.request,
    load: plan.model === "closed" ? { model: "closed", concurrency: level } : {
      model: "open",
      ratePerSecond: level,
      maxInFlight: plan.maxInFlight ??
        defaultMaxInFlight(
          level,
          plan.request.timeoutMs,
          plan.descriptorLimit,
          plan.targets?.length ?? 1,
        ),
      ...(plan.stages === undefined ? {} : { stages: plan.stages }),
    },
    stop,
    successStatuses: plan.successStatuses,
    timeline: plan.model === "open",
    ...(plan.targets === undefined ? {} : { targets: plan.targets }),
  };
}

/**
 * Runs the plan's unrecorded warm-up (at its first level), if it has one.
 *
 * @param plan The plan.
 * @param executor Where to run.
 * @param signal Cancellation.
 */
export async function warmUp(
  plan: LoadPlan,
  executor: Executor,
  signal?: AbortSignal,
): Promise<void> {
  const first = plan.levels[0];
  if (plan.warmupMs <= 0 || first === undefined) return;
  const job = jobForLevel(plan, first, { kind: "time", durationMs: plan.warmupMs });
  await executor.execute(job, signal === undefined ? {} : { signal });
}

/**
 * Runs each level of the plan for its rounds (levels outer, rounds inner, as the
 * original Python load tester did).
 * Stops early, keeping the finished runs, when `signal` aborts.
 *
 * @param plan The plan.
 * @param executor Where to run.
 * @param options Cancellation, progress and hooks.
 * @returns One record per finished run.
 */
export async function runSweep(
  plan: LoadPlan,
  executor: Executor,
  options: SweepOptions = {},
): Promise<RunRecord[]> {
  const { signal, progress, hooks } = options;
  const records: RunRecord[] = [];
  await warmUp(plan, executor, signal);
  for (const level of plan.levels) {
    for (let round = 1; round <= plan.rounds; round++) {
      if (signal?.aborted) return records;
      const job = jobForLevel(plan, level);
      hooks?.onRunStart?.({ round, level, job });
      const stats = await executor.execute(job, {
        ...(signal === undefined ? {} : { signal }),
        ...(progress === undefined ? {} : { progress }),
      });
      const record: RunRecord = {
        round,
        rounds: plan.rounds,
        model: plan.model,
        level,
        ...(plan.stages === undefined ? {} : { isStaged: true }),
        stats,
      };
      records.push(record);
      hooks?.onRunEnd?.(record);
    }
  }
  return records;
}
