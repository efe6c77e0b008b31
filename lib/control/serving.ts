/**
 * Where the data plane runs, as the control plane drives it: in the control plane's own isolate
 * (`--workers 1`), or in N data-plane workers sharing the address (`control/workers.ts`).
 * `--workers auto` settles for one isolate when SO_REUSEPORT is unavailable (no
 * `--unstable-net`) or the workers fail to start; an explicit count is then an error.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Backend } from "../backend.ts";
import type { AttemptResult } from "../outlier.ts";
import { type DataPlane, startDataPlane } from "../data/data_plane.ts";
import { getModuleLogger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { Pool } from "../pool.ts";
import type { BalancerConfig } from "../settings.ts";
import type { SharedState } from "../shared_state.ts";
import type { Clock } from "../shared/clock.ts";
import { startWorkers, type Workers } from "./workers.ts";

/** The data plane as the control plane drives it. */
export interface Serving {
  /** The proxy address. */
  readonly addr: Deno.NetAddr;
  /** Client connections open (as last reported, with workers). */
  readonly connectionCount: number;
  /** How many isolates serve requests. */
  readonly isolateCount: number;
  /** Per-isolate figures, when there are workers. */
  isolates(): Array<{ id: string; connections: number }> | undefined;
  /** Tells the data plane about membership and weight changes (workers mirror the pool). */
  publish(): void;
  /** Applies a reload; throws, changing nothing, when a new address cannot be bound. */
  configure(config: BalancerConfig): void;
  /** Drains within `timeoutMs`; resolves whether every request finished. */
  drain(timeoutMs: number): Promise<boolean>;
}

/** What {@linkcode startServing} works with. */
export interface ServingDeps {
  /** The control plane's pool (mirrored into workers). */
  readonly pool: Pool;
  /** The balancer's shared state: its pool's slots, rotation, queue and counters. */
  readonly shared: SharedState;
  /**
   * Told, with workers, that a backend's shared failure streak reached passive health's
   * threshold. Default: none.
   */
  readonly onStreak?: (backend: Backend, result: AttemptResult) => void;
  /** The control plane's metrics (workers' counts are folded in). */
  readonly metrics: Metrics;
  /** Runs the timeouts of an in-isolate data plane. */
  readonly clock: Clock;
  /** Lifecycle records. */
  readonly logger: Logger;
  /** The module workers start from; without it the data plane runs in this isolate. */
  readonly workerEntry?: URL;
  /** Told each forwarding attempt's outcome in this isolate (passive health). */
  readonly onAttempt?: (backend: Backend, result: AttemptResult) => void;
}

/**
 * Starts the data plane where `config.workers` asks.
 *
 * @param config The validated configuration.
 * @param deps Pool, metrics, clock, logger and the workers' entry module.
 * @returns The serving data plane.
 * @throws {Error} When an address cannot be bound, or an explicit worker count cannot be met.
 */
export async function startServing(
  config: BalancerConfig,
  deps: ServingDeps,
): Promise<Serving> {
  const { pool, metrics, logger, onStreak, shared } = deps;
  const isolateCount = deps.workerEntry === undefined
    ? 1
    : isolatesToRun(config.workers, resolveWorkers(config.workers), logger);
  if (isolateCount > 1 && deps.workerEntry !== undefined) {
    try {
      return await serveInWorkers(config, {
        count: isolateCount,
        entry: deps.workerEntry,
        pool,
        shared,
        metrics,
        logger,
        ...(onStreak === undefined ? {} : {
          onOutcome: (href: string, result: AttemptResult) => {
            const backend = pool.find(href);
            if (backend !== undefined) onStreak(backend, result);
          },
        }),
      });
    } catch (error) {
      // An explicit count is a promise to the operator; auto may settle for one isolate.
      if (config.workers !== "auto") throw error;
      logger.warn("Serving from one isolate: the data-plane workers did not start", {
        error: error instanceof Error ? error.message : String(error),
      });
    }
  }
  shared.setIsolateCount(1);
  return serveHere(config, deps);
}

