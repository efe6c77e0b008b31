/**
 * Routes end to end: the real balancer in front of three pools of recording backends. Each
 * request lands in its pool with the path the route rewrote it to (as the backend received it,
 * byte for byte); redirects, fixed answers, 404s and 429s reach no backend; a reload swaps the
 * table under load without a failed request, and a bad table changes nothing and names every
 * problem.
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { startBalancer } from "../../lib/control/balancer.ts";
import { planReload } from "../../lib/control/reload.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { type RawBackend, startRawBackend } from "../../load/bench/raw_backend.ts";
import { waitForFileText } from "../support/files.ts";

const BASE_ARGS = ["--port", "0", "--admin", "127.0.0.1:0", "--log-level", "fatal"];

function pools(api: RawBackend, web: RawBackend, files: RawBackend) {
  const url = (b: RawBackend) => `http://127.0.0.1:${b.port}`;
  return {
    api: { backends: [url(api)], timeoutMs: 5000 },
    web: { backends: [url(web)], policy: "least-in-flight" },
    static: { backends: [`${url(files)}/assets`], health: { path: "/ping" } },
  };
}

const ROUTES = [
  { name: "old", match: { pathExact: "/old" }, redirect: { to: "/new", status: 301 } },
  {
    name: "moved",
    match: { path: "/docs" },
    redirect: { to: "https://docs.example.com/", status: 308, keepPath: true },
    rewrite: { stripPrefix: "/docs" },
  },
  { name: "gone", match: { path: "/private" }, respond: { status: 404, body: "nope\n" } },
  {
    name: "api",
    match: { host: ["api.example.com", "*.api.example.com"] },
    pool: "api",
    rewrite: { addPrefix: "/v2" },
    requestHeaders: { set: { "x-route": "api" }, remove: ["x-secret"] },
    responseHeaders: { set: { "x-served-by": "api" } },
  },
  {
    name: "api-path",
    match: { path: "/api", methods: ["GET", "POST"] },
    pool: "api",
    rewrite: { stripPrefix: "/api", addPrefix: "/v1" },
  },
  {
    name: "static",
    match: { path: "/static/" },
    pool: "static",
    rewrite: { stripPrefix: "/static" },
  },
  {
    name: "limited",
    match: { path: "/limited" },
    pool: "web",
    rateLimit: { perSecond: 0.01, burst: 1, key: "client" },
  },
  { name: "canary", match: { headers: { "x-canary": "1" } }, pool: "api" },
  { name: "web", match: { host: ["www.example.com"] }, pool: "web" },
];

async function withTable(
  test: (
    lb: Awaited<ReturnType<typeof startBalancer>>,
    backends: RawBackend[],
    path: string,
  ) => Promise<void>,
): Promise<void> {
  await using api = startRawBackend();
  await using web = startRawBackend();
  await using files = startRawBackend();
  const directory = await Deno.makeTempDir();
  try {
    const path = `${directory}/lb.json`;
    await Deno.writeTextFile(
      path,
      JSON.stringify({
        pools: pools(api, web, files),
        routes: ROUTES,
        health: { intervalMs: 3_600_000 },
        accessLog: { path: `${directory}/access.log`, format: "json" },
      }),
    );
    const args = [...BASE_ARGS, "--config", path];
    const config = await parseBalancerArgs(args, () => undefined);
    await using lb = await startBalancer(config, {
      loadConfig: () => parseBalancerArgs(args, () => undefined),
    });
    await test(lb, [api, web, files], path);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
}

/** Sends one request with a given Host (fetch cannot set Host, so the URL names the balancer). */
async function send(
  lb: { url: URL },
  host: string,
  path: string,
  init: RequestInit = {},
): Promise<Response> {
  const client = Deno.createHttpClient({ allowHost: true });
  try {
    const headers = new Headers(init.headers);
    headers.set("host", host);
    const response = await fetch(new URL(path, lb.url), {
      ...init,
      headers,
      client,
      redirect: "manual",
    });
    await response.body?.cancel();
    return response;
  } finally {
    client.close();
  }
}

/** What a backend received from clients (its health probes left out). */
function proxied(backend: RawBackend) {
  return backend.received.filter((r) => !/\/(health|ping)$/.test(r.target));
}

function targets(backend: RawBackend): string[] {
  return proxied(backend).map((r) => r.target);
}

