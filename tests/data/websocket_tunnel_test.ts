/**
 * WebSocket as a byte tunnel through the balancer's default flags (`--websocket` is on by
 * default): TCP backpressure instead of a cut, and the listener's protections (header timeout,
 * `--max-connections`) on the same listener while it serves WebSocket. Needs `--allow-ffi`.
 */
import { getLogger } from "@logtape/logtape";
import { Backend } from "../../lib/core/backend.ts";
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { startDataPlane } from "../../lib/data/data_plane.ts";
import { Metrics } from "../../lib/core/metrics.ts";
import { Pool } from "../../lib/core/pool.ts";
import { systemClock } from "../../lib/shared/clock.ts";
import { assert, assertEquals, assertLess } from "../support/assert.ts";
import { startServer } from "../support/servers.ts";
import { within } from "../support/wait.ts";

const HANDSHAKE = new TextEncoder().encode(
  "GET / HTTP/1.1\r\nhost: lb\r\nupgrade: websocket\r\nconnection: Upgrade\r\n" +
    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
);

/** The data plane `lb` runs, from its flags (the defaults but for the ones given). */
async function startPlane(backends: readonly URL[], flags: readonly string[]) {
  const config = await parseBalancerArgs([
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--admin",
    "off",
    "--access-log",
    "off",
    ...backends.flatMap((url) => ["--backend", url.href]),
    ...flags,
  ], () => undefined);
  const pool = new Pool(config.backends.map((b) => new Backend(b.url)));
  const metrics = new Metrics(pool);
  const plane = startDataPlane(config, {
    pool,
    metrics,
    clock: systemClock,
    logger: getLogger(["denolb", "server"]),
    proxyLogger: getLogger(["denolb", "proxy"]),
  });
  const port = plane.listener.addr.port;
  let closed: Promise<void> | undefined;
  return {
    plane,
    pool,
    metrics,
    port,
    url: new URL(`ws://127.0.0.1:${port}/`),
    // Bounded: a drain that never ends fails the test instead of hanging the run.
    [Symbol.asyncDispose]: () =>
      closed ??= within("the data plane's drain", plane.shutdown()).finally(() => plane.close()),
  };
}

/** A WebSocket echo backend (plain requests get "ok"). */
function startEchoBackend() {
  return startServer((request) => {
    if (request.headers.get("upgrade") !== "websocket") return new Response("ok");
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onmessage = (event) => socket.send(event.data);
    return response;
  });
}

/** Opens a client socket and waits for it to open. */
async function openSocket(url: URL): Promise<WebSocket> {
  const socket = new WebSocket(url);
  await within(
    "the socket to open",
    new Promise<void>((resolve, reject) => {
      socket.onopen = () => resolve();
      socket.onerror = () => reject(new Error("socket failed to open"));
    }),
  );
  return socket;
}

/** Sends `text` and waits for its echo. */
function echo(socket: WebSocket, text: string): Promise<unknown> {
  const { promise, resolve } = Promise.withResolvers<unknown>();
  socket.onmessage = (event) => resolve(event.data);
  socket.send(text);
  return promise;
}

/** Closes a socket and waits for its close event. */
function closeSocket(socket: WebSocket): Promise<void> {
  const { promise, resolve } = Promise.withResolvers<void>();
  socket.onclose = () => resolve();
  socket.close();
  return promise;
}

/** Reads until the peer closes; resolves with the time it took, or rejects past `limitMs`. */
async function readUntilClosed(conn: Deno.Conn, limitMs: number): Promise<number> {
  const started = performance.now();
  const timer = setTimeout(() => conn.close(), limitMs);
  try {
    const buffer = new Uint8Array(4096);
    while (await conn.read(buffer) !== null) {
      // Whatever the balancer answers.
    }
    return performance.now() - started;
  } finally {
    clearTimeout(timer);
  }
}

/** The 101 a raw backend answers with. */
const SWITCHING = new TextEncoder().encode(
  "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n" +
    "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
);

/**
 * Accepts the balancer's connection on a raw backend, reads the handshake's head and answers
 * 101.
 *
 * @returns The connection and how many bytes came after the head (early frames).
 */
