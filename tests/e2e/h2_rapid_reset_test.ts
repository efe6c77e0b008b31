/**
 * The HTTP/2 rapid-reset flood (CVE-2023-44487) against the real balancer process: bounded
 * floods of HEADERS + RST_STREAM must not leave a core busy afterwards, nor grow memory flood
 * after flood, and the balancer keeps answering.
 */
import { assertEquals, assertLess } from "@std/assert";
import { startLbProcess } from "../support/subprocess.ts";
import { startServer } from "../support/servers.ts";
import { curl, makeTestCa, run } from "../support/tls.ts";
import { rapidReset } from "../support/h2_flood.ts";

/** Resident memory (KiB) and CPU seconds used so far by a process, from `ps`. */
async function usage(pid: number): Promise<{ rssKib: number; cpuSeconds: number }> {
  const { stdout } = await run("ps", ["-o", "rss=,cputimes=", "-p", String(pid)]);
  const [rss = "0", cpu = "0"] = stdout.trim().split(/\s+/);
  return { rssKib: Number(rss), cpuSeconds: Number(cpu) };
}

Deno.test({
  name: "HTTP/2 rapid reset: floods neither pin a core nor grow memory; requests still answered",
  sanitizeResources: false,
  async fn() {
    await using ca = await makeTestCa();
    const leaf = await ca.issue(["localhost"]);
    let backendRequests = 0;
    await using backend = startServer(() => {
      backendRequests++;
      return new Response("ok");
    });
    await using lb = startLbProcess([
      "--admin",
      "off",
      "--workers",
      "1",
      "--access-log",
      "off",
      "--backend",
      backend.url.href,
      "--tls-cert",
      leaf.certFile,
      "--tls-key",
      leaf.keyFile,
    ]);
    const [, port = ""] = await lb.waitForLine(/Balancer listening url=https:\/\/[^:]+:(\d+)\//);
    const pid = lb.child.pid;
    const get = () =>
      curl(`https://localhost:${port}/`, {
        http: "2",
        cacert: ca.certFile,
        resolve: `localhost:${port}:127.0.0.1`,
      });
    assertEquals((await get()).status, 200);
    const floods: Array<{ streams: number; closed: boolean; rssKib: number }> = [];
    for (let round = 0; round < 3; round++) {
      let streams = 0;
      let closed = true;
      // Several connections per round, as an attacker would open more when one is closed.
      for (let c = 0; c < 10; c++) {
        const result = await rapidReset({
          port: Number(port),
          authority: `localhost:${port}`,
          caCerts: [ca.certPem],
          streams: 5_000,
        });
        streams += result.streams;
        closed &&= result.isClosedByServer;
      }
      floods.push({ streams, closed, rssKib: (await usage(pid)).rssKib });
    }
    // After the floods: idle means idle. CPU used over a quiet second stays small.
    const before = await usage(pid);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const after = await usage(pid);
    const idleCpu = (after.cpuSeconds - before.cpuSeconds) / 2;
    const answer = await get();
    const figures = JSON.stringify({ floods, idleCpu, backendRequests });
    assertEquals(answer.status, 200);
    assertLess(idleCpu, 0.5, `a core stayed busy after the floods: ${figures}`);
    const [first, , third] = floods;
    if (first === undefined || third === undefined) throw new Error("three floods expected");
    // Memory may settle after the first flood, but not keep growing with each one.
    assertLess(third.rssKib - first.rssKib, 30 * 1024, `memory grew flood after flood: ${figures}`);
  },
});
