/**
 * Messages between the load tester and its Web Workers. Everything crossing is structured-clone
 * safe: the URL travels as text, results as {@linkcode RunStats} with encoded histograms.
 *
 * @module
 */
import type { LiveDelta } from "./live_stats.ts";
import type { LoadShape, RunJob } from "./run.ts";
import type { Stop } from "./scheduler.ts";
import type { RunStats } from "./stats.ts";
import type { RequestSpec } from "./transport.ts";
import type { TransportMode } from "./transports.ts";

/**
 * The `name` every load worker is started with: `main.ts` checks `self.name` against it to know
 * it should call `runLoadWorker(self)` instead of parsing a command line.
 */
export const LOAD_WORKER_NAME = "denolb-load-worker";

/** A {@linkcode RunJob} in structured-clone form, plus the transport choice. */
export interface WireJob {
  /** Target URL. */
  readonly url: string;
  /** HTTP method. */
  readonly method: string;
  /** Request headers. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** Request body. */
  readonly body?: Uint8Array;
  /** Reuse connections. */
  readonly keepAlive: boolean;
  /** Per-request timeout. */
  readonly timeoutMs: number;
  /** Users or rate of this slice. */
  readonly load: LoadShape;
  /** When the slice stops. */
  readonly stop: Stop;
  /** Success rule. */
  readonly successStatuses: ReadonlyArray<readonly [number, number]>;
  /** Keep per-second buckets. */
  readonly timeline: boolean;
  /** Transport choice. */
  readonly transport: TransportMode;
  /** A request mix, each target's URL as text. */
  readonly targets?: ReadonlyArray<
    { readonly url: string; readonly weight: number; readonly spec: Omit<RequestSpec, "url"> }
  >;
}

/** From the main thread to a worker. */
export type ToWorker =
  | {
    readonly type: "run";
    readonly id: number;
    readonly job: WireJob;
    /** How often to report progress, in ms (0: never). */
    readonly progressIntervalMs: number;
  }
  | { readonly type: "abort"; readonly id: number };

/** From a worker to the main thread. */
export type FromWorker =
  | { readonly type: "ready" }
  | { readonly type: "progress"; readonly id: number; readonly delta: LiveDelta }
  | { readonly type: "result"; readonly id: number; readonly stats: RunStats }
  | { readonly type: "error"; readonly id: number; readonly message: string };

/**
 * Converts a job for posting.
 *
 * @param job The job.
 * @param transport The transport choice.
 * @returns Its wire form.
 */
export function toWireJob(job: RunJob, transport: TransportMode): WireJob {
  const { request } = job;
  return {
    url: request.url.href,
    method: request.method,
    headers: request.headers,
    ...(request.body === undefined ? {} : { body: request.body }),
    keepAlive: request.keepAlive,
    timeoutMs: request.timeoutMs,
    load: job.load,
    stop: job.stop,
    successStatuses: job.successStatuses,
    timeline: job.timeline,
    transport,
    ...(job.targets === undefined ? {} : {
      targets: job.targets.map(({ spec: { url, ...spec }, weight }) => ({
        url: url.href,
        weight,
        spec,
      })),
    }),
  };
}

/**
 * Rebuilds a job from its wire form.
 *
 * @param wire The posted job.
 * @returns The job and its transport choice.
 * @throws {TypeError} When the URL does not parse.
 */
export function fromWireJob(wire: WireJob): { job: RunJob; transport: TransportMode } {
  return {
    job: {
      request: {
        url: new URL(wire.url),
        method: wire.method,
        headers: wire.headers,
        ...(wire.body === undefined ? {} : { body: wire.body }),
        keepAlive: wire.keepAlive,
        timeoutMs: wire.timeoutMs,
      },
      load: wire.load,
      stop: wire.stop,
      successStatuses: wire.successStatuses,
      timeline: wire.timeline,
      ...(wire.targets === undefined ? {} : {
        targets: wire.targets.map(({ url, weight, spec }) => ({
          spec: { ...spec, url: new URL(url) },
          weight,
        })),
      }),
    },
    transport: wire.transport,
  };
}

/**
 * Narrows a message posted to a worker.
 *
 * @param data The message data.
 * @returns Whether it is a {@linkcode ToWorker} message.
 */
export function isToWorker(data: unknown): data is ToWorker {
  if (typeof data !== "object" || data === null) return false;
  const { type, id } = data as { type?: unknown; id?: unknown };
  return (type === "run" || type === "abort") && typeof id === "number";
}

/**
 * Narrows a message posted by a worker.
 *
 * @param data The message data.
 * @returns Whether it is a {@linkcode FromWorker} message.
 */
export function isFromWorker(data: unknown): data is FromWorker {
  if (typeof data !== "object" || data === null) return false;
  const { type } = data as { type?: unknown };
  return type === "ready" || type === "progress" || type === "result" || type === "error";
}
