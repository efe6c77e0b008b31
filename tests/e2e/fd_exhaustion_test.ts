/**
 * The balancer survives running out of file descriptors: under a hard limit of 64 (so it
 * cannot raise its way out), a flood of idle connections exhausts them, it says so, and it
 * serves again once the flood is gone.
 */
import { assertEquals, assertMatch } from "@std/assert";
import { startProcess } from "../support/subprocess.ts";
import { startServer } from "../support/servers.ts";

const FLOOD = 120;

Deno.test("lb survives descriptor exhaustion on accept and serves again when descriptors free up", async () => {
  await using backend = startServer(() => new Response("from backend"));
  const script = `ulimit -n 64 && exec "$0" run --unstable-no-legacy-abort -A main.ts lb ` +
    `--port 0 --backend 127.0.0.1:${backend.port} --health-interval 1h --admin 127.0.0.1:0 --workers 1`;
  await using lb = startProcess("bash", ["-c", script, Deno.execPath()]);
  const [, url, admin] = await lb.waitForLine(
    /Balancer listening.*?(http:\/\/[\d.]+:\d+\/).*?admin=\S*?(http:\/\/[\d.]+:\d+\/)/,
  );
  const port = Number(new URL(url ?? "").port);
  const flood: Deno.Conn[] = [];
  try {
    for (let i = 0; i < FLOOD; i++) {
      flood.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    }
    await lb.waitForLine(/Out of file descriptors accepting connections/);
  } finally {
    for (const conn of flood) conn.close();
  }
  // The kernel still queues new connections; once the flood's descriptors are released the
  // accept loop picks them up again.
  const response = await fetch(new URL("/after", url));
  assertEquals(await response.text(), "from backend");
  const metrics = await (await fetch(new URL("/metrics", admin))).text();
  assertMatch(metrics, /denolb_fd_exhausted_total\{where="accept"\} [1-9]/);
  assertEquals(lb.output.includes("Uncaught"), false, lb.output);
});
