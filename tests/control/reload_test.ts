/**
 * Reloading without loss: the pure plan, and the real balancer reloading its config file
 * through `POST /reload` (backends added and removed, an invalid file changing nothing), then
 * a load run from our own load tester across five reloads with zero errors.
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { planReload } from "../../lib/control/reload.ts";
import { startBalancer } from "../../lib/control/balancer.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { REPO_ROOT } from "../support/subprocess.ts";
import { startServer, type TestServer } from "../support/servers.ts";
import { waitUntil } from "../support/wait.ts";

const BASE_ARGS = [
  "--port",
  "0",
  "--admin",
  "127.0.0.1:0",
  "--log-level",
  "fatal",
  "--access-log",
  "off",
];

Deno.test("planReload() names what changed and only that", async () => {
  const before = await parseBalancerArgs(
    ["--backend", "10.0.0.1:80,10.0.0.2:80", "--timeout", "30s"],
    () => undefined,
  );
  const same = planReload(before, before);
  assertEquals(same.summary, []);
  const after = await parseBalancerArgs(
    ["--backend", "10.0.0.2:80,10.0.0.3:80", "--timeout", "10s", "--fall", "5"],
    () => undefined,
  );
  const plan = planReload(before, after);
  assertEquals(plan.added.map((b) => b.url.href), ["http://10.0.0.3/"]);
  assertEquals(plan.removed, ["http://10.0.0.1/"]);
  assertEquals(plan.isHandlerChanged, true);
  assertEquals(plan.isHealthChanged, true);
  assertEquals(plan.isListenerChanged, false);
  assertEquals(plan.isAdminChanged, false);
});

/** A backend that answers with its name, and /health with 200. */
function named(name: string): TestServer {
  return startServer(async (request) => {
    await request.arrayBuffer();
    return new Response(name);
  });
}

async function writeConfig(path: string, backends: readonly TestServer[], extra = {}) {
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      backends: backends.map((b) => b.url.href),
      health: { intervalMs: 3_600_000 },
      ...extra,
    }),
  );
}

async function startFromFile(path: string) {
  const args = [...BASE_ARGS, "--config", path];
  const config = await parseBalancerArgs(args, () => undefined);
  return startBalancer(config, { loadConfig: () => parseBalancerArgs(args, () => undefined) });
}

async function postReload(adminUrl: URL | undefined) {
  assert(adminUrl !== undefined);
  const response = await fetch(new URL("/reload", adminUrl), { method: "POST" });
  return { status: response.status, body: await response.json() };
}

Deno.test("planReload() rebuilds the request path for new limits, the listener for --max-connections", async () => {
  const running = await parseBalancerArgs(
    ["--backend", "10.0.0.1:80,10.0.0.2:80"],
    () => undefined,
  );
  const queue = planReload(running, { ...running, limits: { ...running.limits, queueSize: 7 } });
  assert(queue.isHandlerChanged && !queue.isListenerChanged);
  const own = planReload(running, {
    ...running,
    backends: running.backends.map((b, i) => i === 0 ? { ...b, maxInFlight: 3 } : b),
  });
  assert(own.isHandlerChanged, "a backend's own maxInFlight changed");
  const connections = { ...running.limits, maxConnections: 5 };
  assert(planReload(running, { ...running, limits: connections }).isListenerChanged);
  assert(!planReload(running, running).isHandlerChanged);
});

