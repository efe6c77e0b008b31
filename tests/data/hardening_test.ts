/**
 * Issue 6's request-path cases through the real handler on a real server, with raw TCP
 * clients where a fetch client would hide or add bytes: a request cannot steer the balancer,
 * slow or vanishing clients are not blamed on backends, and refused requests never reach one.
 */
import { DEFAULTS, settingsWith } from "../support/settings.ts";
import { getLogger } from "@logtape/logtape";
import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { createHandler } from "../../lib/data/handler.ts";
import type { ConfigLayer } from "../../lib/config/settings.ts";
import { Metrics } from "../../lib/core/metrics.ts";
import { createRoundRobin } from "../../lib/policies/round_robin.ts";
import { Pool } from "../../lib/core/pool.ts";
import { createUpstreamClient } from "../../lib/data/proxy.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { headerValues, rawRequest } from "../../load/bench/raw_http.ts";
import { captureAccessLog, startServer, type TestServer } from "../support/servers.ts";
import type { Upstream } from "../../lib/config/settings.ts";
import { UPSTREAMS } from "../../lib/config/settings.ts";
import { createHttp1Client } from "../../lib/upstream/http1.ts";
import { startRawBackend } from "../../load/bench/raw_backend.ts";
import { waitUntil } from "../support/wait.ts";
/** What a backend saw of one request. */
interface Seen {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** A backend that records every request and answers 200 "ok". */
function recordingBackend(): TestServer & {
  readonly seen: Seen[];
  /** Resolves when the first request's head has arrived (its body may still be coming). */
  readonly arrived: Promise<void>;
} {
  const seen: Seen[] = [];
  const arrived = Promise.withResolvers<void>();
  const server = startServer(async (request) => {
    arrived.resolve();
    const url = new URL(request.url);
    seen.push({
      method: request.method,
      path: url.pathname + url.search,
      headers: Object.fromEntries(request.headers),
      body: await request.text(),
    });
    return new Response("ok");
  });
  return Object.assign(server, { seen, arrived: arrived.promise });
}

/** The real handler on a real server, on a fake clock. */
function startLb(
  backends: readonly URL[],
  upstream: Upstream,
  settings: ConfigLayer = {},
) {
  const clock = new FakeClock();
  const http1 = upstream === "http1" ? createHttp1Client(DEFAULTS.proxy) : undefined;
  const pool = new Pool(backends.map((url) => new Backend(parseBackendUrl(url.href))));
  const metrics = new Metrics(pool.backends);
  const client = createUpstreamClient({
    ...DEFAULTS.proxy,
    maxIdlePerHost: 4,
    keepAliveTimeoutMs: 5_000,
  });
  const access = captureAccessLog();
  const server = startServer(createHandler({
    accessLog: access.sink,
    pool,
    policy: createRoundRobin(),
    client,
    logger: getLogger(["denolb", "proxy"]),
    metrics,
    settings: settingsWith({ proxy: { timeoutMs: 5_000, retries: 1 } }, settings),
    clock,
    ...(http1 === undefined ? {} : { fetch: http1.fetch }),
  }));
  const close = () =>
    server.close().finally(() => {
      client.close();
      http1?.close();
    });
  return {
    port: server.port,
    url: server.url,
    pool,
    metrics,
    clock,
    access,
    [Symbol.asyncDispose]: close,
  };
}

function get(target: string, headers: string): string {
  return `GET ${target} HTTP/1.1\r\n${headers}Connection: close\r\n\r\n`;
}

// Every case runs once per upstream client: `fetch` and the HTTP/1.1 client.
/** A request whose body the test releases piece by piece. */
function slowUpload(lbUrl: URL, first: string) {
  const rest = Promise.withResolvers<string | undefined>();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(first));
    },
    async pull(controller) {
      const more = await rest.promise;
      if (more === undefined) {
        controller.error(new Error("client gave up"));
        return;
      }
      controller.enqueue(new TextEncoder().encode(more));
      controller.close();
    },
  });
  const response = fetch(new URL("/upload", lbUrl), { method: "POST", body }).then(
    async (r) => ({ status: r.status, text: await r.text() }),
    () => ({ status: 0, text: "client aborted" }),
  );
  return {
    response,
    finish: (text: string) => rest.resolve(text),
    abort: () => rest.resolve(undefined),
  };
}