async function acceptUpgrade(listener: Deno.Listener): Promise<{ conn: Deno.Conn; early: number }> {
  const conn = await listener.accept();
  const buffer = new Uint8Array(65_536);
  let head = "";
  while (!head.includes("\r\n\r\n")) {
    const n = await conn.read(buffer);
    if (n === null) throw new Error("the balancer closed before its handshake");
    head += new TextDecoder().decode(buffer.subarray(0, n));
  }
  await conn.write(SWITCHING);
  return { conn, early: head.length - (head.indexOf("\r\n\r\n") + 4) };
}

/** A client connection through the balancer whose handshake got the backend's 101. */
async function openTunnel(port: number): Promise<Deno.Conn> {
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  await client.write(HANDSHAKE);
  const head = new Uint8Array(4096);
  const n = await within("the 101", client.read(head));
  assert(n !== null && new TextDecoder().decode(head.subarray(0, n)).startsWith("HTTP/1.1 101"));
  return client;
}

/**
 * Writes 256 KiB chunks (the tunnel does not care what) until one write stalls for 500 ms.
 *
 * @returns The bytes written, and the stalled write.
 */
async function writeUntilStalled(
  client: Deno.Conn,
): Promise<{ sent: number; pending: Promise<number> }> {
  const chunk = new Uint8Array(256 * 1024).fill(0x61);
  let sent = 0;
  for (;;) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stalled = new Promise<"stalled">((resolve) => {
      timer = setTimeout(() => resolve("stalled"), 500);
    });
    const pending = client.write(chunk);
    const written = await Promise.race([pending, stalled]);
    clearTimeout(timer);
    if (written === "stalled") return { sent, pending };
    sent += written;
    assertLess(sent, 256 * 1024 * 1024, "the client was never slowed down");
  }
}

Deno.test("websocket tunnel: a backend that stops reading slows the client down, with no cut and bounded memory", async () => {
  // A raw backend: it answers the handshake 101, then reads nothing until told to.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const resume = Promise.withResolvers<void>();
  const received = Promise.withResolvers<number>();
  const backendDone = (async () => {
    const { conn, early } = await acceptUpgrade(listener);
    await resume.promise;
    const buffer = new Uint8Array(65_536);
    let total = early;
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      total += n;
    }
    received.resolve(total);
    conn.close();
  })();
  const backendUrl = new URL(`http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`);
  await using lb = await startPlane([backendUrl], ["--health-interval", "1h"]);
  const client = await openTunnel(lb.port);
  // This isolate's memory (the data plane runs here): the process's RSS would also count the
  // tests that share the process.
  const isolateMemory = () => {
    const usage = Deno.memoryUsage();
    return usage.heapUsed + usage.external;
  };
  const memoryBefore = isolateMemory();
  let { sent, pending } = await writeUntilStalled(client);
  // What it could send is what the kernel buffers hold (and one chunk per direction here).
  assertLess(sent, 64 * 1024 * 1024);
  assertLess(isolateMemory() - memoryBefore, 64 * 1024 * 1024);
  assertEquals(lb.pool.inFlight, 1, "the tunnel is still open: no cut");
  // The backend reads again: every byte arrives, the stalled write included.
  resume.resolve();
  sent += await within("the stalled write to complete", pending);
  await client.closeWrite();
  assertEquals(await within("the backend to read everything", received.promise), sent);
  client.close();
  await within("the backend to finish", backendDone);
  listener.close();
});

Deno.test("websocket tunnel: a drain closes a tunnel whose backend stopped reading while the client still writes", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const backend = acceptUpgrade(listener);
  const backendUrl = new URL(`http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`);
  await using lb = await startPlane([backendUrl], ["--health-interval", "1h"]);
  const client = await openTunnel(lb.port);
  const { conn } = await within("the backend's 101 to be sent", backend);
  // The client fills the kernel buffers: the tunnel's pump is then blocked in a write to the
  // backend, which reads nothing.
  const { pending } = await writeUntilStalled(client);
  pending.catch(() => {});
  // The drain ends the tunnel, both sides: it does not wait for the backend to read.
  await within("the drain", lb.plane.shutdown());
  assertEquals(lb.pool.inFlight, 0, "the tunnel still counts");
  // The backend sees its side closed once it reads what was buffered.
  const buffer = new Uint8Array(1 << 20);
  await within(
    "the backend's side to close",
    (async () => {
      try {
        while (await conn.read(buffer) !== null) {
          // What the client sent before the drain.
        }
      } catch {
        // A reset is a close too.
      }
    })(),
  );
  conn.close();
  client.close();
  listener.close();
});