Deno.test("each request lands in its route's pool with the rewritten path", async () => {
  await withTable(async (lb, [api, web, files]) => {
    assert(api !== undefined && web !== undefined && files !== undefined);
    const hosted = await send(lb, "api.example.com", "/users?id=7", {
      headers: { "x-secret": "s", "x-keep": "k" },
    });
    assertEquals(hosted.status, 200);
    assertEquals(hosted.headers.get("x-served-by"), "api");
    assertEquals((await send(lb, "eu.api.example.com:8443", "/x")).status, 200);
    assertEquals((await send(lb, "a.test", "/api/orders")).status, 200);
    assertEquals((await send(lb, "a.test", "/api")).status, 200);
    assertEquals((await send(lb, "a.test", "/static/app.js")).status, 200);
    assertEquals((await send(lb, "a.test", "/home", { headers: { "x-canary": "1" } })).status, 200);
    assertEquals((await send(lb, "www.example.com", "/index.html")).status, 200);
    assertEquals(targets(api), ["/v2/users?id=7", "/v2/x", "/v1/orders", "/v1", "/home"]);
    assertEquals(targets(files), ["/assets/app.js"]);
    assertEquals(targets(web), ["/index.html"]);
    const first = proxied(api)[0];
    const header = (name: string) => first?.headers.find(([n]) => n.toLowerCase() === name)?.[1];
    assertEquals(header("x-route"), "api");
    assertEquals(header("x-secret"), undefined);
    assertEquals(header("x-keep"), "k");
  });
});

Deno.test("a rewrite cannot leave the pool: dot segments are resolved before routing", async () => {
  await withTable(async (lb, [api, web, files]) => {
    assert(api !== undefined && web !== undefined && files !== undefined);
    // Resolves to /private before routing: the fixed 404, not the static pool.
    assertEquals((await send(lb, "a.test", "/static/../private/key")).status, 404);
    assertEquals((await send(lb, "a.test", "/static/%2e%2e/%2e%2e/etc/passwd")).status, 404);
    assertEquals((await send(lb, "a.test", "/static/x/../y")).status, 200);
    assertEquals(targets(files), ["/assets/y"]);
    assertEquals(proxied(api).length + proxied(web).length, 0);
  });
});

Deno.test("redirects, fixed answers and unmatched requests reach no backend", async () => {
  await withTable(async (lb, backends) => {
    const old = await send(lb, "a.test", "/old");
    assertEquals([old.status, old.headers.get("location")], [301, "/new"]);
    const moved = await send(lb, "a.test", "/docs/guide/intro?v=2");
    assertEquals(
      [moved.status, moved.headers.get("location")],
      [308, "https://docs.example.com/guide/intro?v=2"],
    );
    const gone = await send(lb, "a.test", "/private/keys");
    assertEquals(gone.status, 404);
    assertEquals((await send(lb, "a.test", "/nowhere")).status, 404);
    // A DELETE under /api matches no route (the api route takes GET and POST).
    assertEquals((await send(lb, "a.test", "/api/1", { method: "DELETE" })).status, 404);
    assertEquals(backends.map((b) => proxied(b).length), [0, 0, 0]);
  });
});

Deno.test("a bad table on reload changes nothing and names every problem", async () => {
  await withTable(async (lb, [api, web, files], path) => {
    assert(api !== undefined && web !== undefined && files !== undefined);
    const config = JSON.parse(await Deno.readTextFile(path));
    await Deno.writeTextFile(
      path,
      JSON.stringify({
        ...config,
        routes: [
          { name: "all", pool: "web" },
          { name: "api", match: { path: "/api" }, pool: "api" },
          { name: "x", match: { path: "/x" }, pool: "missing" },
        ],
      }),
    );
    assert(lb.adminUrl !== undefined);
    const response = await fetch(new URL("/reload", lb.adminUrl), { method: "POST" });
    const body = await response.json();
    assertEquals(response.status, 400);
    const problems = body.problems.join("\n");
    assertStringIncludes(problems, 'route "api" can never match: route "all" before it');
    assertStringIncludes(problems, 'route "x" sends to pool "missing", which is not defined');
    assertStringIncludes(problems, 'pool "static" is used by no route');
    assertEquals((await send(lb, "a.test", "/api/a")).status, 200);
    assertEquals(targets(api), ["/v1/a"]);
  });
});

