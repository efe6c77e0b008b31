/**
 * The messages between the control plane (main isolate) and the data-plane workers of
 * `lb --workers N`. Plain, structured-cloneable data only: URLs travel as strings.
 *
 * Control plane to worker: `start` (configuration, pool snapshot and the shared state's buffer),
 * `snapshot` (membership and weight changes), `prepare` then `commit` or `abort` (a reload,
 * applied by every worker or by none), `drain`. Health, drain and ejection travel through the
 * shared state, not by message.
 * Worker to control plane: `listening`, `report` (cumulative counts, a few times a second),
 * `outcome` (a failure streak reached passive health's threshold, `data/outlier_relay.ts`),
 * `prepared` (whether a reload's new listener is bound), `drained`, `failed`.
 *
 * @module
 */
import { parseBackendUrl } from "../core/backend.ts";
import type { BackendCounts } from "../core/backend.ts";
import type { AttemptResult } from "../core/outlier.ts";
import type { MetricsState } from "../core/metrics.ts";
import type { BalancerConfig } from "../config/settings.ts";
import type { PoolConfig } from "../config/route_kinds.ts";
import type { RoutingBuffers } from "../core/shared_state.ts";
import type { TlsCertificate } from "../shared/tls_certificate.ts";
import type { RelayedRecord } from "../process/log_relay.ts";

/** The name the data-plane workers are started with; `main.ts` dispatches on it. */
export const DATA_PLANE_WORKER_NAME = "denolb-data-plane";

/** A configuration with its backend URLs as strings. */
export type EncodedConfig = Omit<BalancerConfig, "backends" | "pools"> & {
  readonly backends: readonly EncodedBackend[];
  readonly pools: Readonly<
    Record<string, Omit<PoolConfig, "backends"> & { readonly backends: readonly EncodedBackend[] }>
  >;
};

/** A backend's configuration as plain data. */
interface EncodedBackend {
  readonly href: string;
  readonly weight: number;
  readonly maxInFlight?: number;
}

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
    /** The routes' shared state (pool rotations, rate limits). */
    readonly routing: RoutingBuffers;
    /** TLS certificates, the default first; empty for plain HTTP. */
    readonly certificates: readonly TlsCertificate[];
  }
  | { readonly kind: "snapshot"; readonly pool: PoolSnapshot }
  /** Bind what the reload needs, change nothing yet, and answer `prepared`. */
  | {
    readonly kind: "prepare";
    readonly seq: number;
    readonly config: EncodedConfig;
    /** New TLS certificates; absent keeps the ones in use. */
    readonly certificates?: readonly TlsCertificate[];
  }
  /** Apply the prepared reload. */
  | { readonly kind: "commit"; readonly seq: number }
  /** Drop the prepared reload (another worker could not prepare it). */
  | { readonly kind: "abort"; readonly seq: number }
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
  | {
    readonly kind: "prepared";
    readonly id: string;
    readonly seq: number;
    /** Why it could not prepare (such as a new address in use); absent when it did. */
    readonly problem?: string;
  }
  | { readonly kind: "drained"; readonly id: string; readonly isClean: boolean }
  /** A log record for the control plane to write (a worker writes no log itself). */
  | { readonly kind: "log"; readonly record: RelayedRecord }
  | {
    readonly kind: "failed";
    readonly id: string;
    readonly message: string;
    /** Whether it failed because its address is in use (nothing to fall back to). */
    readonly isAddrInUse?: boolean;
  };

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
    pools: Object.fromEntries(
      Object.entries(config.pools).map(([name, pool]) => [name, {
        ...pool,
        backends: pool.backends.map(({ url, ...rest }) => ({ ...rest, href: url.href })),
      }]),
    ),
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
 * import { DEFAULT_BALANCER_CONFIG } from "../config/config.ts";
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
    pools: Object.fromEntries(
      Object.entries(encoded.pools).map(([name, pool]) => [name, {
        ...pool,
        backends: pool.backends.map(({ href, ...rest }) => ({
          ...rest,
          url: parseBackendUrl(href),
        })),
      }]),
    ),
  } as BalancerConfig;
}
