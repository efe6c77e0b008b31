/**
 * Fault cases with exact counts against the real balancer (`startBalancer`, real config from
 * flags): slow clients are cut off while others are served, and a backend killed under GET and
 * POST load fails no request that never reached it.
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { startBalancer } from "../../lib/control/balancer.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { startServer } from "../support/servers.ts";
import { waitUntil } from "../support/wait.ts";

const encoder = new TextEncoder();

async function balancerFor(backends: readonly URL[], extra: readonly string[], clock?: FakeClock) {
  const config = await parseBalancerArgs(
    [
      "--port",
      "0",
      "--admin",
      "off",
      "--health-interval",
      "1h",
      "--log-level",
      "error",
      "--access-log",
      "off",
      "--backend",
      backends.map((u) => u.href).join(","),
      ...extra,
    ],
    () => undefined,
  );
  return startBalancer(config, clock === undefined ? {} : { clock });
}

/** Resolves when the server closes `conn` (read returns end or fails). */
async function closedByServer(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(1024);
  try {
    while ((await conn.read(buffer)) !== null) {
      // discard
    }
  } catch {
    // reset counts as closed
  }
  conn.close();
}

Deno.test("slowloris connections are cut at the header timeout while other clients are served", async () => {
  await using backend = startServer(() => new Response("ok"));
  const clock = new FakeClock();
  await using lb = await balancerFor([backend.url], ["--header-timeout", "5s"], clock);
  const port = Number(lb.url.port);
  const slow: Deno.Conn[] = [];
  for (let i = 0; i < 5; i++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: a\r\nX-Trickle: "));
    slow.push(conn);
  }
  const closed = slow.map(closedByServer);
  // Time starts for a connection when the balancer accepts it.
  await waitUntil(`${slow.length} open connections`, async () => {
    await settle();
    return lb.connectionCount >= slow.length;
  });
  // A byte a "second" keeps none of them alive: the head must be complete in time.
  for (let second = 0; second < 4; second++) {
    for (const conn of slow) await conn.write(encoder.encode("x"));
    await clock.advance(1_000);
  }
  let served = 0;
  for (let i = 0; i < 20; i++) {
    const response = await fetch(lb.url);
    if ((await response.text()) === "ok") served++;
  }
  assertEquals(served, 20);
  await clock.advance(1_000);
  await Promise.all(closed);
  assertEquals(lb.metrics.eventCount("header-timeout"), 5);
});

Deno.test("a backend killed under GET and POST load fails no request that never reached it", async () => {
  const TOTAL = 600;
  const CONCURRENCY = 24;
  const healthy = [0, 1].map(() =>
    startServer(async (request) => {
      await request.arrayBuffer();
      return new Response("ok");
    })
  );
  // The victim records every request it received, then is killed hard: every connection
  // closed at once, mid-request or not.
  const kill = new AbortController();
  const received = new Set<string>();
  const victim = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: kill.signal, onListen: () => {} },
    async (request) => {
      received.add(request.headers.get("x-request-id") ?? "");
      await request.arrayBuffer();
      await new Promise((resolve) => setTimeout(resolve, 2));
      return new Response("ok");
    },
  );
  const victimUrl = new URL(`http://127.0.0.1:${victim.addr.port}/`);
  try {
    await using lb = await balancerFor(
      [healthy[0]?.url, victimUrl, healthy[1]?.url].filter((u): u is URL => u !== undefined),
      // Requests are told apart by the X-Request-Id they send: trust it.
      ["--retries", "2", "--trusted-proxies", "127.0.0.1"],
    );
    let next = 0;
    let done = 0;
    const failed: Array<{ id: string; method: string; status: number }> = [];
    const worker = async () => {
      while (next < TOTAL) {
        const i = next++;
        const method = i % 2 === 0 ? "GET" : "POST";
        const id = `req-${i}`;
        const response = await fetch(new URL(`/item/${i}`, lb.url), {
          method,
          headers: { "x-request-id": id },
          ...(method === "POST" ? { body: `order=${i}` } : {}),
        });
        const text = await response.text();
        if (response.status !== 200 || text !== "ok") {
          failed.push({ id, method, status: response.status });
        }
        if (++done === TOTAL / 3) kill.abort();
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await victim.finished.catch(() => {});
    assertEquals(done, TOTAL);
    // Only a POST that was inside the victim when it died may fail (it is not idempotent).
    const unexplained = failed.filter((f) => f.method === "GET" || !received.has(f.id));
    assertEquals(unexplained, []);
  } finally {
    kill.abort();
    await Promise.all(healthy.map((s) => s.close()));
  }
});

Deno.test("LF-only chunk lines end in 408 at the body timeout, never blamed on a backend", async () => {
  let hits = 0;
  await using backend = startServer((request) => {
    if (new URL(request.url).pathname !== "/health") hits++;
    return new Response("ok");
  });
  const clock = new FakeClock();
  await using lb = await balancerFor([backend.url], ["--body-timeout", "30s"], clock);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(lb.url.port) });
  await conn.write(
    encoder.encode(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\nhello\n0\n\n",
    ),
  );
  const answer = (async () => {
    const chunks: string[] = [];
    const buffer = new Uint8Array(1024);
    for (;;) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) break;
      chunks.push(new TextDecoder().decode(buffer.subarray(0, n)));
    }
    conn.close();
    return chunks.join("");
  })();
  // Deno's HTTP server waits for a proper chunk line; the balancer's body timeout ends it.
  let isAnswered = false;
  answer.then(() => isAnswered = true);
  let waitedMs = 0;
  while (!isAnswered && waitedMs < 120_000) {
    await clock.advance(1_000);
    waitedMs += 1_000;
  }
  const text = await answer;
  assert(waitedMs >= 30_000, `answered after ${waitedMs} ms`);
  assertEquals(text.split("\r\n")[0], "HTTP/1.1 408 Request Timeout");
  assertEquals(hits, 0);
  assertEquals(lb.pool.backends[0]?.failures, 0);
});
