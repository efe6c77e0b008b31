/**
 * What the router adds to a request, in this process with no network: the same ten-route table
 * as `load/bench/routes_cost.ts` (the request matching the ninth route, which strips `/app`),
 * the router in front of a handler that answers at once, against that handler called directly.
 * The difference is routing's own CPU time per request; `load/bench/README.md` sets it against
 * a whole request's CPU time through the balancer.
 *
 * ```sh
 * deno bench tests/data/router_bench.ts
 * ```
 */
import { Metrics } from "../../lib/core/metrics.ts";
import type { RouteConfig } from "../../lib/core/routes.ts";
import { SharedState } from "../../lib/core/shared_state.ts";
import { NO_ACCESS_LOG } from "../../lib/data/access_log.ts";
import { createRouter } from "../../lib/data/router.ts";
import { targetRewriter } from "../../lib/data/routed_handlers.ts";
import { resolveTarget } from "../../lib/data/request_target.ts";
import { NO_TRUSTED_PROXIES } from "../../lib/shared/ip.ts";
import { systemClock } from "../../lib/shared/clock.ts";

const ROUTES: readonly RouteConfig[] = [
  { name: "admin", match: { host: ["admin.example.com"] }, pool: "a" },
  { name: "login", match: { pathExact: "/login" }, pool: "a" },
  { name: "canary", match: { headers: { "x-canary": "1" } }, pool: "b" },
  { name: "api-write", match: { path: "/api/v2", methods: ["POST"] }, pool: "b" },
  { name: "api", match: { path: "/api" }, pool: "b", rewrite: { stripPrefix: "/api" } },
  { name: "tenants", match: { host: ["*.static.example.com"] }, pool: "c" },
  { name: "images", match: { path: "/images/" }, pool: "c" },
  { name: "old", match: { pathExact: "/old" }, redirect: { to: "/new", status: 301 } },
  { name: "app", match: { path: "/app" }, pool: "c", rewrite: { stripPrefix: "/app" } },
  { name: "rest", pool: "a" },
];

const ANSWER = Promise.resolve(new Response(null));
const INFO = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 40000 },
  completed: Promise.resolve(),
} as Deno.ServeHandlerInfo<Deno.NetAddr>;
const request = new Request("http://127.0.0.1:9090/app/index.html", {
  headers: { host: "127.0.0.1:9090", "user-agent": "wrk" },
});

/** What a pool's handler does with a target it is given: resolve it (and rewrite it). */
const plainHandler = (r: Request) => {
  resolveTarget(r.url, r.headers.get("host"));
  return ANSWER;
};
const rewrite = targetRewriter({ stripPrefix: "/app" });
const routedHandler = (r: Request) => {
  const target = resolveTarget(r.url, r.headers.get("host"));
  if (target.ok) rewrite(target);
  return ANSWER;
};
const shared = SharedState.create(8);
const router = createRouter({
  routes: ROUTES.map((config) => ({ config, handler: routedHandler })),
  fallback: plainHandler,
  limiter: shared.limiter,
  timeDeltaMs: 0,
  accessLog: NO_ACCESS_LOG,
  metrics: new Metrics([]),
  trustedProxies: NO_TRUSTED_PROXIES,
  clock: systemClock,
  createRequestId: () => "r",
});

Deno.bench("handler alone", { group: "route", baseline: true }, async () => {
  await plainHandler(request);
});

Deno.bench("router over 10 routes, 9th matching, prefix stripped", { group: "route" }, async () => {
  await router(request, INFO);
});
