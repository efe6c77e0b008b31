/**
 * What routing costs a request: ours, nginx and HAProxy each run twice in front of the same
 * nginx backends, once plain (one pool, `GET /index.html`) and once with the same ten-route
 * table (hosts, an exact path, a header, a method, prefixes, a redirect), the measured request
 * matching the ninth route, which strips `/app` (`GET /app/index.html`, forwarded as
 * `/index.html`). A benchmark, not a test: it needs `nginx`, `haproxy`, `wrk` and Linux's
 * `/proc`.
 *
 * Method (as `request_cost.ts`'s, for the same reason: on a shared 2-core machine the speed of
 * the whole machine drifts by a factor of two within minutes): the plain and the routed instance
 * of one proxy run in the same seconds, each driven by its own `wrk -t1`, and each one's CPU
 * time over the slice (its process tree, from `/proc`) is divided by the requests it served.
 * The routing cost is the routed instance's CPU per request over the plain one's, minus one;
 * the report gives the median over the rounds, and each round's.
 *
 * ```sh
 * deno run -A load/bench/routes_cost.ts                     # 6 rounds of 4 s, -c20 per target
 * deno run -A load/bench/routes_cost.ts --rounds 10 --slice 5s --connections 50
 * ```
 *
 * @module
 */
import { parseDuration } from "../../lib/shared/duration.ts";
import { parseArgs } from "../../lib/shared/std.ts";
import {
  freePort,
  haproxyHead,
  median,
  nginxPass,
  nginxUpstream,
  runTool,
  startNginx,
  writeLine,
  writeStaticSite,
  wrkErrors,
} from "./bench_support.ts";
import {
  spawnWatched,
  startNginxBackends,
  startOurBalancer,
  treeCpuMs,
} from "./bench_processes.ts";

/** The table, as our config file writes it; nginx's and HAProxy's below say the same. */
const ROUTES: readonly unknown[] = [
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

function nginxRouted(port: number, [a, b, c]: readonly number[]): string {
  const upstream = (name: string, p: number | undefined) =>
    nginxUpstream(name, p === undefined ? [] : [p]);
  return [
    upstream("a", a),
    upstream("b", b),
    upstream("c", c),
    `  server { listen 127.0.0.1:${port}; server_name admin.example.com; location / { ${
      nginxPass("http://a")
    } } }`,
    `  server { listen 127.0.0.1:${port}; server_name *.static.example.com; location / { ${
      nginxPass("http://c")
    } } }`,
    `  server {
    listen 127.0.0.1:${port} default_server;
    location = /login { ${nginxPass("http://a")} }
    location = /api/v2 { if ($request_method = POST) { proxy_pass http://b; } ${
      nginxPass("http://b/")
    } }
    location /api/ { ${nginxPass("http://b/")} }
    location /images/ { ${nginxPass("http://c")} }
    location = /old { return 301 /new; }
    location /app/ { ${nginxPass("http://c/")} }
    location / { if ($http_x_canary = "1") { proxy_pass http://b; } ${nginxPass("http://a")} }
  }`,
  ].join("\n");
}

function nginxPlain(port: number, backend: number): string {
  return `${nginxUpstream("pool", [backend])}
  server { listen 127.0.0.1:${port}; location / { ${nginxPass("http://pool")} } }`;
}

function haproxyConfig(port: number, ports: readonly number[], isRouted: boolean): string {
  const [a, b, c] = ports;
  const head = `${haproxyHead()}frontend fe
  bind 127.0.0.1:${port}
`;
  if (!isRouted) return `${head}  default_backend c\nbackend c\n  server c 127.0.0.1:${c}\n`;
  return `${head}  acl admin hdr(host),field(1,:) -i admin.example.com
  acl login path /login
  acl canary req.hdr(x-canary) -m str 1
  acl api_v2 path /api/v2 /api/v2/
  acl post method POST
  acl api path /api
  acl api path_beg /api/
  acl tenants hdr(host),field(1,:) -m end -i .static.example.com
  acl images path_beg /images/
  acl old path /old
  acl app path /app
  acl app path_beg /app/
  http-request redirect location /new code 301 if old !admin !login !canary !api !tenants !images
  use_backend a if admin || login
  use_backend b if canary
  use_backend b if api_v2 post
  use_backend b_strip if api
  use_backend c if tenants || images
  use_backend c_app if app
  default_backend a
backend a
  server a 127.0.0.1:${a}
backend b
  server b 127.0.0.1:${b}
backend b_strip
  http-request replace-path ^/api(.*)$ \\1
  server b 127.0.0.1:${b}
backend c
  server c 127.0.0.1:${c}
backend c_app
  http-request replace-path ^/app(.*)$ \\1
  server c 127.0.0.1:${c}
`;
}

interface Target {
  readonly name: string;
  readonly url: string;
  /** The root of its process tree. */
  readonly pid: number;
  stop(): Promise<void>;
}

async function startTargets(directory: string, ports: readonly number[]): Promise<Target[]> {
  const targets: Target[] = [];
  const c = ports[2] ?? 0;
  const config = `${directory}/routes.json`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      pools: Object.fromEntries(
        ["a", "b", "c"].map((name, i) => [name, { backends: [`127.0.0.1:${ports[i]}`] }]),
      ),
      routes: ROUTES,
    }),
  );
  const common = ["--workers", "1", "--access-log", "off", "--log-level", "warning"];
  for (const isRouted of [false, true]) {
    const port = freePort();
    const ours = await startOurBalancer(
      port,
      [c],
      isRouted ? [...common, "--config", config] : common,
    );
    targets.push({
      name: `ours ${isRouted ? "routed" : "plain"}`,
      url: `http://127.0.0.1:${port}${isRouted ? "/app/index.html" : "/index.html"}`,
      pid: ours.pid,
      stop: () => ours.stop(),
    });
  }
  for (const isRouted of [false, true]) {
    const port = freePort();
    const nginx = await startNginx(
      `${directory}/${isRouted ? "routed" : "plain"}`,
      isRouted ? nginxRouted(port, ports) : nginxPlain(port, c),
      [port],
    );
    targets.push({
      name: `nginx ${isRouted ? "routed" : "plain"}`,
      url: `http://127.0.0.1:${port}${isRouted ? "/app/index.html" : "/index.html"}`,
      pid: nginx.pid,
      stop: () => nginx.stop(),
    });
  }
  for (const isRouted of [false, true]) {
    const port = freePort();
    const file = `${directory}/haproxy_${isRouted ? "routed" : "plain"}.cfg`;
    await Deno.writeTextFile(file, haproxyConfig(port, ports, isRouted));
    const haproxy = spawnWatched("haproxy", ["-db", "-f", file]);
    await haproxy.listening(port, "haproxy");
    targets.push({
      name: `haproxy ${isRouted ? "routed" : "plain"}`,
      url: `http://127.0.0.1:${port}${isRouted ? "/app/index.html" : "/index.html"}`,
      pid: haproxy.pid,
      stop: () => haproxy.stop(),
    });
  }
  return targets;
}

