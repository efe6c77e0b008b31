import { createHttp1Transport, encodeRequest } from "../../load/http1_transport.ts";
import type { RequestSpec, Transport } from "../../load/transport.ts";
import { assertEquals, assertThrows } from "../support/assert.ts";
import { readRequest, serveRaw, writeText } from "./test_servers.ts";

const decoder = new TextDecoder();

function specFor(url: string, overrides: Partial<RequestSpec> = {}): RequestSpec {
  return {
    url: new URL(url),
    method: "GET",
    headers: [],
    keepAlive: true,
    timeoutMs: 5_000,
    ...overrides,
  };
}

function disposable(transport: Transport): Transport & AsyncDisposable {
  return Object.assign(transport, { [Symbol.asyncDispose]: () => transport.close() });
}

Deno.test("encodeRequest() writes the request line, Host and User-Agent", () => {
  assertEquals(
    decoder.decode(encodeRequest(specFor("http://example.test/a/b?c=d#frag"))),
    "GET /a/b?c=d HTTP/1.1\r\nHost: example.test\r\nUser-Agent: denolb-loadtest/0.1\r\n\r\n",
  );
  assertEquals(
    decoder.decode(encodeRequest(specFor("http://[::1]:8080"))),
    "GET / HTTP/1.1\r\nHost: [::1]:8080\r\nUser-Agent: denolb-loadtest/0.1\r\n\r\n",
  );
});

Deno.test("encodeRequest() lets spec headers replace Host and User-Agent", () => {
  const spec = specFor("http://127.0.0.1:9090/", {
    headers: [["host", "virtual.test"], ["User-Agent", "mine"], ["X-A", "1"]],
  });
  assertEquals(
    decoder.decode(encodeRequest(spec)),
    "GET / HTTP/1.1\r\nhost: virtual.test\r\nUser-Agent: mine\r\nX-A: 1\r\n\r\n",
  );
});

Deno.test("encodeRequest() frames the body itself", () => {
  const spec = specFor("http://127.0.0.1/", {
    method: "PUT",
    headers: [["Content-Length", "999"], ["Transfer-Encoding", "chunked"]],
    body: new TextEncoder().encode("abc"),
  });
  assertEquals(
    decoder.decode(encodeRequest(spec)),
    "PUT / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: denolb-loadtest/0.1\r\n" +
      "Content-Length: 3\r\n\r\nabc",
  );
  assertEquals(
    decoder.decode(encodeRequest(specFor("http://127.0.0.1/", { method: "POST" }))),
    "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: denolb-loadtest/0.1\r\n" +
      "Content-Length: 0\r\n\r\n",
  );
});

Deno.test("encodeRequest() asks to close without keep-alive", () => {
  const text = decoder.decode(encodeRequest(specFor("http://h/", { keepAlive: false })));
  assertEquals(text.endsWith("Connection: close\r\n\r\n"), true);
});

Deno.test("encodeRequest() rejects methods and headers that would split the request", () => {
  assertThrows(
    () => encodeRequest(specFor("http://h/", { method: "GET /x HTTP/1.1\r\n" })),
    TypeError,
    "must be an HTTP token",
  );
  assertThrows(
    () => encodeRequest(specFor("http://h/", { headers: [["X-A", "1\r\nX-B: 2"]] })),
    TypeError,
    'Cannot send header "X-A": its value must not hold CR, LF or NUL',
  );
  assertThrows(
    () => encodeRequest(specFor("http://h/", { headers: [["X A", "1"]] })),
    TypeError,
    'Cannot send header "X A": its name must be an HTTP token',
  );
});

Deno.test("createHttp1Transport() rejects protocols other than http", () => {
  assertThrows(
    () => createHttp1Transport(specFor("https://127.0.0.1/")),
    TypeError,
    'Cannot use the HTTP/1.1 client for "https://127.0.0.1/": protocol must be http',
  );
});

Deno.test("send() keeps the connection after chunked trailers and interim responses", async () => {
  await using server = serveRaw(async (conn) => {
    while (await readRequest(conn) !== null) {
      await writeText(
        conn,
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
          "3;x=y\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
      );
    }
  });
  await using transport = disposable(createHttp1Transport(specFor(server.url.href)));
  for (let i = 0; i < 3; i++) {
    assertEquals(await transport.send(), { ok: true, status: 200, bodyBytes: 3 });
  }
  assertEquals(server.connectionCount(), 1);
});

