/**
 * Pools and routes in the config file: validated field by field by the settings' schema, the
 * table as a whole at load time (every problem named at once), and the one-pool case unchanged.
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { UsageError } from "../../lib/shared/command.ts";
import { assertEquals, assertRejects, assertStringIncludes } from "../support/assert.ts";

function parse(file: unknown, args: readonly string[] = []) {
  return parseBalancerArgs(["--config", "lb.json", ...args], () => undefined, {
    readTextFile: () => Promise.resolve(JSON.stringify(file)),
  });
}

const POOLS = {
  api: { backends: ["10.0.0.1:80"], policy: "p2c", timeoutMs: 2000, retries: 0 },
  web: { backends: ["10.0.0.2:80", { url: "10.0.0.3:80", weight: 2 }] },
};

Deno.test("a route table makes the balancer's backends those of the pools the routes use", async () => {
  const config = await parse({
    backends: ["10.0.0.9:80"],
    pools: POOLS,
    routes: [
      { name: "api", match: { host: "API.example.com" }, pool: "api" },
      { name: "web", pool: "web" },
    ],
  });
  assertEquals(config.backends.map((b) => b.url.href), [
    "http://10.0.0.1/",
    "http://10.0.0.2/",
    "http://10.0.0.3/",
  ]);
  assertEquals(Object.keys(config.pools), ["api", "web"]);
  assertEquals(config.routes[0]?.match?.host, ["api.example.com"]);
});

Deno.test("the top-level backends are the pool default", async () => {
  const config = await parse({
    backends: ["10.0.0.9:80"],
    pools: POOLS,
    routes: [
      { name: "api", match: { path: "/api" }, pool: "api" },
      { name: "web", match: { path: "/web" }, pool: "web" },
      { name: "rest", pool: "default" },
    ],
  });
  assertEquals(config.backends.map((b) => b.url.href).at(0), "http://10.0.0.9/");
  assertEquals(Object.keys(config.pools), ["default", "api", "web"]);
});

Deno.test("without routes the flags work as before", async () => {
  const config = await parseBalancerArgs(["--backend", "10.0.0.1:80"], () => undefined);
  assertEquals(config.routes, []);
  assertEquals(config.pools, {});
  assertEquals(config.backends.map((b) => b.url.href), ["http://10.0.0.1/"]);
});

Deno.test("the table is checked as a whole and every problem is named", async () => {
  const error = await assertRejects(
    () =>
      parse({
        pools: { ...POOLS, spare: { backends: ["10.0.0.1:80"] } },
        routes: [
          { name: "all", pool: "web" },
          { name: "api", match: { path: "/api" }, pool: "api" },
          { name: "gone", match: { path: "/x" }, pool: "nowhere" },
        ],
      }),
    UsageError,
  );
  assertStringIncludes(error.message, "Invalid route table: ");
  for (
    const problem of [
      'route "api" can never match: route "all" before it matches every request it would',
      'route "gone" sends to pool "nowhere", which is not defined',
      'pool "spare" is used by no route',
      'backend "http://10.0.0.1/" is in pools "api" and "spare"',
    ]
  ) assertStringIncludes(error.message, problem);
});

Deno.test("a pool nobody routes to is refused", async () => {
  const error = await assertRejects(() => parse({ pools: POOLS }), UsageError);
  assertStringIncludes(error.message, 'pool "api" is used by no route');
  assertStringIncludes(error.message, 'pool "web" is used by no route');
});

const BAD_FIELDS: readonly [string, unknown, string][] = [
  [
    "a path without a slash",
    { name: "a", match: { path: "api" }, pool: "api" },
    "routes[0].match.path must start with",
  ],
  [
    "a dot segment in a rewrite",
    { name: "a", pool: "api", rewrite: { addPrefix: "/x/../y" } },
    "routes[0].rewrite.addPrefix must start with",
  ],
  [
    "a redirect status",
    { name: "a", redirect: { to: "/b", status: 200 } },
    "routes[0].redirect.status must be 301, 302, 303, 307 or 308",
  ],
  ["a host pattern", { name: "a", match: { host: "a/b" }, pool: "api" }, "routes[0].match.host"],
  [
    "a rate limit key",
    { name: "a", pool: "api", rateLimit: { perSecond: 1, burst: 1, key: "ip" } },
    "routes[0].rateLimit.key must be client, route or header:NAME",
  ],
  [
    "an unknown field",
    { name: "a", pool: "api", backend: "x" },
    'unknown field "routes[0].backend"',
  ],
];

for (const [what, route, message] of BAD_FIELDS) {
  Deno.test(`a route with ${what} is refused naming the field`, async () => {
    const error = await assertRejects(() => parse({ pools: POOLS, routes: [route] }), UsageError);
    assertStringIncludes(error.message, message);
  });
}

Deno.test("--routes takes the table as JSON", async () => {
  const config = await parseBalancerArgs([
    "--pools",
    JSON.stringify({ api: { backends: ["10.0.0.1:80"] } }),
    "--routes",
    JSON.stringify([{ name: "api", pool: "api" }]),
  ], () => undefined);
  assertEquals(config.routes.map((r) => r.name), ["api"]);
  const error = await assertRejects(
    () => parseBalancerArgs(["--routes", "[{"], () => undefined),
    UsageError,
  );
  assertStringIncludes(error.message, 'Invalid --routes "[{": must be JSON');
});
