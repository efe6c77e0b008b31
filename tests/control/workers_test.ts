/**
 * `lb --workers 2`: two data-plane isolates on one address, one control plane. Health flips
 * reach both, counts and histograms add up in one view, drain stops both.
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { startBalancer } from "../../lib/control/balancer.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { startServer } from "../support/servers.ts";
import { waitUntil } from "../support/wait.ts";

const MAIN = new URL("../../main.ts", import.meta.url);

Deno.test("--workers 2 serves from two isolates with one health owner and one coherent view", async () => {
  let isUp = true;
  const hits = { a: 0, b: 0 };
  await using a = startServer((request) => {
    if (new URL(request.url).pathname === "/health") {
      return new Response(null, { status: isUp ? 200 : 503 });
    }
    hits.a++;
    return new Response("a");
  });
  await using b = startServer((request) => {
    if (new URL(request.url).pathname !== "/health") hits.b++;
    return new Response("b");
  });
  const clock = new FakeClock();
  const config = await parseBalancerArgs([
    "--port",
    "0",
    "--admin",
    "127.0.0.1:0",
    "--workers",
    "2",
    "--fall",
    "1",
    "--health-interval",
    "1s",
    "--log-level",
    "error",
    "--access-log",
    "off",
    "--backend",
    `${a.url.href},${b.url.href}`,
  ], () => undefined);
  const lb = await startBalancer(config, { clock, workerEntry: MAIN });
  try {
    assertEquals(lb.isolateCount, 2);
    await lb.health.firstRound;
    // Separate connections, so the kernel can spread them over both listeners.
    const N = 40;
    for (let i = 0; i < N; i++) {
      const response = await fetch(lb.url, { headers: { connection: "close" } });
      assert(["a", "b"].includes(await response.text()));
    }
    assertEquals(hits.a + hits.b, N);
    assert(hits.a > 0 && hits.b > 0, `both backends served: ${JSON.stringify(hits)}`);

    // The control plane probes; the flip reaches every isolate before the next request.
    isUp = false;
    await clock.advance(1_000);
    await waitUntil("the first backend to turn unhealthy", async () => {
      await clock.advance(0);
      return lb.pool.backends[0]?.isHealthy !== true;
    });
    const before = hits.a;
    for (let i = 0; i < 20; i++) {
      const response = await fetch(lb.url, { headers: { connection: "close" } });
      assertEquals(await response.text(), "b");
    }
    assertEquals(hits.a, before);

    // Reports arrive a few times a second; wait for every request to be counted.
    assert(lb.adminUrl !== undefined);
    const adminUrl = lb.adminUrl;
    let metrics = "";
    await waitUntil(`${N + 20} requests in /metrics`, async () => {
      metrics = await (await fetch(new URL("/metrics", adminUrl))).text();
      const total = [...metrics.matchAll(/^denolb_requests_total\{[^}]*\} (\d+)$/gm)]
        .reduce((sum, m) => sum + Number(m[1]), 0);
      return total >= N + 20;
    }, { intervalMs: 50 });
    assertMatch(
      metrics,
      new RegExp(`denolb_request_duration_seconds_count\\{backend="127.0.0.1:${b.port}"\\} \\d+`),
    );
    const status = await (await fetch(new URL("/status", lb.adminUrl))).json();
    assertEquals(status.isolates.map((i: { id: string }) => i.id), ["w1", "w2"]);
    assertEquals(status.backends[0].health, "unhealthy");
    assertEquals(status.backends[0].requests + status.backends[1].requests, N + 20);
  } finally {
    assertEquals(await lb.drain(), true);
  }
});