Deno.test("POST /reload adds and removes backends; those that stay keep their counters", async () => {
  const directory = await Deno.makeTempDir();
  await using a = named("a");
  await using b = named("b");
  await using c = named("c");
  try {
    const path = `${directory}/lb.json`;
    await writeConfig(path, [a, b]);
    await using lb = await startFromFile(path);
    for (let i = 0; i < 4; i++) await (await fetch(lb.url)).text();
    const kept = lb.pool.find(b.url.href);
    assertEquals(kept?.requests, 2);

    await writeConfig(path, [b, c]);
    const reloaded = await postReload(lb.adminUrl);
    assertEquals(reloaded.status, 200);
    assertEquals(reloaded.body.ok, true);
    assertStringIncludes(reloaded.body.changes.join("; "), `backend ${c.url.href} added`);
    assertStringIncludes(reloaded.body.changes.join("; "), `backend ${a.url.href} removed`);
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(await (await fetch(lb.url)).text());
    assertEquals([...seen].sort(), ["b", "c"]);
    // The same Backend object carries on: its count went on from 2.
    assertEquals(lb.pool.find(b.url.href), kept);
    assertEquals((kept?.requests ?? 0) >= 5, true);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("POST /reload with an invalid file answers 400 naming the field and changes nothing", async () => {
  const directory = await Deno.makeTempDir();
  await using a = named("a");
  try {
    const path = `${directory}/lb.json`;
    await writeConfig(path, [a]);
    await using lb = await startFromFile(path);
    await Deno.writeTextFile(path, JSON.stringify({ backends: ["ftp://x"], port: 70000 }));
    const rejected = await postReload(lb.adminUrl);
    assertEquals(rejected.status, 400);
    assertEquals(rejected.body.ok, false);
    assertStringIncludes(rejected.body.problems.join("\n"), `Invalid config "${path}"`);
    assertEquals(await (await fetch(lb.url)).text(), "a");
    assertEquals(lb.pool.backends.map((x) => x.url.href), [a.url.href]);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("a load run across five reloads, backends added and removed each time, has zero errors", async () => {
  const directory = await Deno.makeTempDir();
  const servers = ["a", "b", "c", "d"].map(named);
  try {
    const path = `${directory}/lb.json`;
    const sets = [[0, 1], [1, 2], [2, 3], [0, 3], [0, 1, 2], [3]];
    const pick = (i: number) => (sets[i] ?? []).map((index) => servers[index] as TestServer);
    await writeConfig(path, pick(0));
    await using lb = await startFromFile(path);
    const load = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "main.ts",
        "loadtest",
        "--url",
        lb.url.href,
        "--duration",
        "3s",
        "--concurrency",
        "8",
        "--workers",
        "1",
        "--quiet",
        "--json",
        "-",
      ],
      cwd: REPO_ROOT,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    // Wait until traffic flows, then reload five times while it does.
    const served = () => lb.pool.backends.reduce((sum, b) => sum + b.requests, 0);
    await waitUntil("50 requests served", () => served() >= 50, { intervalMs: 20 });
    for (let i = 1; i <= 5; i++) {
      await writeConfig(path, pick(i));
      const reloaded = await postReload(lb.adminUrl);
      assertEquals(reloaded.body.ok, true, JSON.stringify(reloaded.body));
      const before = served();
      await waitUntil(`30 requests served after reload ${i}`, () => served() >= before + 30, {
        intervalMs: 20,
      });
    }
    const output = await load.output();
    const report = JSON.parse(new TextDecoder().decode(output.stdout));
    const stats = report.runs[0].stats;
    assert(stats.requests > 300, `only ${stats.requests} requests`);
    assertEquals(stats.errors, 0, JSON.stringify(stats.errorsByClass));
    assertEquals(stats.ok, stats.requests);
  } finally {
    await Promise.all(servers.map((s) => s.close()));
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("POST /reload applies new client timeouts in place: one isolate keeps its socket and port", async () => {
  const directory = await Deno.makeTempDir();
  await using a = named("a");
  try {
    const path = `${directory}/lb.json`;
    await writeConfig(path, [a], { client: { headerTimeoutMs: 60_000 } });
    const args = [...BASE_ARGS, "--workers", "1", "--config", path];
    const config = await parseBalancerArgs(args, () => undefined);
    await using lb = await startBalancer(config, {
      loadConfig: () => parseBalancerArgs(args, () => undefined),
    });
    const listener = lb.url;
    await writeConfig(path, [a], { client: { headerTimeoutMs: 200, keepAliveTimeoutMs: 200 } });
    const reloaded = await postReload(lb.adminUrl);
    assertEquals(reloaded.body.ok, true, JSON.stringify(reloaded.body));
    // The same address still answers (a second bind of it would have failed, or with port 0
    // moved the balancer to another port).
    assertEquals(await (await fetch(listener)).text(), "a");
    // A client that sends nothing is now cut after the new header timeout, not the old minute.
    const conn = await Deno.connect({ hostname: listener.hostname, port: Number(listener.port) });
    try {
      const read = conn.read(new Uint8Array(16)).catch(() => null);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        read.then((n) => n === null ? "closed" : `read ${n} bytes`),
        new Promise<string>((resolve) => timer = setTimeout(() => resolve("still open"), 10_000)),
      ]);
      clearTimeout(timer);
      assertEquals(outcome, "closed");
    } finally {
      try {
        conn.close();
      } catch {
        // Closed by the balancer.
      }
    }
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});
