/**
 * The default `--workers`: more workers only when they are measured to be faster. Workers share
 * the machine with the target when it is local, so on a small machine two workers can be slower
 * than one (60k requests at c50 against nginx on 2 cores: 38k req/s with 2, 44k with 1). Before
 * the first run, a short closed-model probe runs in-process and over the candidate workers, and
 * the workers are kept only if they beat one isolate by a clear margin.
 *
 * @module
 */
import type { Clock } from "../lib/shared/clock.ts";
import type { LoadPlan } from "./options.ts";
import { createInProcessExecutor, type Executor, type RunJob } from "./run.ts";
import { throughput } from "./stats.ts";
import type { TransportFactory } from "./transport.ts";
import { WorkerPool } from "./worker_pool.ts";

/** How long each probe runs. */
export const WORKER_PROBE_MS = 500;
/** How much faster workers must be than one isolate to be chosen (10%). */
const WORKER_GAIN = 1.1;
/** Concurrency of the probe when the plan has none (open model). */
const OPEN_MODEL_PROBE_CONCURRENCY = 64;

/** Throughput measured with a worker count. */
export interface WorkerMeasurement {
  /** 1 for in-process. */
  readonly workers: number;
  /** Completed requests per second. */
  readonly rps: number;
}

/**
 * Picks the worker count from probe results: the fastest, but more workers only when they are
 * at least {@linkcode WORKER_GAIN} times as fast as fewer, so the default is never slower than
 * one worker (within the probe's noise).
 *
 * @param measurements Probe results.
 * @returns The worker count.
 *
 * @example
 * ```ts
 * import { pickWorkers } from "./worker_choice.ts";
 * if (pickWorkers([{ workers: 1, rps: 44_000 }, { workers: 2, rps: 38_000 }]) !== 1) throw new Error();
 * if (pickWorkers([{ workers: 1, rps: 30_000 }, { workers: 4, rps: 90_000 }]) !== 4) throw new Error();
 * if (pickWorkers([{ workers: 1, rps: 30_000 }, { workers: 2, rps: 31_000 }]) !== 1) throw new Error();
 * ```
 */
export function pickWorkers(measurements: readonly WorkerMeasurement[]): number {
  const sorted = [...measurements].sort((a, b) => a.workers - b.workers);
  let best = sorted[0];
  for (const next of sorted.slice(1)) {
    if (best === undefined || next.rps >= best.rps * WORKER_GAIN) best = next;
  }
  return best?.workers ?? 1;
}

/** The outcome of {@linkcode chooseExecutor}. */
export interface ExecutorChoice {
  /** Where the runs go. */
  readonly executor: Executor & { close?: () => Promise<void> };
  /** Worker count (1: in-process). */
  readonly workers: number;
  /** What was measured, for the header line; empty when nothing was. */
  readonly measurements: readonly WorkerMeasurement[];
}

/** What {@linkcode chooseExecutor} needs. */
export interface ChooseExecutorDeps {
  /** Source of time. */
  readonly clock: Clock;
  /** Transport factory of the in-process executor. */
  readonly createTransport: TransportFactory;
  /** The worker module. */
  readonly workerUrl: URL;
  /** Cancels the probes. */
  readonly signal: AbortSignal;
}

/**
 * Starts the executor for a plan: `candidate` workers when `--workers` was given (or the run is
 * small, candidate 1), else whichever of in-process and `candidate` workers the probe finds
 * faster.
 *
 * @param plan The plan.
 * @param candidate Worker count before measuring (from the cores and the size of the run).
 * @param deps Clock, transports, worker module and cancellation.
 * @returns The executor, its worker count and the measurements.
 * @throws {Error} When a worker fails to start.
 */
export async function chooseExecutor(
  plan: LoadPlan,
  candidate: number,
  deps: ChooseExecutorDeps,
): Promise<ExecutorChoice> {
  const inProcess = createInProcessExecutor(deps.clock, deps.createTransport);
  if (candidate <= 1) return { executor: inProcess, workers: 1, measurements: [] };
  const pool = await WorkerPool.start(deps.workerUrl, candidate, plan.transport);
  if (plan.workers !== undefined) return { executor: pool, workers: candidate, measurements: [] };
  const job = probeJob(plan);
  const measure = async (executor: Executor, workers: number): Promise<WorkerMeasurement> => ({
    workers,
    rps: throughput(await executor.execute(job, { signal: deps.signal })),
  });
  const measurements = [await measure(inProcess, 1), await measure(pool, candidate)];
  if (pickWorkers(measurements) === candidate) {
    return { executor: pool, workers: candidate, measurements };
  }
  await pool.close();
  return { executor: inProcess, workers: 1, measurements };
}

function probeJob(plan: LoadPlan): RunJob {
  const concurrency = plan.model === "closed"
    ? Math.min(...plan.levels)
    : Math.min(OPEN_MODEL_PROBE_CONCURRENCY, plan.maxInFlight ?? OPEN_MODEL_PROBE_CONCURRENCY);
  return {
    request: plan.request,
    load: { model: "closed", concurrency },
    stop: { kind: "time", durationMs: WORKER_PROBE_MS },
    successStatuses: plan.successStatuses,
    timeline: false,
    ...(plan.targets === undefined ? {} : { targets: plan.targets }),
  };
}