Deno.test("a reload changes the table under load with no failed request", async () => {
  await withTable(async (lb, [api, web, files], path) => {
    assert(api !== undefined && web !== undefined && files !== undefined);
    const config = JSON.parse(await Deno.readTextFile(path));
    const statuses: number[] = [];
    let isRunning = true;
    const load = (async () => {
      while (isRunning) {
        const batch = await Promise.all(
          Array.from({ length: 8 }, () => send(lb, "a.test", "/api/load")),
        );
        statuses.push(...batch.map((r) => r.status));
      }
    })();
    const tables = [
      // api moves behind /v3, then the api pool is replaced by web for /api.
      ROUTES.map((r) =>
        r.name === "api-path" ? { ...r, rewrite: { stripPrefix: "/api", addPrefix: "/v3" } } : r
      ),
      ROUTES.map((r) => r.name === "api-path" ? { ...r, pool: "web" } : r),
    ];
    for (const routes of tables) {
      while (statuses.length < 40) await new Promise((resolve) => setTimeout(resolve, 5));
      await Deno.writeTextFile(path, JSON.stringify({ ...config, routes }));
      assert(lb.adminUrl !== undefined);
      const reloaded = await fetch(new URL("/reload", lb.adminUrl), { method: "POST" });
      const body = await reloaded.json();
      assertEquals(reloaded.status, 200, JSON.stringify(body));
      assertStringIncludes(body.changes.join("; "), "routes");
      const before = statuses.length;
      while (statuses.length < before + 40) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    isRunning = false;
    await load;
    assertEquals(statuses.filter((s) => s !== 200), []);
    const seen = new Set(targets(api).map((t) => t.split("/")[1]));
    assertEquals([...seen].sort(), ["v1", "v3"]);
    assert(proxied(web).length > 0, "the last table sends /api to web");
    assertEquals(targets(web).every((target) => target === "/v1/load"), true);
  });
});

Deno.test("429 over the rate limit; /status, /metrics and the access log name routes and pools", async () => {
  await withTable(async (lb, [api, web], path) => {
    assert(api !== undefined && web !== undefined && lb.adminUrl !== undefined);
    assertEquals((await send(lb, "a.test", "/limited")).status, 200);
    const limited = await send(lb, "a.test", "/limited");
    assertEquals([limited.status, limited.headers.get("retry-after")], [429, "100"]);
    assertEquals(targets(web), ["/limited"]);
    assertEquals((await send(lb, "api.example.com", "/a")).status, 200);
    assertEquals((await send(lb, "a.test", "/old")).status, 301);

    const status = await (await fetch(new URL("/status", lb.adminUrl))).json();
    const pools = status.backends.map((b: { pool: string }) => b.pool);
    assertEquals(pools, ["api", "web", "static"]);
    const routes = status.routes.map((r: { route: string; pool: string; requests: number }) =>
      `${r.route} ${r.pool} ${r.requests}`
    );
    assertEquals(routes.sort(), ["api api 1", "limited none 1", "limited web 1", "old none 1"]);

    const metrics = await (await fetch(new URL("/metrics", lb.adminUrl))).text();
    assertStringIncludes(
      metrics,
      'denolb_route_requests_total{route="api",pool="api",code="2xx"} 1',
    );
    assertStringIncludes(
      metrics,
      'denolb_route_requests_total{route="limited",pool="none",code="4xx"} 1',
    );
    assertStringIncludes(metrics, "denolb_rate_limited_total 1");

    const log = await waitForFileText(
      path.replace("lb.json", "access.log"),
      /"route":"old"/,
    );
    const lines = log.trim().split("\n").map((line) => JSON.parse(line));
    assertEquals(
      lines.map((l: { route: string; status: number; outcome: string }) =>
        `${l.route} ${l.status} ${l.outcome}`
      ),
      [
        "limited 200 forwarded",
        "limited 429 rate-limited",
        "api 200 forwarded",
        "old 301 answered",
      ],
    );
  });
});

Deno.test("each pool's backends are probed on its own health path", async () => {
  await withTable(async (lb, [api, web, files]) => {
    assert(api !== undefined && web !== undefined && files !== undefined);
    await lb.health.firstRound;
    assertEquals(api.received.map((r) => r.target), ["/health"]);
    assertEquals(files.received.map((r) => r.target), ["/assets/ping"]);
  });
});

Deno.test("planReload() names a changed table and a pool's changed probe path", async () => {
  const parse = (file: unknown) =>
    parseBalancerArgs(["--config", "lb.json"], () => undefined, {
      readTextFile: () => Promise.resolve(JSON.stringify(file)),
    });
  const pools = { api: { backends: ["10.0.0.1:80"] } };
  const before = await parse({ pools, routes: [{ name: "api", pool: "api" }] });
  const renamed = await parse({ pools, routes: [{ name: "v2", pool: "api" }] });
  const probed = await parse({
    pools: { api: { ...pools.api, health: { path: "/ping" } } },
    routes: [{ name: "api", pool: "api" }],
  });
  assertEquals(planReload(before, before).summary, []);
  const table = planReload(before, renamed);
  assert(table.isHandlerChanged && !table.isHealthChanged);
  assertEquals(table.summary, ["routes", "request handling"]);
  const health = planReload(before, probed);
  assert(health.isHealthChanged && health.isHandlerChanged);
});
