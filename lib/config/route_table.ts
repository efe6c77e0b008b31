/**
 * The route table as `lb check-config` prints it (in the order it is matched, each route's
 * match and action, then the pools), and `--explain`'s account of which route and pool one
 * request would take, and why.
 *
 * @module
 */
import {
  describeAction,
  describeMatch,
  explainRoute,
  matchRoute,
  type RouteConfig,
  type RouteRequest,
} from "../core/routes.ts";
import type { BalancerConfig } from "./settings.ts";
import { formatDuration } from "../shared/duration.ts";

/**
 * The route table and the pools, one line each.
 *
 * @param config A validated configuration.
 * @returns The lines, empty when there is no route table.
 */
export function formatRouteTable(config: BalancerConfig): string[] {
  if (config.routes.length === 0) return [];
  const width = Math.max(...config.routes.map((route) => route.name.length));
  const lines = ["Routes, first match wins:"];
  config.routes.forEach((route, index) => {
    lines.push(
      `  ${String(index + 1).padStart(2)}. ${route.name.padEnd(width)}  ` +
        `${describeMatch(route.match)} -> ${describeRoute(route)}`,
    );
  });
  lines.push("  (no match) -> respond 404", "Pools:");
  for (const [name, pool] of Object.entries(config.pools)) {
    const policy = pool.policy ?? config.policy;
    const timeoutMs = pool.timeoutMs ?? config.proxy.timeoutMs;
    const retries = pool.retries ?? config.proxy.retries;
    const maxInFlight = pool.maxInFlight ?? config.limits.maxInFlight;
    lines.push(
      `  ${name}: ${policy}, timeout ${formatDuration(timeoutMs)}, ${retries} retries` +
        `${maxInFlight === 0 ? "" : `, at most ${maxInFlight} in flight per backend`}` +
        `, probes ${pool.health?.path ?? config.health.path}; ` +
        pool.backends.map((b) => b.url.href).join(" "),
    );
  }
  return lines;
}

/** A route's action and what it does on the way. */
function describeRoute(route: RouteConfig): string {
  const parts = [describeAction(route)];
  const { rewrite, requestHeaders, responseHeaders, rateLimit } = route;
  if (rewrite?.stripPrefix !== undefined) parts.push(`strip ${rewrite.stripPrefix}`);
  if (rewrite?.addPrefix !== undefined) parts.push(`add ${rewrite.addPrefix}`);
  const headers = (label: string, rules: RouteConfig["requestHeaders"]) => {
    if (rules === undefined) return;
    const set = Object.keys(rules.set ?? {});
    const removed = rules.remove ?? [];
    if (set.length > 0) parts.push(`${label} set ${set.join(", ")}`);
    if (removed.length > 0) parts.push(`${label} remove ${removed.join(", ")}`);
  };
  headers("request headers", requestHeaders);
  headers("response headers", responseHeaders);
  if (rateLimit !== undefined) {
    parts.push(`limit ${rateLimit.perSecond}/s burst ${rateLimit.burst} per ${rateLimit.key}`);
  }
  return parts.join("; ");
}

/**
 * Which route and pool a request would take, and why: each route tried, then the outcome.
 *
 * @param config A validated configuration.
 * @param request The request, its path normalized by the balancer's path rule.
 * @returns The lines.
 */
export function explainRequest(config: BalancerConfig, request: RouteRequest): string[] {
  if (config.routes.length === 0) {
    return [`no route table: every request goes to the backends (${config.policy})`];
  }
  const lines = explainRoute(config.routes, request);
  const choice = matchRoute(config.routes, request);
  if (!choice.ok) return lines;
  const route = choice.route;
  lines.push(`-> ${describeRoute(route)}`);
  if (route.pool !== undefined) {
    const pool = config.pools[route.pool];
    const backends = pool?.backends.map((b) => b.url.href).join(" ") ?? "";
    lines.push(`   pool ${route.pool}: ${backends}`);
  }
  return lines;
}
