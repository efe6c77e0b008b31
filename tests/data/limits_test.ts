/**
 * Request size limits through the real data plane, with raw TCP clients and a recording raw
 * backend: 431 for header fields, 414 for the target, 413 for a declared or a streamed body;
 * what was refused from its head never reaches a backend.
 */
import { assert, assertEquals } from "../support/assert.ts";
import { headerValues, RawConnection, rawRequest } from "../../load/bench/raw_http.ts";
import { startRawBackend } from "../../load/bench/raw_backend.ts";
import { captureAccessLog, startBalancer, startServer } from "../support/servers.ts";
import { UPSTREAMS } from "../../lib/config/settings.ts";
import { Metrics } from "../../lib/core/metrics.ts";

const decoder = new TextDecoder();

function get(target: string, headers = ""): string {
  return `GET ${target} HTTP/1.1\r\nHost: a\r\n${headers}Connection: close\r\n\r\n`;
}

for (const upstream of UPSTREAMS) {
  const test = (name: string, fn: () => Promise<void>) => Deno.test(`${name} [${upstream}]`, fn);

  test("header fields over --max-header-size are 431 with Connection: close; under it pass", async () => {
    await using backend = startRawBackend();
    const access = captureAccessLog();
    await using lb = startBalancer([`http://127.0.0.1:${backend.port}`], {
      upstream,
      accessLog: access.sink,
      limits: { maxHeaderBytes: 4096 },
    });
    const big = await rawRequest(lb.port, get("/", `X-Big: ${"a".repeat(4100)}\r\n`));
    assertEquals(big.status, 431);
    assert(headerValues(big, "connection").includes("close"));
    assertEquals(
      decoder.decode(big.body),
      "Request header fields too large: together they exceed 4KiB\n",
    );
    // Many small fields add up the same way.
    const fields = Array.from({ length: 60 }, (_, i) => `X-F${i}: ${"v".repeat(80)}\r\n`);
    assertEquals((await rawRequest(lb.port, get("/", fields.join("")))).status, 431);
    assertEquals(backend.received.length, 0);
    const ok = await rawRequest(lb.port, get("/", `X-Big: ${"a".repeat(3900)}\r\n`));
    assertEquals(ok.status, 200);
    assertEquals(backend.received.length, 1);
    const refused = access.find("refused");
    assertEquals(refused.map((r) => [r.status, r.reason]), [
      [431, "request header fields exceed 4KiB"],
      [431, "request header fields exceed 4KiB"],
    ]);
    assertEquals(refused[0]?.backend, null);
  });

  test("a target over --max-url-length is 414; at the limit it passes", async () => {
    await using backend = startRawBackend();
    await using lb = startBalancer([`http://127.0.0.1:${backend.port}`], { upstream });
    // The default limit, 8KiB: the target counts from its first "/", query included.
    const long = await rawRequest(lb.port, get(`/${"a".repeat(8000)}?q=${"b".repeat(200)}`));
    assertEquals(long.status, 414);
    assert(headerValues(long, "connection").includes("close"));
    assertEquals(decoder.decode(long.body), "URI too long: the request target exceeds 8KiB\n");
    assertEquals(backend.received.length, 0);
    const atLimit = await rawRequest(lb.port, get(`/${"a".repeat(8191)}`));
    assertEquals(atLimit.status, 200);
    assertEquals(backend.received[0]?.target.length, 8192);
  });

  test("a Content-Length over --max-body-size is 413 at once, the body never read or forwarded", async () => {
    await using backend = startRawBackend();
    await using lb = startBalancer([`http://127.0.0.1:${backend.port}`], {
      upstream,
      limits: { maxBodyBytes: 1000 },
    });
    await using conn = await RawConnection.open(lb.port);
    // Only the head is sent: the answer must not wait for the 5000 bytes announced.
    await conn.send("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n");
    const read = await conn.readResponse({ timeoutMs: 5_000 });
    assert(read.kind === "response", read.kind);
    assertEquals(read.response.status, 413);
    assert(headerValues(read.response, "connection").includes("close"));
    assertEquals(
      decoder.decode(read.response.body),
      "Content too large: the request body exceeds 1KB\n",
    );
    assert((await conn.readUntilClosed(5_000)).isClosed, "the connection is closed");
    assertEquals(backend.connections.length, 0);
    // The balancer still serves, and a body at the limit passes.
    const ok = await rawRequest(
      lb.port,
      `POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n${
        "x".repeat(1000)
      }`,
    );
    assertEquals(ok.status, 200);
    assertEquals(backend.received[0]?.bodyBytes, 1000);
  });

  test("a chunked body growing past --max-body-size while buffered is 413 and reaches no backend", async () => {
    await using backend = startRawBackend();
    await using lb = startBalancer([`http://127.0.0.1:${backend.port}`], {
      upstream,
      limits: { maxBodyBytes: 1000 },
    });
    await using conn = await RawConnection.open(lb.port);
    await conn.send("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    await conn.send(`258\r\n${"x".repeat(600)}\r\n`);
    await conn.send(`258\r\n${"x".repeat(600)}\r\n`);
    const read = await conn.readResponse({ timeoutMs: 5_000 });
    assert(read.kind === "response", read.kind);
    assertEquals(read.response.status, 413);
    assert(headerValues(read.response, "connection").includes("close"));
    assert((await conn.readUntilClosed(5_000)).isClosed, "the connection is closed");
    assertEquals(backend.connections.length, 0);
  });

  test("a chunked body growing past --max-body-size while streaming aborts the upstream request; the client gets 413", async () => {
    await using backend = startRawBackend();
    const access = captureAccessLog();
    await using lb = startBalancer([`http://127.0.0.1:${backend.port}`], {
      upstream,
      accessLog: access.sink,
      requestBufferBytes: 100,
      limits: { maxBodyBytes: 1000 },
    });
    await using conn = await RawConnection.open(lb.port);
    await conn.send("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    // The first 600 bytes pass the 100-byte buffer: the body streams toward the backend.
    await conn.send(`258\r\n${"x".repeat(600)}\r\n`);
    await conn.send(`258\r\n${"x".repeat(600)}\r\n`);
    const read = await conn.readResponse({ timeoutMs: 5_000 });
    assert(read.kind === "response", read.kind);
    assertEquals(read.response.status, 413);
    assert(headerValues(read.response, "connection").includes("close"));
    await conn.close();
    // The backend never got a complete request: the upload was cut off.
    for (const connection of backend.connections) await connection.ended;
    assertEquals(backend.received.length, 0);
    assertEquals(lb.pool.backends[0]?.failures, 0, "not the backend's fault");
    assertEquals(lb.pool.backends[0]?.inFlight, 0);
    assertEquals(access.find("refused").map((r) => r.status), [413]);
  });
}

Deno.test("connections beyond --max-connections get a 503 with Connection: close; the balancer keeps serving", async () => {
  await using backend = startRawBackend();
  await using lb = startBalancer([`http://127.0.0.1:${backend.port}`], {
    limits: { maxConnections: 2 },
  });
  const keepAlive = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  const held: RawConnection[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const conn = await RawConnection.open(lb.port);
      held.push(conn);
      await conn.send(keepAlive);
      const read = await conn.readResponse({ timeoutMs: 5_000 });
      assert(read.kind === "response" && read.response.status === 200, "held connection served");
    }
    for (let i = 0; i < 3; i++) {
      await using extra = await RawConnection.open(lb.port);
      await extra.send(keepAlive);
      const read = await extra.readResponse({ timeoutMs: 5_000 });
      assert(read.kind === "response", read.kind);
      assertEquals(read.response.status, 503);
      assertEquals(headerValues(read.response, "connection"), ["close"]);
      assertEquals(headerValues(read.response, "retry-after"), ["1"]);
      assertEquals(
        decoder.decode(read.response.body),
        "Service unavailable: the balancer is at its connection limit\n",
      );
      assert((await extra.readUntilClosed(5_000)).isClosed, "the extra connection is closed");
    }
    assertEquals(lb.metrics.eventCount("connection-refused"), 3);
    assert(lb.metrics.render().includes("denolb_connections_rejected_total 3\n"));
    // The held connections still work, and a freed slot takes a new connection.
    const again = held[0];
    await again?.send(keepAlive);
    const read = await again?.readResponse({ timeoutMs: 5_000 });
    assert(read?.kind === "response" && read.response.status === 200, "still served");
    // Once the balancer has seen a held connection close, a new one is served. It learns of
    // the close a moment after the client: each try is a full exchange, at most 50 of them.
    await held.shift()?.close();
    let status = 503;
    for (let tries = 0; tries < 50 && status === 503; tries++) {
      status = (await rawRequest(lb.port, get("/"))).status;
    }
    assertEquals(status, 200);
  } finally {
    for (const conn of held) await conn.close();
  }
});

/** A backend that holds every request until released, counting how many it holds at once. */
function heldBackend() {
  let holding = 0;
  let maxHolding = 0;
  let arrived = 0;
  const release = Promise.withResolvers<void>();
  const arrivals: Array<{ count: number; resolve: () => void }> = [];
  const server = startServer(async () => {
    arrived++;
    holding++;
    maxHolding = Math.max(maxHolding, holding);
    for (const waiter of arrivals) if (arrived >= waiter.count) waiter.resolve();
    await release.promise;
    holding--;
    return new Response("held");
  });
  return {
    url: server.url,
    close: () => {
      release.resolve();
      return server.close();
    },
    [Symbol.asyncDispose]: () => {
      release.resolve();
      return server.close();
    },
    get maxHolding() {
      return maxHolding;
    },
    get arrived() {
      return arrived;
    },
    /** Resolves once `count` requests have arrived in total. */
    arrival(count: number): Promise<void> {
      const { promise, resolve } = Promise.withResolvers<void>();
      arrivals.push({ count, resolve });
      if (arrived >= count) resolve();
      return promise;
    },
    release: () => release.resolve(),
  };
}

async function textOf(response: Promise<Response>): Promise<[number, string]> {
  const r = await response;
  return [r.status, await r.text()];
}

for (const upstream of UPSTREAMS) {
  Deno.test(`a backend at its maxInFlight gets no more; the others take the rest [${upstream}]`, async () => {
    await using slow = heldBackend();
    let fastCount = 0;
    const fastDone = Promise.withResolvers<void>();
    await using fast = startServer(() => {
      if (++fastCount === 8) fastDone.resolve();
      return new Response("fast");
    });
    await using lb = startBalancer([slow.url, fast.url], { upstream, maxInFlight: [2] });
    const responses = Array.from({ length: 10 }, () => textOf(fetch(lb.url)));
    await Promise.all([slow.arrival(2), fastDone.promise]);
    assertEquals(lb.pool.backends[0]?.inFlight, 2);
    slow.release();
    const answered = await Promise.all(responses);
    assertEquals(answered.filter(([, text]) => text === "held").length, 2);
    assertEquals(answered.filter(([, text]) => text === "fast").length, 8);
    assertEquals(slow.maxHolding, 2);
    assertEquals(slow.arrived, 2);
  });
}

Deno.test("when every backend is full a request waits for a slot; past --queue-size it is 503", async () => {
  await using slow = heldBackend();
  await using lb = startBalancer([slow.url], {
    limits: { maxInFlight: 1, queueSize: 1, queueTimeoutMs: 60_000 },
  });
  const first = textOf(fetch(lb.url));
  await slow.arrival(1);
  // One of the next two waits in the queue; the other finds it full.
  const second = textOf(fetch(lb.url));
  const third = textOf(fetch(lb.url));
  const refused = await Promise.race([second, third]);
  assertEquals(refused, [503, "Service unavailable: every backend is at its in-flight limit\n"]);
  assertEquals(lb.metrics.eventCount("queue-full"), 1);
  assertEquals(slow.arrived, 1, "the queued request waits");
  slow.release();
  const all = await Promise.all([first, second, third]);
  assertEquals(all.map(([status]) => status).sort(), [200, 200, 503]);
  assertEquals(slow.maxHolding, 1);
  assertEquals(slow.arrived, 2);
});

Deno.test("a queued request is 503 with Retry-After after --queue-timeout", async () => {
  await using slow = heldBackend();
  const access = captureAccessLog();
  await using lb = startBalancer([slow.url], {
    accessLog: access.sink,
    limits: { maxInFlight: 1, queueSize: 5, queueTimeoutMs: 50 },
  });
  const first = textOf(fetch(lb.url));
  await slow.arrival(1);
  const waited = await fetch(lb.url);
  assertEquals(waited.status, 503);
  assertEquals(waited.headers.get("retry-after"), "1");
  await waited.body?.cancel();
  assertEquals(lb.metrics.eventCount("queue-timeout"), 1);
  assertEquals(access.find("refused").map((r) => r.reason), [
    "backends at capacity (queue-timeout)",
  ]);
  slow.release();
  assertEquals(await first, [200, "held"]);
});

/** Sends a request and returns the status line that came back, even if a reset followed it. */
async function firstStatusLine(port: number, request: string): Promise<string> {
  await using conn = await RawConnection.open(port);
  await conn.send(request).catch(() => {});
  const { bytes } = await conn.readUntilClosed(5_000);
  return decoder.decode(bytes).split("\r\n")[0] ?? "";
}

Deno.test("Deno's own limits, pinned: a request head over 65,540 bytes or 128 fields is 400", async () => {
  await using backend = startRawBackend();
  await using lb = startBalancer([`http://127.0.0.1:${backend.port}`], {
    limits: { maxHeaderBytes: 0, maxUrlLength: 0 },
  });
  // Request line, Host, the big field and Connection: the head ends with its empty line.
  const withValue = (n: number) => get("/", `X-Big: ${"a".repeat(n)}\r\n`);
  const fixed = withValue(0).length;
  assertEquals((await rawRequest(lb.port, withValue(65_540 - fixed))).status, 200);
  assertEquals(
    await firstStatusLine(lb.port, withValue(65_541 - fixed)),
    "HTTP/1.1 400 Bad Request",
  );
  const fields = (count: number) =>
    get("/", Array.from({ length: count }, (_, i) => `X-F${i}: v\r\n`).join(""));
  // Host and Connection are two of the 128.
  assertEquals((await rawRequest(lb.port, fields(126))).status, 200);
  assertEquals(await firstStatusLine(lb.port, fields(127)), "HTTP/1.1 400 Bad Request");
  assertEquals(backend.received.length, 2);
});

Deno.test("limit counters survive the cross-isolate merge", () => {
  const worker = new Metrics([]);
  worker.recordEvent("connection-refused");
  worker.recordEvent("queue-full");
  worker.recordEvent("queue-timeout");
  const control = new Metrics([]);
  control.recordEvent("connection-refused");
  control.absorb("worker-1", structuredClone(worker.exportState()));
  const text = control.render();
  assert(text.includes("denolb_connections_rejected_total 2\n"), text);
  assert(text.includes('denolb_queue_rejected_total{reason="queue-full"} 1\n'));
  assert(text.includes('denolb_queue_rejected_total{reason="queue-timeout"} 1\n'));
});
