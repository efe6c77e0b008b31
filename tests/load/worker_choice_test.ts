import { loadtestCommand } from "../../load/cli.ts";
import { parseLoadArgs } from "../../load/options.ts";
import type { LoadPlan } from "../../load/options.ts";
import { chooseWorkers, isLocalHost } from "../../load/worker_choice.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { captureContext } from "./load_fixtures.ts";
import { startTruthServer } from "./truth_server.ts";

function plan(args: string[]): LoadPlan {
  const command = parseLoadArgs(args);
  if (command.kind !== "run") throw new Error(`not a run: ${args.join(" ")}`);
  return command.plan;
}

Deno.test("chooseWorkers() keeps a target on this machine to half the cores", () => {
  const local = plan(["--url", "http://127.0.0.1:8080/", "--total", "60000", "-c", "50"]);
  assertEquals(chooseWorkers(local, 2).workers, 1);
  assertEquals(chooseWorkers(local, 3).workers, 1);
  assertEquals(chooseWorkers(local, 8).workers, 4);
  const remote = plan(["--url", "http://10.1.2.3:8080/", "--total", "60000", "-c", "50"]);
  assertEquals(chooseWorkers(remote, 8), { workers: 8, reason: "target elsewhere: 8 cores" });
});

Deno.test("chooseWorkers() keeps small runs, low concurrency and low rates in one isolate", () => {
  assertEquals(chooseWorkers(plan(["--url", "http://10.0.0.1/", "--total", "5000"]), 8).workers, 1);
  assertEquals(
    chooseWorkers(plan(["--url", "http://10.0.0.1/", "--total", "90000", "-c", "3"]), 8).workers,
    3,
  );
  // 500 req/s for a minute is 30,000 requests, yet far below what one isolate keeps up with.
  assertEquals(
    chooseWorkers(plan(["--url", "http://10.0.0.1/", "--rate", "500", "--duration", "60s"]), 8)
      .workers,
    1,
  );
  assertEquals(
    chooseWorkers(plan(["--url", "http://127.0.0.1/", "--total", "9", "--workers", "3"]), 1),
    { workers: 3, reason: "--workers" },
  );
});

Deno.test("isLocalHost() knows loopback names and addresses", () => {
  for (const host of ["localhost", "127.0.0.1", "127.3.2.1", "[::1]", "::1", "0.0.0.0"]) {
    assert(isLocalHost(host), host);
  }
  for (const host of ["10.0.0.1", "example.com", "[2001:db8::1]", "128.0.0.1"]) {
    assert(!isLocalHost(host), host);
  }
});

Deno.test("the default worker choice sends nothing: the target sees exactly the total", async () => {
  await using server = startTruthServer();
  const { ctx, stderr } = captureContext();
  // 4 cores and a local target: two workers, chosen without a probe.
  const code = await loadtestCommand(
    ["--url", server.url.href, "--total", "20000", "-c", "8", "--quiet"],
    ctx,
    { cores: 4 },
  );
  assertEquals(code, 0, stderr());
  const header = stderr().split("\n")[0] ?? "";
  assert(header.includes("2 workers (target on this machine: half of 4 cores)"), header);
  assertEquals(server.received(), 20000);
});

Deno.test("an open-model run sends no more than its schedule", async () => {
  await using server = startTruthServer();
  const { ctx, stderr, stdout } = captureContext();
  const code = await loadtestCommand(
    ["--url", server.url.href, "--rate", "400", "--duration", "0.5s", "--json", "-", "--quiet"],
    ctx,
    { cores: 2 },
  );
  assertEquals(code, 0, stderr());
  // What the target received is what the report counts (requests in flight at the end may not
  // have been read yet), and never more than the 200 planned.
  const report = JSON.parse(stdout());
  const stats = report.runs[0].stats;
  assert(server.received() >= stats.requests, String(server.received()));
  assert(server.received() <= stats.requests + stats.cutOff, String(server.received()));
  assert(server.received() <= 200, String(server.received()));
});
