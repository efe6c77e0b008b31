/**
 * The `http1` upstream against real servers on port 0: `Deno.serve` backends for behaviour,
 * raw TCP backends for the exact bytes on the wire and for misbehaving backends.
 */
import { DEFAULTS } from "../support/settings.ts";
import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { forward } from "../../lib/data/proxy.ts";
import { createHttp1Client } from "../../lib/upstream/http1.ts";
import { Http1Response } from "../../lib/upstream/http1_response.ts";
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStrictEquals,
  assertStringIncludes,
} from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { startRawBackend } from "../../load/bench/raw_backend.ts";
import { startServer } from "../support/servers.ts";
import { startScriptedBackend } from "./scripted_backend.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function streamOf(...parts: string[]): ReadableStream<Uint8Array> {
  return ReadableStream.from(parts.map((part) => encoder.encode(part)));
}

/** The failure's cause message, as the proxy's classifier reads it. */
async function causeOf(promise: Promise<unknown>): Promise<string> {
  const error = await assertRejects(() => promise, TypeError, "fetch failed");
  assertInstanceOf(error.cause, Error);
  return error.cause.message;
}

/** Yields to the event loop until `condition` holds (bounded: fails rather than hangs). */
async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 1_000 && !condition(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  assert(condition(), "condition never held");
}

Deno.test("fetch() sends the request line and the given header list, nothing more", async () => {
  await using backend = startRawBackend();
  using client = createHttp1Client(DEFAULTS.proxy);
  const response = await client.fetch(`http://127.0.0.1:${backend.port}/p/a?q=1`, {
    headers: [["Host", "shop.example"], ["X-Trace", "a b"], ["accept-encoding", "identity"]],
  });
  assertEquals(await response.text(), "ok");
  assertEquals(
    decoder.decode(backend.received[0]?.raw),
    "GET /p/a?q=1 HTTP/1.1\r\nHost: shop.example\r\nX-Trace: a b\r\naccept-encoding: identity\r\n\r\n",
  );
});

Deno.test("fetch() adds host from the URL only when the list has none", async () => {
  await using backend = startRawBackend();
  using client = createHttp1Client(DEFAULTS.proxy);
  await (await client.fetch(`http://127.0.0.1:${backend.port}/`, { headers: [["x-a", "1"]] }))
    .body?.cancel();
  assertEquals(
    decoder.decode(backend.received[0]?.raw),
    `GET / HTTP/1.1\r\nhost: 127.0.0.1:${backend.port}\r\nx-a: 1\r\n\r\n`,
  );
});

Deno.test("fetch() sends header values as bytes, one per character (Latin-1)", async () => {
  await using backend = startRawBackend();
  using client = createHttp1Client(DEFAULTS.proxy);
  await (await client.fetch(`http://127.0.0.1:${backend.port}/`, {
    headers: [["host", "b"], ["x-name", "caf\u00e9"]],
  })).text();
  const raw = backend.received[0]?.raw ?? new Uint8Array(0);
  const at = decoder.decode(raw).indexOf("x-name: caf");
  assertEquals([...raw.subarray(at + 11, at + 14)], [0xe9, 0x0d, 0x0a]);
});

Deno.test("fetch() frames a byte body with content-length, its own not the list's", async () => {
  await using backend = startRawBackend();
  using client = createHttp1Client(DEFAULTS.proxy);
  const url = `http://127.0.0.1:${backend.port}/up`;
  const headers: Array<[string, string]> = [["host", "b"], ["content-length", "99"]];
  await (await client.fetch(url, { method: "POST", headers, body: encoder.encode("hello") }))
    .text();
  await (await client.fetch(url, { method: "PUT", headers: [["host", "b"]] })).text();
  await (await client.fetch(url, { method: "DELETE", headers: [["host", "b"]] })).text();
  assertEquals(backend.received.map((request) => decoder.decode(request.raw)), [
    "POST /up HTTP/1.1\r\nhost: b\r\ncontent-length: 5\r\n\r\nhello",
    "PUT /up HTTP/1.1\r\nhost: b\r\ncontent-length: 0\r\n\r\n",
    "DELETE /up HTTP/1.1\r\nhost: b\r\n\r\n",
  ]);
});

Deno.test("fetch() sends a stream body chunked", async () => {
  await using backend = startRawBackend();
  using client = createHttp1Client(DEFAULTS.proxy);
  const response = await client.fetch(`http://127.0.0.1:${backend.port}/`, {
    method: "POST",
    headers: [["host", "b"], ["transfer-encoding", "gzip"]],
    body: streamOf("hello", "", " world"),
  });
  assertEquals(await response.text(), "ok");
  assertEquals(
    decoder.decode(backend.received[0]?.raw),
    "POST / HTTP/1.1\r\nhost: b\r\ntransfer-encoding: chunked\r\n\r\n" +
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
  );
});

