/**
 * The second red-team round's request-path cases, through the balancer's real data plane (its
 * listener, handler and upstream clients) with raw TCP clients and a raw backend that records
 * exactly what it received. Every case runs once per upstream: `fetch` and `http1`.
 *
 * What is pinned: a request the balancer cannot forward is answered by the balancer and never
 * counts against a backend; bodies are forwarded or refused, never dropped; a response's
 * framing is never passed on inconsistent; a refusal that leaves bytes unread closes the
 * connection; 499 never goes on the wire; a backend dying mid-body is logged with the bytes
 * sent, named and counted; HTTP/1.0 keep-alive is honoured or declined out loud; an early answer
 * to a streamed upload is relayed and the connection closed; the access log keeps the query;
 * and `X-Request-Id` is taken only from trusted proxies.
 */
import { Backend } from "../../lib/core/backend.ts";
import { forward } from "../../lib/data/proxy.ts";
import { formatAccessRecord } from "../../lib/data/access_log.ts";
import { DeadlineQueue } from "../../lib/shared/deadlines.ts";
import type { AttemptResult } from "../../lib/core/outlier.ts";
import { UPSTREAMS } from "../../lib/config/settings.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { captureLogs } from "../support/capture_logs.ts";
import { startRawBackend } from "../../load/bench/raw_backend.ts";
import {
  headerValues,
  RawConnection,
  rawRequest,
  type RawResponse,
} from "../../load/bench/raw_http.ts";
import {
  captureAccessLog,
  startBalancer,
  type TestBalancer,
  type TestBalancerOptions,
} from "../support/servers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** How long a raw read may wait for something that should come at once. */
const READ_MS = 5_000;

/** The balancer in front of one raw backend, recording attempts and access records. */
function start(
  backendPort: number,
  options: TestBalancerOptions = {},
): TestBalancer & {
  readonly attempts: AttemptResult[];
  readonly access: ReturnType<typeof captureAccessLog>;
} {
  const attempts: AttemptResult[] = [];
  const access = captureAccessLog();
  const lb = startBalancer([`http://127.0.0.1:${backendPort}/`], {
    accessLog: access.sink,
    onAttempt: (_backend: Backend, result: AttemptResult) => attempts.push(result),
    ...options,
  });
  return Object.assign(lb, { attempts, access });
}

/** Waits, with a deadline, until `condition` holds. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + READ_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Sends `request` on a fresh connection and reads one response, then whether it closed. */
async function exchange(
  port: number,
  request: string | Uint8Array,
): Promise<{ response: RawResponse | undefined; isClosed: boolean; rest: string }> {
  await using conn = await RawConnection.open(port);
  await conn.send(request);
  const read = await conn.readResponse({ timeoutMs: READ_MS });
  const after = await conn.readUntilClosed(READ_MS);
  return {
    response: read.kind === "response" ? read.response : undefined,
    isClosed: after.isClosed,
    rest: decoder.decode(after.bytes),
  };
}

