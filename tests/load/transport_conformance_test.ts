/**
 * One conformance suite run over every {@linkcode Transport} implementation, against real
 * servers on port 0: `Deno.serve` for ordinary responses, raw `Deno.listen` sockets for the
 * edge cases a well-behaved server never produces.
 */
import { createFetchTransport } from "../../load/fetch_transport.ts";
import { createHttp1Transport } from "../../load/http1_transport.ts";
import type { Outcome, RequestSpec, Transport, TransportFactory } from "../../load/transport.ts";
import { assertEquals, assertGreaterOrEqual } from "../support/assert.ts";
import { readRequest, serve, serveRaw, untilClosed, writeText } from "./test_servers.ts";

function specFor(url: URL, overrides: Partial<RequestSpec> = {}): RequestSpec {
  return { url, method: "GET", headers: [], keepAlive: true, timeoutMs: 5_000, ...overrides };
}

/** Wraps a transport so `await using` closes it. */
function disposable(transport: Transport): Transport & AsyncDisposable {
  return Object.assign(transport, { [Symbol.asyncDispose]: () => transport.close() });
}

function okOutcome(status: number, bodyBytes: number): Outcome {
  return { ok: true, status, bodyBytes };
}

/** Registers the suite for one implementation. */
function testTransport(name: string, factory: TransportFactory): void {
  const open = (url: URL, overrides: Partial<RequestSpec> = {}) =>
    disposable(factory(specFor(url, overrides)));

  Deno.test(`${name}: send() returns the status and body size of each response`, async () => {
    const statuses = [200, 404, 500, 503];
    let next = 0;
    await using server = serve(() => {
      const status = statuses[next++] ?? 200;
      return new Response("x".repeat(status), { status });
    });
    await using transport = open(server.url);
    for (const status of statuses) {
      assertEquals(await transport.send(), okOutcome(status, status));
    }
  });

  Deno.test(`${name}: send() counts a large streamed body exactly`, async () => {
    const chunk = new Uint8Array(65_536).fill(7);
    await using server = serve(() => {
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent++ === 16) controller.close();
          else controller.enqueue(chunk);
        },
      });
      return new Response(body);
    });
    await using transport = open(server.url);
    assertEquals(await transport.send(), okOutcome(200, 16 * 65_536));
    assertEquals(await transport.send(), okOutcome(200, 16 * 65_536));
  });

  Deno.test(`${name}: keep-alive reuses one connection`, async () => {
    await using server = serve(() => new Response("hello"));
    await using transport = open(server.url);
    for (let i = 0; i < 5; i++) assertEquals(await transport.send(), okOutcome(200, 5));
    assertEquals(server.clientPorts.size, 1);
  });

  Deno.test(`${name}: without keep-alive each request opens a connection`, async () => {
    await using server = serve(() => new Response("hello"));
    await using transport = open(server.url, { keepAlive: false });
    for (let i = 0; i < 4; i++) assertEquals(await transport.send(), okOutcome(200, 5));
    assertEquals(server.clientPorts.size, 4);
  });

  Deno.test(`${name}: send() delivers method, headers and body byte-exact`, async () => {
    const body = Uint8Array.from({ length: 1024 }, (_, i) => i % 256);
    const seen: { method: string; headers: Headers; body: Uint8Array; url: string }[] = [];
    await using server = serve(async (request) => {
      seen.push({
        method: request.method,
        headers: request.headers,
        body: new Uint8Array(await request.arrayBuffer()),
        url: request.url,
      });
      return new Response(null, { status: 201 });
    });
    await using transport = open(server.url, {
      method: "POST",
      headers: [["X-Test", "one two"], ["Content-Type", "application/octet-stream"]],
      body,
    });
    assertEquals(await transport.send(), okOutcome(201, 0));
    assertEquals(await transport.send(), okOutcome(201, 0));
    assertEquals(seen.length, 2);
    for (const request of seen) {
      assertEquals(request.method, "POST");
      assertEquals(new URL(request.url).pathname + new URL(request.url).search, "/path?query=1");
      assertEquals(request.headers.get("x-test"), "one two");
      assertEquals(request.headers.get("content-type"), "application/octet-stream");
      assertEquals(request.headers.get("content-length"), "1024");
      assertEquals(request.body, body);
    }
  });

  Deno.test(`${name}: send() expects no body for HEAD, 204 and 304`, async () => {
    await using server = serve((request) => {
      if (request.method === "HEAD") {
        return new Response(null, { headers: { "content-length": "500" } });
      }
      const status = new URL(request.url).searchParams.get("status") ?? "200";
      return new Response(null, { status: Number(status) });
    });
    await using head = open(server.url, { method: "HEAD" });
    assertEquals(await head.send(), okOutcome(200, 0));
    assertEquals(await head.send(), okOutcome(200, 0));
    for (const status of [204, 304]) {
      await using transport = open(new URL(`${server.url.origin}/?status=${status}`));
      assertEquals(await transport.send(), okOutcome(status, 0));
      assertEquals(await transport.send(), okOutcome(status, 0));
    }
  });

  Deno.test(`${name}: send() reads chunked bodies with extensions and trailers`, async () => {
    const response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
      "5;ext=1\r\nhello\r\n" + '7 ; a="b"\r\n, world\r\n' + "0\r\nX-Sum: 12\r\n\r\n";
    await using server = serveRaw(async (conn) => {
      while (await readRequest(conn) !== null) await writeText(conn, response);
    });
    await using transport = open(server.url);
    assertEquals(await transport.send(), okOutcome(200, 12));
    assertEquals(await transport.send(), okOutcome(200, 12));
  });

  Deno.test(`${name}: send() reads an HTTP/1.0 body until the server closes`, async () => {
    await using server = serveRaw(async (conn) => {
      await readRequest(conn);
      await writeText(conn, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n");
      await writeText(conn, "until ");
      await writeText(conn, "the end");
    });
    await using transport = open(server.url);
    assertEquals(await transport.send(), okOutcome(200, 13));
    assertEquals(await transport.send(), okOutcome(200, 13));
    assertEquals(server.connectionCount(), 2);
  });

  Deno.test(`${name}: send() opens a new connection after Connection: close`, async () => {
    await using server = serveRaw(async (conn) => {
      await readRequest(conn);
      await writeText(conn, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
    });
    await using transport = open(server.url);
    assertEquals(await transport.send(), okOutcome(200, 2));
    assertEquals(await transport.send(), okOutcome(200, 2));
    assertEquals(server.connectionCount(), 2);
  });

  Deno.test(`${name}: send() reconnects when the server closed an idle connection`, async () => {
    let onFirstClosed = () => {};
    const firstClosed = new Promise<void>((resolve) => onFirstClosed = resolve);
    await using server = serveRaw(async (conn, index) => {
      await readRequest(conn);
      await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      // The first connection is closed once idle, as servers do at their keep-alive timeout.
      if (index === 0) {
        conn.close();
        onFirstClosed();
        return;
      }
      while (await readRequest(conn) !== null) {
        await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      }
    });
    await using transport = open(server.url);
    assertEquals(await transport.send(), okOutcome(200, 2));
    // The server's close is on the wire before the next send; a turn of the event loop lets
    // the client see its EOF, so the next request goes on a new connection and reaches the
    // server once.
    await firstClosed;
    await eventLoopTurn();
    assertEquals(await transport.send(), okOutcome(200, 2));
    assertEquals(await transport.send(), okOutcome(200, 2));
    assertEquals(server.connectionCount(), 2);
    if (name === "http1") assertEquals(transport.resent, 1);
  });

  Deno.test(`${name}: send() times out on a server that never answers`, async () => {
    const peerClosed: Promise<void>[] = [];
    await using server = serveRaw(async (conn) => {
      const closing = untilClosed(conn);
      peerClosed.push(closing);
      await closing;
    });
    await using transport = open(server.url, { timeoutMs: 100 });
    const outcome = await transport.send();
    assertEquals(outcome.ok, false);
    assertEquals(outcome.ok ? undefined : outcome.error, "timeout");
    // The timed-out connection is closed, not left for the server to hold.
    await Promise.all(peerClosed);
  });

  Deno.test(`${name}: send() reports a refused connection`, async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const url = new URL(`http://127.0.0.1:${listener.addr.port}/`);
    listener.close();
    await using transport = open(url);
    const outcome = await transport.send();
    assertEquals(outcome.ok ? undefined : outcome.error, "refused");
  });

  Deno.test(`${name}: send() reports a connection closed mid-body as reset`, async () => {
    await using server = serveRaw(async (conn) => {
      await readRequest(conn);
      await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly a little");
    });
    await using transport = open(server.url);
    const outcome = await transport.send();
    assertEquals(outcome.ok ? undefined : outcome.error, "reset");
  });

  Deno.test(`${name}: send() ends as aborted when the signal aborts`, async () => {
    let onRequest = () => {};
    const requested = new Promise<void>((resolve) => onRequest = resolve);
    await using server = serveRaw(async (conn) => {
      await readRequest(conn);
      onRequest();
      await untilClosed(conn);
    });
    await using transport = open(server.url);
    const controller = new AbortController();
    const sending = transport.send(controller.signal);
    await requested;
    controller.abort();
    assertEquals(await sending, { ok: false, error: "network", message: "aborted" });
  });

  Deno.test(`${name}: send() with an aborted signal sends nothing`, async () => {
    await using server = serve(() => new Response("x"));
    await using transport = open(server.url);
    const outcome = await transport.send(AbortSignal.abort());
    assertEquals(outcome, { ok: false, error: "network", message: "aborted" });
    assertEquals(server.clientPorts.size, 0);
  });

  Deno.test(`${name}: send() works again after a failure`, async () => {
    let failures = 1;
    await using server = serveRaw(async (conn) => {
      await readRequest(conn);
      if (failures-- > 0) {
        await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\ncut");
        return;
      }
      await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    await using transport = open(server.url);
    assertEquals((await transport.send()).ok, false);
    assertEquals(await transport.send(), okOutcome(200, 2));
    assertGreaterOrEqual(server.connectionCount(), 2);
  });

  Deno.test(`${name}: close() is idempotent`, async () => {
    await using server = serve(() => new Response("x"));
    const transport = factory(specFor(server.url));
    assertEquals(await transport.send(), okOutcome(200, 1));
    await transport.close();
    await transport.close();
  });
}

const implementations: ReadonlyArray<readonly [string, TransportFactory]> = [
  ["http1", createHttp1Transport],
  ["fetch", (spec) => createFetchTransport(spec)],
];

for (const [name, factory] of implementations) testTransport(name, factory);

/** Lets pending I/O (a peer's FIN) reach its promises: one macrotask turn, not a wait for time. */
function eventLoopTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
