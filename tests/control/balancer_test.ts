/**
 * End-to-end tests of the balancer: the real demo backends and the real balancer on port 0,
 * talking HTTP. Health is driven with `checkNow()` and a fake clock, never by sleeping.
 */
import { type RunningBackend, serveBackend } from "../../backend-servers/serve.ts";
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { type RunningBalancer, startBalancer } from "../../lib/control/balancer.ts";
import type { Clock } from "../../lib/shared/clock.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";

const ROOT = new URL("../../backend-servers/server8080/", import.meta.url);

interface Cluster extends AsyncDisposable {
  readonly backends: readonly RunningBackend[];
  readonly balancer: RunningBalancer;
}

async function startCluster(
  backendCount: number,
  extraArgs: readonly string[] = [],
  backendClock?: Clock,
): Promise<Cluster> {
  const backends: RunningBackend[] = [];
  for (let i = 0; i < backendCount; i++) {
    backends.push(
      await serveBackend({
        root: ROOT,
        port: 0,
        name: `b${i}`,
        ...(backendClock === undefined ? {} : { clock: backendClock }),
      }),
    );
  }
  const config = await parseBalancerArgs([
    "--port",
    "0",
    "--admin",
    "127.0.0.1:0",
    "--rise",
    "2",
    "--fall",
    "2",
    "--drain-timeout",
    "5s",
    "--log-level",
    "fatal",
    "--access-log",
    "off",
    ...backends.flatMap((b) => ["--backend", b.url]),
    ...extraArgs,
  ], () => undefined);
  // The fake clock never advances: probes run only when a test calls checkNow().
  const balancer = await startBalancer(config, { clock: new FakeClock() });
  await balancer.health.firstRound;
  return {
    backends,
    balancer,
    async [Symbol.asyncDispose]() {
      await balancer.drain();
      await Promise.all(backends.map((b) => b.close()));
    },
  };
}

/** Sends `count` GETs one after another; returns the X-Backend of each (or the status). */
async function sendGets(url: URL, count: number): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < count; i++) {
    const response = await fetch(url);
    await response.body?.cancel();
    seen.push(
      response.status === 200 ? response.headers.get("x-backend") ?? "?" : `${response.status}`,
    );
  }
  return seen;
}

function tally(values: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}

Deno.test("balancer spreads 30 requests over 3 backends 10/10/10 in turn", async () => {
  await using cluster = await startCluster(3);
  const seen = await sendGets(cluster.balancer.url, 30);
  assertEquals(tally(seen), { b0: 10, b1: 10, b2: 10 });
  assertEquals(seen.slice(0, 6), ["b0", "b1", "b2", "b0", "b1", "b2"]);
});

Deno.test("a stopped backend leaves rotation after its fall count and no request fails", async () => {
  await using cluster = await startCluster(3);
  const [, stopped] = cluster.backends;
  const backend = cluster.balancer.pool.backends[1];
  assert(stopped !== undefined && backend !== undefined);
  await stopped.close();

  // Before any probe notices, GETs that hit the dead backend are retried on another one.
  const before = tally(await sendGets(cluster.balancer.url, 9));
  assertEquals(
    Object.keys(before).sort(),
    ["b0", "b2"],
    `every GET answered: ${JSON.stringify(before)}`,
  );
  assertEquals((before.b0 ?? 0) + (before.b2 ?? 0), 9);

  await cluster.balancer.health.checkNow();
  assertEquals(backend.isHealthy, true, "one failed probe is below the fall count of 2");
  await cluster.balancer.health.checkNow();
  assertEquals(backend.isHealthy, false);

  const after = await sendGets(cluster.balancer.url, 10);
  assertEquals(tally(after), { b0: 5, b2: 5 });
});

Deno.test("all backends unhealthy gives 503 with Retry-After and a short body", async () => {
  await using cluster = await startCluster(2);
  for (const backend of cluster.backends) backend.setHealthy(false);
  await cluster.balancer.health.checkNow();
  await cluster.balancer.health.checkNow();
  const response = await fetch(cluster.balancer.url);
  const body = await response.text();
  assertEquals(response.status, 503);
  assert(response.headers.get("retry-after") !== null, "Retry-After is set");
  assert(body.length < 200, `short body, got ${body.length} bytes`);
  assert(!body.includes("at "), "no stack trace");
});

Deno.test("a recovered backend rejoins rotation after its rise count", async () => {
  await using cluster = await startCluster(2);
  const [first] = cluster.backends;
  const backend = cluster.balancer.pool.backends[0];
  assert(first !== undefined && backend !== undefined);
  first.setHealthy(false);
  await cluster.balancer.health.checkNow();
  await cluster.balancer.health.checkNow();
  assertEquals(backend.isHealthy, false);
  assertEquals(tally(await sendGets(cluster.balancer.url, 4)), { b1: 4 });

  first.setHealthy(true);
  await cluster.balancer.health.checkNow();
  assertEquals(backend.isHealthy, false, "one good probe is below the rise count of 2");
  await cluster.balancer.health.checkNow();
  assertEquals(backend.isHealthy, true);
  assertEquals(tally(await sendGets(cluster.balancer.url, 4)), { b0: 2, b1: 2 });
});

/** A clock whose sleeps (the backend's added delay) wait until the test opens the gate. */
function gatedClock(): { clock: Clock; sleeping: Promise<void>; open: () => void } {
  const sleeping = Promise.withResolvers<void>();
  const gate = Promise.withResolvers<void>();
  return {
    clock: {
      now: () => 0,
      sleep: () => {
        sleeping.resolve();
        return gate.promise;
      },
    },
    sleeping: sleeping.promise,
    open: gate.resolve,
  };
}

Deno.test("drain lets an in-flight request finish", async () => {
  const gated = gatedClock();
  await using cluster = await startCluster(1, [], gated.clock);
  const [backend] = cluster.backends;
  assert(backend !== undefined);
  backend.setDelay(1);

  const inFlight = fetch(cluster.balancer.url);
  await gated.sleeping;
  assertEquals(cluster.balancer.pool.inFlight, 1);
  const healthBefore = await fetch(new URL("/health", cluster.balancer.adminUrl));
  await healthBefore.body?.cancel();
  assertEquals(healthBefore.status, 200);

  const drained = cluster.balancer.drain();
  gated.open();
  const response = await inFlight;
  assertEquals(response.status, 200);
  assertStringIncludes(await response.text(), "8080");
  assertEquals(await drained, true);
});
