import { parseBackendsArgs } from "../../backend-servers/backends_command.ts";
import { parseLoadArgs } from "../../load/options.ts";
import { UsageError } from "../../lib/shared/command.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";

Deno.test("a bare number is seconds in every duration flag of loadtest and backends", () => {
  const command = parseLoadArgs([
    "--timeout",
    "4",
    "--duration",
    "2",
    "--warmup",
    "1",
    "--max-p99",
    "0.25",
  ]);
  assert(command.kind === "run");
  assertEquals(command.plan.request.timeoutMs, 4000);
  assertEquals(command.plan.stop, { kind: "time", durationMs: 2000 });
  assertEquals(command.plan.warmupMs, 1000);
  assertEquals(command.plan.thresholds.maxP99Ms, 250);
  const backends = parseBackendsArgs(["--delay", "2"]);
  assert(backends !== "help");
  assertEquals(backends.delayMs, 2000);
});

Deno.test("a duration longer than a timer can wait is rejected in every flag", () => {
  const rule = "must be at most 596h31m23s, the longest a timer can wait (2^31-1 ms)";
  for (const flag of ["--timeout", "--duration", "--warmup", "--max-p99"]) {
    assertThrows(
      () => parseLoadArgs([flag, "720h"]),
      UsageError,
      `Invalid ${flag} "720h": ${rule}`,
    );
  }
  assertThrows(
    () => parseLoadArgs(["--stages", "400h:10,400h:0"]),
    UsageError,
    'Invalid --stages "400h:10,400h:0": together they must last at most 596h31m23s',
  );
  assertThrows(
    () => parseBackendsArgs(["--delay", "720h"]),
    UsageError,
    `Invalid --delay "720h": ${rule}`,
  );
  const command = parseLoadArgs(["--timeout", "596h31m23s"]);
  assert(command.kind === "run" && command.plan.request.timeoutMs === 2_147_483_000);
});