for (const upstream of UPSTREAMS) {
  const test = (name: string, fn: () => Promise<void>) => Deno.test(`${name} [${upstream}]`, fn);

  test("a Host with a path, query or userinfo is 400 and reaches no backend", async () => {
    await using backend = recordingBackend();
    await using lb = startLb([backend.url], upstream);
    for (const host of ["shop.example/admin", "a/_lb/status?", "u@a", "a:99999", ""]) {
      const response = await rawRequest(lb.port, get("/secret", `Host: ${host}\r\n`));
      assertEquals(response.status, 400, host);
    }
    const noHost = await rawRequest(lb.port, get("/secret", ""));
    assertEquals(noHost.status, 400);
    assertEquals(backend.seen, []);
    assertEquals(lb.pool.backends[0]?.requests, 0);
  });

  test("the upstream path is the normalized target, never a Host's text", async () => {
    await using backend = recordingBackend();
    await using lb = startLb([backend.url], upstream);
    const cases: Array<[string, string]> = [
      ["/secret", "/secret"],
      ["/a/../b", "/b"],
      ["/a/%2e%2e/b", "/b"],
      ["/a/%2E%2E/%2e/c?x=1&y=%2e", "/c?x=1&y=%2e"],
      ["/%7Euser/%41", "/~user/A"],
    ];
    for (const [target] of cases) {
      const response = await rawRequest(lb.port, get(target, "Host: shop.example\r\n"));
      assertEquals(response.status, 200, target);
    }
    assertEquals(backend.seen.map((s) => s.path), cases.map(([, expected]) => expected));
    const logged = lb.access.find("forwarded").map((r) => r.path);
    assertEquals(logged, cases.map(([, expected]) => expected.split("?")[0]));
  });

  test("backslashes, escaped slashes and malformed escapes are 400", async () => {
    await using backend = recordingBackend();
    await using lb = startLb([backend.url], upstream);
    for (const target of ["/a\\b", "/a/%2F/b", "/a/%5c/b", "/a%00", "/%zz"]) {
      const response = await rawRequest(lb.port, get(target, "Host: a\r\n"));
      assertEquals(response.status, 400, target);
    }
    assertEquals(backend.seen, []);
  });

  test("an absolute-form target's authority replaces Host; X-Forwarded-Proto comes from the connection", async () => {
    await using backend = recordingBackend();
    await using lb = startLb([backend.url], upstream);
    const response = await rawRequest(
      lb.port,
      get("https://other.example/p?q", "Host: a.example\r\n"),
    );
    assertEquals(response.status, 200);
    const [seen] = backend.seen;
    assertEquals(seen?.path, "/p?q");
    assertEquals(seen?.headers.host, "other.example");
    assertEquals(seen?.headers["x-forwarded-host"], "other.example");
    assertEquals(seen?.headers["x-forwarded-proto"], "http");
  });

  test("CONNECT is 501 and TRACE 405, answered by the balancer", async () => {
    await using backend = recordingBackend();
    await using lb = startLb([backend.url], upstream);
    const connect = await rawRequest(
      lb.port,
      "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\nConnection: close\r\n\r\n",
    );
    assertEquals(connect.status, 501);
    const trace = await rawRequest(
      lb.port,
      "TRACE / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assertEquals(trace.status, 405);
    assert(headerValues(trace, "allow")[0]?.includes("GET"));
    assertEquals(backend.seen, []);
    assertEquals(lb.pool.backends[0]?.failures, 0);
  });

  test("Connection cannot remove Host or the balancer's X-Forwarded-For; Expect is not forwarded", async () => {
    await using backend = recordingBackend();
    await using lb = startLb([backend.url], upstream);
    const response = await rawRequest(
      lb.port,
      "POST /form HTTP/1.1\r\nHost: shop.example\r\nConnection: host, x-forwarded-for, close\r\n" +
        "X-Forwarded-For: 6.6.6.6\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    );
    // The balancer answers the expectation itself, then the backend's response follows.
    assertEquals(response.status, 100);
    assert(new TextDecoder().decode(response.body).startsWith("HTTP/1.1 200 OK"));
    const [seen] = backend.seen;
    assertEquals(seen?.headers.host, "shop.example");
    assertEquals(seen?.headers["x-forwarded-for"], "127.0.0.1");
    assertEquals(seen?.headers.expect, undefined);
    assertEquals(seen?.body, "hello");
  });

  test("a backend's unrequested 101 Switching Protocols is a 502", async () => {
    const raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const serving = (async () => {
      for await (const conn of raw) {
        await conn.read(new Uint8Array(4096));
        await conn.write(new TextEncoder().encode("HTTP/1.1 101 Switching Protocols\r\n\r\nhello"));
        conn.close();
      }
    })();
    try {
      await using lb = startLb([new URL(`http://127.0.0.1:${raw.addr.port}/`)], upstream, {
        proxy: { retries: 0 },
      });
      const response = await rawRequest(lb.port, get("/", "Host: a\r\n"));
      assertEquals(response.status, 502);
      assertEquals(headerValues(response, "upgrade"), []);
    } finally {
      raw.close();
      await serving.catch(() => {});
    }
  });

  test("a stalled upload is 408 after the body timeout and never reaches a backend", async () => {
    await using backend = recordingBackend();
    await using lb = startLb([backend.url], upstream, {
      client: { bodyTimeoutMs: 30_000 },
    });
    const upload = slowUpload(lb.url, "part one;");
    await waitUntil("the body timeout's timer", () => lb.clock.pendingSleeps > 0);
    await lb.clock.advance(29_999);
    assertEquals(backend.seen, []);
    await lb.clock.advance(1);
    const { status } = await upload.response;
    assertEquals(status, 408);
    assertEquals(backend.seen, []);
    assertEquals(
      lb.metrics.eventCount("body-timeout"),
      0,
      "counted by the server, not the test deps",
    );
    upload.abort();
  });

  test("a client that aborts mid-upload is a 499, not a backend failure", async () => {
    await using backend = recordingBackend();
    await using lb = startLb([backend.url], upstream);
    const upload = slowUpload(lb.url, "part one;");
    await waitUntil("the body timeout's timer", () => lb.clock.pendingSleeps > 0);
    upload.abort();
    await upload.response;
    await waitUntil("the client-abort record", () => lb.access.find("client-abort").length > 0);
    assertEquals(backend.seen, []);
    assertEquals(lb.pool.backends[0]?.failures, 0);
    assertEquals(lb.access.find("failed"), []);
  });

  test("the response timeout starts when the request has been sent, not during the upload", async () => {
    await using backend = recordingBackend();
    // Stream every body (no buffer) so the upload is still going while time passes.
    await using lb = startLb([backend.url], upstream, {
      proxy: { timeoutMs: 3_000, requestBufferBytes: 0 },
      client: { bodyTimeoutMs: 0 },
    });
    const upload = slowUpload(lb.url, "part one;");
    // Once the backend has the request's head, a timer armed too early would be running.
    await backend.arrived;
    // Far past the response timeout while the client is still uploading.
    await lb.clock.advance(10_000);
    upload.finish("part two");
    const { status, text } = await upload.response;
    assertEquals(status, 200);
    assertEquals(text, "ok");
    assertEquals(backend.seen.map((s) => s.body), ["part one;part two"]);
  });
}

Deno.test("the HTTP/1.1 upstream forwards only what the client sent, plus the proxy's own headers", async () => {
  await using backend = startRawBackend();
  await using lb = startLb([new URL(`http://127.0.0.1:${backend.port}/`)], "http1");
  const response = await rawRequest(
    lb.port,
    "GET /plain?x=1 HTTP/1.1\r\nHost: shop.example\r\nX-Custom: Kept As Sent\r\nConnection: close\r\n\r\n",
  );
  assertEquals(response.status, 200);
  await backend.waitFor(1);
  const [request] = backend.received;
  assertEquals(
    `${request?.method} ${request?.target} ${request?.version}`,
    "GET /plain?x=1 HTTP/1.1",
  );
  const names = (request?.headers ?? []).map(([name]) => name.toLowerCase()).sort();
  // No user-agent, accept or accept-language appear: fetch would add all three.
  assertEquals(names, [
    "accept-encoding",
    "forwarded",
    "host",
    "x-custom",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-request-id",
  ]);
});

Deno.test("with fetch, Deno adds exactly User-Agent, Accept and Accept-Language (its limit, pinned)", async () => {
  await using backend = startRawBackend();
  await using lb = startLb([new URL(`http://127.0.0.1:${backend.port}/`)], "fetch");
  await rawRequest(lb.port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  await backend.waitFor(1);
  const names = new Set((backend.received[0]?.headers ?? []).map(([name]) => name.toLowerCase()));
  for (const added of ["user-agent", "accept", "accept-language"]) assert(names.has(added), added);
});