for (const upstream of UPSTREAMS) {
  const test = (name: string, fn: () => Promise<void>) =>
    Deno.test({ name: `${name} [${upstream}]`, fn });

  test("methods fetch refuses are answered by the balancer and never count against a backend", async () => {
    await using backend = startRawBackend();
    await using lb = start(backend.port, { upstream });
    const methods = ["TRACK", "track", "Track", "trace", "connect", "CONNECT"];
    for (let i = 0; i < 3; i++) {
      for (const method of methods) {
        const target = method === "CONNECT" ? "a:443" : "/";
        const response = await rawRequest(
          lb.port,
          `${method} ${target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`,
        );
        const expected = method.toLowerCase() === "trace" ? 405 : 501;
        assertEquals(response.status, expected, method);
        assert(headerValues(response, "allow")[0]?.includes("GET"), method);
      }
    }
    assertEquals(backend.received.length, 0);
    assertEquals(lb.pool.backends[0]?.failures, 0);
    assertEquals(lb.pool.backends[0]?.isHealthy, true);
    assertEquals(lb.attempts, []);
    assertEquals(lb.access.find("refused").length, 3 * methods.length);
  });

  test("a GET or HEAD body is refused with 400, never dropped silently", async () => {
    // Deno.serve reads such a body and discards it (the handler's request.body is null), and
    // fetch refuses to send one: neither upstream could forward it.
    await using backend = startRawBackend();
    await using lb = start(backend.port, { upstream });
    for (
      const [method, framing] of [
        ["GET", "Content-Length: 5\r\n\r\nhello"],
        ["HEAD", "Content-Length: 5\r\n\r\nhello"],
        ["GET", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
      ] as const
    ) {
      await using conn = await RawConnection.open(lb.port);
      await conn.send(`${method} /q HTTP/1.1\r\nHost: a\r\n${framing}`);
      const read = await conn.readResponse({
        timeoutMs: READ_MS,
        isHeadRequest: method === "HEAD",
      });
      assertEquals(read.kind === "response" ? read.response.status : read.kind, 400, method);
      assert((await conn.readUntilClosed(READ_MS)).isClosed, method);
    }
    assertEquals(backend.received.length, 0);
    assertEquals(lb.access.find("refused").map((r) => r.status), [400, 400, 400]);
    // A GET with an empty body, or none, is forwarded.
    for (const framing of ["Content-Length: 0\r\n", ""]) {
      const plain = await rawRequest(
        lb.port,
        `GET / HTTP/1.1\r\nHost: a\r\n${framing}Connection: close\r\n\r\n`,
      );
      assertEquals(plain.status, 200);
    }
  });

  test("a response with Content-Length and chunked Transfer-Encoding is never passed on with both", async () => {
    await using backend = startRawBackend({
      answer: {
        kind: "respond",
        response: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" +
          "5\r\nhello\r\n0\r\n\r\n",
      },
    });
    await using lb = start(backend.port, { upstream, retries: 0 });
    const response = await rawRequest(
      lb.port,
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    if (response.status === 502) return;
    assertEquals(response.status, 200);
    assertEquals(headerValues(response, "content-length"), []);
    const body = decoder.decode(response.body);
    assertEquals(body, "5\r\nhello\r\n0\r\n\r\n");
  });

  test("a CONNECT with a body is refused and the connection closed, so the body is never a request", async () => {
    await using backend = startRawBackend();
    await using lb = start(backend.port, { upstream });
    const smuggled = "GET /SMUGGLED HTTP/1.1\r\nHost: a\r\n\r\n";
    const { response, isClosed, rest } = await exchange(
      lb.port,
      `CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: ${smuggled.length}\r\n\r\n` +
        smuggled,
    );
    assertEquals(response?.status, 501);
    assert(isClosed);
    assertEquals(rest, "");
    assertEquals(backend.received.length, 0);
  });

  test("a POST refused for its target closes the connection instead of reading its body as a request", async () => {
    await using backend = startRawBackend();
    await using lb = start(backend.port, { upstream });
    const smuggled = "GET /SMUGGLED HTTP/1.1\r\nHost: a\r\n\r\n";
    const { response, isClosed } = await exchange(
      lb.port,
      `POST /a%2F HTTP/1.1\r\nHost: a\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
    );
    assertEquals(response?.status, 400);
    assert(isClosed);
    assertEquals(backend.received.length, 0);
  });

  test("a 70 KB chunk extension is never answered 499", async () => {
    await using backend = startRawBackend();
    await using lb = start(backend.port, { upstream });
    const request = "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
      `5;${"x".repeat(70_000)}\r\nhello\r\n0\r\n\r\n`;
    const { response, isClosed } = await exchange(lb.port, request);
    assert(isClosed);
    assert(response === undefined || response.status === 400, response?.statusLine);
    assertEquals(lb.pool.backends[0]?.failures, 0);
  });

  test("a half-closed partial upload is answered 400 (or not at all), never 499", async () => {
    await using backend = startRawBackend();
    await using lb = start(backend.port, { upstream });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
    try {
      await conn.write(
        encoder.encode("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789"),
      );
      await conn.closeWrite();
      const bytes = decoder.decode(await new Response(conn.readable).arrayBuffer());
      assert(!bytes.includes(" 499"), bytes);
      assert(bytes === "" || bytes.startsWith("HTTP/1.1 400 "), bytes);
    } finally {
      try {
        conn.close();
      } catch {
        // Closed by reading to the end.
      }
    }
    assertEquals(backend.received.length, 0);
    assertEquals(lb.pool.backends[0]?.failures, 0);
    // Logged 499, the client closed its side first; a log code, never a response.
    await until(() => lb.access.records.length > 0, "the access record");
    assertEquals(lb.access.records.map((r) => r.status), [499]);
  });

  for (
    const [kind, head, sent] of [
      // Larger than the 64 KiB read whole before answering: it streams.
      ["a Content-Length body", "content-length: 100000\r\n\r\n", "x".repeat(100)],
      [
        "a chunked body",
        "transfer-encoding: chunked\r\n\r\n",
        `64\r\n${"x".repeat(100)}\r\n`,
      ],
    ] as const
  ) {
    test(`a backend dying in the middle of ${kind} is logged with the bytes sent, named and counted`, async () => {
      await using logs = await captureLogs();
      await using backend = startRawBackend({
        answer: {
          kind: "respond",
          response: `HTTP/1.1 200 OK\r\nconnection: close\r\n${head}${sent}`,
        },
      });
      await using lb = start(backend.port, { upstream, retries: 0 });
      const { response, isClosed } = await exchange(
        lb.port,
        "GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
      );
      assert(isClosed);
      // The status and headers went first; the body is cut short, never completed.
      if (response !== undefined) {
        assert(!decoder.decode(response.body).endsWith("0\r\n\r\n"));
      }
      await until(() => lb.access.records.length > 0, "the access record");
      const [record] = lb.access.records;
      assertEquals(record?.status, 200);
      assertEquals(record?.bytes, 100);
      assertEquals(record?.outcome, "failed");
      assertEquals(record?.backend, `127.0.0.1:${backend.port}`);
      await until(() => lb.attempts.length > 0, "the attempt");
      assertEquals(lb.attempts, ["protocol"]);
      assertEquals(lb.pool.backends[0]?.failures, 1);
      assertEquals(logs.find("Unhandled error in request handler"), []);
      const warned = logs.find("Backend response body failed");
      assertEquals(warned.length, 1);
      assertEquals(warned[0]?.properties.backend, `127.0.0.1:${backend.port}`);
    });
  }

  test("a backend dying in the middle of a small body is a 502, counted against it", async () => {
    // Up to 64 KiB with a Content-Length is read whole before answering: nothing went to the
    // client yet.
    await using backend = startRawBackend({
      answer: {
        kind: "respond",
        response: `HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1000\r\n\r\n${
          "x".repeat(100)
        }`,
      },
    });
    await using lb = start(backend.port, { upstream, retries: 0 });
    const response = await rawRequest(
      lb.port,
      "GET /small HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assertEquals(response.status, 502);
    await until(() => lb.access.records.length > 0, "the access record");
    assertEquals(lb.access.records[0]?.outcome, "failed");
    assertEquals(lb.attempts, ["protocol"]);
    assertEquals(lb.pool.backends[0]?.failures, 1);
  });

  test("a client leaving in the middle of a body is not the backend's failure", async () => {
    // Head and part of the body, then the backend waits (the connection stays open).
    await using backend = startRawBackend({
      answer: {
        kind: "respond",
        response: `HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n${"x".repeat(100)}`,
      },
    });
    await using lb = start(backend.port, { upstream, retries: 0 });
    {
      await using conn = await RawConnection.open(lb.port);
      await conn.send("GET /big HTTP/1.1\r\nHost: a\r\n\r\n");
      await until(() => conn.bufferedBytes > 100, "the head and the first bytes");
    }
    await until(() => lb.access.records.length > 0, "the access record");
    const [record] = lb.access.records;
    assertEquals(record?.outcome, "forwarded");
    assertEquals(record?.status, 200);
    assertEquals(record?.bytes, 100);
    assertEquals(record?.reason, "client went away mid-body");
    assertEquals(lb.attempts, [200]);
    assertEquals(lb.pool.backends[0]?.failures, 0);
  });

  test("a complete response is logged with its length and counted as a success", async () => {
    await using backend = startRawBackend({
      answer: {
        kind: "respond",
        response: "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      },
    });
    await using lb = start(backend.port, { upstream });
    const response = await rawRequest(
      lb.port,
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assertEquals(response.status, 200);
    await until(() => lb.attempts.length > 0, "the attempt");
    assertEquals(lb.attempts, [200]);
    await until(() => lb.access.records.length > 0, "the access record");
    assertEquals(lb.access.records[0]?.outcome, "forwarded");
    assertEquals(lb.pool.backends[0]?.failures, 0);
  });

  for (const bodyBytes of [2, 100_000]) {
    test(`HTTP/1.0 keep-alive is kept, or the response says close and closes (${bodyBytes} B body)`, async () => {
      await using backend = startRawBackend({
        answer: {
          kind: "respond",
          response: `HTTP/1.1 200 OK\r\ncontent-length: ${bodyBytes}\r\n\r\n${
            "x".repeat(bodyBytes)
          }`,
        },
      });
      await using lb = start(backend.port, { upstream });
      await using conn = await RawConnection.open(lb.port);
      const request = "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n";
      await conn.send(request);
      const first = await conn.readResponse({ timeoutMs: READ_MS });
      assert(first.kind === "response");
      assertEquals(first.response.body.length, bodyBytes);
      const connection = headerValues(first.response, "connection").join(",").toLowerCase();
      if (connection.includes("close")) {
        // For a body over 64 KiB Deno still adds its own `connection: keep-alive` after ours;
        // `close` wins (RFC 9112 section 9.6), and the connection is closed as said.
        assert((await conn.readUntilClosed(READ_MS)).isClosed);
      } else {
        assert(connection.includes("keep-alive"), `connection: ${connection}`);
        await conn.send(request);
        const second = await conn.readResponse({ timeoutMs: READ_MS });
        assertEquals(second.kind === "response" ? second.response.status : second.kind, 200);
      }
    });
  }

  test("a backend's early 413 to a streamed upload is relayed, then the connection closed", async () => {
    // Answers as soon as the head has arrived, without reading the body.
    const raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const early = (async () => {
      const conn = await raw.accept();
      const buffer = new Uint8Array(65_536);
      let head = "";
      while (!head.includes("\r\n\r\n")) {
        const n = await conn.read(buffer);
        if (n === null) break;
        head += decoder.decode(buffer.subarray(0, n));
      }
      await conn.write(encoder.encode(
        "HTTP/1.1 413 Content Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large",
      ));
      // A lingering close, as nginx makes: stop sending, read what still comes until the
      // peer stops, so the answer is not lost to a reset.
      await conn.closeWrite();
      try {
        while (await conn.read(buffer) !== null) {
          // Discarded.
        }
      } catch {
        // Reset by the peer: it is gone either way.
      }
      conn.close();
      return head;
    })();
    try {
      await using lb = start(raw.addr.port, {
        upstream,
        retries: 0,
        requestBufferBytes: 1024,
      });
      await using conn = await RawConnection.open(lb.port);
      await conn.send(
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n" + "y".repeat(4096),
      );
      // Keep uploading while the backend answers and closes, as a real client would.
      const uploading = (async () => {
        const chunk = "y".repeat(65_536);
        for (let sent = 0; sent < 2_000_000 && !conn.isClosedByPeer; sent += chunk.length) {
          await conn.send(chunk);
        }
      })().catch(() => {});
      const answer = await conn.readResponse({ timeoutMs: READ_MS });
      assertEquals(answer.kind === "response" ? answer.response.status : answer.kind, 413);
      // Closed after a short linger, so the client surely read the answer first.
      assert((await conn.readUntilClosed(READ_MS)).isClosed, "the connection hangs");
      await uploading;
      assert((await early).startsWith("POST /upload"));
      assertEquals(lb.pool.backends[0]?.failures, 0);
      await until(() => lb.attempts.length > 0, "the attempt");
      assertEquals(lb.attempts, [413]);
    } finally {
      raw.close();
    }
  });

  test("the access log keeps the query string", async () => {
    await using backend = startRawBackend();
    await using lb = start(backend.port, { upstream });
    await rawRequest(lb.port, "GET /p?q=1&r=%20 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    await until(() => lb.access.records.length > 0, "the access record");
    const [record] = lb.access.records;
    assert(record !== undefined);
    assertEquals(`${record.path}${record.query ?? ""}`, "/p?q=1&r=%20");
    assert(formatAccessRecord("combined", record).includes('"GET /p?q=1&r=%20 HTTP/1.1"'));
    assert(formatAccessRecord("text", record).includes('"/p?q=1&r=%20"'));
    assertEquals(JSON.parse(formatAccessRecord("json", record)).query, "?q=1&r=%20");
  });

  test("X-Request-Id is adopted only from a trusted proxy", async () => {
    await using backend = startRawBackend();
    const request = "GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: chosen-by-client\r\n" +
      "Connection: close\r\n\r\n";
    const sentId = (index: number) =>
      backend.received[index]?.headers.find(([name]) => name.toLowerCase() === "x-request-id")
        ?.[1];
    {
      await using lb = start(backend.port, { upstream });
      await rawRequest(lb.port, request);
      await backend.waitFor(1);
      assert(sentId(0) !== undefined && sentId(0) !== "chosen-by-client", sentId(0));
    }
    {
      await using lb = start(backend.port, {
        upstream,
        config: (c) => ({ ...c, proxy: { ...c.proxy, trustedProxies: ["127.0.0.1"] } }),
      });
      await rawRequest(lb.port, request);
      await backend.waitFor(2);
      assertEquals(sentId(1), "chosen-by-client");
      assertEquals(lb.access.records[0]?.requestId, "chosen-by-client");
    }
    // The balancer's own answers carry the ID it chose.
    await using lb = start(backend.port, { upstream });
    const refused = await rawRequest(
      lb.port,
      "TRACE / HTTP/1.1\r\nHost: a\r\nX-Request-Id: chosen-by-client\r\nConnection: close\r\n\r\n",
    );
    const [id] = headerValues(refused, "x-request-id");
    assert(id !== undefined && id !== "chosen-by-client", id);
  });
}

Deno.test("a request fetch refuses before connecting is 'unsendable', never a backend failure", async () => {
  for (const message of ["Method is forbidden", "Request with GET/HEAD method cannot have body"]) {
    const refusingFetch: typeof fetch = () => Promise.reject(new TypeError(message));
    const outcome = await forward(
      new Request("http://lb.test/"),
      new Backend(new URL("http://127.0.0.1:9/")),
      {
        target: { ok: true, authority: "lb.test", path: "/", query: "" },
        body: { kind: "none" },
        timeoutMs: 1_000,
        clientIp: "192.0.2.1",
        clientWatch: { delayMs: 60_000, deadlines: new DeadlineQueue() },
        fetch: refusingFetch,
      },
    );
    assertEquals(outcome.ok ? "ok" : outcome.reason, "unsendable", message);
  }
  // A failure on the way to the backend stays the backend's.
  const failing: typeof fetch = () =>
    Promise.reject(new TypeError("fetch failed", { cause: new Error("connection reset") }));
  const outcome = await forward(
    new Request("http://lb.test/"),
    new Backend(new URL("http://127.0.0.1:9/")),
    {
      target: { ok: true, authority: "lb.test", path: "/", query: "" },
      body: { kind: "none" },
      timeoutMs: 1_000,
      clientIp: "192.0.2.1",
      clientWatch: { delayMs: 60_000, deadlines: new DeadlineQueue() },
      fetch: failing,
    },
  );
  assertEquals(outcome.ok ? "ok" : outcome.reason, "protocol");
});