/**
 * A raw backend for one connection: reads the handshake, answers 101, runs `script`, then
 * records every byte it receives until EOF (or a reset) and closes.
 */
function startRawBackend(script: (conn: Deno.Conn) => Promise<void> = () => Promise.resolve()) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received = (async () => {
    const { conn } = await acceptUpgrade(listener);
    await script(conn);
    const got = await readAll(conn);
    conn.close();
    return got;
  })();
  return {
    url: new URL(`http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`),
    /** Every byte the backend got after its 101, up to EOF. */
    received,
    [Symbol.asyncDispose]: async () => {
      listener.close();
      await received.catch(() => {});
    },
  };
}

/** Reads until EOF (a reset counts as one). */
async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: number[] = [];
  const buffer = new Uint8Array(65_536);
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      for (let i = 0; i < n; i++) chunks.push(buffer[i] as number);
    }
  } catch {
    // A reset ends it too.
  }
  return Uint8Array.from(chunks);
}

/** Opens a raw client tunnel and reads exactly the 101's head. */
async function openRawClient(port: number): Promise<Deno.Conn> {
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  await client.write(HANDSHAKE);
  let head = "";
  const byte = new Uint8Array(1);
  while (!head.endsWith("\r\n\r\n")) {
    const n = await within("the 101", client.read(byte));
    assert(n !== null, `closed after ${JSON.stringify(head)}`);
    head += String.fromCharCode(byte[0] as number);
  }
  assert(head.startsWith("HTTP/1.1 101"), head);
  return client;
}

/** Reads exactly `count` bytes. */
async function readExactly(conn: Deno.Conn, count: number): Promise<Uint8Array> {
  const out = new Uint8Array(count);
  for (let at = 0; at < count;) {
    const n = await conn.read(out.subarray(at));
    assert(n !== null, `EOF after ${at} of ${count} bytes`);
    at += n;
  }
  return out;
}

/** The payload of a masked frame with a 7-bit length, unmasked. */
function unmaskedPayload(frame: Uint8Array): number[] {
  assert((frame[1] as number) & 0x80, "the frame is not masked");
  const length = (frame[1] as number) & 0x7f;
  const key = frame.subarray(2, 6);
  return [...frame.subarray(6, 6 + length)].map((b, i) => b ^ (key[i % 4] as number));
}

Deno.test("websocket tunnel: a drain sends 1001 Going Away to both sides of an idle tunnel, then closes", async () => {
  await using backend = startRawBackend();
  await using lb = await startPlane([backend.url], ["--health-interval", "1h"]);
  const client = await openRawClient(lb.port);
  // The drain waits for the tunnel; the client reads what it gets meanwhile and, at EOF, closes
  // as a browser does after a close frame.
  const [got] = await Promise.all([
    within("the client's EOF", readAll(client).finally(() => client.close())),
    within("the drain", lb.plane.shutdown()),
  ]);
  // To the client: an unmasked close frame, 1001 and no reason, then EOF.
  assertEquals([...got], [0x88, 0x02, 0x03, 0xe9]);
  // To the backend: one masked close frame whose payload is 1001, then EOF.
  const frame = await within("the backend's EOF", backend.received);
  assertEquals([frame.length, frame[0], frame[1]], [8, 0x88, 0x82]);
  assertEquals(unmaskedPayload(frame), [0x03, 0xe9]);
  assertEquals(lb.pool.inFlight, 0);
});

Deno.test("websocket tunnel: a drain in the middle of a backend's frame puts no close frame inside it", async () => {
  // A 1 MiB binary frame, of which the backend sends the header and 100 000 payload bytes.
  const header = Uint8Array.of(0x82, 127, 0, 0, 0, 0, 0, 0x10, 0, 0);
  const part = new Uint8Array(100_000).fill(0x62);
  await using backend = startRawBackend(async (conn) => {
    await conn.write(header);
    for (let at = 0; at < part.length;) at += await conn.write(part.subarray(at));
  });
  await using lb = await startPlane([backend.url], ["--health-interval", "1h"]);
  const client = await openRawClient(lb.port);
  // All of it went through the tunnel before the drain.
  const before = await within(
    "the frame's start",
    readExactly(client, header.length + part.length),
  );
  assertEquals(before.subarray(0, header.length), header);
  const [after] = await Promise.all([
    within("the client's EOF", readAll(client).finally(() => client.close())),
    within("the drain", lb.plane.shutdown()),
  ]);
  // Nothing after the partial frame: a close frame there would be read as its payload.
  assertEquals(after.length, 0);
  // The other direction was at a boundary: the backend got its close frame.
  const frame = await within("the backend's EOF", backend.received);
  assertEquals(unmaskedPayload(frame), [0x03, 0xe9]);
});

