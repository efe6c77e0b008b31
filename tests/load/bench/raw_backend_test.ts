import { startRawBackend } from "../../../load/bench/raw_backend.ts";
import { RawConnection, type RawReadOutcome, rawRequest } from "../../../load/bench/raw_http.ts";
import { FakeClock, settle } from "../../support/fake_clock.ts";
import { assert, assertEquals, assertRejects } from "../../support/assert.ts";

const decoder = new TextDecoder();
const TIMEOUT_MS = 5_000;

function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** The response of an outcome, failing the test on a close or a timeout. */
function responseOf(outcome: RawReadOutcome) {
  assert(outcome.kind === "response", `expected a response, got ${outcome.kind}`);
  return outcome.response;
}

Deno.test("raw backend records head bytes, header case and order, and answers 200 ok", async () => {
  await using backend = startRawBackend();
  await using client = await RawConnection.open(backend.port);
  const request = "GET /a/../b?x=%2F HTTP/1.1\r\nHost: shop.example\r\nX-B: 2\r\nx-a: 1\r\n\r\n";
  await client.send(request);
  const response = responseOf(await client.readResponse({ timeoutMs: TIMEOUT_MS }));
  assertEquals(response.statusLine, "HTTP/1.1 200 OK");
  assertEquals(text(response.body), "ok");
  const [seen] = backend.received;
  assert(seen !== undefined);
  assertEquals(
    [seen.method, seen.target, seen.version],
    ["GET", "/a/../b?x=%2F", "HTTP/1.1"],
  );
  assertEquals(seen.headers, [["Host", "shop.example"], ["X-B", "2"], ["x-a", "1"]]);
  assertEquals(text(seen.raw), request);
  assertEquals(seen.bodyBytes, 0);
  assertEquals(seen.framingError, undefined);
});

Deno.test("raw backend keeps the connection alive and answers pipelined requests in order", async () => {
  await using backend = startRawBackend({
    answer: (request) => ({
      kind: "respond",
      response:
        `HTTP/1.1 200 OK\r\ncontent-length: ${request.target.length}\r\n\r\n${request.target}`,
    }),
  });
  await using client = await RawConnection.open(backend.port);
  await client.send("GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n");
  const first = responseOf(await client.readResponse({ timeoutMs: TIMEOUT_MS }));
  const second = responseOf(await client.readResponse({ timeoutMs: TIMEOUT_MS }));
  await client.send("GET /three HTTP/1.1\r\nHost: a\r\n\r\n");
  const third = responseOf(await client.readResponse({ timeoutMs: TIMEOUT_MS }));
  assertEquals([first, second, third].map((r) => text(r.body)), ["/one", "/two", "/three"]);
  assertEquals(backend.received.map((r) => r.connection), [0, 0, 0]);
  assertEquals(backend.connections.length, 1);
  assert(!client.isClosedByPeer);
});

Deno.test("raw backend waits for a Content-Length body sent in pieces, after 100 Continue", async () => {
  await using backend = startRawBackend();
  await using client = await RawConnection.open(backend.port);
  await client.send(
    "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
  );
  const interim = responseOf(await client.readResponse({ timeoutMs: TIMEOUT_MS }));
  assertEquals(interim.status, 100);
  // The head was parsed (100 Continue came) yet the request is not complete without its body.
  assertEquals(backend.received.length, 0);
  await client.send("01234");
  await client.send("56789");
  const final = responseOf(await client.readResponse({ timeoutMs: TIMEOUT_MS }));
  assertEquals(final.status, 200);
  const [seen] = backend.received;
  assert(seen !== undefined);
  assertEquals(text(seen.body), "0123456789");
  assertEquals(seen.bodyBytes, 10);
});

Deno.test("raw backend de-chunks a chunked body and keeps its raw framing", async () => {
  await using backend = startRawBackend();
  await using client = await RawConnection.open(backend.port);
  const request = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
    "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n";
  await client.send(request);
  assertEquals(responseOf(await client.readResponse({ timeoutMs: TIMEOUT_MS })).status, 200);
  const [seen] = backend.received;
  assert(seen !== undefined);
  assertEquals(text(seen.body), "abcde");
  assertEquals(seen.bodyBytes, 5);
  assertEquals(text(seen.raw), request);
  assertEquals(text(backend.connections[0]?.bytes ?? new Uint8Array()), request);
});

Deno.test("raw backend records an invalid chunk size, answers 400 and closes", async () => {
  await using backend = startRawBackend();
  await using client = await RawConnection.open(backend.port);
  await client.send(
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
  );
  await backend.waitFor(1);
  assertEquals(backend.received[0]?.framingError, 'invalid chunk size "zz"');
  assertEquals(responseOf(await client.readResponse({ timeoutMs: TIMEOUT_MS })).status, 400);
  assert((await client.readUntilClosed(TIMEOUT_MS)).isClosed);
});