/**
 * How many data-plane isolates `--workers` asks for: a number as given; `auto` is one per core.
 * On our 2-core machines two isolates served 1.21x one isolate's rate even with wrk and three
 * nginx backends on the same cores (`load/bench/lb_vs_nginx.ts`, medians of 5 slices), so 2
 * cores get 2 as well; a single core gets 1.
 *
 * @param workers The setting: `"auto"` or a whole number.
 * @param cores The machine's cores. Default: `navigator.hardwareConcurrency`.
 * @returns The isolate count, 1 or more.
 *
 * @example
 * ```ts
 * import { resolveWorkers } from "./serving.ts";
 * if (resolveWorkers("auto", 2) !== 2 || resolveWorkers("auto", 1) !== 1) throw new Error();
 * if (resolveWorkers("3", 8) !== 3) throw new Error();
 * ```
 */
export function resolveWorkers(
  workers: string,
  cores: number = navigator.hardwareConcurrency,
): number {
  if (workers !== "auto") return Math.max(1, Number(workers));
  return Math.max(1, cores);
}

/**
 * Checks that several isolates can share the address: SO_REUSEPORT is behind Deno's
 * `--unstable-net`. Without it, `auto` falls back to one isolate with a warning and an explicit
 * count is an error.
 *
 * @throws {Error} For an explicit count above 1 without `--unstable-net`.
 */
function isolatesToRun(setting: string, wanted: number, logger: Logger): number {
  if (wanted === 1 || canReusePort()) return wanted;
  if (setting === "auto") {
    logger.warn("Serving from one isolate: --workers auto needs Deno's --unstable-net flag", {
      wanted,
    });
    return 1;
  }
  throw new Error(
    `Cannot run --workers ${setting}: sharing the address needs Deno's --unstable-net flag ` +
      `(the tasks and the compiled binary pass it; add it to "deno run")`,
  );
}

/**
 * Whether this Deno lets a listener set SO_REUSEPORT. Trying would end the process (Deno exits
 * on an unstable API used without its flag), so the check is for another `--unstable-net` API:
 * `Deno.listenDatagram` exists only under that flag.
 */
function canReusePort(): boolean {
  return typeof (Deno as unknown as Record<string, unknown>).listenDatagram === "function";
}

/** The data plane in this isolate. */
function serveHere(config: BalancerConfig, deps: ServingDeps): Serving {
  const { pool, metrics, clock, logger, onAttempt, shared } = deps;
  const plane: DataPlane = startDataPlane(config, {
    ...(onAttempt === undefined ? {} : { onAttempt }),
    pool,
    metrics,
    clock,
    logger,
    proxyLogger: getModuleLogger("proxy"),
    shared,
  });
  return {
    get addr() {
      return plane.listener.addr;
    },
    get connectionCount() {
      return plane.listener.connectionCount;
    },
    isolateCount: 1,
    isolates: () => undefined,
    publish() {},
    configure(next) {
      void plane.configure(next);
    },
    async drain(timeoutMs) {
      const deadline = new AbortController();
      const isClean = await Promise.race([
        plane.shutdown().then(() => true),
        clock.sleep(timeoutMs, deadline.signal).then(() => false, () => true),
      ]);
      deadline.abort();
      plane.close();
      return isClean;
    },
  };
}

/** The data plane in worker isolates. */
async function serveInWorkers(
  config: BalancerConfig,
  options: Parameters<typeof startWorkers>[1],
): Promise<Serving> {
  // Set first: a worker's queue polls for the others' freed slots from its first request.
  options.shared.setIsolateCount(options.count);
  const workers: Workers = await startWorkers(config, options);
  return {
    addr: workers.addr,
    get connectionCount() {
      return workers.connectionCount;
    },
    isolateCount: options.count,
    isolates: () => workers.isolates(),
    publish: () => workers.publish(),
    configure: (next) => workers.configure(next),
    drain: (timeoutMs) => workers.drain(timeoutMs),
  };
}
