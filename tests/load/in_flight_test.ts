import { loadtestCommand } from "../../load/cli.ts";
import { readDescriptorLimit } from "../../load/descriptor_limit.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { captureContext, startBackend } from "./load_fixtures.ts";
import { assertValidReport } from "./report_validation.ts";

interface CapStats {
  readonly peakInFlight: number;
  readonly inFlightCap: number;
  readonly late: number;
}

function capStats(json: string): CapStats | undefined {
  return (assertValidReport(json) as { runs: Array<{ stats: CapStats }> }).runs[0]?.stats;
}

Deno.test("the default open-model cap stays within the descriptor limit", async () => {
  await using backend = startBackend();
  const { ctx, stdout } = captureContext();
  const code = await loadtestCommand(
    ["--url", backend.url.href, "--rate", "1000", "--total", "10", "--json", "-", "--quiet"],
    ctx,
    { descriptorLimit: 70 },
  );
  assertEquals(code, 0);
  // rate x timeout would be 5000 users; the limit of 70 descriptors less 64 leaves 6.
  assertEquals(capStats(stdout())?.inFlightCap, 6);
  assertEquals(backend.requests(), 10);
});

Deno.test("a run held back by --max-in-flight says so", async () => {
  // Each answer takes 20 ms while a request is due every 5 ms: one slot cannot keep up.
  const slow = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async () => {
    await new Promise((resolve) => setTimeout(resolve, 20));
    return new Response("slow");
  });
  await using _slow = { [Symbol.asyncDispose]: () => slow.shutdown() };
  const { ctx, stdout, stderr } = captureContext();
  const code = await loadtestCommand([
    "--url",
    `http://127.0.0.1:${slow.addr.port}/`,
    "--rate",
    "200",
    "--total",
    "10",
    "--max-in-flight",
    "1",
    "--json",
    "-",
    "--quiet",
  ], ctx);
  assertEquals(code, 0);
  const stats = capStats(stdout());
  assertEquals(stats?.inFlightCap, 1);
  assertEquals(stats?.peakInFlight, 1);
  assert((stats?.late ?? 0) > 0, "requests ran late");
  assertStringIncludes(
    stderr(),
    "The in-flight cap (1, --max-in-flight) was reached: ",
  );
});

Deno.test("readDescriptorLimit() is undefined where /proc/self/limits cannot be read", () => {
  assertEquals(
    readDescriptorLimit(() => {
      throw new Deno.errors.NotFound("no /proc");
    }),
    undefined,
  );
  assertEquals(
    readDescriptorLimit(() => "Max open files  unlimited  unlimited  files\n"),
    undefined,
  );
});
