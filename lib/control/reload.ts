/**
 * What a configuration reload changes, decided as a pure function of the running configuration
 * and the new one: the only place that decides it. `balancer.ts` carries the plan out, handing
 * each part its change, and answers with the plan's summary and what needs a restart. Backends are matched by URL: a backend in
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
  /** Whether the access log changed (path or format): every data plane reopens it. */
  readonly isAccessLogChanged: boolean;
  /** Whether passive health's settings changed (every isolate relays by them). */
  readonly isOutlierChanged: boolean;
  /**
   * Whether the data plane (every isolate) must take the new configuration: its listener, its
   * request path, its access log or its passive-health relay changed.
   */
  readonly isDataPlaneChanged: boolean;
  /** Settings that changed but only take effect at the next start (logging, `--workers`, ACME). */
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
  const isHealthChanged = !isSame(running.health, next.health) ||
    !isSame(poolHealth(running), poolHealth(next));
  const isHandlerChanged = running.policy !== next.policy ||
    running.hashKey !== next.hashKey || !isSame(running.proxy, next.proxy) ||
    running.slowStartMs !== next.slowStartMs ||
    !isSame(running.affinityCookie, next.affinityCookie) ||
    running.client.bodyTimeoutMs !== next.client.bodyTimeoutMs ||
    running.health.intervalMs !== next.health.intervalMs || isLimitsChanged(running, next) ||
    isRoutingChanged(running, next);
  const isListenerChanged = running.host !== next.host || running.port !== next.port ||
    running.client.headerTimeoutMs !== next.client.headerTimeoutMs ||
    running.client.keepAliveTimeoutMs !== next.client.keepAliveTimeoutMs ||
    running.websocket !== next.websocket ||
    running.limits.maxConnections !== next.limits.maxConnections ||
    !isSame({ ...running.tls, redirectHttp: "" }, { ...next.tls, redirectHttp: "" });
  const isAdminChanged = !isSame(running.admin, next.admin);
  const isAccessLogChanged = !isSame(running.accessLog, next.accessLog);
  const isOutlierChanged = !isSame(running.outlier, next.outlier);
  const isDataPlaneChanged = isListenerChanged || isHandlerChanged || isAccessLogChanged ||
    isOutlierChanged;
  const needsRestart = [
    ...(isSame(running.log, next.log) ? [] : ["log"]),
    ...(running.workers === next.workers ? [] : ["workers"]),
    ...(isSame(running.acme, next.acme) && running.stateDir === next.stateDir ? [] : ["acme"]),
    ...(running.tls.redirectHttp === next.tls.redirectHttp ? [] : ["redirect-http"]),
  ];
  const summary = [
    ...added.map((b) => `backend ${b.url.href} added`),
    ...removed.map((href) => `backend ${href} removed`),
    ...reweighted.map((b) => `backend ${b.url.href} weight ${b.weight}`),
    ...(isHealthChanged ? ["health checks"] : []),
    ...(isRoutingChanged(running, next) ? ["routes"] : []),
    ...(isHandlerChanged ? ["request handling"] : []),
    ...(isOutlierChanged ? ["passive health"] : []),
    ...(isAccessLogChanged ? ["access log"] : []),
    ...(isSame(running.discovery, next.discovery) ? [] : ["DNS discovery"]),
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
    isAccessLogChanged,
    isOutlierChanged,
    isDataPlaneChanged,
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

/** Each pool's own health settings, by name. */
function poolHealth(config: BalancerConfig): Record<string, unknown> {
  return Object.fromEntries(Object.entries(config.pools).map(([name, p]) => [name, p.health]));
}

/** Whether the route table or a pool's settings or members differ. */
function isRoutingChanged(running: BalancerConfig, next: BalancerConfig): boolean {
  return !isSame(running.routes, next.routes) || !isSame(running.pools, next.pools);
}

/** Whether two plain settings groups hold the same values. */
function isSame(a: object, b: object): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
