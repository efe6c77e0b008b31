/**
 * A reload is all or nothing. A reload that moves the data port to one another program holds
 * (a plain listener, or one with SO_REUSEPORT as another balancer's isolates have) answers 400
 * naming the address and applies none of its other changes; with one isolate and with two.
 * A reload to a free port then moves every isolate.
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { type RunningBalancer, startBalancer } from "../../lib/control/balancer.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { startServer, type TestServer, unusedPort } from "../support/servers.ts";

const MAIN = new URL("../../main.ts", import.meta.url);

function named(name: string): TestServer {
  return startServer(async (request) => {
    await request.body?.cancel();
    return new Response(name);
  });
}

async function writeConfig(path: string, port: number, backends: readonly TestServer[]) {
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      host: "127.0.0.1",
      port,
      backends: backends.map((b) => b.url.href),
      health: { intervalMs: 3_600_000 },
    }),
  );
}

async function startFromFile(path: string, workers: string): Promise<RunningBalancer> {
  const args = ["--admin", "127.0.0.1:0", "--log-level", "fatal", "--workers", workers];
  const load = () => parseBalancerArgs([...args, "--config", path], () => undefined);
  return startBalancer(await load(), { loadConfig: load, workerEntry: MAIN });
}

async function postReload(lb: RunningBalancer) {
  assert(lb.adminUrl !== undefined);
  const response = await fetch(new URL("/reload", lb.adminUrl), { method: "POST" });
  return { status: response.status, body: await response.json() };
}

/** What answers on `port` over new connections (so every isolate's listener gets a turn). */
async function answersOn(port: number, times = 6): Promise<string[]> {
  const seen = new Set<string>();
  for (let i = 0; i < times; i++) {
    const response = await fetch(`http://127.0.0.1:${port}/`, {
      headers: { connection: "close" },
    });
    seen.add(await response.text());
  }
  return [...seen].sort();
}

for (const workers of ["1", "2"]) {
  Deno.test(`--workers ${workers}: a reload to a port another program holds answers 400 and changes nothing`, async () => {
    const directory = await Deno.makeTempDir();
    await using a = named("a");
    await using b = named("b");
    try {
      const path = `${directory}/lb.json`;
      const first = unusedPort();
      await writeConfig(path, first, [a]);
      await using lb = await startFromFile(path, workers);
      assertEquals(lb.isolateCount, Number(workers));
      for (const reusePort of [false, true]) {
        // A plain listener, then one that shares with SO_REUSEPORT as a balancer's isolates do.
        using holder = Deno.listen({ hostname: "127.0.0.1", port: 0, reusePort });
        const taken = holder.addr.port;
        await writeConfig(path, taken, [a, b]);
        const reloaded = await postReload(lb);
        assertEquals(reloaded.status, 400, JSON.stringify(reloaded.body));
        assertEquals(reloaded.body.ok, false);
        const problems = reloaded.body.problems.join("\n");
        assertStringIncludes(problems, `127.0.0.1:${taken}`);
        assertStringIncludes(problems, "Address already in use");
        // Nothing of the reload applied: not the backend it adds, not the port.
        assertEquals(lb.pool.backends.map((x) => x.url.href), [a.url.href]);
        assertEquals(Number(lb.url.port), first);
        assertEquals(await answersOn(first), ["a"]);
      }
      // The same reload to a free port moves every isolate and adds the backend.
      const next = unusedPort();
      await writeConfig(path, next, [a, b]);
      const moved = await postReload(lb);
      assertEquals(moved.status, 200, JSON.stringify(moved.body));
      assertEquals(Number(lb.url.port), next);
      assertEquals(await answersOn(next, 8), ["a", "b"]);
    } finally {
      await Deno.remove(directory, { recursive: true });
    }
  });
}
