/**
 * What `lb check-config` prints for a route table, and `--explain URL`'s account of one
 * request (the command itself: `e2e/check_config_routes_test.ts`).
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { explainRequest, formatRouteTable } from "../../lib/config/route_table.ts";
import { assertEquals } from "../support/assert.ts";

const FILE = {
  backends: ["127.0.0.1:9301"],
  pools: {
    api: { backends: ["127.0.0.1:9101"], policy: "least-in-flight", timeoutMs: 5000 },
    static: { backends: ["127.0.0.1:9201"], health: { path: "/ping" } },
  },
  routes: [
    { name: "old", match: { pathExact: "/old" }, redirect: { to: "/new", status: 301 } },
    {
      name: "api",
      match: { host: "*.api.example.com", methods: ["GET"] },
      pool: "api",
      rateLimit: { perSecond: 10, burst: 5 },
    },
    {
      name: "static",
      match: { path: "/static/" },
      pool: "static",
      rewrite: { stripPrefix: "/static" },
    },
    { name: "rest", pool: "default" },
  ],
};

function load() {
  return parseBalancerArgs(["--config", "lb.json"], () => undefined, {
    readTextFile: () => Promise.resolve(JSON.stringify(FILE)),
  });
}

Deno.test("formatRouteTable() lists the routes in match order, then the pools", async () => {
  assertEquals(formatRouteTable(await load()), [
    "Routes, first match wins:",
    "   1. old     path = /old -> redirect 301 to /new",
    "   2. api     host *.api.example.com, method GET -> pool api; limit 10/s burst 5 per client",
    "   3. static  path under /static/ -> pool static; strip /static",
    "   4. rest    everything -> pool default",
    "  (no match) -> respond 404",
    "Pools:",
    "  default: round-robin, timeout 30.0s, 2 retries, probes /health; http://127.0.0.1:9301/",
    "  api: least-in-flight, timeout 5.0s, 2 retries, probes /health; http://127.0.0.1:9101/",
    "  static: round-robin, timeout 30.0s, 2 retries, probes /ping; http://127.0.0.1:9201/",
  ]);
});

Deno.test("explainRequest() says why each earlier route missed and where the request goes", async () => {
  const config = await load();
  assertEquals(
    explainRequest(config, {
      host: "eu.api.example.com",
      path: "/users",
      method: "POST",
      header: () => null,
    }),
    [
      'route "old" does not match: path "/users" is not /old',
      'route "api" does not match: method POST is not GET',
      'route "static" does not match: path "/users" is not under /static/',
      'route "rest" matches (everything)',
      "-> pool default",
      "   pool default: http://127.0.0.1:9301/",
    ],
  );
});
