/**
 * The admin API on its own listener, through the real `startBalancer`: nothing under `/_lb/`
 * is special on the proxy port any more; status, metrics, health and drain live on the admin
 * port, behind a bearer token when one is set.
 */
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { type RunningBalancer, startBalancer } from "../../lib/control/balancer.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { startServer, type TestServer } from "../support/servers.ts";
import { waitUntil } from "../support/wait.ts";

const TOKEN = "admin-token-0123456789";

async function startWith(backends: readonly TestServer[], extra: readonly string[] = []) {
  const config = await parseBalancerArgs([
    "--port",
    "0",
    "--admin",
    "127.0.0.1:0",
    "--health-interval",
    "1h",
    "--log-level",
    "fatal",
    "--access-log",
    "off",
    "--backend",
    backends.map((b) => b.url.href).join(","),
    ...extra,
  ], () => undefined);
  return startBalancer(config);
}

function adminUrl(lb: RunningBalancer, path: string): URL {
  assert(lb.adminUrl !== undefined, "the admin listener is on");
  return new URL(path, lb.adminUrl);
}

function named(name: string) {
  return startServer((request) => {
    const path = new URL(request.url).pathname;
    return new Response(path === "/health" ? "up" : `${name} ${path}`);
  });
}

Deno.test("the proxy port forwards /_lb/ paths to a backend like any other path", async () => {
  await using backend = named("a");
  await using lb = await startWith([backend]);
  assert(lb.adminUrl !== undefined && lb.adminUrl.port !== lb.url.port);
  const response = await fetch(new URL("/_lb/status", lb.url));
  assertEquals(await response.text(), "a /_lb/status");
});

Deno.test("admin /health is 200, then 503 while draining", async () => {
  await using backend = named("a");
  const lb = await startWith([backend]);
  const healthy = await fetch(adminUrl(lb, "/health"));
  assertEquals([healthy.status, await healthy.text()], [200, "ok\n"]);
  const drained = lb.drain();
  // The admin listener stays up until the drain ends, answering 503 meanwhile.
  const draining = await fetch(adminUrl(lb, "/health")).catch(() => undefined);
  if (draining !== undefined) {
    assertEquals([draining.status, await draining.text()], [503, "draining\n"]);
  }
  assertEquals(await drained, true);
});

Deno.test("admin /status and /backends report every backend's state and latency", async () => {
  await using a = named("a");
  await using b = named("b");
  await using lb = await startWith([a, b]);
  for (let i = 0; i < 4; i++) await (await fetch(lb.url)).text();
  const response = await fetch(adminUrl(lb, "/status"));
  assertEquals(response.headers.get("content-type"), "application/json");
  const status = await response.json();
  assertEquals(status.draining, false);
  assertEquals(status.healthy, 2);
  assertEquals(typeof status.atMs, "number");
  assertEquals(status.backends.length, 2);
  const first = status.backends[0];
  assertEquals(
    { ...first, p50Ms: typeof first.p50Ms, p99Ms: typeof first.p99Ms },
    {
      name: `127.0.0.1:${a.port}`,
      url: a.url.href,
      health: "healthy",
      isDraining: false,
      ejected: null,
      weight: 1,
      inFlight: 0,
      requests: 2,
      failures: 0,
      responses5xx: 0,
      p50Ms: "number",
      p99Ms: "number",
    },
  );
  const backends = await (await fetch(adminUrl(lb, "/backends"))).json();
  assertEquals(
    backends.map((x: { name: string }) => x.name),
    status.backends.map((x: { name: string }) => x.name),
  );
});

Deno.test("admin /metrics serves the Prometheus text", async () => {
  await using a = named("a");
  await using lb = await startWith([a]);
  await (await fetch(lb.url)).text();
  const response = await fetch(adminUrl(lb, "/metrics"));
  const text = await response.text();
  assertStringIncludes(response.headers.get("content-type") ?? "", "text/plain; version=0.0.4");
  assertStringIncludes(text, `denolb_requests_total{backend="127.0.0.1:${a.port}",code="200"} 1\n`);
  assertStringIncludes(text, 'denolb_fd_exhausted_total{where="accept"} 0\n');
});

Deno.test("drain stops new requests to a backend and undrain brings them back", async () => {
  await using a = named("a");
  await using b = named("b");
  await using lb = await startWith([a, b]);
  const name = `127.0.0.1:${b.port}`;
  const drained = await fetch(adminUrl(lb, `/backends/${encodeURIComponent(name)}/drain`), {
    method: "POST",
  });
  assertEquals(drained.status, 200);
  assertEquals((await drained.json()).isDraining, true);
  const served = [];
  for (let i = 0; i < 4; i++) served.push((await (await fetch(lb.url)).text()).split(" ")[0]);
  assertEquals(served, ["a", "a", "a", "a"]);
  const undrained = await fetch(adminUrl(lb, `/backends/${encodeURIComponent(name)}/undrain`), {
    method: "POST",
  });
  assertEquals((await undrained.json()).isDraining, false);
  const after = new Set<string | undefined>();
  for (let i = 0; i < 4; i++) after.add((await (await fetch(lb.url)).text()).split(" ")[0]);
  assertEquals([...after].sort(), ["a", "b"]);
  const missing = await fetch(adminUrl(lb, "/backends/nope:1/drain"), { method: "POST" });
  await missing.body?.cancel();
  assertEquals(missing.status, 404);
  const wrongMethod = await fetch(adminUrl(lb, `/backends/${encodeURIComponent(name)}/drain`));
  await wrongMethod.body?.cancel();
  assertEquals(wrongMethod.status, 405);
});

