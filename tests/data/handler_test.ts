import { DEFAULTS, settingsWith } from "../support/settings.ts";
import { getLogger } from "@logtape/logtape";
import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import type { BalancerConfig } from "../../lib/config/config.ts";
import { createHandler } from "../../lib/data/handler.ts";
import { Metrics } from "../../lib/core/metrics.ts";
import { createRoundRobin } from "../../lib/policies/round_robin.ts";
import type { Policy } from "../../lib/policies/registry.ts";
import { Pool } from "../../lib/core/pool.ts";
import { createUpstreamClient } from "../../lib/data/proxy.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../support/assert.ts";
import { captureLogs } from "../support/capture_logs.ts";
import { FakeClock } from "../support/fake_clock.ts";
import {
  captureAccessLog,
  startBalancer,
  startServer,
  type TestServer,
} from "../support/servers.ts";

/** Three backends that answer with their own index. */
function startThree(): TestServer[] {
  return [0, 1, 2].map((index) => startServer(() => new Response(String(index))));
}

async function closeAll(servers: readonly TestServer[]): Promise<void> {
  await Promise.all(servers.map((server) => server.close()));
}

Deno.test("handler spreads 30 requests over 3 backends 10/10/10", async () => {
  const backends = startThree();
  try {
    await using lb = startBalancer(backends.map((backend) => backend.url));
    const counts = [0, 0, 0];
    for (let i = 0; i < 30; i++) {
      const response = await fetch(lb.url);
      const index = Number(await response.text());
      counts[index] = (counts[index] ?? 0) + 1;
    }
    assertEquals(counts, [10, 10, 10]);
    assertEquals(lb.pool.backends.map((backend) => backend.requests), [10, 10, 10]);
  } finally {
    await closeAll(backends);
  }
});

Deno.test("handler skips unhealthy backends", async () => {
  const backends = startThree();
  try {
    await using lb = startBalancer(backends.map((backend) => backend.url), { unhealthy: [1] });
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) seen.push(await (await fetch(lb.url)).text());
    assertEquals(seen, ["0", "2", "0", "2"]);
  } finally {
    await closeAll(backends);
  }
});

Deno.test("handler answers 503 with Retry-After when no backend is healthy", async () => {
  const backends = startThree();
  try {
    await using lb = startBalancer(backends.map((backend) => backend.url), {
      unhealthy: [0, 1, 2],
      retryAfterSeconds: 5,
    });
    const response = await fetch(lb.url);
    const body = await response.text();
    assertEquals(response.status, 503);
    assertEquals(response.headers.get("retry-after"), "5");
    assertEquals(response.headers.get("content-type"), "text/plain; charset=utf-8");
    assert(body.length < 100, `body is not short: ${body}`);
    assertEquals(lb.metrics.noBackendCount, 1);
  } finally {
    await closeAll(backends);
  }
});

/** Trusts the test client's address, so its X-Request-Id is adopted. */
const TRUST_LOOPBACK = (c: BalancerConfig): BalancerConfig => ({
  ...c,
  proxy: { ...c.proxy, trustedProxies: ["127.0.0.1"] },
});

Deno.test("handler keeps a trusted proxy's X-Request-Id and makes one when absent", async () => {
  const ids: (string | null)[] = [];
  await using backend = startServer((request) => {
    ids.push(request.headers.get("x-request-id"));
    return new Response("ok");
  });
  await using lb = startBalancer([backend.url], { config: TRUST_LOOPBACK });
  await (await fetch(lb.url, { headers: { "x-request-id": "client-42" } })).body?.cancel();
  await (await fetch(lb.url)).body?.cancel();
  await (await fetch(lb.url)).body?.cancel();
  assertEquals(ids[0], "client-42");
  assertMatch(ids[1] ?? "", /^[0-9a-f]{8}-[0-9a-z]+$/);
  assert(ids[1] !== ids[2], "generated IDs repeat");
});

Deno.test("handler replaces an untrusted peer's X-Request-Id with one of its own", async () => {
  const ids: (string | null)[] = [];
  await using backend = startServer((request) => {
    ids.push(request.headers.get("x-request-id"));
    return new Response("ok");
  });
  await using lb = startBalancer([backend.url]);
  await (await fetch(lb.url, { headers: { "x-request-id": "client-42" } })).body?.cancel();
  assertMatch(ids[0] ?? "", /^[0-9a-f]{8}-[0-9a-z]+$/);
});

