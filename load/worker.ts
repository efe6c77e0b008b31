/**
 * The Web Worker side of the load tester: receives run slices by message, runs them with
 * {@linkcode runOnce} and posts back encoded histograms and counters. Nothing runs on import;
 * the worker's entry module (`main.ts` inside a worker, or `worker_entry.ts`) calls
 * {@linkcode runLoadWorker} with its global scope.
 *
 * @module
 */
import { type Clock, systemClock } from "../lib/shared/clock.ts";
import { fromWireJob, type FromWorker, isToWorker } from "./protocol.ts";
import { LiveStats } from "./live_stats.ts";
import { runOnce } from "./run.ts";
import { createDispatchingFactory, type TransportFactories } from "./transports.ts";
import { errorText } from "../lib/shared/error_text.ts";

/**
 * A worker's global scope as the load worker sees it: an event target for `message` events
 * with a `postMessage` method. Typed loosely so `runLoadWorker(self)` compiles under the
 * window typings `main.ts` is checked with.
 */
export type LoadWorkerScope = EventTarget;

/** Options of {@linkcode runLoadWorker}. */
export interface LoadWorkerOptions {
  /** Source of time. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /** Transport overrides. Default: the built-in transports. */
  readonly factories?: TransportFactories;
}

/**
 * Posts `ready`, then serves the run requests posted to this worker until it is terminated.
 *
 * @param scope The worker's global scope (`self`).
 * @param options Clock and transports.
 * @throws {TypeError} When `scope` has no `postMessage`.
 */
export function runLoadWorker(scope: LoadWorkerScope, options: LoadWorkerOptions = {}): void {
  const clock = options.clock ?? systemClock;
  const running = new Map<number, AbortController>();
  const postMessage: unknown = (scope as { postMessage?: unknown }).postMessage;
  if (typeof postMessage !== "function") {
    throw new TypeError("Cannot run the load worker: its scope has no postMessage (not a worker)");
  }
  const post = (message: FromWorker) => postMessage.call(scope, message);

  const run = async (id: number, wire: Parameters<typeof fromWireJob>[0], intervalMs: number) => {
    const abort = new AbortController();
    running.set(id, abort);
    const live = intervalMs > 0 ? new LiveStats() : undefined;
    const timer = live === undefined
      ? undefined
      : setInterval(() => post({ type: "progress", id, delta: live.drain() }), intervalMs);
    try {
      const { job, transport } = fromWireJob(wire);
      const createTransport = createDispatchingFactory(transport, options.factories);
      const stats = await runOnce(job, {
        clock,
        createTransport,
        signal: abort.signal,
        ...(live === undefined ? {} : { progress: live }),
      });
      // The last delta goes before the result, so the main thread's totals end exact.
      if (live !== undefined) post({ type: "progress", id, delta: live.drain() });
      post({ type: "result", id, stats });
    } catch (error) {
      post({ type: "error", id, message: errorText(error) });
    } finally {
      clearInterval(timer);
      running.delete(id);
    }
  };

  scope.addEventListener("message", (event: Event) => {
    const message: unknown = (event as MessageEvent).data;
    if (!isToWorker(message)) return;
    if (message.type === "abort") running.get(message.id)?.abort();
    else void run(message.id, message.job, message.progressIntervalMs);
  });
  post({ type: "ready" });
}
