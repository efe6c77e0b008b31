/**
 * Settings that used to be accepted and then broke the balancer: a weight of 1e308 (every
 * request 503 after three) and a 1 ms health interval (the probe timeout followed it down and
 * the whole pool went unhealthy). Each is refused alike by a flag, the config file and
 * `lb check-config`; the admin API's `POST /backends` is pinned in `admin_hardening_test.ts`.
 */
import { UsageError } from "../../lib/shared/command.ts";
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { checkWeight, MAX_WEIGHT } from "../../lib/config/kinds.ts";
import { assertEquals, assertRejects, assertStringIncludes } from "../support/assert.ts";
import { RUN_PERMISSIONS, runDeno } from "../support/subprocess.ts";

/** Parses `lb` arguments with `file` as the only readable config file, `lb.json`. */
function parseWithFile(args: readonly string[], file: string) {
  return parseBalancerArgs(["--config", "lb.json", ...args], () => undefined, {
    readTextFile: (path) =>
      path === "lb.json" ? Promise.resolve(file) : Promise.reject(new Deno.errors.NotFound(path)),
  });
}

Deno.test("a backend weight above 256 is refused in the config file, naming the rule", async () => {
  for (const weight of ["1e308", "257"]) {
    const error = await assertRejects(
      () => parseWithFile([], `{"backends": [{"url": "10.0.0.1:80", "weight": ${weight}}]}`),
      UsageError,
    );
    assertEquals(
      error.message,
      `Invalid config "lb.json": backends[0].weight must be at most ${MAX_WEIGHT}`,
    );
  }
  // JSON's 1e999 is Infinity, which no branch of the entry's union takes: refused as a bad entry.
  await assertRejects(
    () => parseWithFile([], '{"backends": [{"url": "10.0.0.1:80", "weight": 1e999}]}'),
    UsageError,
    "backends[0] must be",
  );
  const config = await parseWithFile([], '{"backends": [{"url": "10.0.0.1:80", "weight": 256}]}');
  assertEquals(config.backends[0]?.weight, 256);
});

Deno.test("checkWeight() is the one weight rule: positive, at most 256", () => {
  assertEquals(checkWeight(2), { ok: true, value: 2 });
  assertEquals(checkWeight(0.5), { ok: true, value: 0.5 });
  assertEquals(checkWeight(0), { ok: false, rule: "must be a positive number" });
  assertEquals(checkWeight("3"), { ok: false, rule: "must be a positive number" });
  assertEquals(checkWeight(1e308), { ok: false, rule: "must be at most 256" });
  assertEquals(checkWeight(Infinity), { ok: false, rule: "must be at most 256" });
});

Deno.test("health intervals and timeouts below 100ms are refused, as flags and in the file", async () => {
  const rule = "must be at least 100ms: a shorter probe interval or timeout fails healthy backends";
  for (const [flag, value] of [["--health-interval", "1ms"], ["--health-timeout", "99ms"]]) {
    const error = await assertRejects(
      () => parseBalancerArgs([flag as string, value as string], () => undefined),
      UsageError,
    );
    assertEquals(error.message, `Invalid ${flag} "${value}": ${rule}`);
  }
  const fileRule =
    "must be at least 100: a shorter probe interval or timeout fails healthy backends";
  for (const key of ["intervalMs", "timeoutMs"]) {
    const error = await assertRejects(
      () => parseWithFile([], `{"health": {"${key}": 1}}`),
      UsageError,
    );
    assertEquals(error.message, `Invalid config "lb.json": health.${key} ${fileRule}`);
  }
  const floor = await parseBalancerArgs(["--health-interval", "100ms"], () => undefined);
  assertEquals([floor.health.intervalMs, floor.health.timeoutMs], [100, 100]);
});

Deno.test("lb check-config refuses a 1e308 weight and a 1ms health interval (exit 2)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const heavy = `${dir}/heavy.json`;
    await Deno.writeTextFile(heavy, '{"backends": [{"url": "10.0.0.1:80", "weight": 1e308}]}');
    const weight = await runDeno([
      "run",
      ...RUN_PERMISSIONS,
      "main.ts",
      "lb",
      "check-config",
      heavy,
    ]);
    assertEquals(weight.code, 2);
    assertStringIncludes(weight.stderr, "backends[0].weight must be at most 256");
    const fast = `${dir}/fast.json`;
    await Deno.writeTextFile(fast, '{"health": {"intervalMs": 1}}');
    const interval = await runDeno([
      "run",
      ...RUN_PERMISSIONS,
      "main.ts",
      "lb",
      "check-config",
      fast,
    ]);
    assertEquals(interval.code, 2);
    assertStringIncludes(interval.stderr, "health.intervalMs must be at least 100");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
