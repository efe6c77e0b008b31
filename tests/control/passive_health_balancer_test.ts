/**
 * Passive health end to end: the real balancer in front of real backends, probes that never run
 * on their own (a long interval on a fake clock), a backend killed between probes. It gets at
 * most `--outlier-failures` attempts before it is ejected, every request still succeeds, and it
 * returns after its ejection time once its probes pass. Also with `--workers 2`.
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { type RunningBalancer, startBalancer } from "../../lib/control/balancer.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { captureLogs } from "../support/capture_logs.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { startServer, type TestServer } from "../support/servers.ts";
import { waitUntil } from "../support/wait.ts";

const MAIN = new URL("../../main.ts", import.meta.url);

/** A backend answering its name, with a passing `/health`. */
function namedBackend(name: string, port = 0): TestServer {
  const handler = (request: Request) =>
    new URL(request.url).pathname === "/health"
      ? new Response("ok")
      : new Response(name, { headers: { "x-backend": name } });
  if (port === 0) return startServer(handler);
  // The same port again: the backend restarted where the balancer knows it.
  const server = Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, handler);
  const close = () => server.shutdown();
  return {
    url: new URL(`http://127.0.0.1:${port}/`),
    port,
    close,
    [Symbol.asyncDispose]: close,
  };
}

async function balancerArgs(
  backends: readonly TestServer[],
  extra: readonly string[],
): Promise<ReturnType<typeof parseBalancerArgs>> {
  return await parseBalancerArgs([
    "--port",
    "0",
    "--admin",
    "127.0.0.1:0",
    "--health-interval",
    "1h",
    "--rise",
    "1",
    "--fall",
    "1",
    "--retries",
    "2",
    "--outlier-failures",
    "3",
    "--outlier-ejection",
    "10s",
    "--access-log",
    "off",
    "--backend",
    backends.map((b) => b.url.href).join(","),
    ...extra,
  ], () => undefined);
}

/** Sends `count` GETs one after another; returns each answer's body, or its status. */
async function sendGets(lb: RunningBalancer, count: number, close = false): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < count; i++) {
    const response = await fetch(lb.url, close ? { headers: { connection: "close" } } : {});
    const body = await response.text();
    seen.push(response.status === 200 ? body : String(response.status));
  }
  return seen;
}

function tally(values: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}

for (const upstream of ["fetch", "http1"] as const) {
  Deno.test(`passive health (--upstream ${upstream}): a backend killed between probes gets at most 3 attempts, then returns when its probes pass`, async () => {
    await using logs = await captureLogs({ level: "info" });
    await using a = namedBackend("a");
    let b = namedBackend("b");
    await using c = namedBackend("c");
    const clock = new FakeClock();
    const lb = await startBalancer(await balancerArgs([a, b, c], ["--upstream", upstream]), {
      clock,
    });
    try {
      await lb.health.firstRound;
      const dead = lb.pool.backends[1];
      assert(dead !== undefined);
      assertEquals(tally(await sendGets(lb, 6)), { a: 2, b: 2, c: 2 });

      await b.close();
      const during = await sendGets(lb, 30);
      assertEquals(Object.keys(tally(during)).sort(), ["a", "c"], "every request answered 200");
      assertEquals(dead.isEjected, true);
      assertEquals(dead.isHealthy, true, "no probe ran: active health still says healthy");
      assert(dead.failures <= 3, `the dead backend got ${dead.failures} attempts`);
      assertEquals(dead.failures, 3, "each failed attempt counted");
      assertEquals(lb.metrics.retryCount, 3, "each failed attempt was retried elsewhere");

      const ejected = logs.find("Backend ejected", "warning");
      assertEquals(ejected.length, 1, "the ejection is logged once");
      assertEquals(ejected[0]?.properties.reason, "connect");
      assertEquals(ejected[0]?.properties.ejections, 1);
      assert(lb.adminUrl !== undefined);
      const status = await (await fetch(new URL("/status", lb.adminUrl))).json();
      assertEquals(status.healthy, 2);
      assertEquals(status.backends[1].ejected.count, 1);
      assertEquals(status.backends[1].ejected.reason, "connect");
      assert(status.backends[1].ejected.untilMs > Date.now(), "ejected until a later time");
      const metrics = await (await fetch(new URL("/metrics", lb.adminUrl))).text();
      assertMatch(metrics, new RegExp(`denolb_backend_ejected\\{backend="${dead.name}"\\} 1`));
      assertMatch(
        metrics,
        new RegExp(`denolb_outlier_ejections_total\\{backend="${dead.name}"\\} 1`),
      );

      // The ejection ends while the backend is still down: its probe fails, it stays out.
      await clock.advance(10_000);
      assertEquals(dead.isEjected, false);
      assertEquals(logs.find("Backend returned from ejection", "info").length, 1);
      await lb.health.checkNow();
      assertEquals([dead.isHealthy, dead.isAvailable], [false, false]);
      assertEquals(tally(await sendGets(lb, 4)), { a: 2, c: 2 });

      // Back up: the next probe passes and it takes its turn again.
      b = namedBackend("b", b.port);
      await lb.health.checkNow();
      assertEquals(dead.isAvailable, true);
      assertEquals(tally(await sendGets(lb, 6)), { a: 2, b: 2, c: 2 });
      assertEquals(logs.find("Backend ejected").length, 1, "no second ejection");
    } finally {
      await lb.drain();
      await b.close();
    }
  });
}

