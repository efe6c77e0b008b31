import { assertEquals } from "@std/assert";
import {
  checkRoutes,
  explainRoute,
  matchRoute,
  rewritePath,
  type RouteConfig,
  type RouteRequest,
} from "../../lib/core/routes.ts";

const TABLE: readonly RouteConfig[] = [
  { name: "login", match: { pathExact: "/login" }, pool: "auth" },
  { name: "api-host", match: { host: ["api.example.com"] }, pool: "api" },
  { name: "tenants", match: { host: ["*.example.com"], path: "/app" }, pool: "app" },
  { name: "canary", match: { path: "/shop", headers: { "x-canary": "1" } }, pool: "canary" },
  { name: "debug", match: { path: "/shop", headers: { "x-debug": true } }, pool: "debug" },
  { name: "shop-write", match: { path: "/shop", methods: ["POST", "PUT"] }, pool: "write" },
  { name: "shop", match: { path: "/shop" }, pool: "shop" },
  { name: "static", match: { path: "/static/" }, pool: "static" },
  { name: "old", match: { pathExact: "/old" }, redirect: { to: "/new", status: 301 } },
];

function request(
  host: string,
  path: string,
  method = "GET",
  headers: Record<string, string> = {},
): RouteRequest {
  return { host, path, method, header: (name) => headers[name] ?? null };
}

const CASES: readonly [string, RouteRequest, string | undefined][] = [
  ["exact path", request("a.test", "/login"), "login"],
  ["exact path is not a prefix", request("a.test", "/login/x"), undefined],
  ["exact host", request("api.example.com", "/login2"), "api-host"],
  ["host ignores case and port", request("API.Example.COM:8443", "/x"), "api-host"],
  ["first match wins over a later host", request("api.example.com", "/login"), "login"],
  ["wildcard host, one label", request("t1.example.com", "/app/x"), "tenants"],
  ["wildcard host, two labels", request("a.b.example.com", "/app"), "tenants"],
  ["wildcard host is not the bare domain", request("example.com", "/app"), undefined],
  ["wildcard host is not a suffix of a word", request("badexample.com", "/app"), undefined],
  ["prefix on a segment boundary", request("a.test", "/shop/cart"), "shop"],
  ["prefix itself", request("a.test", "/shop"), "shop"],
  ["prefix is not a word prefix", request("a.test", "/shopping"), undefined],
  ["trailing-slash prefix", request("a.test", "/static/a.css"), "static"],
  ["trailing-slash prefix needs the slash", request("a.test", "/static"), undefined],
  ["header value", request("a.test", "/shop", "GET", { "x-canary": "1" }), "canary"],
  ["header other value", request("a.test", "/shop", "GET", { "x-canary": "2" }), "shop"],
  ["header presence", request("a.test", "/shop", "GET", { "x-debug": "" }), "debug"],
  ["method", request("a.test", "/shop/1", "PUT"), "shop-write"],
  ["other method falls through", request("a.test", "/shop/1", "DELETE"), "shop"],
  ["redirect route", request("a.test", "/old"), "old"],
  ["no route", request("a.test", "/"), undefined],
];

for (const [name, req, expected] of CASES) {
  Deno.test(`matchRoute(): ${name}`, () => {
    const choice = matchRoute(TABLE, req);
    assertEquals(choice.ok ? choice.route.name : undefined, expected);
  });
}

Deno.test("matchRoute(): a route without a match takes everything", () => {
  const choice = matchRoute([{ name: "all", pool: "p" }], request("x", "/anything", "PATCH"));
  assertEquals(choice.ok && choice.index, 0);
});

Deno.test("explainRoute() says why each earlier route missed", () => {
  assertEquals(explainRoute(TABLE.slice(0, 3), request("t.example.com", "/app/1")), [
    'route "login" does not match: path "/app/1" is not /login',
    'route "api-host" does not match: host "t.example.com" is not api.example.com',
    'route "tenants" matches (host *.example.com, path under /app)',
  ]);
  assertEquals(explainRoute([], request("x", "/")), [
    "no route matches: the balancer answers 404",
  ]);
});

Deno.test("checkRoutes() accepts the table above", () => {
  const pools = ["auth", "api", "app", "canary", "debug", "write", "shop", "static"];
  assertEquals(checkRoutes(TABLE, pools), []);
});

