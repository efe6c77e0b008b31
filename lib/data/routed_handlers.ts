/**
 * Builds the request path of a configuration with a route table: one view of the balancer's
 * pool per named pool, each with its rotation in shared memory; one handler per route to a
 * pool, built as the one-pool handler is with the pool's own settings (policy, hash key,
 * in-flight limit, timeout, retries; the rest as the top level) and writing access lines that
 * name the route; and the router in front of them.
 *
 * @module
 */
import type { Pool } from "../core/pool.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Rotation, SharedState } from "../core/shared_state.ts";
import type { BackendConfig, BalancerConfig } from "../config/settings.ts";
import type { PolicyName } from "../core/policy_names.ts";
import type { AccessLogSink, AccessRecord } from "./access_log.ts";
import type { Handler } from "./handler.ts";
import { PoolView } from "./pool_view.ts";
import { type AcceptedTarget, removeDotSegments } from "./request_target.ts";
import { type PathRewrite, rewritePath } from "../core/routes.ts";
import { createRouter, type ServedRoute } from "./router.ts";
import { createRequestIdSource } from "./request_id.ts";
import { parseTrustedProxies } from "../shared/ip.ts";
import type { Clock } from "../shared/clock.ts";

/** A named pool with every setting resolved (its own, else the top level's). */
export interface ResolvedPool {
  /** Its name. */
  readonly name: string;
  /** Its backends. */
  readonly backends: readonly BackendConfig[];
  /** Its policy. */
  readonly policy: PolicyName;
  /** What `hash` hashes. */
  readonly hashKey: string;
  /** The cookie policy's cookie (the top level's). */
  readonly affinityCookie: BalancerConfig["affinityCookie"];
  /** Requests each backend takes at once; 0 is no limit. */
  readonly maxInFlight: number;
  /** Response-header timeout, ms. */
  readonly timeoutMs: number;
  /** Retries on another backend. */
  readonly retries: number;
}

/**
 * The configuration's pools with their settings resolved, in its order.
 *
 * @param config A validated configuration with a route table.
 * @returns The pools.
 */
export function resolvePools(config: BalancerConfig): ResolvedPool[] {
  return Object.entries(config.pools).map(([name, pool]) => ({
    name,
    backends: pool.backends,
    policy: pool.policy ?? config.policy,
    hashKey: pool.hashKey ?? config.hashKey,
    affinityCookie: config.affinityCookie,
    maxInFlight: pool.maxInFlight ?? config.limits.maxInFlight,
    timeoutMs: pool.timeoutMs ?? config.proxy.timeoutMs,
    retries: pool.retries ?? config.proxy.retries,
  }));
}

/** What {@linkcode buildRouter} works with. */
export interface RoutedDeps {
  /** The balancer's pool of every backend. */
  readonly pool: Pool;
  /** The balancer's shared state (pool rotations, rate-limit buckets). */
  readonly shared: SharedState;
  /** This isolate's counters. */
  readonly metrics: Metrics;
  /** Runs every timeout. */
  readonly clock: Clock;
  /** The access log. */
  readonly accessLog: AccessLogSink;
  /** Requests whose connection the listener closes after the answer. */
  readonly closeAfterResponse: WeakSet<Request>;
  /** Builds one pool's handler, given the access log its lines go to. */
  readonly build: (
    pool: ResolvedPool,
    view: Pool,
    rotation: Rotation,
    accessLog: AccessLogSink,
    rewriteTarget: ((target: AcceptedTarget) => AcceptedTarget) | undefined,
  ) => Handler;
}

/**
 * Builds the router over a configuration's route table.
 *
 * @param config A validated configuration with a route table.
 * @param deps The balancer's pool and shared state, and how to build a pool's handler.
 * @returns The request handler.
 */
export function buildRouter(config: BalancerConfig, deps: RoutedDeps): Handler {
  const pools = new Map(
    resolvePools(config).map((pool, index) => [pool, index] as const).map((
      [pool, index],
    ) => [pool.name, {
      pool,
      view: new PoolView(deps.pool, pool.backends.map((b) => b.url.href)),
      rotation: deps.shared.poolRotation(index),
    }]),
  );
  const routes: ServedRoute[] = config.routes.map((route) => {
    const target = route.pool === undefined ? undefined : pools.get(route.pool);
    if (target === undefined) return { config: route };
    const accessLog = namedSink(deps.accessLog, route.name);
    return {
      config: route,
      handler: deps.build(
        target.pool,
        target.view,
        target.rotation,
        accessLog,
        route.rewrite === undefined ? undefined : targetRewriter(route.rewrite),
      ),
    };
  });
  // Answers the requests the router does not route (a bad target: 400) as without routes.
  const empty = new PoolView(deps.pool, []);
  const fallback = deps.build(
    {
      name: "none",
      backends: [],
      policy: config.policy,
      hashKey: config.hashKey,
      affinityCookie: config.affinityCookie,
      maxInFlight: 0,
      timeoutMs: config.proxy.timeoutMs,
      retries: 0,
    },
    empty,
    deps.shared.rotation,
    deps.accessLog,
    undefined,
  );
  return createRouter({
    routes,
    fallback,
    limiter: deps.shared.limiter,
    timeDeltaMs: deps.shared.timeDeltaMs,
    accessLog: deps.accessLog,
    metrics: deps.metrics,
    trustedProxies: parseTrustedProxies(config.proxy.trustedProxies),
    clock: deps.clock,
    createRequestId: createRequestIdSource(),
    closeAfterResponse: deps.closeAfterResponse,
  });
}

/**
 * A route's rewrite of an accepted target: the path rule ran before it (the target was
 * accepted), and runs again after it, so a rewrite can never climb out of a backend's base path
 * (its prefixes are checked at load time too).
 */
export function targetRewriter(rewrite: PathRewrite): (target: AcceptedTarget) => AcceptedTarget {
  return (target) => ({ ...target, path: removeDotSegments(rewritePath(target.path, rewrite)) });
}

/** An access log sink that names the route in each line. */
function namedSink(sink: AccessLogSink, route: string): AccessLogSink {
  if (!sink.isEnabled) return sink;
  return {
    isEnabled: true,
    write: (record: AccessRecord) => sink.write({ ...record, route }),
  };
}
