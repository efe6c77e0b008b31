import { loadtestCommand } from "../../load/cli.ts";
import { pickWorkers } from "../../load/worker_choice.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { captureContext, startBackend } from "./load_fixtures.ts";

Deno.test("pickWorkers() keeps one worker unless more are clearly faster", () => {
  assertEquals(pickWorkers([{ workers: 1, rps: 44_000 }, { workers: 2, rps: 38_000 }]), 1);
  assertEquals(pickWorkers([{ workers: 1, rps: 44_000 }, { workers: 2, rps: 46_000 }]), 1);
  assertEquals(pickWorkers([{ workers: 2, rps: 60_000 }, { workers: 1, rps: 44_000 }]), 2);
  assertEquals(pickWorkers([]), 1);
});

Deno.test("the default worker count is measured against one isolate before a large run", async () => {
  await using backend = startBackend();
  const { ctx, stderr } = captureContext();
  const code = await loadtestCommand(
    ["--url", backend.url.href, "--total", "6000", "-c", "8", "--quiet"],
    ctx,
    { cores: 2 },
  );
  assertEquals(code, 0);
  const header = stderr().split("\n")[0] ?? "";
  const match =
    /^Load test: .*, (in-process|2 workers) \(measured over 500ms each: in-process (\d+) req\/s, 2 workers (\d+) req\/s\)$/
      .exec(header);
  assert(match !== null, header);
  const chosen = match[1] === "in-process" ? 1 : 2;
  const measured = [
    { workers: 1, rps: Number(match[2]) },
    { workers: 2, rps: Number(match[3]) },
  ];
  assertEquals(chosen, pickWorkers(measured), header);
  // The probes hit the target too, besides the 6000 measured requests.
  assert(backend.requests() > 6000);
});

Deno.test("--workers skips the measurement", async () => {
  await using backend = startBackend();
  const { ctx, stderr } = captureContext();
  const code = await loadtestCommand(
    ["--url", backend.url.href, "--total", "6000", "-c", "4", "--workers", "2", "--quiet"],
    ctx,
    { cores: 2 },
  );
  assertEquals(code, 0);
  assert(!stderr().includes("measured"), stderr());
  assertEquals(backend.requests(), 6000);
});