const SHADOWED: readonly [string, RouteConfig, RouteConfig][] = [
  ["a catch-all", { name: "a", pool: "p" }, { name: "b", match: { path: "/x" }, pool: "p" }],
  [
    "a shorter prefix",
    { name: "a", match: { path: "/api" }, pool: "p" },
    { name: "b", match: { path: "/api/v1" }, pool: "p" },
  ],
  [
    "a prefix over an exact path",
    { name: "a", match: { path: "/api" }, pool: "p" },
    { name: "b", match: { pathExact: "/api" }, pool: "p" },
  ],
  [
    "a wildcard over an exact host",
    { name: "a", match: { host: ["*.example.com"] }, pool: "p" },
    { name: "b", match: { host: ["a.example.com"], path: "/" }, pool: "p" },
  ],
  [
    "more methods",
    { name: "a", match: { methods: ["GET", "HEAD"] }, pool: "p" },
    { name: "b", match: { methods: ["GET"], path: "/x" }, pool: "p" },
  ],
  [
    "header presence over a value",
    { name: "a", match: { headers: { "x-a": true } }, pool: "p" },
    { name: "b", match: { headers: { "x-a": "1", "x-b": "2" } }, pool: "p" },
  ],
];

for (const [name, first, second] of SHADOWED) {
  Deno.test(`checkRoutes() names a route shadowed by ${name}`, () => {
    const problems = checkRoutes([first, second], ["p"]);
    assertEquals(problems.length, 1, problems.join("\n"));
    assertEquals(problems[0]?.startsWith('route "b" can never match: route "a" before it'), true);
  });
}

const NOT_SHADOWED: readonly [string, RouteConfig, RouteConfig][] = [
  [
    "a longer prefix",
    { name: "a", match: { path: "/api/v1" }, pool: "p" },
    { name: "b", match: { path: "/api" }, pool: "p" },
  ],
  [
    "a slash prefix over the bare prefix",
    { name: "a", match: { path: "/api/" }, pool: "p" },
    { name: "b", match: { path: "/api" }, pool: "p" },
  ],
  [
    "a wildcard over its bare domain",
    { name: "a", match: { host: ["*.example.com"] }, pool: "p" },
    { name: "b", match: { host: ["example.com"] }, pool: "p" },
  ],
  [
    "a header the later route does not ask for",
    { name: "a", match: { headers: { "x-a": true } }, pool: "p" },
    { name: "b", match: { path: "/" }, pool: "p" },
  ],
];

for (const [name, first, second] of NOT_SHADOWED) {
  Deno.test(`checkRoutes() keeps a route after ${name}`, () => {
    assertEquals(checkRoutes([first, second], ["p"]), []);
  });
}

Deno.test("checkRoutes() names every problem at once", () => {
  const problems = checkRoutes([
    { name: "a", pool: "missing" },
    { name: "a", match: { path: "/x" }, pool: "p" },
    { name: "c", match: { path: "/y" } },
    { name: "d", match: { path: "/z" }, pool: "p", respond: { status: 404 } },
    { name: "e", match: { path: "/w" }, pool: "p", rewrite: { stripPrefix: "/v" } },
  ], ["p", "idle"]);
  assertEquals(problems, [
    'route "a" sends to pool "missing", which is not defined',
    'route "a" is named twice',
    'route "a" can never match: route "a" before it matches every request it would (everything)',
    'route "c" needs exactly one of pool, redirect and respond',
    'route "c" can never match: route "a" before it matches every request it would (everything)',
    'route "d" needs exactly one of pool, redirect and respond',
    'route "d" can never match: route "a" before it matches every request it would (everything)',
    'route "e" strips "/v", but not every path it matches starts with it (match a path under /v)',
    'route "e" can never match: route "a" before it matches every request it would (everything)',
    'pool "idle" is used by no route',
  ]);
});

Deno.test("checkRoutes() exempts the implicit default pool", () => {
  assertEquals(
    checkRoutes([{ name: "a", pool: "p" }], ["p", "default"], { exempt: ["default"] }),
    [],
  );
});

Deno.test("rewritePath() strips, adds and replaces prefixes", () => {
  assertEquals(rewritePath("/api/users", { stripPrefix: "/api" }), "/users");
  assertEquals(rewritePath("/api", { stripPrefix: "/api" }), "/");
  assertEquals(rewritePath("/api/", { stripPrefix: "/api/" }), "/");
  assertEquals(rewritePath("/api/x", { stripPrefix: "/api/" }), "/x");
  assertEquals(rewritePath("/x", { addPrefix: "/v2/" }), "/v2/x");
  assertEquals(rewritePath("/api", { stripPrefix: "/api", addPrefix: "/v1" }), "/v1");
  assertEquals(rewritePath("/api/", { stripPrefix: "/api", addPrefix: "/v1" }), "/v1/");
  assertEquals(rewritePath("/api/x?", { stripPrefix: "/api", addPrefix: "/v2" }), "/v2/x?");
});
