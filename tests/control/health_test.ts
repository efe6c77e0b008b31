import { Backend, type HealthState, parseBackendUrl } from "../../lib/core/backend.ts";
import { DEFAULTS } from "../support/settings.ts";
import {
  HealthChecker,
  type HealthCheckerOptions,
  type HealthStatus,
  initialHealthStatus,
  nextHealth,
} from "../../lib/control/health.ts";
import { Pool } from "../../lib/core/pool.ts";
import { type ProbeFetch, type ProbeResult, runProbe } from "../../lib/control/probe.ts";
import { type Clock, systemClock } from "../../lib/shared/clock.ts";
import { assert, assertEquals, assertStrictEquals, assertThrows } from "../support/assert.ts";
import { captureLogs } from "../support/capture_logs.ts";
import { FakeClock } from "../support/fake_clock.ts";

const INTERVAL_MS = 10_000;
const TIMEOUT_MS = 2_000;

// ---------------------------------------------------------------------------------------------
// nextHealth(): the pure transition.

const thresholds = { rise: 2, fall: 3 };

function run(
  initial: HealthState,
  results: readonly boolean[],
  limits = thresholds,
): { status: HealthStatus; flips: number[] } {
  let status = initialHealthStatus(initial);
  const flips: number[] = [];
  results.forEach((isSuccess, index) => {
    const next = nextHealth(status, isSuccess, limits);
    if (next.flipped) flips.push(index);
    status = next.status;
  });
  return { status, flips };
}

Deno.test("nextHealth() applies the first probe's result at once", () => {
  assertEquals(run("healthy", [false]), {
    status: { state: "unhealthy", successes: 0, failures: 1, isProbed: true },
    flips: [0],
  });
  assertEquals(run("unhealthy", [true]), {
    status: { state: "healthy", successes: 1, failures: 0, isProbed: true },
    flips: [0],
  });
  assertEquals(run("healthy", [true]).flips, []);
  assertEquals(run("unhealthy", [false]).flips, []);
});

Deno.test("nextHealth() takes a healthy backend out after fall consecutive failures", () => {
  assertEquals(run("healthy", [true, false, false]).status.state, "healthy");
  const out = run("healthy", [true, false, false, false]);
  assertEquals(out.status, { state: "unhealthy", successes: 0, failures: 3, isProbed: true });
  assertEquals(out.flips, [3]);
  // Further failures keep counting but do not flip again.
  assertEquals(run("healthy", [true, false, false, false, false, false]).flips, [3]);
});

Deno.test("nextHealth() brings an unhealthy backend back after rise consecutive successes", () => {
  assertEquals(run("healthy", [false, true]).status.state, "unhealthy");
  const back = run("healthy", [false, true, true]);
  assertEquals(back.status, { state: "healthy", successes: 2, failures: 0, isProbed: true });
  assertEquals(back.flips, [0, 2]);
});

Deno.test("nextHealth() restarts the count when a result breaks the run", () => {
  assertEquals(run("healthy", [true, false, false, true, false, false]).status.state, "healthy");
  assertEquals(run("healthy", [false, true, false, true]).status.state, "unhealthy");
});

Deno.test("nextHealth() with rise and fall of 1 follows every result", () => {
  const results = [true, false, true, true, false, false, true];
  const { flips } = run("healthy", results, { rise: 1, fall: 1 });
  assertEquals(flips, [1, 2, 4, 6]);
});

/** An independent model: the state after each probe, from the whole history. */
function referenceStates(
  initial: HealthState,
  results: readonly boolean[],
  limits: { rise: number; fall: number },
): HealthState[] {
  const states: HealthState[] = [];
  let state = initial;
  results.forEach((isSuccess, index) => {
    if (index === 0) {
      state = isSuccess ? "healthy" : "unhealthy";
    } else {
      let runLength = 0;
      for (let back = index; back >= 0 && results[back] === isSuccess; back--) runLength++;
      if (isSuccess && state === "unhealthy" && runLength === limits.rise) state = "healthy";
      if (!isSuccess && state === "healthy" && runLength === limits.fall) state = "unhealthy";
    }
    states.push(state);
  });
  return states;
}