Deno.test("passive health: at most half the pool is ejected; the rest keeps failing over", async () => {
  await using logs = await captureLogs({ level: "info" });
  await using a = namedBackend("a");
  const b = namedBackend("b");
  const lb = await startBalancer(await balancerArgs([a, b], []), { clock: new FakeClock() });
  try {
    await lb.health.firstRound;
    await b.close();
    assertEquals(tally(await sendGets(lb, 10)), { a: 10 });
    assertEquals(lb.pool.backends[1]?.isEjected, true);
    await a.close();
    const answers = await sendGets(lb, 8);
    assertEquals(tally(answers), { "502": 8 }, "the last backend is not ejected: 502, not 503");
    assertEquals(lb.pool.backends[0]?.isEjected, false);
    assertEquals(
      logs.find("Backend not ejected: the most of the pool is ejected already").length,
      1,
    );
  } finally {
    await lb.drain();
  }
});

Deno.test("passive health with --workers 2: one ejection state in the control plane, published to both isolates", async () => {
  await using a = namedBackend("a");
  const b = namedBackend("b");
  await using c = namedBackend("c");
  const clock = new FakeClock();
  const lb = await startBalancer(
    await balancerArgs([a, b, c], ["--workers", "2", "--log-level", "error"]),
    { clock, workerEntry: MAIN },
  );
  try {
    assertEquals(lb.isolateCount, 2);
    await lb.health.firstRound;
    const dead = lb.pool.backends[1];
    assert(dead !== undefined);
    await b.close();
    // Separate connections, so both isolates serve; every answer is 200 from a live backend.
    const during = await sendGets(lb, 30, true);
    assertEquals(Object.keys(tally(during)).sort(), ["a", "c"]);
    // The workers relay their failures to the control plane, which ejects.
    await waitUntil("the dead backend's ejection", async () => {
      await clock.advance(0);
      return dead.isEjected;
    });
    const after = await sendGets(lb, 10, true);
    assertEquals(Object.keys(tally(after)).sort(), ["a", "c"]);
    await clock.advance(10_000);
    assertEquals(dead.isEjected, false, "returned after its ejection time");
  } finally {
    assertEquals(await lb.drain(), true);
    await b.close();
  }
  // The workers' last reports arrived with the drain: attempts at the dead backend, all isolates.
  const attempts = lb.pool.backends[1]?.failures ?? 0;
  assert(attempts >= 3 && attempts <= 6, `the dead backend got ${attempts} attempts`);
});
