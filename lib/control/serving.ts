/**
 * Where the data plane runs, as the control plane drives it: in the control plane's own isolate
 * (`--workers 1`), or in N data-plane workers sharing the address (`control/workers.ts`).
 * `--workers auto` settles for one isolate when SO_REUSEPORT is unavailable (no
 * `--unstable-net`) or the workers fail to start; an explicit count is then an error.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Backend } from "../core/backend.ts";
import type { AttemptResult } from "../core/outlier.ts";
import type { DataPlane } from "../data/data_plane.ts";
import { getModuleLogger } from "../process/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Pool } from "../core/pool.ts";
import type { BalancerConfig } from "../config/settings.ts";
import type { SharedState } from "../core/shared_state.ts";
import type { Clock } from "../shared/clock.ts";
import { startWorkers, type Workers } from "./workers.ts";
import { errorText } from "../shared/error_text.ts";
import type { TlsCertificate } from "../shared/tls_certificate.ts";

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
  /**
   * Applies a reload in every isolate, or in none: rejects, changing nothing, when a new
   * address cannot be bound (or is held by another program). New certificates serve new
   * connections; open ones keep theirs.
   */
  configure(config: BalancerConfig, certificates?: readonly TlsCertificate[]): Promise<void>;
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
  /** TLS certificates, the default first; with any, the listener serves HTTPS. Default: none. */
  readonly certificates?: readonly TlsCertificate[];
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
  const wanted = deps.workerEntry === undefined ? 1 : resolveWorkers(config.workers);
  if (wanted > 1 && deps.workerEntry !== undefined) {
    // The isolates share the address with SO_REUSEPORT, which would also let them join another
    // program's listener on it: the address must be free before the first one binds. Port 0
    // becomes the free port found, which every isolate then shares.
    const port = claimAddress(config.host, config.port);
    const claimed = { ...config, port };
    const isolateCount = isolatesToRun(config.workers, wanted, logger);
    if (isolateCount === 1) {
      shared.setIsolateCount(1);
      return await serveHere(claimed, deps);
    }
    try {
      return await serveInWorkers(claimed, {
        ...(deps.certificates === undefined ? {} : { certificates: deps.certificates }),
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
      // An explicit count is a promise to the operator; auto may settle for one isolate, but
      // not for an address someone else took meanwhile: one isolate could not have it either.
      const isTaken = error instanceof Error && error.cause instanceof Deno.errors.AddrInUse;
      if (config.workers !== "auto" || isTaken) throw error;
      logger.warn("Serving from one isolate: the data-plane workers did not start", {
        error: errorText(error),
      });
      shared.setIsolateCount(1);
      return await serveHere(claimed, deps);
    }
  }
  shared.setIsolateCount(1);
  if ((deps.certificates ?? []).length > 0 && canReusePort()) {
    // Certificates are replaced by binding a second TLS socket beside the first
    // (SO_REUSEPORT, `data/listener.ts`): claimed first, as for several isolates.
    const port = claimAddress(config.host, config.port);
    return await serveHere({ ...config, port }, deps, true);
  }
  return await serveHere(config, deps);
}

/**
 * Checks that an address is free by binding it without SO_REUSEPORT, and releases it at once.
 * A listener without the option conflicts with every other listener on the port, with the
 * option or without, so this fails whoever holds it (another balancer's isolates, nginx,
 * anything). What stays open is the moment between this release and the first isolate's bind:
 * only a program that binds that very port in that moment, with SO_REUSEPORT and as the same
 * user, can still join. The probe cannot stay open through the isolates' binds instead: a
 * listener without SO_REUSEPORT keeps every listener that sets it off the port. (Counting the
 * port's listeners afterwards in `/proc/net/tcp` would close the moment, but Deno 2.9 reads
 * `/proc` only with `--allow-all`.)
 *
 * @param hostname The address to listen on.
 * @param port The port; 0 finds a free one.
 * @returns The port checked (the one found, for 0).
 * @throws {Error} `Cannot listen on HOST:PORT: Address already in use (os error 98)` and the
 *   like, with the `Deno.listen` error as its cause.
 */
export function claimAddress(hostname: string, port: number): number {
  let probe: Deno.Listener;
  try {
    probe = Deno.listen({ hostname, port });
  } catch (cause) {
    const detail = errorText(cause);
    throw new Error(`Cannot listen on ${hostname}:${port}: ${detail}`, { cause });
  }
  const claimed = (probe.addr as Deno.NetAddr).port;
  probe.close();
  return claimed;
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

/**
 * The data plane in this isolate. Its code is loaded only now: with workers the control plane
 * never holds it (each worker loads its own), which keeps about 3 MB off this isolate's heap.
 */
async function serveHere(
  config: BalancerConfig,
  deps: ServingDeps,
  reusePort = false,
): Promise<Serving> {
  const { startDataPlane } = await import("../data/data_plane.ts");
  const { pool, metrics, clock, logger, onAttempt, shared } = deps;
  const plane: DataPlane = startDataPlane(config, {
    ...(onAttempt === undefined ? {} : { onAttempt }),
    ...(deps.certificates === undefined ? {} : { certificates: deps.certificates }),
    reusePort,
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
    configure(next, certificates) {
      // The new listener, if any, binds without SO_REUSEPORT: a taken address throws here.
      return Promise.resolve().then(() => void plane.prepare(next, certificates).commit());
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
    get addr() {
      return workers.addr;
    },
    get connectionCount() {
      return workers.connectionCount;
    },
    isolateCount: options.count,
    isolates: () => workers.isolates(),
    publish: () => workers.publish(),
    async configure(next, certificates) {
      // A new port must be free before the workers share it (see claimAddress); the port they
      // hold already is theirs.
      const current = workers.addr.port;
      const port = next.port === 0 ? current : next.port;
      if (port !== current) claimAddress(next.host, port);
      await workers.configure(next, certificates);
    },
    drain: (timeoutMs) => workers.drain(timeoutMs),
  };
}
