/**
 * DNS discovery against a real DNS server, Debian's dnsmasq on 127.0.0.1: the real balancer
 * follows A records (SIGHUP after rewriting dnsmasq's hosts file) and SRV records (dnsmasq
 * restarted with new ones) within one TTL while a client sends requests without pause, and not
 * one request fails; when dnsmasq stops answering, the last good set keeps serving and the
 * balancer says the name is stale.
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { type RunningBalancer, startBalancer } from "../../lib/control/balancer.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { hasDnsmasq, startDnsmasq } from "../support/dnsmasq.ts";
import { unusedPort } from "../support/servers.ts";
import { waitUntil } from "../support/wait.ts";

const ignore = !hasDnsmasq();
/** Says in the test's name why it was skipped. */
const why = ignore ? " (ignored: dnsmasq is missing; apt-get install -y dnsmasq-base)" : "";

/** The TTL dnsmasq gives every record, in seconds. */
const TTL_SECONDS = 1;
/**
 * Slack over one TTL for the change to show in traffic: the balancer looks the name up again
 * when the TTL runs out, probes a new backend at once, and the machine is shared and busy.
 */
const SLACK_MS = 1_500;

/** A backend on `hostname:port` that answers with its name, /health included. */
function named(name: string, hostname: string, port: number): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname, port, onListen: () => {} }, () => new Response(name));
}

/** A port free on 127.0.0.2, .3 and .4 alike (every backend of an A name shares one port). */
function sharedPort(): number {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = unusedPort();
    const probes: Deno.Listener[] = [];
    try {
      for (const host of ["127.0.0.2", "127.0.0.3", "127.0.0.4"]) {
        probes.push(Deno.listen({ hostname: host, port }));
      }
      return port;
    } catch {
      // Taken on one of them: try another.
    } finally {
      for (const probe of probes) probe.close();
    }
  }
  throw new Error("No port free on 127.0.0.2-4");
}

/** Sends requests one after another until stopped, recording when each answer came and what. */
function steadyClient(url: URL) {
  const answers: Array<{ atMs: number; status: number; body: string }> = [];
  let isRunning = true;
  const done = (async () => {
    while (isRunning) {
      try {
        const response = await fetch(url);
        answers.push({
          atMs: performance.now(),
          status: response.status,
          body: await response.text(),
        });
      } catch (error) {
        answers.push({ atMs: performance.now(), status: 0, body: String(error) });
      }
    }
  })();
  return {
    answers,
    async stop() {
      isRunning = false;
      await done;
    },
  };
}

async function status(lb: RunningBalancer): Promise<Record<string, unknown>> {
  const adminUrl = lb.adminUrl;
  assert(adminUrl !== undefined);
  return await (await fetch(new URL("/status", adminUrl))).json();
}

Deno.test({
  name:
    "--backend-dns follows A records within one TTL, no request fails, a dead DNS server keeps the last set" +
    why,
  ignore,
  async fn() {
    const port = sharedPort();
    const servers = [
      named("two", "127.0.0.2", port),
      named("three", "127.0.0.3", port),
      named("four", "127.0.0.4", port),
    ];
    await using dns = await startDnsmasq(
      { hosts: { "web.test": ["127.0.0.2", "127.0.0.3"] } },
      TTL_SECONDS,
    );
    try {
      const config = await parseBalancerArgs([
        "--port=0",
        "--admin=127.0.0.1:0",
        "--log-level=fatal",
        "--access-log=off",
        "--workers=1",
        `--backend-dns=web.test:${port}`,
        `--dns-server=${dns.address}`,
        "--dns-ttl-min=100ms",
        // Without --allow-sys (the test task's permissions) lookups through --dns-server report
        // no TTL: the ceiling is the TTL then.
        `--dns-ttl-max=${TTL_SECONDS}s`,
        "--health-interval=1s",
      ], () => undefined);
      await using lb = await startBalancer(config);
      // Found at start, probed, then in rotation.
      await waitUntil("both backends healthy", () => lb.pool.healthyCount === 2);
      assertEquals(lb.pool.backends.map((b) => b.name).sort(), [
        `127.0.0.2:${port}`,
        `127.0.0.3:${port}`,
      ]);

      const client = steadyClient(lb.url);
      await waitUntil("traffic on both", () => {
        const bodies = new Set(client.answers.map((a) => a.body));
        return bodies.has("two") && bodies.has("three");
      });
      await dns.setHosts({ "web.test": ["127.0.0.3", "127.0.0.4"] });
      const changedAt = performance.now();
      await waitUntil("traffic on four, none on two", () => {
        const recent = client.answers.filter((a) => a.atMs > changedAt).slice(-6);
        return recent.length === 6 && recent.some((a) => a.body === "four") &&
          recent.every((a) => a.body !== "two");
      }, { timeoutMs: 10_000 });
      const followedMs = performance.now() - changedAt;

      // A dead DNS server: lookups fail, the last good set keeps serving.
      await dns.stop();
      await waitUntil("the name marked stale", async () => {
        const discovery = (await status(lb)).discovery as Array<{ state: string }>;
        return discovery[0]?.state === "stale";
      }, { timeoutMs: 15_000 });
      const staleFrom = client.answers.length;
      await waitUntil("more answers while stale", () => client.answers.length > staleFrom + 20);
      await client.stop();

      const failed = client.answers.filter((a) => a.status !== 200);
      assertEquals(failed, [], "no request failed");
      assert(
        followedMs <= TTL_SECONDS * 1000 + SLACK_MS,
        `traffic followed the new records after ${Math.round(followedMs)} ms`,
      );
      const stale = client.answers.slice(staleFrom).map((a) => a.body);
      assertEquals([...new Set(stale)].sort(), ["four", "three"]);
      const metrics = await (await fetch(new URL("/metrics", lb.adminUrl))).text();
      assertStringIncludes(metrics, `denolb_dns_stale{name="web.test:${port}"} 1`);
      assertStringIncludes(metrics, `denolb_dns_backends{name="web.test:${port}"} 2`);
      // The vanished backend drained and left the pool.
      await waitUntil("two removed", () => lb.pool.find(`http://127.0.0.2:${port}/`) === undefined);
    } finally {
      await Promise.all(servers.map((server) => server.shutdown()));
    }
  },
});

