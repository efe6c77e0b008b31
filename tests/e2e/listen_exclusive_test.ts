/**
 * The port is the balancer's alone. Its isolates share the address with SO_REUSEPORT, which
 * would let them join any other listener on the port of the same user: a balancer that cannot
 * have the address to itself must exit naming it, as nginx and HAProxy do, and before it logs
 * anything that says it serves (or that it fell back to one isolate).
 */
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { startLbProcess } from "../support/subprocess.ts";

/** Runs `lb` on `port` until it exits; fails the test if it is still up after a deadline. */
async function lbExitOn(port: number, workers: string) {
  const lb = startLbProcess([
    "--port",
    String(port),
    "--workers",
    workers,
    "--admin",
    "127.0.0.1:0",
    "--backend",
    "127.0.0.1:9",
    "--health-interval",
    "1h",
  ]);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const status = await Promise.race([
      lb.child.status,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`still running:\n${lb.output}`)), 30_000);
      }),
    ]);
    // Disposing waits for the rest of its output.
    await lb[Symbol.asyncDispose]();
    return { code: status.code, output: lb.output };
  } finally {
    clearTimeout(timer);
    await lb[Symbol.asyncDispose]();
  }
}

function assertRefused(result: { code: number; output: string }, port: number): void {
  assert(result.code !== 0, `exit code ${result.code}:\n${result.output}`);
  assertStringIncludes(result.output, `Cannot listen on 127.0.0.1:${port}: Address already in use`);
  assert(!result.output.includes("Balancer listening"), result.output);
  assert(!result.output.includes("Serving from one isolate"), result.output);
}

for (const reusePort of [false, true]) {
  Deno.test(`lb --workers 2 exits naming the port a ${reusePort ? "SO_REUSEPORT" : "plain"} listener holds`, async () => {
    using holder = Deno.listen({ hostname: "127.0.0.1", port: 0, reusePort });
    const port = holder.addr.port;
    assertRefused(await lbExitOn(port, "2"), port);
    // `auto` falls back to one isolate only when workers cannot start, never for a taken port.
    assertRefused(await lbExitOn(port, "auto"), port);
  });
}

Deno.test("a second balancer on the port the first one holds exits naming it; the first serves on", async () => {
  await using backend = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("first"),
  );
  await using first = startLbProcess([
    "--workers",
    "2",
    "--admin",
    "127.0.0.1:0",
    "--backend",
    `127.0.0.1:${backend.addr.port}`,
    "--health-interval",
    "1h",
  ]);
  const match = await first.waitForLine(/Balancer listening.*?http:\/\/127\.0\.0\.1:(\d+)\//);
  const port = Number(match[1]);
  assertRefused(await lbExitOn(port, "2"), port);
  assertRefused(await lbExitOn(port, "1"), port);
  // Every new connection still reaches the first balancer (none lands on a second one).
  for (let i = 0; i < 6; i++) {
    const response = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: "close" } });
    assertEquals(await response.text(), "first");
  }
});