Deno.test("with --admin-token every admin route but /health needs the bearer token", async () => {
  await using a = named("a");
  await using lb = await startWith([a], ["--admin-token", TOKEN]);
  const open = await fetch(adminUrl(lb, "/health"));
  await open.body?.cancel();
  assertEquals(open.status, 200);
  for (const path of ["/status", "/metrics", "/backends"]) {
    const refused = await fetch(adminUrl(lb, path));
    await refused.body?.cancel();
    assertEquals(refused.status, 401, path);
    const wrong = await fetch(adminUrl(lb, path), {
      headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}x` },
    });
    await wrong.body?.cancel();
    assertEquals(wrong.status, 401, path);
    const allowed = await fetch(adminUrl(lb, path), {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    await allowed.body?.cancel();
    assertEquals(allowed.status, 200, path);
  }
  // A query token is only for the dashboard's event stream; the page itself holds no data.
  const query = await fetch(adminUrl(lb, `/status?token=${TOKEN}`));
  await query.body?.cancel();
  assertEquals(query.status, 401);
  const page = await fetch(adminUrl(lb, "/"));
  assertStringIncludes(await page.text(), "<!doctype html>");
  const events = await fetch(adminUrl(lb, "/events"));
  await events.body?.cancel();
  assertEquals(events.status, 401);
  const stream = await fetch(adminUrl(lb, `/events?token=${TOKEN}`));
  assertEquals(stream.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const reader = stream.body?.getReader();
  const first = new TextDecoder().decode((await reader?.read())?.value);
  await reader?.cancel();
  assertStringIncludes(first, '"backends":[{"name":');
});

Deno.test("--admin off runs no admin listener", async () => {
  await using a = named("a");
  const config = await parseBalancerArgs(
    [
      "--port",
      "0",
      "--admin",
      "off",
      "--log-level",
      "fatal",
      "--access-log",
      "off",
      "--backend",
      a.url.href,
    ],
    () => undefined,
  );
  await using lb = await startBalancer(config);
  assertEquals(lb.adminUrl, undefined);
});

Deno.test("POST /backends adds a backend and DELETE /backends/{name} drains then removes it", async () => {
  await using a = named("a");
  await using b = named("b");
  await using lb = await startWith([a]);
  const added = await fetch(adminUrl(lb, "/backends"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ url: b.url.href, weight: 2 }),
  });
  assertEquals(added.status, 201);
  assertEquals((await added.json()).added, `127.0.0.1:${b.port}`);
  const seen = new Set<string | undefined>();
  for (let i = 0; i < 4; i++) seen.add((await (await fetch(lb.url)).text()).split(" ")[0]);
  assertEquals([...seen].sort(), ["a", "b"]);
  const twice = await fetch(adminUrl(lb, "/backends"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ url: b.url.href }),
  });
  await twice.body?.cancel();
  assertEquals(twice.status, 409);
  const bad = await fetch(adminUrl(lb, "/backends"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ url: "ftp://x" }),
  });
  assertStringIncludes(await bad.text(), "protocol must be http or https");
  assertEquals(bad.status, 400);
  const removed = await fetch(adminUrl(lb, `/backends/127.0.0.1:${b.port}`), { method: "DELETE" });
  await removed.body?.cancel();
  assertEquals(removed.status, 202);
  // Draining at once, gone from the pool once its in-flight count is zero.
  for (let i = 0; i < 4; i++) assertEquals((await (await fetch(lb.url)).text()).split(" ")[0], "a");
  await waitUntil("the removed backend to leave the pool", () => lb.pool.backends.length === 1);
  assertEquals(lb.pool.backends.map((x) => x.name), [`127.0.0.1:${a.port}`]);
});

Deno.test("admin /metrics parses with a real Prometheus text parser, histograms included", async () => {
  await using a = named("a");
  await using lb = await startWith([a]);
  for (let i = 0; i < 3; i++) await (await fetch(lb.url)).text();
  const text = await (await fetch(adminUrl(lb, "/metrics"))).text();
  const families: Array<{ name: string; type: string; metrics: Array<Record<string, unknown>> }> =
    parsePrometheusTextFormat(text);
  const byName = new Map(families.map((family) => [family.name, family]));
  const requests = byName.get("denolb_requests_total");
  assertEquals(requests?.type, "COUNTER");
  assertEquals(requests?.metrics[0]?.value, "3");
  const histogram = byName.get("denolb_request_duration_seconds");
  assertEquals(histogram?.type, "HISTOGRAM");
  // This parser keeps a labelled histogram's buckets (and drops its _sum and _count).
  const buckets = histogram?.metrics[0]?.buckets as Record<string, string> | undefined;
  assertEquals(buckets?.["+Inf"], "3");
  for (
    const name of ["denolb_backend_up", "denolb_fd_exhausted_total", "denolb_client_timeouts_total"]
  ) {
    assert(byName.has(name), name);
  }
});