Deno.test({
  name:
    "--backend-srv takes targets, ports and weights, and follows new records without a failed request" +
    why,
  ignore,
  async fn() {
    const a = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response("a"),
    );
    const b = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response("b"),
    );
    const c = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      () => new Response("c"),
    );
    const hosts = {
      "a.svc.test": ["127.0.0.1"],
      "b.svc.test": ["127.0.0.1"],
      "c.svc.test": ["127.0.0.1"],
    };
    const name = "_web._tcp.svc.test";
    await using dns = await startDnsmasq({
      hosts,
      srv: [
        { name, target: "a.svc.test", port: a.addr.port, weight: 10 },
        { name, target: "b.svc.test", port: b.addr.port, weight: 30 },
        // A backup (higher priority number): not used while the others answer.
        { name, target: "c.svc.test", port: c.addr.port, priority: 5, weight: 10 },
      ],
    }, TTL_SECONDS);
    try {
      const config = await parseBalancerArgs([
        "--port=0",
        "--admin=127.0.0.1:0",
        "--log-level=fatal",
        "--access-log=off",
        "--workers=1",
        `--backend-srv=${name}`,
        `--dns-server=${dns.address}`,
        "--dns-ttl-min=100ms",
        // No TTL is reported for SRV records: the ceiling is how often they are read again.
        `--dns-ttl-max=${TTL_SECONDS}s`,
      ], () => undefined);
      await using lb = await startBalancer(config);
      await waitUntil("both targets healthy", () => lb.pool.healthyCount === 2);
      const weights = Object.fromEntries(
        lb.pool.backends.map((backend) => [backend.url.port, backend.weight]),
      );
      assertEquals(weights, { [a.addr.port]: 10, [b.addr.port]: 30 });

      const client = steadyClient(lb.url);
      await waitUntil("traffic on a and b", () => {
        const bodies = new Set(client.answers.map((answer) => answer.body));
        return bodies.has("a") && bodies.has("b");
      });
      await dns.restart({
        hosts,
        srv: [
          { name, target: "b.svc.test", port: b.addr.port, weight: 30 },
          { name, target: "c.svc.test", port: c.addr.port, weight: 10 },
        ],
      });
      const changedAt = performance.now();
      await waitUntil("traffic on c, none on a", () => {
        const recent = client.answers.filter((answer) => answer.atMs > changedAt).slice(-8);
        return recent.length === 8 && recent.some((answer) => answer.body === "c") &&
          recent.every((answer) => answer.body !== "a");
      }, { timeoutMs: 10_000 });
      const followedMs = performance.now() - changedAt;
      await client.stop();
      assertEquals(
        client.answers.filter((answer) => answer.status !== 200),
        [],
        "no request failed",
      );
      assert(
        followedMs <= TTL_SECONDS * 1000 + SLACK_MS,
        `traffic followed the new records after ${Math.round(followedMs)} ms`,
      );
    } finally {
      await Promise.all([a.shutdown(), b.shutdown(), c.shutdown()]);
    }
  },
});
