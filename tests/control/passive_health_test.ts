/**
 * The control plane's passive health on a fake clock: ejection and return set the backend's
 * state, are logged and published once each, counted in metrics that survive the cross-isolate
 * merge, and leave no timer behind.
 */
import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { PassiveHealth } from "../../lib/control/passive_health.ts";
import { getModuleLogger } from "../../lib/process/log.ts";
import { Metrics } from "../../lib/core/metrics.ts";
import type { OutlierSettings } from "../../lib/core/outlier.ts";
import { Pool } from "../../lib/core/pool.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { captureLogs } from "../support/capture_logs.ts";
import { FakeClock } from "../support/fake_clock.ts";

const SETTINGS: OutlierSettings = {
  failures: 2,
  kinds: ["connect", "timeout"],
  baseEjectionMs: 1_000,
  maxEjectionMs: 10_000,
  maxEjectedPercent: 50,
};

function setUp() {
  const clock = new FakeClock();
  const pool = new Pool(
    ["10.0.0.1:8080", "10.0.0.2:8080"].map((url) => new Backend(parseBackendUrl(url))),
  );
  const metrics = new Metrics(pool);
  let published = 0;
  const passive = new PassiveHealth(pool, SETTINGS, {
    clock,
    metrics,
    wallNow: () => 1_000_000,
    logger: getModuleLogger("outlier"),
    onChange: () => published++,
  });
  return { clock, pool, metrics, passive, published: () => published };
}

Deno.test("passive health ejects after the threshold, returns on the clock, once each", async () => {
  await using logs = await captureLogs();
  const { clock, pool, metrics, passive, published } = setUp();
  passive.start();
  const [a] = pool.backends;
  assert(a !== undefined);
  passive.observe(a, "connect");
  assertEquals([a.isEjected, published()], [false, 0]);
  passive.observe(a, "response-timeout");
  assertEquals(a.ejection, { untilMs: 1_001_000, count: 1, reason: "timeout" });
  assertEquals([a.isAvailable, published()], [false, 1]);
  passive.observe(a, "connect"); // in flight when it was ejected: ignored
  assertEquals(logs.find("Backend ejected", "warning").length, 1);

  await clock.advance(999);
  assertEquals(a.isEjected, true);
  await clock.advance(1);
  assertEquals([a.isEjected, a.isAvailable, published()], [false, true, 2]);
  assertEquals(logs.find("Backend returned from ejection", "info").length, 1);

  // A second ejection in a row lasts twice as long.
  passive.observeByUrl(a.url.href, "connect");
  passive.observeByUrl(a.url.href, "protocol");
  assertEquals(a.ejection?.count, 2);
  await clock.advance(1_999);
  assertEquals(a.isEjected, true);
  await clock.advance(1);
  assertEquals(a.isEjected, false);

  // Counted in the control plane's own series: a worker's absorbed state leaves it intact.
  const worker = new Metrics(pool);
  worker.recordRequest(a, 200, 1);
  metrics.absorb("w1", worker.exportState());
  const text = metrics.render();
  assertMatch(text, /^denolb_outlier_ejections_total\{backend="10\.0\.0\.1:8080"\} 2$/m);
  assertMatch(text, /^denolb_backend_ejected\{backend="10\.0\.0\.1:8080"\} 0$/m);

  await passive.stop();
  assertEquals(clock.pendingSleeps, 0, "no timer left behind");
});

Deno.test("passive health: turning it off returns ejected backends at once; a removed one is forgotten", async () => {
  await using _logs = await captureLogs();
  const { pool, metrics, passive } = setUp();
  passive.start();
  const [a, b] = pool.backends;
  assert(a !== undefined && b !== undefined);
  passive.observe(a, "connect");
  passive.observe(a, "connect");
  assertEquals(a.isEjected, true);
  assertMatch(metrics.render(), /^denolb_backend_ejected\{backend="10\.0\.0\.1:8080"\} 1$/m);
  passive.reconfigure({ ...SETTINGS, failures: 0 });
  assertEquals(a.isEjected, false);
  passive.observe(b, "connect");
  passive.observe(b, "connect");
  assertEquals(b.isEjected, false, "off");

  passive.reconfigure(SETTINGS);
  passive.observe(b, "connect");
  passive.observe(b, "connect");
  assertEquals(b.isEjected, true);
  pool.remove(b);
  passive.forget(b);
  passive.observe(a, "connect");
  passive.observe(a, "connect");
  assertEquals(a.isEjected, false, "a pool of one keeps its only backend at 50%");
  await passive.stop();
  await passive.stop();
});
