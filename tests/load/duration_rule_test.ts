import { parseBackendsArgs } from "../../backend-servers/backends_command.ts";
import { parseLoadArgs } from "../../load/options.ts";
import { assert, assertEquals } from "../support/assert.ts";

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