Deno.test("fetch() streams a large upload and a large download both ways", async () => {
  await using backend = startServer((request) => new Response(request.body));
  using client = createHttp1Client(DEFAULTS.proxy);
  const chunk = new Uint8Array(65_536).map((_, i) => i % 251);
  const chunks = 32; // 2 MiB
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent++ === chunks) controller.close();
      else controller.enqueue(chunk);
    },
  });
  const response = await client.fetch(backend.url, { method: "POST", body });
  const echoed = new Uint8Array(await response.arrayBuffer());
  assertEquals(echoed.length, chunk.length * chunks);
  assertEquals(echoed.subarray(chunk.length * 7, chunk.length * 8), chunk);
});

Deno.test("fetch() resolves at the head and streams the body as it arrives", async () => {
  const release = Promise.withResolvers<void>();
  await using backend = startScriptedBackend(async (conn) => {
    await conn.readHead();
    await conn.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n");
    await release.promise;
    await conn.write("4\r\nlast\r\n0\r\n\r\n");
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  const response = await client.fetch(backend.url);
  const reader = response.body?.getReader();
  assert(reader !== undefined);
  const first = await reader.read();
  assertEquals(decoder.decode(first.value), "first"); // the backend is still holding "last"
  release.resolve();
  const rest: string[] = [];
  for (let part = await reader.read(); !part.done; part = await reader.read()) {
    rest.push(decoder.decode(part.value));
  }
  assertEquals(rest.join(""), "last");
});

Deno.test("fetch() returns the whole body as bytes, without hop-by-hop fields", async () => {
  await using backend = startScriptedBackend(async (conn) => {
    await conn.readHead();
    await conn.write(
      "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n" +
        "X-Hop: 1\r\nX-End: 2\r\ncontent-length: 5\r\n\r\nwhole",
    );
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  const response = await client.fetch(backend.url);
  assert(response instanceof Http1Response);
  assertEquals(response.wholeBodyBytes, 5);
  assertEquals([...response.headers], [["content-length", "5"], ["x-end", "2"]]);
  assertEquals(await response.text(), "whole");
});

Deno.test("fetch() says nothing of a body's length while it streams", async () => {
  const release = Promise.withResolvers<void>();
  await using backend = startScriptedBackend(async (conn) => {
    await conn.readHead();
    await conn.write("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfirst");
    await release.promise;
    await conn.write("-last");
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  const response = await client.fetch(backend.url);
  assert(response instanceof Http1Response);
  assertEquals(response.wholeBodyBytes, undefined);
  release.resolve();
  assertEquals(await response.text(), "first-last");
});

Deno.test("fetch() decodes status, reason and repeated headers as sent", async () => {
  await using backend = startRawBackend({
    answer: {
      kind: "respond",
      response: Uint8Array.from(
        "HTTP/1.1 404 Not Here\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nx-v: caf\xe9\r\n" +
          "content-length: 0\r\n\r\n",
        (c) => c.charCodeAt(0),
      ),
    },
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  const response = await client.fetch(`http://127.0.0.1:${backend.port}/`);
  assertEquals([response.status, response.statusText], [404, "Not Here"]);
  assertEquals(response.headers.getSetCookie(), ["a=1", "b=2"]);
  assertEquals(response.headers.get("x-v"), "caf\u00e9");
  assertEquals(await response.text(), "");
});

Deno.test("fetch() reuses one connection for sequential requests", async () => {
  const ports = new Set<number>();
  await using backend = startServer((_request, info) => {
    ports.add(info.remoteAddr.port);
    return new Response("x".repeat(100_000));
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  for (let i = 0; i < 10; i++) {
    assertEquals((await (await client.fetch(backend.url)).text()).length, 100_000);
  }
  assertEquals(ports.size, 1);
  assertEquals(client.idleCount(backend.url.host), 1);
});

Deno.test("fetch() never reuses a connection whose body was not read to the end", async () => {
  const ports = new Set<number>();
  await using backend = startServer((_request, info) => {
    ports.add(info.remoteAddr.port);
    return new Response("x".repeat(1_000_000));
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  const first = await client.fetch(backend.url);
  const reader = first.body?.getReader();
  await reader?.read();
  await reader?.cancel();
  assertEquals(client.idleCount(), 0);
  await (await client.fetch(backend.url)).text();
  assertEquals(ports.size, 2);
});

Deno.test("fetch() drops a connection after Connection: close either way", async () => {
  await using backend = startRawBackend({
    answer: (request) => ({
      kind: "respond",
      response: request.target === "/close"
        ? "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
        : "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    }),
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  const base = `http://127.0.0.1:${backend.port}`;
  assertEquals(await (await client.fetch(`${base}/close`)).text(), "ok");
  assertEquals(client.idleCount(), 0);
  const init = { headers: [["connection", "close"]] satisfies Array<[string, string]> };
  assertEquals(await (await client.fetch(`${base}/`, init)).text(), "ok");
  assertEquals(client.idleCount(), 0);
  assertEquals(backend.connections.length, 2);
});

Deno.test("fetch() retries once on a fresh connection when a pooled one was closed", async () => {
  await using backend = startRawBackend({
    // The keep-alive race: the backend closes its idle connection just as the second request
    // arrives on it.
    answer: (request) =>
      request.connection === 0 && backend.received.length === 2
        ? { kind: "close" }
        : { kind: "respond" },
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  const url = `http://127.0.0.1:${backend.port}/`;
  assertEquals(await (await client.fetch(url)).text(), "ok");
  const second = await client.fetch(url, { method: "POST", body: encoder.encode("again") });
  assertEquals(await second.text(), "ok");
  assertEquals(backend.connections.length, 2);
  assertEquals(backend.received.map((request) => request.connection), [0, 0, 1]);
});

Deno.test("fetch() does not retry a stream body, nor a fresh connection", async () => {
  await using backend = startRawBackend({
    answer: (request) => request.target === "/ok" ? { kind: "respond" } : { kind: "close" },
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  const base = `http://127.0.0.1:${backend.port}`;
  await (await client.fetch(`${base}/ok`)).text();
  const streamed = client.fetch(`${base}/`, { method: "POST", body: streamOf("once") });
  assertStringIncludes(await causeOf(streamed), "closed before any response byte");
  const fresh = client.fetch(`${base}/`);
  assertStringIncludes(await causeOf(fresh), "closed before any response byte");
  assertEquals(backend.received.length, 3);
});

Deno.test("fetch() reports a refused connect as (Connect), and forward() classifies it", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  using client = createHttp1Client(DEFAULTS.proxy);
  assertStringIncludes(
    await causeOf(client.fetch(`http://127.0.0.1:${port}/`)),
    "client error (Connect): ",
  );
  const outcome = await forward(
    new Request(`http://lb.test/`),
    new Backend(parseBackendUrl(`http://127.0.0.1:${port}`)),
    {
      target: { ok: true, authority: "lb.test", path: "/", query: "" },
      body: { kind: "none" },
      timeoutMs: 5_000,
      clientIp: "192.0.2.1",
      fetch: client.fetch,
    },
  );
  assertEquals(outcome.ok ? "ok" : outcome.reason, "connect");
});

Deno.test("forward() through the http1 upstream adds no user-agent or accept", async () => {
  await using backend = startRawBackend();
  using client = createHttp1Client(DEFAULTS.proxy);
  const outcome = await forward(
    new Request("http://lb.test/a?b=1", { headers: { "x-client": "1" } }),
    new Backend(parseBackendUrl(`http://127.0.0.1:${backend.port}`)),
    {
      target: { ok: true, authority: "lb.test", path: "/a", query: "?b=1" },
      body: { kind: "none" },
      timeoutMs: 5_000,
      clientIp: "192.0.2.1",
      fetch: client.fetch,
    },
  );
  assert(outcome.ok);
  assertEquals(await outcome.response.text(), "ok");
  const names = backend.received[0]?.headers.map(([name]) => name.toLowerCase()) ?? [];
  assertEquals(names.filter((name) => /^(user-agent|accept|accept-language)$/.test(name)), []);
  assertEquals(backend.received[0]?.target, "/a?b=1");
  assert(names.includes("x-client"), names.join());
});

Deno.test("fetch() refuses responses a proxy could frame wrongly", async () => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ["content-length: 5\r\ntransfer-encoding: chunked\r\n", "both present"],
    ["transfer-encoding: chunked\r\ncontent-length: 5\r\n", "both present"],
    ["content-length: 2\r\ncontent-length: 2\r\n", "repeated"],
    ["content-length: 2, 2\r\n", "repeated"],
    ["content-length: 2x\r\n", "decimal"],
    ["content-length: -1\r\n", "decimal"],
    ["transfer-encoding: gzip, chunked\r\n", "must be chunked"],
    ["transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n", "must be chunked"],
    ["x-a: 1\r\n  folded\r\ncontent-length: 0\r\n", "folding"],
    ["x-a : 1\r\ncontent-length: 0\r\n", "not a token"],
    ["x-a: 1\x01\r\ncontent-length: 0\r\n", "control character"],
    [`x-big: ${"a".repeat(70_000)}\r\n`, "exceeds 65536 bytes"],
  ];
  for (const [fields, message] of cases) {
    await using backend = startRawBackend({
      answer: { kind: "respond", response: `HTTP/1.1 200 OK\r\n${fields}\r\nok` },
    });
    using client = createHttp1Client(DEFAULTS.proxy);
    const cause = await causeOf(client.fetch(`http://127.0.0.1:${backend.port}/`));
    assertStringIncludes(cause, "invalid response: ", fields);
    assertStringIncludes(cause, message, fields);
  }
  const heads: ReadonlyArray<readonly [string, string]> = [
    ["HTTP/1.1 600 Odd", "outside 100-599"],
    ["SSH-2.0", "status line"],
  ];
  for (const [head, message] of heads) {
    await using backend = startRawBackend({
      answer: { kind: "respond", response: `${head}\r\ncontent-length: 0\r\n\r\n` },
    });
    using client = createHttp1Client(DEFAULTS.proxy);
    assertStringIncludes(await causeOf(client.fetch(`http://127.0.0.1:${backend.port}/`)), message);
  }
});

Deno.test("fetch() errors the body on a bad chunk size or a body cut short", async () => {
  const responses = [
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1000000000000\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokX\r\n0\r\n\r\n",
  ];
  for (const text of responses) {
    await using backend = startRawBackend({ answer: { kind: "respond", response: text } });
    using client = createHttp1Client(DEFAULTS.proxy);
    const response = await client.fetch(`http://127.0.0.1:${backend.port}/`);
    await assertRejects(() => response.text(), TypeError, "error reading a body", text);
    assertEquals(client.idleCount(), 0);
  }
  await using short = startScriptedBackend(async (conn) => {
    await conn.readHead();
    await conn.write("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc");
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  const response = await client.fetch(short.url);
  await assertRejects(() => response.text(), TypeError, "error reading a body");
});

Deno.test("fetch() reads a body delimited by the end of the connection", async () => {
  await using backend = startScriptedBackend(async (conn) => {
    await conn.readHead();
    await conn.write("HTTP/1.1 200 OK\r\nx-a: 1\r\n\r\nall of ");
    await conn.write("it");
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  assertEquals(await (await client.fetch(backend.url)).text(), "all of it");
  assertEquals(client.idleCount(), 0);
});

Deno.test("fetch() skips interim responses and returns 101 as it came", async () => {
  await using interim = startRawBackend({
    answer: {
      kind: "respond",
      response: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" +
        "HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
    },
  });
  await using switching = startRawBackend({ answer: { kind: "switch-protocols" } });
  using client = createHttp1Client(DEFAULTS.proxy);
  const created = await client.fetch(`http://127.0.0.1:${interim.port}/`);
  assertEquals([created.status, created.headers.has("link"), await created.text()], [
    201,
    false,
    "ok",
  ]);
  const switched = await client.fetch(`http://127.0.0.1:${switching.port}/`);
  assertEquals([switched.status, switched.body], [101, null]);
  assertEquals(client.idleCount(`127.0.0.1:${switching.port}`), 0);
});

Deno.test("fetch() answers HEAD without a body and keeps the connection", async () => {
  await using backend = startRawBackend({
    answer: { kind: "respond", response: "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n" },
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  const response = await client.fetch(`http://127.0.0.1:${backend.port}/`, { method: "head" });
  assertEquals([response.body, response.headers.get("content-length")], [null, "10"]);
  assertEquals(decoder.decode(backend.received[0]?.raw).slice(0, 7), "HEAD / ");
  assertEquals(client.idleCount(), 1);
});

Deno.test("fetch() rejects with the signal's reason when aborted before the head", async () => {
  const arrived = Promise.withResolvers<void>();
  const done = Promise.withResolvers<void>();
  await using backend = startScriptedBackend(async (conn) => {
    await conn.readHead();
    arrived.resolve();
    await done.promise;
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  const controller = new AbortController();
  const reason = new Error("client went away");
  const pending = client.fetch(backend.url, { signal: controller.signal });
  await arrived.promise;
  controller.abort(reason);
  const error = await pending.then(() => undefined, (error: unknown) => error);
  assertStrictEquals(error, reason);
  done.resolve();

  const early = new AbortController();
  early.abort(reason);
  const rejected = await client.fetch(backend.url, { signal: early.signal }).catch((e) => e);
  assertStrictEquals(rejected, reason);
  assertEquals(backend.accepted, 1);
});

Deno.test("fetch() errors the body with the signal's reason when aborted after it", async () => {
  const done = Promise.withResolvers<void>();
  await using backend = startScriptedBackend(async (conn) => {
    await conn.readHead();
    await conn.write("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst");
    await done.promise;
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  const controller = new AbortController();
  const response = await client.fetch(backend.url, { signal: controller.signal });
  const reader = response.body?.getReader();
  assertEquals(decoder.decode((await reader?.read())?.value), "first");
  const reason = new Error("client went away");
  controller.abort(reason);
  const error = await reader?.read().then(() => undefined, (error: unknown) => error);
  assertStrictEquals(error, reason);
  done.resolve();
});

Deno.test("fetch() stops uploading when the backend answers early and closes", async () => {
  await using backend = startScriptedBackend(async (conn) => {
    await conn.readHead();
    await conn.write(
      "HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
    );
    await conn.readUntil("never sent");
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  const cancelled = Promise.withResolvers<void>();
  const endless = new ReadableStream<Uint8Array>({
    pull: (controller) => controller.enqueue(new Uint8Array(1_024)),
    cancel: () => cancelled.resolve(),
  });
  const response = await client.fetch(backend.url, { method: "POST", body: endless });
  assertEquals([response.status, await response.text()], [413, ""]);
  await cancelled.promise;
  assertEquals(client.idleCount(), 0);
});

Deno.test("fetch() fails the request when its body stream fails", async () => {
  await using backend = startRawBackend();
  using client = createHttp1Client(DEFAULTS.proxy);
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode("part"));
      controller.error(new Error("upload broke"));
    },
  });
  const cause = await causeOf(
    client.fetch(`http://127.0.0.1:${backend.port}/`, { method: "POST", body }),
  );
  assertEquals(cause, "request body stream failed");
});

Deno.test("fetch() accepts http: only", async () => {
  using client = createHttp1Client(DEFAULTS.proxy);
  await assertRejects(() => client.fetch("https://127.0.0.1/"), TypeError, "http: only");
  await assertRejects(
    () => client.fetch("http://127.0.0.1/", { headers: [["x", "a\r\nb"]] }),
    TypeError,
    "must not hold CR, LF",
  );
});

Deno.test("the pool closes idle connections after the idle timeout", async () => {
  await using backend = startRawBackend();
  const clock = new FakeClock();
  using client = createHttp1Client({ ...DEFAULTS.proxy, clock, keepAliveTimeoutMs: 1_000 });
  await (await client.fetch(`http://127.0.0.1:${backend.port}/`)).text();
  assertEquals(client.idleCount(), 1);
  await clock.advance(999);
  assertEquals(client.idleCount(), 1);
  await clock.advance(1);
  assertEquals(client.idleCount(), 0);
  await backend.connections[0]?.ended;
});

Deno.test("the pool keeps at most maxIdlePerOrigin connections", async () => {
  const both = Promise.withResolvers<void>();
  let arrived = 0;
  await using backend = startServer(async () => {
    if (++arrived === 2) both.resolve();
    await both.promise;
    return new Response("ok");
  });
  using client = createHttp1Client({ ...DEFAULTS.proxy, maxIdlePerHost: 1 });
  const texts = await Promise.all(
    [1, 2].map(async () => await (await client.fetch(backend.url)).text()),
  );
  assertEquals(texts, ["ok", "ok"]);
  assertEquals(client.idleCount(), 1);
});

Deno.test("the pool drops a connection the backend closes while idle", async () => {
  await using backend = startScriptedBackend(async (conn) => {
    await conn.readHead();
    await conn.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  assertEquals(await (await client.fetch(backend.url)).text(), "ok");
  await until(() => client.idleCount() === 0);
});

Deno.test("close() closes idle connections and refuses later requests", async () => {
  await using backend = startRawBackend();
  const client = createHttp1Client(DEFAULTS.proxy);
  await (await client.fetch(`http://127.0.0.1:${backend.port}/`)).text();
  client.close();
  assertEquals(client.idleCount(), 0);
  await backend.connections[0]?.ended;
  assertEquals(
    await causeOf(client.fetch(`http://127.0.0.1:${backend.port}/`)),
    "client is closed",
  );
});
