/**
 * What a configuration reload changes, decided as a pure function of the running configuration
 * and the new one; `server.ts` carries the plan out. Backends are matched by URL: a backend in
 * both keeps its object, so its health state, counters and in-flight requests carry over.
 *
 * @module
 */
import type { BackendConfig, BalancerConfig } from "../config/settings.ts";

/** The steps a reload takes, each only when something it owns changed. */
export interface ReloadPlan {
  /** Backends to add, in configuration order. */
  readonly added: readonly BackendConfig[];
  /** URLs (`href`) of backends to drain and then remove. */
  readonly removed: readonly string[];
  /** Backends that stay but whose weight changed. */
  readonly reweighted: readonly BackendConfig[];
  /** Whether the health checks' path, interval, timeout, rise or fall changed. */
  readonly isHealthChanged: boolean;
  /** Whether the request path must be rebuilt (policy, proxy or body settings changed). */
  readonly isHandlerChanged: boolean;
  /** Whether the proxy listener must be bound anew (address or connection timeouts). */
  readonly isListenerChanged: boolean;
  /** Whether the admin listener must be restarted (address or token). */
  readonly isAdminChanged: boolean;
  /** Settings that changed but only take effect at the next start (logging). */
  readonly needsRestart: readonly string[];
  /** One line per change, for the log and the admin answer. */
  readonly summary: readonly string[];
}

/**
 * Compares two configurations.
 *
 * @param running The configuration in force.
 * @param next The configuration just read and validated.
 * @returns What to change.
 *
 * @example
 * ```ts
 * import { planReload } from "./reload.ts";
 * import { DEFAULT_BALANCER_CONFIG } from "../config/config.ts";
 * const plan = planReload(DEFAULT_BALANCER_CONFIG, { ...DEFAULT_BALANCER_CONFIG, policy: "round-robin" });
 * if (plan.summary.length !== 0 || plan.isHandlerChanged) throw new Error("nothing changed");
 * ```
 */
export function planReload(running: BalancerConfig, next: BalancerConfig): ReloadPlan {
  const before = new Map(running.backends.map((b) => [b.url.href, b]));
  const after = new Map(next.backends.map((b) => [b.url.href, b]));
  const added = next.backends.filter((b) => !before.has(b.url.href));
  const removed = running.backends.filter((b) => !after.has(b.url.href)).map((b) => b.url.href);
  const reweighted = next.backends.filter((b) => {
    const old = before.get(b.url.href);
    return old !== undefined && old.weight !== b.weight;
  });
  const isHealthChanged = !isSame(running.health, next.health);
  const isHandlerChanged = running.policy !== next.policy ||
    running.hashKey !== next.hashKey || !isSame(running.proxy, next.proxy) ||
    running.slowStartMs !== next.slowStartMs ||
    !isSame(running.affinityCookie, next.affinityCookie) ||
    running.client.bodyTimeoutMs !== next.client.bodyTimeoutMs ||
    running.health.intervalMs !== next.health.intervalMs || isLimitsChanged(running, next);
  const isListenerChanged = running.host !== next.host || running.port !== next.port ||
    running.client.headerTimeoutMs !== next.client.headerTimeoutMs ||
    running.client.keepAliveTimeoutMs !== next.client.keepAliveTimeoutMs ||
    running.websocket !== next.websocket ||
    running.limits.maxConnections !== next.limits.maxConnections ||
    !isSame({ ...running.tls, redirectHttp: "" }, { ...next.tls, redirectHttp: "" });
  const isAdminChanged = !isSame(running.admin, next.admin);
  const needsRestart = [
    ...(isSame(running.log, next.log) ? [] : ["log"]),
    ...(running.tls.redirectHttp === next.tls.redirectHttp ? [] : ["redirect-http"]),
  ];
  const summary = [
    ...added.map((b) => `backend ${b.url.href} added`),
    ...removed.map((href) => `backend ${href} removed`),
    ...reweighted.map((b) => `backend ${b.url.href} weight ${b.weight}`),
    ...(isHealthChanged ? ["health checks"] : []),
    ...(isHandlerChanged ? ["request handling"] : []),
    ...(isSame(running.outlier, next.outlier) ? [] : ["passive health"]),
    ...(isListenerChanged ? [`listener ${next.host}:${next.port}`] : []),
    ...(isAdminChanged ? [`admin ${next.admin.listen}`] : []),
    ...(running.drainTimeoutMs === next.drainTimeoutMs ? [] : ["drain timeout"]),
  ];
  return {
    added,
    removed,
    reweighted,
    isHealthChanged,
    isHandlerChanged,
    isListenerChanged,
    isAdminChanged,
    needsRestart,
    summary,
  };
}

/** Whether the request limits or any backend's own `maxInFlight` differ. */
function isLimitsChanged(running: BalancerConfig, next: BalancerConfig): boolean {
  const own = (config: BalancerConfig) =>
    config.backends.map((b) => [b.url.href, b.maxInFlight ?? null]);
  return !isSame(running.limits, next.limits) || !isSame(own(running), own(next));
}

/** Whether two plain settings groups hold the same values. */
function isSame(a: object, b: object): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