Deno.test("websocket tunnel: a drain after a whole frame sends the close frame right after it", async () => {
  await using backend = startRawBackend(async (conn) => {
    // A text frame "hi", in two writes (header and payload apart).
    await conn.write(Uint8Array.of(0x81, 0x02));
    await conn.write(Uint8Array.of(0x68, 0x69));
  });
  await using lb = await startPlane([backend.url], ["--health-interval", "1h"]);
  const client = await openRawClient(lb.port);
  assertEquals([...await within("the frame", readExactly(client, 4))], [0x81, 0x02, 0x68, 0x69]);
  const [after] = await Promise.all([
    within("the client's EOF", readAll(client).finally(() => client.close())),
    within("the drain", lb.plane.shutdown()),
  ]);
  assertEquals([...after], [0x88, 0x02, 0x03, 0xe9]);
  await within("the backend's EOF", backend.received);
});

Deno.test("websocket tunnel: a slowloris connection is cut at --header-timeout while the same listener serves WebSocket", async () => {
  await using backend = startEchoBackend();
  await using lb = await startPlane([backend.url], ["--header-timeout", "300ms"]);
  const socket = await openSocket(lb.url);
  // One client sends part of a head and stops; another sends nothing at all.
  const partial = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
  await partial.write(new TextEncoder().encode("GET / HTTP/1.1\r\nhost: lb\r\nx-slow: 1"));
  const silent = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
  const [partialMs, silentMs] = await Promise.all([
    readUntilClosed(partial, 5_000),
    readUntilClosed(silent, 5_000),
  ]);
  for (const ms of [partialMs, silentMs]) {
    assert(ms >= 250, `cut after ${ms} ms, before the header timeout`);
    assertLess(ms, 3_000);
  }
  partial.close();
  silent.close();
  // The socket outlived the header timeout and still echoes.
  assertEquals(await within("the echo", echo(socket, "still here")), "still here");
  await within("the close", closeSocket(socket));
});

Deno.test("websocket tunnel: --max-connections counts upgraded connections", async () => {
  await using backend = startEchoBackend();
  await using lb = await startPlane([backend.url], ["--max-connections", "2"]);
  const sockets = [await openSocket(lb.url), await openSocket(lb.url)];
  assertEquals(lb.plane.listener.connectionCount, 2);
  // A third connection is refused with 503, plain or WebSocket.
  const third = await fetch(`http://127.0.0.1:${lb.port}/`);
  assertEquals(third.status, 503);
  await third.body?.cancel();
  // One socket closes: its connection no longer counts, and a request gets through.
  await closeSocket(sockets[0] as WebSocket);
  const deadline = Date.now() + 5_000;
  while (lb.plane.listener.connectionCount > 1) {
    assert(Date.now() < deadline, "the closed tunnel still counts");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
  const fourth = await fetch(`http://127.0.0.1:${lb.port}/`, { client });
  assertEquals([fourth.status, await fourth.text()], [200, "ok"]);
  client.close();
  assertEquals(await echo(sockets[1] as WebSocket, "second"), "second");
  await closeSocket(sockets[1] as WebSocket);
});

Deno.test("websocket tunnel: an upgrade after another request on a kept-alive connection is answered 501, naming why", async () => {
  await using backend = startEchoBackend();
  await using lb = await startPlane([backend.url], []);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
  await conn.write(new TextEncoder().encode("GET / HTTP/1.1\r\nhost: lb\r\n\r\n"));
  const buffer = new Uint8Array(8192);
  let text = "";
  while (!text.includes("\r\n\r\nok")) {
    const n = await conn.read(buffer);
    assert(n !== null);
    text += new TextDecoder().decode(buffer.subarray(0, n));
  }
  await conn.write(HANDSHAKE);
  text = "";
  while (!text.includes("new connection")) {
    const n = await conn.read(buffer);
    assert(n !== null, text);
    text += new TextDecoder().decode(buffer.subarray(0, n));
  }
  assert(text.startsWith("HTTP/1.1 501"), text);
  conn.close();
});

Deno.test("websocket tunnel: a backend's refusal reaches the client as it was sent, headers and body", async () => {
  await using refusing = startServer(() =>
    new Response("sign in first", {
      status: 401,
      headers: { "www-authenticate": 'Bearer realm="chat"', "x-from": "backend" },
    })
  );
  await using lb = await startPlane([refusing.url], ["--health-interval", "1h"]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
  await conn.write(HANDSHAKE);
  let text = "";
  const buffer = new Uint8Array(4096);
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) break;
    text += new TextDecoder().decode(buffer.subarray(0, n));
  }
  conn.close();
  assert(text.startsWith("HTTP/1.1 401 Unauthorized\r\n"), text);
  assert(text.includes('www-authenticate: Bearer realm="chat"\r\n'), text);
  assert(text.includes("x-from: backend\r\n"), text);
  assert(text.endsWith("\r\n\r\nsign in first"), text);
  assertEquals(lb.pool.inFlight, 0);
});

