/**
 * A data-plane worker of `lb --workers N`: one isolate running a {@linkcode DataPlane} on the
 * shared address (SO_REUSEPORT). It owns no health: it routes over a mirror of the control
 * plane's pool (membership and weights from `snapshot` messages; health, drain, ejection and
 * in-flight counts read from the shared state's slots, which the control plane writes), and
 * reports its own counters back a few times a second so the admin API shows one coherent view.
 * Its log records go to the control plane, which writes them (`process/log_relay.ts`): a worker
 * loads no logging library.
 *
 * @module
 */
import { Backend, type BackendCounts } from "../core/backend.ts";
import { createRelayLogger, type RelayLoggerOptions } from "../process/log_relay.ts";
import { LOG_ROOT } from "../process/log_context.ts";
import { Metrics } from "../core/metrics.ts";
import { Pool } from "../core/pool.ts";
import { systemClock } from "../shared/clock.ts";
import { SharedState } from "../core/shared_state.ts";
import { type DataPlane, type PreparedChange, startDataPlane } from "./data_plane.ts";
import { OutlierRelay } from "./outlier_relay.ts";
import type { BalancerConfig } from "../config/settings.ts";
import {
  decodeConfig,
  type FromWorker,
  type PoolSnapshot,
  type ToWorker,
} from "./worker_protocol.ts";
import { errorText } from "../shared/error_text.ts";

/** How often a worker reports its counts, in milliseconds. */
const REPORT_INTERVAL_MS = 250;

/** The worker side of `postMessage`. */
export interface WorkerScope {
  postMessage(message: FromWorker): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
  close(): void;
}

/**
 * Runs a data-plane worker until the control plane drains it.
 *
 * @param scope The worker's global scope (`self`).
 */
export function runDataPlaneWorker(scope: WorkerScope): void {
  const pool = new Pool([]);
  const metrics = new Metrics(pool);
  let id = "";
  let plane: DataPlane | undefined;
  let reporter: ReturnType<typeof setInterval> | undefined;
  let outliers: OutlierRelay | undefined;
  /** The reload prepared and not yet committed or aborted, by its sequence number. */
  let prepared:
    | { seq: number; change: PreparedChange; outlier: BalancerConfig["outlier"] }
    | undefined;
  let shared: SharedState | undefined;

  const report = () => {
    if (plane === undefined) return;
    const backends: Record<string, BackendCounts> = {};
    for (const backend of pool.backends) backends[backend.url.href] = backend.localCounts;
    scope.postMessage({
      kind: "report",
      id,
      metrics: metrics.exportState(),
      backends,
      connections: plane.listener.connectionCount,
    });
  };
  const fail = (error: unknown) =>
    scope.postMessage({
      kind: "failed",
      id,
      message: errorText(error),
      ...(isAddrInUse(error) ? { isAddrInUse: true } : {}),
    });

  scope.onmessage = async (event) => {
    const message = event.data;
    try {
      switch (message.kind) {
        case "start": {
          id = message.id;
          const config = decodeConfig(message.config);
          const relay: RelayLoggerOptions = {
            level: config.log.level,
            post: (record) => scope.postMessage({ kind: "log", record }),
          };
          shared = SharedState.attach(message.shared, message.routing);
          applySnapshot(pool, message.pool, shared);
          outliers = new OutlierRelay(config.outlier, (href, result) => {
            scope.postMessage({ kind: "outcome", id, href, result });
          });
          plane = startDataPlane(config, {
            onAttempt: outliers.observe,
            pool,
            metrics,
            clock: systemClock,
            logger: createRelayLogger([LOG_ROOT, "server"], relay),
            proxyLogger: createRelayLogger([LOG_ROOT, "proxy"], relay),
            reusePort: true,
            shared,
            certificates: message.certificates,
          });
          reporter = setInterval(report, REPORT_INTERVAL_MS);
          scope.postMessage({ kind: "listening", id, port: plane.listener.addr.port });
          return;
        }
        case "snapshot":
          if (shared !== undefined) applySnapshot(pool, message.pool, shared);
          return;
        case "prepare": {
          prepared?.change.abort();
          prepared = undefined;
          const config = decodeConfig(message.config);
          try {
            if (plane === undefined) throw new Error("the data plane has not started");
            prepared = {
              seq: message.seq,
              change: plane.prepare(config, message.certificates),
              outlier: config.outlier,
            };
          } catch (error) {
            scope.postMessage({
              kind: "prepared",
              id,
              seq: message.seq,
              problem: errorText(error),
            });
            return;
          }
          scope.postMessage({ kind: "prepared", id, seq: message.seq });
          return;
        }
        case "commit":
        case "abort": {
          const change = prepared;
          if (change === undefined || change.seq !== message.seq) return;
          prepared = undefined;
          if (message.kind === "abort") {
            change.change.abort();
            return;
          }
          outliers?.configure(change.outlier);
          void change.change.commit();
          return;
        }
        case "drain": {
          clearInterval(reporter);
          const current = plane;
          let isClean = true;
          if (current !== undefined) {
            let timer: ReturnType<typeof setTimeout> | undefined;
            isClean = await Promise.race([
              current.shutdown().then(() => true),
              new Promise<boolean>((resolve) => {
                timer = setTimeout(() => resolve(false), message.timeoutMs);
              }),
            ]);
            clearTimeout(timer);
            report();
            await current.close();
          }
          scope.postMessage({ kind: "drained", id, isClean });
          scope.close();
          return;
        }
      }
    } catch (error) {
      fail(error);
    }
  };
}

/** Whether binding failed because the address is taken (the cause a data plane keeps). */
function isAddrInUse(error: unknown): boolean {
  return error instanceof Deno.errors.AddrInUse ||
    (error instanceof Error && error.cause instanceof Deno.errors.AddrInUse);
}

/**
 * Makes the worker's pool mirror the control plane's: same backends, order, weights and slots.
 * Backends that stay keep their objects (and this isolate's counters); one whose slot changed
 * (removed and added again) gets a new object.
 *
 * @param pool The worker's pool.
 * @param snapshot The control plane's pool.
 * @param shared The shared state the slots are in.
 */
export function applySnapshot(pool: Pool, snapshot: PoolSnapshot, shared: SharedState): void {
  const wanted = new Map(snapshot.map((b) => [b.href, b.slot]));
  for (const backend of pool.backends) {
    if (wanted.get(backend.url.href) !== backend.shared.index) pool.remove(backend);
  }
  const byHref = new Map(pool.backends.map((b) => [b.url.href, b]));
  const ordered: Backend[] = [];
  for (const entry of snapshot) {
    const backend = byHref.get(entry.href) ??
      new Backend(new URL(entry.href), { weight: entry.weight, shared: shared.slot(entry.slot) });
    backend.setWeight(entry.weight);
    ordered.push(backend);
  }
  pool.replace(ordered);
}
