/**
 * The control plane's side of `lb --workers N`: starts N data-plane workers on one address
 * (the first binds it, the others join it with SO_REUSEPORT, so the kernel spreads
 * connections; `serving.ts` has checked the address is free), hands each the balancer's shared
 * state (health, drain, ejection, in-flight counts, rotation, queue, connections and retry
 * budget: every isolate reads the same memory), applies a reload in all of them or none
 * (prepare, then commit or abort), publishes membership and weight changes to all of them at
 * once (`postMessage`), folds their reports into the control plane's metrics and backend
 * counts, and drains them together.
 *
 * Each worker starts from the program's own entry module (`main.ts`, the bundle or the compiled
 * binary), which runs the data plane when its worker name is `DATA_PLANE_WORKER_NAME`.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Metrics } from "../core/metrics.ts";
import type { AttemptResult } from "../core/outlier.ts";
import type { Pool } from "../core/pool.ts";
import type { BalancerConfig } from "../config/settings.ts";
import type { SharedState } from "../core/shared_state.ts";
import type { TlsCertificate } from "../shared/tls_certificate.ts";
import { logRelayed } from "../process/log.ts";
import {
  DATA_PLANE_WORKER_NAME,
  encodeConfig,
  type FromWorker,
  type PoolSnapshot,
  type ToWorker,
} from "../data/worker_protocol.ts";

/**
 * How long a worker may take to start and bind, in ms. Not a setting: a worker that takes
 * longer is stuck, not slow.
 */
const WORKER_START_TIMEOUT_MS = 30_000;

/** Options for {@linkcode startWorkers}. */
export interface WorkersOptions {
  /** How many data-plane isolates. */
  readonly count: number;
  /** The module each worker runs: the program's entry module. */
  readonly entry: URL;
  /** The control plane's pool, mirrored into every worker. */
  readonly pool: Pool;
  /** The balancer's shared state; every worker maps its buffer. */
  readonly shared: SharedState;
  /** Where the workers' counts are folded in. */
  readonly metrics: Metrics;
  /** Lifecycle records. */
  readonly logger: Logger;
  /**
   * How long a worker may take to start and bind, in milliseconds. Default:
   * {@linkcode WORKER_START_TIMEOUT_MS}.
   */
  readonly startTimeoutMs?: number;
  /**
   * Told when a worker saw a backend's shared failure streak reach passive health's threshold,
   * with the failure that did it. Default: none.
   */
  readonly onOutcome?: (href: string, result: AttemptResult) => void;
  /** TLS certificates the workers serve, the default first. Default: none, plain HTTP. */
  readonly certificates?: readonly TlsCertificate[];
}

/** Data-plane workers that are serving. */
export interface Workers {
  /** The shared address. */
  readonly addr: Deno.NetAddr;
  /** Client connections open over every worker (as last reported). */
  readonly connectionCount: number;
  /** Per-worker figures, for `/status`. */
  isolates(): Array<{ id: string; connections: number }>;
  /** Sends the pool's membership and weights to every worker. */
  publish(): void;
  /**
   * Applies a new configuration in every worker or in none: each prepares it (binding a new
   * address, if any) and only when all have does each commit it.
   *
   * @throws {Error} Naming the first worker's problem (such as its new address in use), once
   *   every worker has dropped what it prepared.
   */
  configure(config: BalancerConfig, certificates?: readonly TlsCertificate[]): Promise<void>;
  /**
   * Drains every worker: each stops accepting and lets its requests finish within
   * `timeoutMs`; then they end.
   *
   * @returns Whether every worker finished cleanly.
   */
  drain(timeoutMs: number): Promise<boolean>;
}

/** One worker and what it last said. */
interface Handle {
  readonly id: string;
  readonly worker: Worker;
  connections: number;
  readonly drained: PromiseWithResolvers<boolean>;
  /** Answers to `prepare`, by sequence number. */
  readonly preparing: Map<number, (problem: string | undefined) => void>;
}

/**
 * Starts the data-plane workers and resolves once all of them listen.
 *
 * @param config The configuration to serve.
 * @param options Count, entry module, pool, metrics and logger.
 * @returns The running workers.
 * @throws {Error} When a worker fails to start or bind, with its reason.
 */
