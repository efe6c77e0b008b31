/**
 * Retries and timeouts end to end: the connect timeout against a backend that never completes
 * a handshake (a listener on 127.0.0.1 whose one-slot accept queue is full), the idle-body
 * timeout against a backend that stalls mid-body, and the retry budget against a pool that
 * fails every request.
 */
import { DEFAULTS } from "../support/settings.ts";
import { Metrics } from "../../lib/core/metrics.ts";
import { Pool } from "../../lib/core/pool.ts";
import { createHttp1Client } from "../../lib/upstream/http1.ts";
import { UPSTREAMS } from "../../lib/config/settings.ts";
import { assert, assertEquals, assertInstanceOf, assertRejects } from "../support/assert.ts";
import { captureLogs } from "../support/capture_logs.ts";
import { FakeClock } from "../support/fake_clock.ts";
import {
  captureAccessLog,
  signal,
  startBalancer,
  startServer,
  type TestServer,
} from "../support/servers.ts";

const encoder = new TextEncoder();

/**
 * A backend address whose connects never complete: a listener with a backlog of 0 that never
 * accepts, its single queue slot taken by a connection of our own, so the kernel drops every
 * later SYN and the connecting side waits (traffic stays on 127.0.0.1).
 */
async function startBlackhole(): Promise<{ url: string } & AsyncDisposable> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0, tcpBacklog: 0 });
  const { port } = listener.addr;
  const filler = await Deno.connect({ hostname: "127.0.0.1", port });
  return {
    url: `http://127.0.0.1:${port}`,
    [Symbol.asyncDispose]: () => {
      filler.close();
      listener.close();
      return Promise.resolve();
    },
  };
}

/**
 * A backend that fails every request after reading it: it closes the connection without an
 * answer (a broken response, retryable for a GET). Counts the connections it got.
 */
function startSickBackend(): { url: string; readonly attempts: number } & AsyncDisposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let attempts = 0;
  const serving = (async () => {
    for await (const conn of listener) {
      attempts++;
      conn.read(new Uint8Array(4096)).finally(() => conn.close()).catch(() => {});
    }
  })();
  return {
    url: `http://127.0.0.1:${listener.addr.port}`,
    get attempts() {
      return attempts;
    },
    [Symbol.asyncDispose]: async () => {
      listener.close();
      await serving.catch(() => {});
    },
  };
}

/** A backend whose `/stall` sends headers and one chunk, then waits for `release`. */
function startStallingBackend(release: Promise<void>): TestServer {
  return startServer((request) => {
    const path = new URL(request.url).pathname;
    if (path === "/never") {
      return new Promise<Response>((resolve) => {
        request.signal.addEventListener("abort", () => resolve(new Response(null)));
      });
    }
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent === 1) await release;
        controller.enqueue(encoder.encode(`part${sent}.`));
        if (++sent === 2) controller.close();
      },
      cancel() {},
    });
    return new Response(body);
  });
}

Deno.test("http1 client fails a connect that outlasts connectTimeoutMs as a timed-out connect", async () => {
  await using blackhole = await startBlackhole();
  const clock = new FakeClock();
  using client = createHttp1Client({ ...DEFAULTS.proxy, connectTimeoutMs: 1_000, clock });
  const pending = client.fetch(`${blackhole.url}/`);
  let isSettled = false;
  pending.then(() => isSettled = true, () => isSettled = true);
  await clock.advance(999);
  assertEquals(isSettled, false);
  await clock.advance(1);
  const error = await assertRejects(() => pending, TypeError, "fetch failed");
  assertInstanceOf(error.cause, Error);
  assert(error.cause.message.startsWith("client error (Connect): connection timed out"));
  assertInstanceOf(error.cause.cause, Deno.errors.TimedOut);
});

Deno.test("a connect timeout is retried on another backend; alone it is a 504 naming the timeout [http1]", async () => {
  await using logs = await captureLogs({ level: "warning" });
  await using blackhole = await startBlackhole();
  await using live = startServer(() => new Response("from live"));
  const access = captureAccessLog();
  await using lb = startBalancer([blackhole.url, live.url], {
    upstream: "http1",
    connectTimeoutMs: 100,
    retries: 1,
    accessLog: access.sink,
  });
  // Round-robin starts with the blackhole; the request never left, so even a POST goes again.
  const response = await fetch(lb.url, { method: "POST", body: "order=1" });
  assertEquals(await response.text(), "from live");
  assertEquals(lb.metrics.retryCount, 1);
  assertEquals(lb.metrics.eventCount("connect-timeout"), 1);
  const [failure] = logs.find("Backend request failed");
  assertEquals(failure?.properties.reason, "connect-timeout");
  assertEquals(failure?.properties.backend, lb.pool.backends[0]?.name);

  await using alone = startBalancer([blackhole.url], {
    upstream: "http1",
    connectTimeoutMs: 100,
    accessLog: access.sink,
  });
  const timedOut = await fetch(alone.url);
  await timedOut.body?.cancel();
  assertEquals(timedOut.status, 504);
  assertEquals(access.find("failed").map((record) => record.reason), ["connect-timeout"]);
  assertEquals(alone.metrics.eventCount("connect-timeout"), 1);
});