Deno.test("nextHealth() matches a reference model on every sequence of up to 8 probes", () => {
  let checked = 0;
  for (const initial of ["healthy", "unhealthy"] as const) {
    for (let rise = 1; rise <= 4; rise++) {
      for (let fall = 1; fall <= 4; fall++) {
        for (let length = 0; length <= 8; length++) {
          for (let bits = 0; bits < 1 << length; bits++) {
            const results = Array.from({ length }, (_, i) => ((bits >> i) & 1) === 1);
            const expected = referenceStates(initial, results, { rise, fall });
            let status = initialHealthStatus(initial);
            results.forEach((isSuccess, index) => {
              const before = status.state;
              const next = nextHealth(status, isSuccess, { rise, fall });
              status = next.status;
              const label = `${initial} rise=${rise} fall=${fall} ${results} #${index}`;
              assertEquals(status.state, expected[index], label);
              assertEquals(next.flipped, before !== status.state, label);
              assertEquals(status.successes > 0, isSuccess, label);
              assertEquals(status.failures > 0, !isSuccess, label);
            });
            checked++;
          }
        }
      }
    }
  }
  assertEquals(checked, 2 * 4 * 4 * 511);
});

// ---------------------------------------------------------------------------------------------
// HealthChecker with a fake clock and a scripted fetch.

type Behaviour = number | "refuse" | "hang" | "throw";

/** Scripted backends: each host answers its health probe as told (default 200). */
class ScriptedFetch {
  readonly behaviour = new Map<string, Behaviour>();
  readonly calls: { url: string; at: number; signal: AbortSignal | undefined }[] = [];
  readonly #clock: FakeClock;

  constructor(clock: FakeClock) {
    this.#clock = clock;
  }