Deno.test("websocket tunnel: extensions are negotiated end to end and ping and RSV1 frames pass byte-identical", async () => {
  // A raw backend: records the handshake, accepts permessage-deflate, then echoes raw bytes.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const handshake = Promise.withResolvers<string>();
  const backendDone = (async () => {
    const conn = await listener.accept();
    const buffer = new Uint8Array(65_536);
    let head = "";
    while (!head.includes("\r\n\r\n")) {
      const n = await conn.read(buffer);
      if (n === null) return;
      head += new TextDecoder().decode(buffer.subarray(0, n));
    }
    handshake.resolve(head);
    await conn.write(
      new TextEncoder().encode(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n" +
          "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" +
          "sec-websocket-extensions: permessage-deflate\r\n\r\n",
      ),
    );
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      await conn.write(buffer.slice(0, n));
    }
    conn.close();
  })();
  const backendUrl = new URL(`http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`);
  await using lb = await startPlane([backendUrl], ["--health-interval", "1h"]);
  const client = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
  const offer = new TextDecoder().decode(HANDSHAKE).replace(
    "\r\n\r\n",
    "\r\nsec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
  );
  await client.write(new TextEncoder().encode(offer));
  const head = new Uint8Array(4096);
  const n = await client.read(head);
  assert(n !== null);
  const answer = new TextDecoder().decode(head.subarray(0, n));
  assert(answer.startsWith("HTTP/1.1 101"), answer);
  assert(answer.includes("sec-websocket-extensions: permessage-deflate\r\n"), answer);
  const sent = await handshake.promise;
  assert(sent.includes("sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), sent);
  assert(
    sent.includes("sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n"),
    sent,
  );
  // A masked ping, and a masked text frame with RSV1 set (a compressed message).
  const frames = Uint8Array.of(
    0x89,
    0x84,
    1,
    2,
    3,
    4,
    0x71,
    0x6b,
    0x6d,
    0x63,
    0xc1,
    0x83,
    9,
    9,
    9,
    9,
    0x43,
    0x48,
    0x4c,
  );
  await client.write(frames);
  const echoed = new Uint8Array(frames.length);
  for (let at = 0; at < echoed.length;) {
    const got = await client.read(echoed.subarray(at));
    assert(got !== null);
    at += got;
  }
  assertEquals(echoed, frames);
  client.close();
  await backendDone;
  listener.close();
});

// Last in this file: it revokes --allow-ffi for the rest of the process.
Deno.test("websocket tunnel: without --allow-ffi the listener keeps its header timeout and upgrades get 501 naming why", async () => {
  await Deno.permissions.revoke({ name: "ffi" });
  await using backend = startEchoBackend();
  await using lb = await startPlane([backend.url], ["--header-timeout", "300ms"]);
  const response = await fetch(`http://127.0.0.1:${lb.port}/`, {
    headers: {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    },
  });
  assertEquals(response.status, 501);
  assertEquals(
    await response.text(),
    "Not implemented: WebSocket proxying is unavailable here (it needs --allow-ffi)\n",
  );
  const silent = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
  assertLess(await readUntilClosed(silent, 5_000), 3_000);
  silent.close();
});
