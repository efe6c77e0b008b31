/**
 * The main-thread side of multi-core load: a fixed set of Web Workers, each running one slice
 * of every run; their stats merge exactly (histograms by encoding).
 *
 * @module
 */
import { type FromWorker, isFromWorker, LOAD_WORKER_NAME, toWireJob } from "./protocol.ts";
import type { LiveDelta, LiveStats } from "./live_stats.ts";
import { type Executor, type RunJob, splitJob } from "./run.ts";
import { mergeRunStats, type RunStats } from "./stats.ts";
import type { TransportMode } from "./transports.ts";

/** How often workers report progress when a progress bar is shown, in ms. */
const PROGRESS_INTERVAL_MS = 200;

interface Pending {
  readonly resolve: (stats: RunStats) => void;
  readonly reject: (error: Error) => void;
  readonly onProgress: (delta: LiveDelta) => void;
}

/** One worker and the runs it has in flight. */
class PooledWorker {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  readonly ready: Promise<void>;

  constructor(url: URL) {
    this.#worker = new Worker(url, { type: "module", name: LOAD_WORKER_NAME });
    this.ready = new Promise((resolve, reject) => {
      this.#worker.onmessage = (event: MessageEvent) => {
        const message: unknown = event.data;
        if (isFromWorker(message)) this.#dispatch(message, resolve);
      };
      this.#worker.onerror = (event: ErrorEvent) => {
        event.preventDefault();
        const error = new Error(`Load worker from "${url.href}" failed: ${event.message}`);
        reject(error);
        for (const pending of this.#pending.values()) pending.reject(error);
        this.#pending.clear();
      };
    });
  }

  #dispatch(message: FromWorker, onReady: () => void): void {
    if (message.type === "ready") {
      onReady();
      return;
    }
    const pending = this.#pending.get(message.id);
    if (pending === undefined) return;
    if (message.type === "progress") {
      pending.onProgress(message.delta);
      return;
    }
    this.#pending.delete(message.id);
    if (message.type === "result") pending.resolve(message.stats);
    else pending.reject(new Error(`Load worker failed: ${message.message}`));
  }

  run(
    id: number,
    job: RunJob,
    transport: TransportMode,
    progressIntervalMs: number,
    onProgress: (delta: LiveDelta) => void,
  ): Promise<RunStats> {
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      this.#worker.postMessage({
        type: "run",
        id,
        job: toWireJob(job, transport),
        progressIntervalMs,
      });
    });
  }

  abort(id: number): void {
    this.#worker.postMessage({ type: "abort", id });
  }

  terminate(): void {
    this.#worker.terminate();
  }
}

/** An {@linkcode Executor} that spreads each run over Web Workers. */
export class WorkerPool implements Executor, AsyncDisposable {
  readonly #workers: readonly PooledWorker[];
  readonly #transport: TransportMode;
  #nextId = 1;
  #isClosed = false;

  private constructor(workers: readonly PooledWorker[], transport: TransportMode) {
    this.#workers = workers;
    this.#transport = transport;
  }

  /**
   * Starts `count` workers and waits until each is ready.
   *
   * @param url The worker module (`ctx.workerUrl`).
   * @param count How many workers.
   * @param transport The transport every worker uses.
   * @returns The ready pool.
   * @throws {Error} When a worker fails to start; the others are terminated.
   */
  static async start(url: URL, count: number, transport: TransportMode): Promise<WorkerPool> {
    const workers = Array.from({ length: count }, () => new PooledWorker(url));
    try {
      await Promise.all(workers.map((worker) => worker.ready));
    } catch (error) {
      for (const worker of workers) worker.terminate();
      throw error;
    }
    return new WorkerPool(workers, transport);
  }

  /** Number of workers. */
  get size(): number {
    return this.#workers.length;
  }

  /**
   * Runs a job split over the workers and merges the slices.
   *
   * @param job The whole run.
   * @param options Cancellation and progress.
   * @returns The merged stats.
   * @throws {Error} When a worker fails.
   */
  async execute(
    job: RunJob,
    options: { readonly signal?: AbortSignal; readonly progress?: LiveStats },
  ): Promise<RunStats> {
    const slices = splitJob(job, this.#workers.length);
    const progress = options.progress;
    const ids: number[] = [];
    const onAbort = () => slices.forEach((_, i) => this.#workers[i]?.abort(ids[i] ?? 0));
    const runs = slices.map((slice, i) => {
      const id = this.#nextId++;
      ids.push(id);
      const worker = this.#workers[i];
      if (worker === undefined) throw new RangeError(`No worker for slice ${i}`);
      return worker.run(
        id,
        slice,
        this.#transport,
        progress === undefined ? 0 : PROGRESS_INTERVAL_MS,
        (delta) => progress?.add(delta),
      );
    });
    options.signal?.addEventListener("abort", onAbort, { once: true });
    if (options.signal?.aborted) onAbort();
    try {
      return mergeRunStats(await Promise.all(runs));
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Terminates every worker. Idempotent. */
  close(): Promise<void> {
    if (!this.#isClosed) {
      this.#isClosed = true;
      for (const worker of this.#workers) worker.terminate();
    }
    return Promise.resolve();
  }

  /** Same as {@linkcode WorkerPool.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
