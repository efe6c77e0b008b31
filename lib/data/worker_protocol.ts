/**
 * The messages between the control plane (main isolate) and the data-plane workers of
 * `lb --workers N`. Plain, structured-cloneable data only: URLs travel as strings.
 *
 * Control plane to worker: `start` (configuration, pool snapshot and the shared state's buffer),
 * `snapshot` (membership and weight changes), `configure` (a reload), `drain`. Health, drain
 * and ejection travel through the shared state, not by message.
 * Worker to control plane: `listening`, `report` (cumulative counts, a few times a second),
 * `outcome` (a failure streak reached passive health's threshold, `data/outlier_relay.ts`),
 * `drained`, `failed`.
 *
 * @module
 */
import { parseBackendUrl } from "../backend.ts";
import type { BackendCounts } from "../backend.ts";
import type { AttemptResult } from "../outlier.ts";
import type { MetricsState } from "../metrics.ts";
import type { BalancerConfig } from "../settings.ts";

/** The name the data-plane workers are started with; `main.ts` dispatches on it. */
export const DATA_PLANE_WORKER_NAME = "denolb-data-plane";

/** A configuration with its backend URLs as strings. */
export type EncodedConfig = Omit<BalancerConfig, "backends"> & {
  readonly backends: ReadonlyArray<
    { readonly href: string; readonly weight: number; readonly maxInFlight?: number }
  >;
};

/**
 * One backend of the control plane's pool: its configuration and its slot of the shared state
 * (health, drain, ejection and counts are read there, not sent).
 */
export interface BackendSnapshot {
  readonly href: string;
  readonly weight: number;
  /** Its slot in the shared state. */
  readonly slot: number;
}

/** The pool, in order. */
export type PoolSnapshot = readonly BackendSnapshot[];

/** Control plane to worker. */
export type ToWorker =
  | {
    readonly kind: "start";
    readonly id: string;
    readonly config: EncodedConfig;
    readonly pool: PoolSnapshot;
    /** The balancer's shared state (`shared_state.ts`). */
    readonly shared: SharedArrayBuffer;
  }
  | { readonly kind: "snapshot"; readonly pool: PoolSnapshot }
  | { readonly kind: "configure"; readonly config: EncodedConfig }
  | { readonly kind: "drain"; readonly timeoutMs: number };

/** Worker to control plane. */
export type FromWorker =
  | { readonly kind: "listening"; readonly id: string; readonly port: number }
  | {
    readonly kind: "report";
    readonly id: string;
    readonly metrics: MetricsState;
    readonly backends: Readonly<Record<string, BackendCounts>>;
    readonly connections: number;
  }
  | {
    readonly kind: "outcome";
    readonly id: string;
    readonly href: string;
    readonly result: AttemptResult;
  }
  | { readonly kind: "drained"; readonly id: string; readonly isClean: boolean }
  | { readonly kind: "failed"; readonly id: string; readonly message: string };

/**
 * Turns a configuration into plain data.
 *
 * @param config A validated configuration.
 * @returns The same, with backend URLs as strings.
 */
export function encodeConfig(config: BalancerConfig): EncodedConfig {
  return {
    ...config,
    backends: config.backends.map(({ url, ...rest }) => ({ ...rest, href: url.href })),
  };
}

/**
 * Turns plain data back into a configuration.
 *
 * @param encoded What {@linkcode encodeConfig} made.
 * @returns The configuration.
 *
 * @example
 * ```ts
 * import { decodeConfig, encodeConfig } from "./worker_protocol.ts";
 * import { DEFAULT_BALANCER_CONFIG } from "../config.ts";
 * const copy = decodeConfig(structuredClone(encodeConfig(DEFAULT_BALANCER_CONFIG)));
 * if (copy.backends[0]?.url.href !== "http://127.0.0.1:8080/") throw new Error();
 * ```
 */
export function decodeConfig(encoded: EncodedConfig): BalancerConfig {
  return {
    ...encoded,
    backends: encoded.backends.map(({ href, ...rest }) => ({
      ...rest,
      url: parseBackendUrl(href),
    })),
  } as BalancerConfig;
}