export async function startWorkers(
  config: BalancerConfig,
  options: WorkersOptions,
): Promise<Workers> {
  const { pool, metrics, logger } = options;
  const snapshot = (): PoolSnapshot =>
    pool.backends.map((b) => ({
      href: b.url.href,
      weight: b.weight,
      slot: b.shared.index,
    }));
  const handles: Handle[] = [];
  const send = (handle: Handle, message: ToWorker) => handle.worker.postMessage(message);
  const spawn = (index: number, port: number): Promise<{ handle: Handle; port: number }> => {
    const id = `w${index + 1}`;
    const worker = new Worker(options.entry, { type: "module", name: DATA_PLANE_WORKER_NAME });
    const handle: Handle = {
      id,
      worker,
      connections: 0,
      drained: Promise.withResolvers(),
      preparing: new Map(),
    };
    const listening = Promise.withResolvers<number>();
    worker.onmessage = (event: MessageEvent<FromWorker>) => {
      const message = event.data;
      switch (message.kind) {
        case "listening":
          listening.resolve(message.port);
          return;
        case "report":
          handle.connections = message.connections;
          metrics.absorb(id, message.metrics);
          for (const backend of pool.backends) {
            backend.setRemoteCounts(id, message.backends[backend.url.href]);
          }
          return;
        case "outcome":
          options.onOutcome?.(message.href, message.result);
          return;
        case "prepared":
          handle.preparing.get(message.seq)?.(message.problem);
          handle.preparing.delete(message.seq);
          return;
        case "drained":
          handle.drained.resolve(message.isClean);
          return;
        case "log":
          logRelayed(message.record);
          return;
        case "failed":
          listening.reject(
            new Error(`Data-plane worker ${id} failed: ${message.message}`, {
              // Kept as the cause, so the caller knows there is nothing to fall back to.
              ...(message.isAddrInUse === true
                ? { cause: new Deno.errors.AddrInUse(message.message) }
                : {}),
            }),
          );
          logger.error("Data-plane worker failed", { worker: id, message: message.message });
          return;
      }
    };
    worker.onerror = (event) => {
      event.preventDefault();
      const message = event.message ?? "worker error";
      listening.reject(new Error(`Data-plane worker ${id} failed: ${message}`));
      for (const answer of handle.preparing.values()) answer(`worker ${id} crashed: ${message}`);
      handle.preparing.clear();
      handle.drained.resolve(false);
      logger.error("Data-plane worker crashed", { worker: id, message });
    };
    send(handle, {
      kind: "start",
      id,
      config: encodeConfig({ ...config, port }),
      pool: snapshot(),
      shared: options.shared.buffer,
      routing: options.shared.routing,
      certificates: options.certificates ?? [],
    });
    const timeoutMs = options.startTimeoutMs ?? WORKER_START_TIMEOUT_MS;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`Data-plane worker ${id} did not start within ${timeoutMs}ms`)),
        timeoutMs,
      );
    });
    handles.push(handle);
    return Promise.race([listening.promise, timedOut])
      .then((bound) => ({ handle, port: bound }))
      .finally(() => clearTimeout(timer));
  };
  try {
    // The first worker picks the port (config.port may be 0); the others join it.
    const first = await spawn(0, config.port);
    const rest = await Promise.all(
      Array.from({ length: options.count - 1 }, (_, i) => spawn(i + 1, first.port)),
    );
    void rest;
    // Where the workers listen now: a reload may move them.
    let addr: Deno.NetAddr = { transport: "tcp", hostname: config.host, port: first.port };
    let reloads = 0;
    return {
      get addr() {
        return addr;
      },
      get connectionCount() {
        return handles.reduce((sum, h) => sum + h.connections, 0);
      },
      isolates: () => handles.map((h) => ({ id: h.id, connections: h.connections })),
      publish() {
        const pool = snapshot();
        for (const handle of handles) send(handle, { kind: "snapshot", pool });
      },
      async configure(next, certificates) {
        const seq = ++reloads;
        // Port 0 in a reload keeps the port the workers hold.
        const port = next.port === 0 ? addr.port : next.port;
        const encoded = encodeConfig({ ...next, port });
        const answers = handles.map((handle) =>
          new Promise<string | undefined>((resolve) => {
            handle.preparing.set(seq, resolve);
            send(handle, {
              kind: "prepare",
              seq,
              config: encoded,
              ...(certificates === undefined ? {} : { certificates }),
            });
          })
        );
        const timeoutMs = options.startTimeoutMs ?? WORKER_START_TIMEOUT_MS;
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timedOut = new Promise<string>((resolve) => {
          timer = setTimeout(
            () => resolve(`a data-plane worker did not prepare within ${timeoutMs}ms`),
            timeoutMs,
          );
        });
        const problems = await Promise.race([
          Promise.all(answers),
          timedOut.then((problem) => [problem]),
        ]).finally(() => clearTimeout(timer));
        const problem = problems.find((p) => p !== undefined);
        const verdict = problem === undefined ? "commit" : "abort";
        for (const handle of handles) {
          handle.preparing.delete(seq);
          send(handle, { kind: verdict, seq });
        }
        if (problem !== undefined) throw new Error(problem);
        addr = { transport: "tcp", hostname: next.host, port };
      },
      async drain(timeoutMs) {
        for (const handle of handles) send(handle, { kind: "drain", timeoutMs });
        const results = await Promise.all(handles.map((h) => h.drained.promise));
        for (const handle of handles) handle.worker.terminate();
        return results.every(Boolean);
      },
    };
  } catch (error) {
    for (const handle of handles) handle.worker.terminate();
    throw error;
  }
}