Deno.test("send() drops a connection that sent more than the response", async () => {
  await using server = serveRaw(async (conn) => {
    while (await readRequest(conn) !== null) {
      await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK");
    }
  });
  await using transport = disposable(createHttp1Transport(specFor(server.url.href)));
  assertEquals(await transport.send(), { ok: true, status: 200, bodyBytes: 2 });
  assertEquals(await transport.send(), { ok: true, status: 200, bodyBytes: 2 });
  assertEquals(server.connectionCount(), 2);
});

Deno.test("send() reports a malformed response as a network error", async () => {
  await using server = serveRaw(async (conn) => {
    await readRequest(conn);
    await writeText(conn, "NOT HTTP\r\n\r\n");
  });
  await using transport = disposable(createHttp1Transport(specFor(server.url.href)));
  const outcome = await transport.send();
  assertEquals(outcome.ok ? undefined : outcome.error, "network");
  assertEquals(
    outcome.ok ? undefined : outcome.message.startsWith("malformed response: Cannot parse"),
    true,
  );
});

Deno.test("send() does not retry a reused connection that failed mid-response", async () => {
  await using server = serveRaw(async (conn, index) => {
    await readRequest(conn);
    await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    if (index > 0) return;
    await readRequest(conn);
    await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npart");
  });
  await using transport = disposable(createHttp1Transport(specFor(server.url.href)));
  assertEquals(await transport.send(), { ok: true, status: 200, bodyBytes: 2 });
  const outcome = await transport.send();
  assertEquals(outcome.ok ? undefined : outcome.error, "reset");
  assertEquals(server.connectionCount(), 1);
});

Deno.test("send() never resends a request the server closed on after it was written", async () => {
  let received = 0;
  await using server = serveRaw(async (conn) => {
    while (await readRequest(conn) !== null) {
      // The second request on a kept-alive connection is read and dropped: no response byte.
      if (++received === 2) return;
      await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
  });
  await using transport = disposable(createHttp1Transport(specFor(server.url.href)));
  assertEquals(await transport.send(), { ok: true, status: 200, bodyBytes: 2 });
  const outcome = await transport.send();
  assertEquals(outcome.ok ? undefined : outcome.error, "reset");
  assertEquals(received, 2);
  assertEquals(server.connectionCount(), 1);
  assertEquals(transport.resent, 0);
});

Deno.test("send() refuses a second request while one is in flight", async () => {
  let onRequest = () => {};
  const requested = new Promise<void>((resolve) => onRequest = resolve);
  await using server = serveRaw(async (conn) => {
    await readRequest(conn);
    onRequest();
    await readRequest(conn);
  });
  await using transport = disposable(createHttp1Transport(specFor(server.url.href)));
  const first = transport.send();
  await requested;
  const second = await transport.send();
  assertEquals(second.ok ? undefined : second.error, "network");
  await transport.close();
  assertEquals(await first, { ok: false, error: "network", message: "transport closed" });
  assertEquals(await transport.send(), {
    ok: false,
    error: "network",
    message: "transport closed",
  });
});

Deno.test("send() times out a request that follows fast ones, then recovers", async () => {
  await using server = serveRaw(async (conn, index) => {
    // The first connection answers twice and then hangs; the next one answers at once.
    const answers = index === 0 ? 2 : Infinity;
    for (let i = 0; i < answers; i++) {
      if (await readRequest(conn) === null) return;
      await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
    await readRequest(conn);
    await readRequest(conn);
  });
  await using transport = disposable(
    createHttp1Transport(specFor(server.url.href, { timeoutMs: 100 })),
  );
  assertEquals(await transport.send(), { ok: true, status: 200, bodyBytes: 2 });
  assertEquals(await transport.send(), { ok: true, status: 200, bodyBytes: 2 });
  const outcome = await transport.send();
  assertEquals(outcome.ok ? undefined : outcome.error, "timeout");
  assertEquals(await transport.send(), { ok: true, status: 200, bodyBytes: 2 });
  assertEquals(server.connectionCount(), 2);
});

Deno.test("send() reads heads larger than its initial buffer, up to the limit", async () => {
  await using server = serveRaw(async (conn) => {
    for (const valueBytes of [20_000, 70_000]) {
      if (await readRequest(conn) === null) return;
      await writeText(
        conn,
        `HTTP/1.1 200 OK\r\nX-Big: ${"v".repeat(valueBytes)}\r\nContent-Length: 2\r\n\r\nok`,
      );
    }
  });
  await using transport = disposable(createHttp1Transport(specFor(server.url.href)));
  assertEquals(await transport.send(), { ok: true, status: 200, bodyBytes: 2 });
  const outcome = await transport.send();
  assertEquals(outcome.ok ? undefined : outcome.error, "network");
  assertEquals(outcome.ok ? undefined : outcome.message.includes("exceeds 65536 bytes"), true);
});