Deno.test("handler writes one access record per request", async () => {
  const access = captureAccessLog();
  await using backend = startServer(() => new Response("ok", { status: 201 }));
  await using lb = startBalancer([backend.url], {
    accessLog: access.sink,
    config: TRUST_LOOPBACK,
  });
  const response = await fetch(new URL("/orders?secret=1", lb.url), {
    method: "POST",
    body: "x",
    headers: { "x-request-id": "req-1" },
  });
  await response.body?.cancel();
  assertEquals(access.records.length, 1);
  const record = access.find("forwarded")[0];
  assertEquals(record?.method, "POST");
  assertEquals(record?.path, "/orders");
  assertEquals(record?.query, "?secret=1");
  assertEquals(record?.backend, lb.pool.backends[0]?.name);
  assertEquals(record?.status, 201);
  assertEquals(record?.bytes, 2);
  assertEquals(record?.client, "127.0.0.1");
  assertEquals(record?.requestId, "req-1");
  assert(typeof record?.durationMs === "number");
  assert(typeof record?.backendMs === "number");
});

Deno.test("handler writes a failed request's access record and a WARN for the backend", async () => {
  await using logs = await captureLogs({ level: "info" });
  const access = captureAccessLog();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadUrl = `http://127.0.0.1:${listener.addr.port}`;
  listener.close();
  await using lb = startBalancer([deadUrl], { accessLog: access.sink });
  await (await fetch(lb.url)).body?.cancel();
  const records = access.find("failed");
  assertEquals(records.length, 1);
  assertEquals(records[0]?.status, 502);
  assertEquals(records[0]?.reason, "connect");
  assertEquals(logs.find("Backend request failed", "warning")[0]?.properties.reason, "connect");
});

Deno.test("handler answers 502 and logs an error when something throws", async () => {
  await using logs = await captureLogs({ level: "info" });
  const pool = new Pool([new Backend(parseBackendUrl("127.0.0.1:1"))]);
  const broken: Policy = {
    name: "round-robin",
    pick: () => {
      throw new Error("policy bug with internal detail");
    },
  };
  using client = createUpstreamClient(DEFAULTS.proxy);
  await using lb = startServer(createHandler({
    pool,
    policy: broken,
    client,
    logger: getLogger(["denolb", "proxy"]),
    metrics: new Metrics(pool.backends),
    settings: settingsWith({ proxy: { timeoutMs: 1000, retries: 0 } }),
  }));
  const response = await fetch(lb.url);
  const body = await response.text();
  assertEquals(response.status, 502);
  assert(!body.includes("internal detail"), `body leaks the error: ${body}`);
  assertEquals(logs.find("Request handling failed", "error").length, 1);
});

Deno.test("handler ends the in-flight count once the response is delivered", async () => {
  await using backend = startServer(() => new Response("x".repeat(100_000)));
  const lb = startBalancer([backend.url]);
  try {
    for (let i = 0; i < 3; i++) assertEquals((await (await fetch(lb.url)).text()).length, 100_000);
  } finally {
    await lb.close();
  }
  assertEquals(lb.pool.backends[0]?.inFlight, 0);
  assertEquals(lb.pool.backends[0]?.requests, 3);
});

Deno.test("handler times out response headers on the injected clock", async () => {
  const clock = new FakeClock();
  const arrived = Promise.withResolvers<void>();
  const backendSawAbort = Promise.withResolvers<void>();
  await using backend = startServer((request) => {
    if (new URL(request.url).pathname === "/fast") return new Response("fast");
    arrived.resolve();
    return new Promise<Response>((resolve) => {
      request.signal.addEventListener("abort", () => {
        backendSawAbort.resolve();
        resolve(new Response("too late"));
      });
    });
  });
  const pool = new Pool([new Backend(parseBackendUrl(backend.url.href))]);
  using client = createUpstreamClient(DEFAULTS.proxy);
  await using lb = startServer(createHandler({
    pool,
    policy: createRoundRobin(),
    client,
    logger: getLogger(["denolb", "proxy"]),
    metrics: new Metrics(pool.backends),
    settings: settingsWith({ proxy: { timeoutMs: 60_000, retries: 0 } }),
    clock,
  }));
  // A finished request's deadline is cancelled: no timer stays armed and time passing is harmless.
  const fast = await fetch(new URL("/fast", lb.url));
  assertEquals(await fast.text(), "fast");
  assertEquals(clock.pendingSleeps, 0);
  await clock.advance(120_000);

  const pending = fetch(new URL("/slow", lb.url));
  await arrived.promise;
  await clock.advance(59_999);
  await clock.advance(1);
  const response = await pending;
  assertEquals(response.status, 504);
  assertStringIncludes(await response.text(), "Gateway timeout");
  await backendSawAbort.promise;
  assertEquals(clock.pendingSleeps, 0);
  assertEquals(pool.backends[0]?.inFlight, 0);
});
