import { assert, assertEquals, assertStringIncludes, assertThrows } from "../support/assert.ts";
import { RUN_PERMISSIONS, runDeno } from "../support/subprocess.ts";
import { LatencyHistogram } from "../../load/histogram.ts";
import { parseLoadArgs } from "../../load/options.ts";
import { integerShare, parseShard, shareOfLoad } from "../../load/shard.ts";
import { UsageError } from "../../lib/shared/command.ts";
import { serve } from "./test_servers.ts";

Deno.test("parseShard() reads I/N counting from 0 and names the rule it breaks", () => {
  assertEquals(parseShard("0/1"), { index: 0, count: 1 });
  assertEquals(parseShard(" 3 / 4 "), { index: 3, count: 4 });
  assertThrows(() => parseShard("4/4"), RangeError, "must be below the count 4");
  assertThrows(() => parseShard("0/0"), RangeError, "at least 1");
  assertThrows(() => parseShard("1"), RangeError, "use INDEX/COUNT");
  assertThrows(() => parseShard("-1/2"), RangeError, "use INDEX/COUNT");
});

Deno.test("integerShare() parts add up to the whole for every split", () => {
  for (let whole = 0; whole < 40; whole++) {
    for (let count = 1; count < 9; count++) {
      const parts = Array.from(
        { length: count },
        (_, index) => integerShare(whole, { index, count }),
      );
      assertEquals(parts.reduce((sum, part) => sum + part, 0), whole);
      assert(Math.max(...parts) - Math.min(...parts) <= 1, `${whole}/${count}: ${parts}`);
    }
  }
});

Deno.test("shareOfLoad() divides users, totals, rates and stages, and keeps durations", () => {
  const closed = shareOfLoad(
    { model: "closed", levels: [10, 25], stop: { kind: "count", total: 101 } },
    { index: 0, count: 4 },
  );
  assertEquals(closed.levels, [3, 7]);
  assertEquals(closed.stop, { kind: "count", total: 26 });
  const open = shareOfLoad({
    model: "open",
    levels: [300],
    stop: { kind: "time", durationMs: 5000 },
    stages: [{ durationMs: 1000, targetRate: 300 }],
    maxInFlight: 10,
  }, { index: 2, count: 3 });
  assertEquals(open.levels, [100]);
  assertEquals(open.stop, { kind: "time", durationMs: 5000 });
  assertEquals(open.stages, [{ durationMs: 1000, targetRate: 100 }]);
  assertEquals(open.maxInFlight, 3);
  assertThrows(
    () =>
      shareOfLoad({ model: "closed", levels: [2], stop: { kind: "count", total: 10 } }, {
        index: 0,
        count: 3,
      }),
    RangeError,
    "concurrency 2 is less than 3 shards",
  );
});

Deno.test("loadtest --shard takes this shard's share; bad values are usage errors", () => {
  const command = parseLoadArgs(["--rate", "90", "--duration", "2s", "--shard", "1/3"]);
  assert(command.kind === "run");
  assertEquals(command.plan.levels, [30]);
  const whole = parseLoadArgs(["-c", "10", "--total", "100", "--shard", "0/1"]);
  assert(whole.kind === "run");
  assertEquals(whole.plan.levels, [10]);
  assertThrows(() => parseLoadArgs(["--shard", "3/3"]), UsageError, 'Invalid --shard "3/3"');
  assertThrows(
    () => parseLoadArgs(["-c", "2", "--shard", "0/3"]),
    UsageError,
    'Invalid --shard "0/3": concurrency 2 is less than 3 shards',
  );
  assertThrows(
    () => parseLoadArgs(["--shard", "0/2", "--find-capacity"]),
    UsageError,
    "Cannot combine --shard and --find-capacity",
  );
});

interface RunJson {
  readonly level: number;
  readonly stats: {
    readonly requests: number;
    readonly ok: number;
    readonly cutOff: number;
    readonly histogram: string;
    readonly p50Ms: number;
    readonly p90Ms: number;
    readonly p99Ms: number;
    readonly maxMs: number;
  };
}

Deno.test("N loadtest processes with --shard make the whole load, and merge adds them up exactly", async () => {
  let received = 0;
  await using backend = serve(async () => {
    received++;
    // A spread of latencies, so the percentiles of the parts differ from the whole's.
    await new Promise((resolve) => setTimeout(resolve, received % 7));
    return new Response("ok");
  });
  const dir = await Deno.makeTempDir();
  try {
    const shards = 3;
    const files = Array.from({ length: shards }, (_, index) => `${dir}/shard-${index}.json`);
    const results = await Promise.all(files.map((file, index) =>
      runDeno([
        "run",
        ...RUN_PERMISSIONS,
        "main.ts",
        "loadtest",
        "--url",
        backend.url.href,
        "--rate",
        "60",
        "--duration",
        "1s",
        "--shard",
        `${index}/${shards}`,
        "--quiet",
        "--json",
        file,
      ])
    ));
    for (const result of results) assertEquals(result.code, 0, result.stderr);
    const merged = await runDeno([
      "run",
      ...RUN_PERMISSIONS,
      "main.ts",
      "loadtest",
      "merge",
      ...files,
      "--json",
      "-",
    ]);
    assertEquals(merged.code, 0, merged.stderr);
    const parts = await Promise.all(
      files.map(async (file) => JSON.parse(await Deno.readTextFile(file)).runs[0] as RunJson),
    );
    const whole = JSON.parse(merged.stdout).runs[0] as RunJson;
    // Rates add up: each shard ran 20/s, the merged run 60/s, and the backend saw every request.
    for (const part of parts) assertEquals(part.level, 20);
    assertEquals(whole.level, 60);
    assertEquals(whole.stats.requests, parts.reduce((sum, part) => sum + part.stats.requests, 0));
    // A request still in flight at the end of the second reached the backend but is cut off.
    assert(
      received >= whole.stats.ok && received <= whole.stats.requests + whole.stats.cutOff,
      `${received}`,
    );
    assert(received >= 54 && received <= 66, `60/s for 1s sent ${received}`);
    // The merged percentiles are those of one histogram holding every sample of every shard.
    const all = new LatencyHistogram();
    for (const part of parts) {
      for (
        const [microseconds, count] of LatencyHistogram.decode(part.stats.histogram)
          .recordedValues()
      ) {
        for (let i = 0; i < count; i++) all.record(microseconds);
      }
    }
    const summary = all.summary();
    const ms = (microseconds: number) => Math.round(microseconds) / 1000;
    assertEquals(all.count, whole.stats.ok);
    assertEquals(
      [whole.stats.p50Ms, whole.stats.p90Ms, whole.stats.p99Ms, whole.stats.maxMs],
      [ms(summary.p50), ms(summary.p90), ms(summary.p99), ms(summary.max)],
    );
    assertStringIncludes(merged.stderr, "rate=60/s");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