Deno.test("raw backend can answer 101 unrequested and then records bytes without parsing", async () => {
  await using backend = startRawBackend({ answer: { kind: "switch-protocols" } });
  await using client = await RawConnection.open(backend.port);
  await client.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  const response = responseOf(await client.readResponse({ timeoutMs: TIMEOUT_MS }));
  assertEquals(response.status, 101);
  assertEquals(response.headers.find(([name]) => name === "upgrade")?.[1], "websocket");
  await client.send("GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
  await client.close();
  await backend.connections[0]?.ended;
  assertEquals(backend.received.length, 1);
  assertEquals(
    text(backend.connections[0]?.bytes ?? new Uint8Array()),
    "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n",
  );
});

Deno.test("raw backend can close without answering", async () => {
  await using backend = startRawBackend({ answer: { kind: "close" } });
  await using client = await RawConnection.open(backend.port);
  await client.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  const outcome = await client.readResponse({ timeoutMs: TIMEOUT_MS });
  assertEquals(outcome, { kind: "closed", bytes: new Uint8Array(0) });
  assert(client.isClosedByPeer);
  assertEquals(backend.received.length, 1);
});

Deno.test("raw backend delays its answer on its clock", async () => {
  const clock = new FakeClock();
  await using backend = startRawBackend({ answer: { kind: "respond", delayMs: 1_000 }, clock });
  await using client = await RawConnection.open(backend.port);
  await client.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  await backend.waitFor(1);
  await clock.advance(999);
  await settle();
  assertEquals(client.bufferedBytes, 0);
  await clock.advance(1);
  assertEquals(responseOf(await client.readResponse({ timeoutMs: TIMEOUT_MS })).status, 200);
});

Deno.test("raw backend closes after Connection: close and after a close in its response", async () => {
  await using backend = startRawBackend();
  await using first = await RawConnection.open(backend.port);
  await first.send("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  const firstEnd = await first.readUntilClosed(TIMEOUT_MS);
  assert(firstEnd.isClosed);
  assert(text(firstEnd.bytes).startsWith("HTTP/1.1 200 OK"));

  backend.answer = {
    kind: "respond",
    response: "HTTP/1.1 503 Busy\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
  };
  await using second = await RawConnection.open(backend.port);
  await second.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assertEquals(responseOf(await second.readResponse({ timeoutMs: TIMEOUT_MS })).status, 503);
  assert((await second.readUntilClosed(TIMEOUT_MS)).isClosed);
});

Deno.test("raw backend waitFor() resolves at the count and rejects when its signal aborts", async () => {
  await using backend = startRawBackend();
  const controller = new AbortController();
  const never = backend.waitFor(3, controller.signal);
  const two = backend.waitFor(2);
  const client = await rawRequest(
    backend.port,
    "GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
  );
  assertEquals(client.status, 200);
  await rawRequest(backend.port, "GET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  await two;
  assertEquals(backend.received.map((r) => r.target), ["/1", "/2"]);
  controller.abort(new Error("gave up"));
  await assertRejects(() => never, Error, "gave up");
});

Deno.test("raw backend close() ends idle connections", async () => {
  const backend = startRawBackend();
  await using client = await RawConnection.open(backend.port);
  await client.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assertEquals(responseOf(await client.readResponse({ timeoutMs: TIMEOUT_MS })).status, 200);
  await backend.close();
  assert((await client.readUntilClosed(TIMEOUT_MS)).isClosed);
  assertEquals(backend.connections[0]?.isClosed, true);
});

Deno.test("raw backend keeps the bytes of a request the client never finished", async () => {
  await using backend = startRawBackend();
  const client = await RawConnection.open(backend.port);
  const head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
  await client.send(head);
  assertEquals(responseOf(await client.readResponse({ timeoutMs: TIMEOUT_MS })).status, 100);
  await client.send("ab");
  await client.close();
  const connection = backend.connections[0];
  assert(connection !== undefined);
  await connection.ended;
  assertEquals(backend.received.length, 0);
  assertEquals(text(connection.incomplete), `${head}ab`);
  assertEquals(text(connection.bytes), `${head}ab`);
});

Deno.test("RawConnection.readResponse() times out with what arrived so far", async () => {
  const clock = new FakeClock();
  await using backend = startRawBackend({
    answer: { kind: "respond", delayMs: 1 },
    clock,
  });
  await using client = await RawConnection.open(backend.port);
  await client.send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  const outcome = await client.readResponse({ timeoutMs: 50 });
  assertEquals(outcome, { kind: "timeout", bytes: new Uint8Array(0) });
  assert(!client.isClosedByPeer);
  await clock.advance(1);
});

Deno.test("RawConnection.readResponse() frames chunked and close-delimited responses", async () => {
  await using backend = startRawBackend({
    answer: (request) => ({
      kind: "respond",
      response: request.target === "/chunked"
        ? "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        : "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil close",
    }),
  });
  await using client = await RawConnection.open(backend.port);
  await client.send("GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n");
  const chunked = responseOf(await client.readResponse({ timeoutMs: TIMEOUT_MS }));
  assertEquals(text(chunked.body), "2\r\nok\r\n0\r\n\r\n");
  await client.send("GET /rest HTTP/1.1\r\nHost: a\r\n\r\n");
  const delimited = responseOf(await client.readResponse({ timeoutMs: TIMEOUT_MS }));
  assertEquals(text(delimited.body), "until close");
  assert(client.isClosedByPeer);
});
