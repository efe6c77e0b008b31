/**
 * Property-based check of the request path's invariants over generated request targets, Host
 * values and header sets, sent as raw bytes through the real handler on a real server:
 * - the path a backend receives is the path the balancer logged;
 * - nothing outside the pool is ever reached, whatever Host or absolute-form target says;
 * - hop-by-hop headers, and headers a client's Connection names, never pass;
 * - the balancer's X-Forwarded-For and Forwarded entries are always the last; from an
 *   untrusted peer they are the only ones, from a trusted peer (`--trusted-proxies`) the
 *   client's come first unless its Connection named them.
 */
import { DEFAULTS, settingsWith } from "../support/settings.ts";
import fc from "fast-check";
import { getLogger } from "@logtape/logtape";
import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { createHandler } from "../../lib/data/handler.ts";
import { Metrics } from "../../lib/core/metrics.ts";
import { createRoundRobin } from "../../lib/policies/round_robin.ts";
import { Pool } from "../../lib/core/pool.ts";
import { createUpstreamClient } from "../../lib/data/proxy.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { rawRequest } from "../../load/bench/raw_http.ts";
import { captureAccessLog, startServer } from "../support/servers.ts";
import { type Upstream, UPSTREAMS } from "../../lib/config/settings.ts";
import { createHttp1Client } from "../../lib/upstream/http1.ts";

const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

interface Received {
  readonly path: string;
  readonly headers: Headers;
}

for (const upstream of UPSTREAMS) {
  Deno.test(`request path invariants hold for generated targets, Hosts and headers [${upstream}]`, async () => {
    await checkInvariants(upstream);
  });
}

async function checkInvariants(upstream: Upstream): Promise<void> {
  const inPool: Received[] = [];
  const outside: Received[] = [];
  const record = (into: Received[]) => (request: Request) => {
    const url = new URL(request.url);
    into.push({ path: url.pathname, headers: request.headers });
    return new Response("ok");
  };
  await using backend = startServer(record(inPool));
  await using elsewhere = startServer(record(outside));
  const pool = new Pool([new Backend(parseBackendUrl(backend.url.href))]);
  using client = createUpstreamClient({ ...DEFAULTS.proxy, maxIdlePerHost: 4 });
  using http1 = createHttp1Client(DEFAULTS.proxy);
  const access = captureAccessLog();
  // The same handler twice: one trusts no peer, one trusts 127.0.0.1 (the test client).
  const startLb = (trustedProxies: readonly string[]) =>
    startServer(createHandler({
      ...(upstream === "http1" ? { fetch: http1.fetch } : {}),
      pool,
      policy: createRoundRobin(),
      client,
      logger: getLogger(["denolb", "proxy"]),
      metrics: new Metrics(pool.backends),
      settings: settingsWith({ proxy: { timeoutMs: 5_000, retries: 0, trustedProxies } }),
      accessLog: access.sink,
    }));
  await using untrustedLb = startLb([]);
  await using trustedLb = startLb(["127.0.0.1/32"]);

  const otherAuthority = `127.0.0.1:${elsewhere.port}`;
  const segment = fc.constantFrom(
    "a",
    "b",
    "..",
    ".",
    "%2e%2e",
    "%2E",
    "%41",
    "_lb",
    "status",
    "x%2Fy",
    "x\\y",
    "%zz",
    "",
    "~u",
    "%7e",
    "a%20b",
  );
  const path = fc.array(segment, { maxLength: 6 }).map((parts) => "/" + parts.join("/"));
  const query = fc.constantFrom("", "?a=1", "?x=%2e%2e/../", "?q=a/b");
  const host = fc.constantFrom(
    "shop.example",
    otherAuthority,
    "shop.example/admin",
    `${otherAuthority}/x`,
    "a/_lb/status?",
    "u@shop.example",
    "[::1]:8080",
    "",
  );
  const form = fc.constantFrom("origin", "absolute-other", "absolute-same");
  const headerName = fc.constantFrom(
    "x-custom",
    "x-forwarded-for",
    "forwarded",
    "keep-alive",
    "te",
    "upgrade",
    "proxy-connection",
    "host",
    "x-request-id",
  );
  const extra = fc.record({
    connectionNames: fc.array(headerName, { maxLength: 3 }),
    forwardedFor: fc.option(fc.constantFrom("10.0.0.1", "10.0.0.1, 10.0.0.2", "1.2.3.4"), {
      nil: undefined,
    }),
    forwarded: fc.option(fc.constantFrom("for=10.0.0.1", 'for="[2001:db8::1]";proto=https'), {
      nil: undefined,
    }),
    isTrusted: fc.boolean(),
    keepAlive: fc.boolean(),
    te: fc.boolean(),
    upgrade: fc.boolean(),
    custom: fc.boolean(),
  });

  await fc.assert(
    fc.asyncProperty(path, query, host, form, extra, async (p, q, h, f, x) => {
      inPool.length = 0;
      access.clear();
      const target = f === "origin"
        ? p + q
        : `http://${f === "absolute-other" ? otherAuthority : h}${p}${q}`;
      const lines = [`GET ${target} HTTP/1.1`, `Host: ${h}`];
      lines.push(`Connection: ${[...x.connectionNames, "close"].join(", ")}`);
      if (x.forwardedFor !== undefined) lines.push(`X-Forwarded-For: ${x.forwardedFor}`);
      if (x.forwarded !== undefined) lines.push(`Forwarded: ${x.forwarded}`);
      if (x.keepAlive) lines.push("Keep-Alive: timeout=5");
      if (x.te) lines.push("TE: trailers");
      if (x.upgrade) lines.push("Upgrade: websocket");
      if (x.custom) lines.push("X-Custom: 1");
      const lb = x.isTrusted ? trustedLb : untrustedLb;
      const response = await rawRequest(lb.port, lines.join("\r\n") + "\r\n\r\n");
      assertEquals(outside, [], "a request left the pool");
      if (response.status !== 200) {
        assert(response.status === 400, `unexpected status ${response.status}`);
        assertEquals(inPool, []);
        return;
      }
      assertEquals(inPool.length, 1);
      const received = inPool[0];
      if (received === undefined) return;
      const logged = access.find("forwarded").map((r) => r.path);
      assertEquals(logged, [received.path]);
      for (const name of HOP_BY_HOP) assertEquals(received.headers.get(name), null, name);
      for (const name of x.connectionNames) {
        if (["host", "x-forwarded-for", "forwarded", "x-request-id"].includes(name)) continue;
        assertEquals(received.headers.get(name), null, `${name} named in Connection`);
      }
      const forwardedFor = received.headers.get("x-forwarded-for")?.split(",").map((s) => s.trim());
      assertEquals(forwardedFor?.at(-1), "127.0.0.1");
      const forwarded = received.headers.get("forwarded")?.split(", ");
      assert(forwarded?.at(-1)?.startsWith("for=127.0.0.1;proto=http;host="), `${forwarded}`);
      // What the client sent survives only from a trusted peer that did not name it hop-by-hop.
      const keptFor = x.isTrusted && !x.connectionNames.includes("x-forwarded-for")
        ? x.forwardedFor
        : undefined;
      assertEquals(forwardedFor?.slice(0, -1).join(", "), keptFor ?? "");
      const keptForwarded = x.isTrusted && !x.connectionNames.includes("forwarded")
        ? x.forwarded
        : undefined;
      assertEquals(forwarded?.slice(0, -1).join(", "), keptForwarded ?? "");
      assert(received.headers.get("host") !== null);
    }),
    { numRuns: 200, seed: 20261130 },
  );
}