Deno.test("with the fetch upstream connecting counts toward the response-header timeout", async () => {
  await using blackhole = await startBlackhole();
  const access = captureAccessLog();
  // Deno's fetch has no connect hook: --connect-timeout cannot fire, --timeout does.
  await using lb = startBalancer([blackhole.url], {
    upstream: "fetch",
    connectTimeoutMs: 50,
    timeoutMs: 300,
    accessLog: access.sink,
  });
  const response = await fetch(lb.url);
  await response.body?.cancel();
  assertEquals(response.status, 504);
  assertEquals(access.find("failed").map((record) => record.reason), ["response-timeout"]);
  assertEquals(lb.metrics.eventCount("response-timeout"), 1);
  assertEquals(lb.metrics.eventCount("connect-timeout"), 0);
});

for (const upstream of UPSTREAMS) {
  Deno.test(`the idle-body timeout cuts a stalled response body and names the backend [${upstream}]`, async () => {
    await using logs = await captureLogs({ level: "warning" });
    const release = signal();
    await using backend = startStallingBackend(release.promise);
    await using lb = startBalancer([backend.url], { upstream, idleBodyTimeoutMs: 100 });
    try {
      const response = await fetch(new URL("/stall", lb.url));
      assertEquals(response.status, 200);
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      const first = await reader.read();
      assertEquals(new TextDecoder().decode(first.value), "part0.");
      // The backend says nothing more: the balancer cuts the stream, the client sees an error.
      await assertRejects(async () => {
        for (;;) if ((await reader.read()).done) return;
      }, Error);
      const [stalled] = logs.find("Backend response body stalled; cut the client's response");
      assertEquals(stalled?.properties.backend, lb.pool.backends[0]?.name);
      assertEquals(stalled?.properties.reason, "idle-body-timeout");
      assertEquals(lb.metrics.eventCount("idle-body-timeout"), 1);
    } finally {
      release.resolve();
    }
  });

  Deno.test(`a response body may pause for long when the idle-body timeout is off [${upstream}]`, async () => {
    const release = signal();
    await using backend = startStallingBackend(release.promise);
    await using lb = startBalancer([backend.url], { upstream, timeoutMs: 300 });
    const response = await fetch(new URL("/stall", lb.url));
    // A 300 ms response-header timeout firing on another request proves the pause lasted
    // longer than that.
    const timedOut = await fetch(new URL("/never", lb.url));
    await timedOut.body?.cancel();
    assertEquals(timedOut.status, 504);
    release.resolve();
    assertEquals(await response.text(), "part0.part1.");
    assertEquals(lb.metrics.eventCount("idle-body-timeout"), 0);
  });
}

Deno.test("the retry budget caps the attempts a failing pool receives", async () => {
  await using logs = await captureLogs({ level: "warning" });
  await using a = startSickBackend();
  await using b = startSickBackend();
  await using c = startSickBackend();
  const requests = 200;
  const concurrency = 10;
  await using lb = startBalancer([a.url, b.url, c.url], {
    retries: 2,
    retryBudgetPercent: 20,
    retryBudgetMinPerSecond: 0,
  });
  let next = 0;
  const statuses: number[] = [];
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < requests) {
      next++;
      const response = await fetch(lb.url);
      await response.body?.cancel();
      statuses.push(response.status);
    }
  }));
  const attempts = a.attempts + b.attempts + c.attempts;
  const retries = lb.metrics.retryCount;
  // Without a budget every request would make 3 attempts (600); 20% allows 40 retries.
  assertEquals(statuses.filter((status) => status === 502).length, requests);
  assert(retries <= requests * 0.2, `retries ${retries}`);
  assert(retries >= requests * 0.2 - concurrency, `retries ${retries}`);
  assertEquals(attempts, requests + retries);
  assert(lb.metrics.eventCount("retry-budget-exhausted") >= requests - retries - concurrency);
  // Logged at most once a second, not once per refusal.
  const exhausted = logs.find("Retry budget exhausted; answering the failure without a retry");
  assert(exhausted.length >= 1 && exhausted.length <= 3, `${exhausted.length} records`);
  // deno-lint-ignore no-console
  console.log(`budget: ${requests} requests, ${attempts} attempts, ${retries} retries`);
});

Deno.test("retry budget refusals and backend timeouts survive the cross-isolate merge", () => {
  const pool = new Pool([]);
  const worker = new Metrics(pool);
  worker.recordEvent("retry-budget-exhausted");
  worker.recordEvent("connect-timeout");
  worker.recordEvent("idle-body-timeout");
  worker.recordEvent("idle-body-timeout");
  const main = new Metrics(pool);
  main.absorb("worker-1", structuredClone(worker.exportState()));
  const text = main.render();
  assert(text.includes("denolb_retry_budget_exhausted_total 1\n"), text);
  assert(text.includes('denolb_backend_timeouts_total{timeout="connect"} 1\n'));
  assert(text.includes('denolb_backend_timeouts_total{timeout="idle-body"} 2\n'));
  assert(text.includes('denolb_backend_timeouts_total{timeout="response"} 0\n'));
});