/** One slice of one target: CPU microseconds per request, and wrk's errors. */
async function slice(target: Target, connections: number, seconds: number) {
  const before = await treeCpuMs(target.pid);
  const text = await runTool("wrk", ["-t1", `-c${connections}`, `-d${seconds}s`, target.url]);
  const requests = Number(text.match(/(\d+) requests in/)?.[1] ?? 0);
  const cpuMs = await treeCpuMs(target.pid) - before;
  return { microsPerRequest: cpuMs * 1000 / Math.max(1, requests), errors: wrkErrors(text) };
}

async function main(): Promise<void> {
  const flags = parseArgs(Deno.args, { string: ["rounds", "slice", "connections"] });
  const rounds = Number(flags.rounds ?? 6);
  const seconds = parseDuration(String(flags.slice ?? "4s")) / 1000;
  const connections = Number(flags.connections ?? 20);
  const directory = await Deno.makeTempDir({ prefix: "routes_cost_" });
  const www = await writeStaticSite(directory, 612);
  const backends = await startNginxBackends(directory, www, 3);
  const targets = await startTargets(directory, backends.ports);
  const find = (name: string) => targets.find((t) => t.name === name) as Target;
  try {
    // Warm-up: every target, JIT included, before anything counts.
    await Promise.all(targets.map((t) => slice(t, connections, 2)));
    const costs = new Map<string, number[]>();
    const micros = new Map<string, number[]>();
    for (let round = 1; round <= rounds; round++) {
      const line: string[] = [];
      for (const proxy of ["ours", "nginx", "haproxy"]) {
        const [plain, routed] = await Promise.all([
          slice(find(`${proxy} plain`), connections, seconds),
          slice(find(`${proxy} routed`), connections, seconds),
        ]);
        if (plain.errors + routed.errors > 0) {
          throw new Error(`${proxy}: wrk errors ${plain.errors} plain, ${routed.errors} routed`);
        }
        const cost = routed.microsPerRequest / plain.microsPerRequest - 1;
        costs.set(proxy, [...(costs.get(proxy) ?? []), cost]);
        micros.set(`${proxy} plain`, [
          ...(micros.get(`${proxy} plain`) ?? []),
          plain.microsPerRequest,
        ]);
        micros.set(`${proxy} routed`, [
          ...(micros.get(`${proxy} routed`) ?? []),
          routed.microsPerRequest,
        ]);
        line.push(`${proxy} ${(100 * cost).toFixed(1)}%`);
      }
      writeLine(`round ${round}/${rounds}: ${line.join(", ")}`);
    }
    writeLine("");
    writeLine(
      `${rounds} rounds of ${seconds} s, wrk -t1 -c${connections} per target, plain and routed ` +
        `at once; ${new Date().toISOString()}, ${navigator.hardwareConcurrency} cores, load ` +
        `${(await Deno.readTextFile("/proc/loadavg")).split(" ")[0]}`,
    );
    writeLine("| proxy | CPU µs/req plain | CPU µs/req routed | routing cost | per round |");
    writeLine("|---|---:|---:|---:|---|");
    for (const proxy of ["ours", "nginx", "haproxy"]) {
      const perRound = costs.get(proxy) ?? [];
      writeLine(
        `| ${proxy} | ${median(micros.get(`${proxy} plain`) ?? []).toFixed(1)} | ` +
          `${median(micros.get(`${proxy} routed`) ?? []).toFixed(1)} | ` +
          `${(100 * median(perRound)).toFixed(1)}% | ` +
          `${perRound.map((c) => `${(100 * c).toFixed(1)}%`).join(" ")} |`,
      );
    }
  } finally {
    for (const target of targets) await target.stop();
    await backends.stop();
    await Deno.remove(directory, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