  readonly fetch: ProbeFetch = (url, init) => {
    const signal = init.signal ?? undefined;
    this.calls.push({ url: url.href, at: this.#clock.now(), signal });
    const behaviour = this.behaviour.get(url.host) ?? 200;
    if (behaviour === "throw") throw new TypeError("Invalid URL");
    if (behaviour === "refuse") {
      return Promise.reject(
        new TypeError(
          "client error (Connect): tcp connect error: Connection refused (os error 111)",
        ),
      );
    }
    if (behaviour === "hang") {
      return new Promise((_, reject) => {
        signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
    }
    const body = [204, 205, 304].includes(behaviour) ? null : `status ${behaviour}`;
    return Promise.resolve(new Response(body, { status: behaviour }));
  };

  callsTo(host: string): number {
    return this.calls.filter((call) => new URL(call.url).host === host).length;
  }
}

function makePool(...hosts: string[]): Pool {
  return new Pool(hosts.map((host) => new Backend(parseBackendUrl(host))));
}

function setUp(options: Partial<HealthCheckerOptions> = {}, hosts = ["a:1", "b:2", "c:3"]) {
  const clock = new FakeClock();
  const script = new ScriptedFetch(clock);
  const pool = makePool(...hosts);
  const changes: string[] = [];
  const checker = new HealthChecker(pool, {
    ...DEFAULTS.health,
    intervalMs: INTERVAL_MS,
    timeoutMs: TIMEOUT_MS,
    rise: 2,
    fall: 3,
    clock,
    fetch: script.fetch,
    onChange: (backend, state) => changes.push(`${backend.name}:${state}`),
    ...options,
  });
  const backend = (index: number): Backend => {
    const found = pool.backends[index];
    assert(found !== undefined);
    return found;
  };
  return { clock, script, pool, checker, changes, backend };
}

Deno.test("HealthChecker probes every backend at start and then every interval", async () => {
  const { clock, script, checker } = setUp();
  await using _checker = checker;
  checker.start();
  await clock.advance(0);
  assertEquals(script.calls.map((call) => call.url), [
    "http://a:1/health",
    "http://b:2/health",
    "http://c:3/health",
  ]);
  await clock.advance(INTERVAL_MS - 1);
  assertEquals(script.calls.length, 3);
  await clock.advance(1);
  assertEquals(script.calls.length, 6);
  await clock.advance(INTERVAL_MS * 3);
  assertEquals(script.calls.length, 15);
  assertEquals(script.calls.map((call) => call.at).filter((at) => at % INTERVAL_MS !== 0), []);
});

Deno.test("HealthChecker appends the health path to each backend's base path", async () => {
  const { clock, script, checker } = setUp({ path: "/status/ready" }, ["a:1", "b:2/app"]);
  await using _checker = checker;
  checker.start();
  await clock.advance(0);
  assertEquals(script.calls.map((call) => call.url), [
    "http://a:1/status/ready",
    "http://b:2/app/status/ready",
  ]);
});

Deno.test("HealthChecker takes a backend that is down at start out after one probe", async () => {
  await using logs = await captureLogs();
  const { clock, script, checker, changes, backend } = setUp();
  await using _checker = checker;
  script.behaviour.set("b:2", "refuse");
  checker.start();
  await checker.firstRound;
  assertEquals(backend(0).health, "healthy");
  assertEquals(backend(1).health, "unhealthy");
  assertEquals(changes, ["b:2:unhealthy"]);
  const warnings = logs.find("Backend is unhealthy", "warning");
  assertEquals(warnings.length, 1);
  assertEquals(warnings[0]?.properties.backend, "b:2");
  assertEquals(warnings[0]?.properties.reason, "connection refused");
  assertEquals(warnings[0]?.properties.isFirstProbe, true);
  await clock.advance(INTERVAL_MS * 5);
  assertEquals(logs.find("Backend is unhealthy").length, 1);
});

Deno.test("HealthChecker flips a backend after fall failures and rise successes, logging once each", async () => {
  await using logs = await captureLogs();
  const { clock, script, checker, changes, backend } = setUp();
  await using _checker = checker;
  checker.start();
  await clock.advance(0);
  assertEquals(
    logs.find("Backend is unhealthy").length + logs.find("Backend is healthy").length,
    0,
  );

  script.behaviour.set("a:1", 503);
  await clock.advance(INTERVAL_MS * 2);
  assertEquals(backend(0).health, "healthy", "two failures are below fall");
  await clock.advance(INTERVAL_MS);
  assertEquals(backend(0).health, "unhealthy", "the third failure reaches fall");
  await clock.advance(INTERVAL_MS * 4);
  const warnings = logs.find("Backend is unhealthy");
  assertEquals(warnings.length, 1);
  assertEquals(warnings[0]?.level, "warning");
  assertEquals(warnings[0]?.category, ["denolb", "health"]);
  assertEquals(warnings[0]?.properties.backend, "a:1");
  assertEquals(warnings[0]?.properties.reason, "HTTP 503");
  assertEquals(warnings[0]?.properties.status, 503);
  assertEquals(warnings[0]?.properties.failures, 3);
  assertEquals(warnings[0]?.properties.isFirstProbe, false);

  script.behaviour.set("a:1", 204);
  await clock.advance(INTERVAL_MS);
  assertEquals(backend(0).health, "unhealthy", "one success is below rise");
  await clock.advance(INTERVAL_MS);
  assertEquals(backend(0).health, "healthy");
  await clock.advance(INTERVAL_MS * 3);
  const infos = logs.find("Backend is healthy");
  assertEquals(infos.length, 1);
  assertEquals(infos[0]?.level, "info");
  assertEquals(infos[0]?.properties.successes, 2);
  assertEquals(changes, ["a:1:unhealthy", "a:1:healthy"]);
  assertEquals([backend(1).health, backend(2).health], ["healthy", "healthy"]);
});

Deno.test("HealthChecker counts a probe without a response within the timeout as failed", async () => {
  await using logs = await captureLogs();
  const results: ProbeResult[] = [];
  const { clock, script, checker, backend } = setUp(
    { onProbe: (_backend, result) => results.push(result) },
    ["a:1"],
  );
  await using _checker = checker;
  script.behaviour.set("a:1", "hang");
  checker.start();
  await clock.advance(TIMEOUT_MS - 1);
  assertEquals(backend(0).health, "healthy");
  assertEquals(results, []);
  await clock.advance(1);
  assertEquals(backend(0).health, "unhealthy");
  assertEquals(results, [{ ok: false, reason: "timed out after 2.0s", latencyMs: TIMEOUT_MS }]);
  assertEquals(script.calls[0]?.signal?.aborted, true, "the timed-out request is aborted");
  assertEquals(logs.find("Backend is unhealthy")[0]?.properties.reason, "timed out after 2.0s");
  // The next probe still starts on schedule, not a timeout later.
  await clock.advance(INTERVAL_MS - TIMEOUT_MS);
  assertEquals(script.calls.map((call) => call.at), [0, INTERVAL_MS]);
});

Deno.test("HealthChecker keeps other backends on schedule while one hangs", async () => {
  const { clock, script, checker } = setUp();
  await using _checker = checker;
  script.behaviour.set("b:2", "hang");
  checker.start();
  await clock.advance(INTERVAL_MS * 3);
  for (const host of ["a:1", "b:2", "c:3"]) {
    const times = script.calls.filter((call) => call.url.includes(host)).map((call) => call.at);
    assertEquals(times, [0, INTERVAL_MS, 2 * INTERVAL_MS, 3 * INTERVAL_MS], host);
  }
});

Deno.test("runProbe() fails a redirect, a thrown fetch and a 5xx, and passes a 2xx", async () => {
  const clock = new FakeClock();
  const script = new ScriptedFetch(clock);
  script.behaviour.set("a:1", 302);
  script.behaviour.set("b:2", "throw");
  script.behaviour.set("c:3", 500);
  const probe = (host: string) =>
    runProbe(new URL(`http://${host}/health`), {
      fetch: script.fetch,
      clock,
      timeoutMs: TIMEOUT_MS,
    });
  assertEquals(await probe("a:1"), { ok: false, reason: "HTTP 302", status: 302, latencyMs: 0 });
  assertEquals(await probe("b:2"), { ok: false, reason: "Invalid URL", latencyMs: 0 });
  assertEquals(await probe("c:3"), { ok: false, reason: "HTTP 500", status: 500, latencyMs: 0 });
  assertEquals(await probe("d:4"), { ok: true, status: 200, latencyMs: 0 });
  assertEquals(clock.pendingSleeps, 0, "every timeout timer is cancelled");
});

Deno.test("runProbe() reports a closed port as connection refused", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  const client = Deno.createHttpClient({});
  try {
    const result = await runProbe(new URL(`http://127.0.0.1:${port}/health`), {
      fetch: (url, init) => fetch(url, { ...init, client }),
      clock: new FakeClock(),
      timeoutMs: TIMEOUT_MS,
    });
    assertEquals(result, { ok: false, reason: "connection refused", latencyMs: 0 });
  } finally {
    client.close();
  }
});

Deno.test("HealthChecker.checkNow() probes every backend once and applies the results", async () => {
  const { script, checker, backend } = setUp();
  await using _checker = checker;
  script.behaviour.set("c:3", 503);
  await checker.checkNow();
  assertEquals(script.calls.length, 3);
  assertEquals(backend(2).health, "unhealthy");
});

Deno.test("HealthChecker.stop() is idempotent and leaves nothing pending", async () => {
  const { clock, script, checker } = setUp();
  script.behaviour.set("b:2", "hang");
  checker.start();
  await clock.advance(INTERVAL_MS);
  assert(clock.pendingSleeps > 0);
  const first = checker.stop();
  const second = checker.stop();
  assertStrictEquals(first, second);
  await first;
  await checker[Symbol.asyncDispose]();
  assertEquals(clock.pendingSleeps, 0);
  const hanging = script.calls.filter((call) => call.url.includes("b:2"));
  assertEquals(hanging.map((call) => call.signal?.aborted), [true, true], "in-flight probes abort");
  const callsAtStop = script.calls.length;
  await clock.advance(INTERVAL_MS * 3);
  await checker.checkNow();
  assertEquals(script.calls.length, callsAtStop, "no probe after stop()");
  assertThrows(() => checker.start(), Error, "Cannot start a stopped health checker");
});

Deno.test("HealthChecker.stop() with the real clock leaves no timer behind", async () => {
  // Deno's sanitizers do not report a pending setTimeout, so count the clock's sleeps instead:
  // each real timer is cleared exactly when its sleep settles.
  let pendingSleeps = 0;
  const clock: Clock = {
    now: () => systemClock.now(),
    sleep(ms: number, signal?: AbortSignal): Promise<void> {
      pendingSleeps++;
      return systemClock.sleep(ms, signal).finally(() => pendingSleeps--);
    },
  };
  let probes = 0;
  const enough = Promise.withResolvers<void>();
  const checker = new HealthChecker(makePool("a:1", "b:2"), {
    ...DEFAULTS.health,
    intervalMs: 1,
    // Long enough that a probe timer not cancelled by stop() would still be pending.
    timeoutMs: 60_000,
    clock,
    fetch: (url, init) =>
      url.host === "b:2"
        ? new Promise((_, reject) =>
          init.signal?.addEventListener("abort", () => reject(init.signal?.reason), { once: true })
        )
        : Promise.resolve(new Response(null, { status: 200 })),
    onProbe: () => {
      if (++probes === 5) enough.resolve();
    },
  });
  checker.start();
  await enough.promise;
  assert(pendingSleeps > 0);
  await checker.stop();
  assertEquals(pendingSleeps, 0);
});

Deno.test("HealthChecker logs a failing listener and keeps probing", async () => {
  await using logs = await captureLogs();
  const { clock, script, checker, backend } = setUp({
    onChange: () => {
      throw new Error("metrics are down");
    },
  }, ["a:1"]);
  await using _checker = checker;
  script.behaviour.set("a:1", 503);
  checker.start();
  await clock.advance(INTERVAL_MS);
  assertEquals(backend(0).health, "unhealthy");
  assertEquals(script.calls.length, 2);
  const errors = logs.find("Health listener failed", "error");
  assertEquals(errors.length, 1);
  assertEquals(errors[0]?.properties.error, "metrics are down");
});

Deno.test("HealthChecker rejects a zero interval and a rise of 0", () => {
  assertThrows(
    () => new HealthChecker(makePool("a:1"), { ...DEFAULTS.health, intervalMs: 0 }),
    RangeError,
    "positive",
  );
  assertThrows(
    () => new HealthChecker(makePool("a:1"), { ...DEFAULTS.health, rise: 0 }),
    RangeError,
    "rise 0",
  );
});

// ---------------------------------------------------------------------------------------------
// A real backend.

Deno.test("HealthChecker flips a real backend after fall failed probes and back after rise", async () => {
  await using logs = await captureLogs();
  let healthStatus = 200;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) =>
      new URL(request.url).pathname === "/health"
        ? new Response("ok\n", { status: healthStatus })
        : new Response("not found\n", { status: 404 }),
  );
  const client = Deno.createHttpClient({});
  const clock = new FakeClock();
  const pool = new Pool([new Backend(parseBackendUrl(`127.0.0.1:${server.addr.port}`))]);
  const backend = pool.backends[0];
  assert(backend !== undefined);
  let probed = Promise.withResolvers<ProbeResult>();
  const checker = new HealthChecker(pool, {
    ...DEFAULTS.health,
    intervalMs: INTERVAL_MS,
    timeoutMs: TIMEOUT_MS,
    rise: 2,
    fall: 3,
    clock,
    client,
    onProbe: (_backend, result) => probed.resolve(result),
  });
  /** Moves the fake clock to the next probe and waits for its real request. */
  const nextProbe = async (): Promise<ProbeResult> => {
    probed = Promise.withResolvers<ProbeResult>();
    await clock.advance(INTERVAL_MS);
    return await probed.promise;
  };
  try {
    checker.start();
    await checker.firstRound;
    assertEquals(backend.health, "healthy");

    healthStatus = 503;
    assertEquals((await nextProbe()).ok, false);
    assertEquals((await nextProbe()).ok, false);
    assertEquals(backend.health, "healthy");
    const third = await nextProbe();
    assertEquals(third.ok ? undefined : third.reason, "HTTP 503");
    assertEquals(backend.health, "unhealthy");
    assertEquals(logs.find("Backend is unhealthy", "warning").length, 1);

    healthStatus = 200;
    assertEquals((await nextProbe()).ok, true);
    assertEquals(backend.health, "unhealthy");
    assertEquals((await nextProbe()).ok, true);
    assertEquals(backend.health, "healthy");
    assertEquals(logs.find("Backend is healthy", "info").length, 1);
  } finally {
    await checker.stop();
    client.close();
    await server.shutdown();
  }
});
