import { assertEquals, assertStringIncludes } from "@std/assert";
import { getLogger } from "@logtape/logtape";
import { startBalancer } from "../../lib/control/balancer.ts";
import { Backend } from "../../lib/core/backend.ts";
import { Metrics } from "../../lib/core/metrics.ts";
import { Pool } from "../../lib/core/pool.ts";
import { startDataPlane } from "../../lib/data/data_plane.ts";
import { systemClock } from "../../lib/shared/clock.ts";
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { captureLogs } from "../support/capture_logs.ts";
import { makeTestCa, type TestCa } from "../support/tls.ts";

/** An https backend on 127.0.0.1 with a certificate for `localhost` from `ca`. */
async function startHttpsBackend(ca: TestCa) {
  const leaf = await ca.issue(["localhost"]);
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: leaf.certPem,
    key: leaf.keyPem,
    onListen: () => {},
  }, (request) => Response.json({ host: request.headers.get("host") }));
  return {
    url: `https://localhost:${server.addr.port}/`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

async function startWith(args: string[]) {
  const config = await parseBalancerArgs([
    "--port",
    "0",
    "--admin",
    "off",
    "--access-log",
    "off",
    "--retries",
    "0",
    ...args,
  ], () => undefined);
  return await startBalancer(config, { clock: new FakeClock() });
}

Deno.test("https backend: verified against --backend-ca, SNI from the backend URL, the client's Host kept", async () => {
  await using ca = await makeTestCa();
  await using backend = await startHttpsBackend(ca);
  await using balancer = await startWith(["--backend", backend.url, "--backend-ca", ca.certFile]);
  const response = await fetch(new URL("/x", balancer.url));
  assertEquals(response.status, 200);
  assertEquals((await response.json()).host, balancer.url.host);
  // The probe used the same authorities: the backend is healthy.
  await balancer.health.firstRound;
  assertEquals(balancer.pool.backends[0]?.isHealthy, true);
});

Deno.test("https backend: a certificate that fails verification is a 502 and a log line naming why", async () => {
  await using ca = await makeTestCa();
  await using otherCa = await makeTestCa();
  await using backend = await startHttpsBackend(ca);
  await using logs = await captureLogs({ level: "warning" });
  // The data plane alone: the balancer's first probe would mark the backend down (it fails
  // verification too) before a request could reach it.
  const config = await parseBalancerArgs([
    "--port",
    "0",
    "--admin",
    "off",
    "--access-log",
    "off",
    "--backend",
    backend.url,
    "--backend-ca",
    otherCa.certFile,
  ], () => undefined);
  const pool = new Pool(config.backends.map((b) => new Backend(b.url)));
  const plane = startDataPlane(config, {
    pool,
    metrics: new Metrics(pool),
    clock: systemClock,
    logger: getLogger(["denolb", "server"]),
    proxyLogger: getLogger(["denolb", "proxy"]),
  });
  try {
    const response = await fetch(`http://127.0.0.1:${plane.listener.addr.port}/x`);
    await response.body?.cancel();
    assertEquals(response.status, 502);
    const line = logs.records.map((r) => JSON.stringify(r)).find((r) =>
      r.includes("Backend request failed")
    );
    assertStringIncludes(line ?? "", "invalid peer certificate");
  } finally {
    await plane.shutdown();
    plane.close();
  }
  // The balancer's probes verify the same way: the backend is unhealthy after the first round.
  await using balancer = await startWith([
    "--backend",
    backend.url,
    "--backend-ca",
    otherCa.certFile,
  ]);
  await balancer.health.firstRound;
  assertEquals(balancer.pool.backends[0]?.isHealthy, false);
});

Deno.test("--backend-ca that holds no certificate is refused at start, naming the file", async () => {
  await using ca = await makeTestCa();
  const leaf = await ca.issue(["x.test"]);
  let message = "";
  try {
    await startWith(["--backend", "https://localhost:1/", "--backend-ca", leaf.keyFile]);
  } catch (error) {
    message = String(error);
  }
  assertStringIncludes(message, `Invalid --backend-ca "${leaf.keyFile}": no PEM certificate in it`);
});
