/**
 * The default `--workers`, decided from the plan and the machine without sending a request:
 * a probe would be load nobody asked for (a 500 ms closed-model probe at concurrency 64 once
 * turned 10,000 planned requests into 33,280 at the target), and one hiccup of the target
 * during it could pick the wrong count.
 *
 * What decides it: on 2 cores, 60k requests at c50 against nginx on 127.0.0.1 ran at 44k req/s
 * in one isolate and 38k with two workers. A worker costs a fresh isolate and its start-up, and
 * when the target is on this machine every core a worker takes is a core the target does not
 * get. So:
 *
 * - a small run stays in this isolate: a worker's start-up would cost more than it saves;
 * - a target on this machine (a loopback address or `localhost`) gets half the cores, and the
 *   generator the other half, so on 2 cores (or 3) it stays in one isolate;
 * - a target elsewhere gets a worker per core;
 * - the closed model never gets more workers than its smallest concurrency can feed, and the
 *   open model no more than one per {@linkcode OPEN_RATE_PER_WORKER} requests per second.
 *
 * @module
 */
import type { Clock } from "../lib/shared/clock.ts";
import type { LoadPlan } from "./options.ts";
import { createInProcessExecutor, type Executor } from "./run.ts";
import type { TransportFactory } from "./transport.ts";
import { WorkerPool } from "./worker_pool.ts";

/** Runs of fewer requests stay in one isolate by default (about half a second of one isolate). */
export const SMALL_RUN_REQUESTS = 20_000;
/** An arrival rate one isolate keeps to its schedule comfortably (it sends about 40k/s). */
export const OPEN_RATE_PER_WORKER = 20_000;

/** The default worker count and why. */
export interface WorkerChoice {
  /** 1 means in this isolate. */
  readonly workers: number;
  /** Why, for the header line: `--workers`, or the rule that decided. */
  readonly reason: string;
}

/**
 * Whether a host name is this machine: `localhost`, 127.0.0.0/8, `::1` or `0.0.0.0`.
 *
 * @param hostname A URL's hostname (IPv6 in brackets or not).
 * @returns True for a loopback (or unspecified) address.
 *
 * @example
 * ```ts
 * import { isLocalHost } from "./worker_choice.ts";
 * if (!isLocalHost("127.0.0.1") || !isLocalHost("[::1]") || isLocalHost("10.0.0.1")) throw new Error();
 * ```
 */
export function isLocalHost(hostname: string): boolean {
  const host = hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return host === "localhost" || host.endsWith(".localhost") || /^127\./.test(host) ||
    host === "::1" || host === "0.0.0.0" || host === "::";
}

/**
 * Decides how many workers a plan runs on, without sending anything.
 *
 * @param plan The plan.
 * @param cores CPU count.
 * @returns The worker count (1 means in-process) and the reason.
 *
 * @example
 * ```ts
 * import { chooseWorkers } from "./worker_choice.ts";
 * import { parseLoadArgs } from "./options.ts";
 * const command = parseLoadArgs(["--url", "http://127.0.0.1:8080/", "--total", "60000", "-c", "50"]);
 * if (command.kind !== "run") throw new Error();
 * if (chooseWorkers(command.plan, 2).workers !== 1) throw new Error();
 * if (chooseWorkers(command.plan, 8).workers !== 4) throw new Error();
 * ```
 */
export function chooseWorkers(plan: LoadPlan, cores: number): WorkerChoice {
  if (plan.workers !== undefined) return { workers: plan.workers, reason: "--workers" };
  const highest = Math.max(...plan.levels);
  const requests = plan.stop.kind === "count"
    ? plan.stop.total
    : plan.model === "open"
    ? (highest * plan.stop.durationMs) / 1000
    : Number.POSITIVE_INFINITY;
  if (requests < SMALL_RUN_REQUESTS) {
    return { workers: 1, reason: `under ${SMALL_RUN_REQUESTS} requests` };
  }
  const urls = plan.targets === undefined
    ? [plan.request.url]
    : plan.targets.map((target) => target.spec.url);
  const isLocal = urls.some((url) => isLocalHost(url.hostname));
  let workers = isLocal ? Math.floor(cores / 2) : cores;
  const reasons = [
    isLocal ? `target on this machine: half of ${cores} cores` : `target elsewhere: ${cores} cores`,
  ];
  if (plan.model === "closed") {
    const lowest = Math.min(...plan.levels);
    if (lowest < workers) reasons.push(`concurrency ${lowest}`);
    workers = Math.min(workers, lowest);
  } else {
    const needed = Math.ceil(highest / OPEN_RATE_PER_WORKER);
    if (needed < workers) reasons.push(`${highest} req/s`);
    workers = Math.min(workers, needed);
  }
  return { workers: Math.max(1, workers), reason: reasons.join(", ") };
}

/** What {@linkcode startExecutor} needs. */
export interface StartExecutorDeps {
  /** Source of time. */
  readonly clock: Clock;
  /** Transport factory of the in-process executor. */
  readonly createTransport: TransportFactory;
  /** The worker module. */
  readonly workerUrl: URL;
}

/**
 * Starts the executor for a worker count: this isolate for 1, else a pool of workers.
 *
 * @param plan The plan (its transport mode goes to the workers).
 * @param workers How many.
 * @param deps Clock, transports and the worker module.
 * @returns The executor; `close` stops the workers.
 * @throws {Error} When a worker fails to start.
 */
export async function startExecutor(
  plan: LoadPlan,
  workers: number,
  deps: StartExecutorDeps,
): Promise<Executor & { close?: () => Promise<void> }> {
  if (workers <= 1) return createInProcessExecutor(deps.clock, deps.createTransport);
  return await WorkerPool.start(deps.workerUrl, workers, plan.transport);
}
