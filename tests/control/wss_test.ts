/**
 * WebSocket over TLS (wss) through the balancer's TLS listener, and what must not change for the
 * other connections there: the listener reads an HTTP/1.1 connection's first request head itself
 * (`lib/data/tls_sniffer.ts`), tunnels a handshake, and hands anything else to Deno's server
 * through a local pipe (`lib/data/local_pipe.ts`). Raw TLS clients, frames made by hand.
 */
import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import { type RunningBalancer, startBalancer } from "../../lib/control/balancer.ts";
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { waitUntil } from "../support/wait.ts";
import { curl, makeTestCa, openRawTlsClient, type TestCa } from "../support/tls.ts";

/** What the backend saw: each plain request's and handshake's forwarding headers, close codes. */
interface Seen {
  readonly requests: Array<{ path: string; xff: string | null; proto: string | null }>;
  readonly closeCodes: number[];
}

/** Echoes WebSocket messages; answers plain requests with their path. */
function startBackend() {
  const seen: Seen = { requests: [], closeCodes: [] };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    if (new URL(request.url).pathname === "/health") return new Response("ok"); // probes
    seen.requests.push({
      path: new URL(request.url).pathname,
      xff: request.headers.get("x-forwarded-for"),
      proto: request.headers.get("x-forwarded-proto"),
    });
    if (request.headers.get("upgrade") !== "websocket") {
      return new Response(`plain ${new URL(request.url).pathname}`);
    }
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event) => socket.send(event.data);
    socket.onclose = (event) => seen.closeCodes.push(event.code);
    return response;
  });
  return {
    seen,
    url: `http://127.0.0.1:${server.addr.port}/`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

async function startTlsBalancer(
  ca: TestCa,
  backendUrl: string,
  flags: readonly string[] = [],
  clock = new FakeClock(),
): Promise<RunningBalancer> {
  const leaf = await ca.issue(["localhost"]);
  const config = await parseBalancerArgs([
    "--port",
    "0",
    "--admin",
    "off",
    "--log-level",
    "fatal",
    "--access-log",
    "off",
    "--backend",
    backendUrl,
    "--tls-cert",
    leaf.certFile,
    "--tls-key",
    leaf.keyFile,
    ...flags,
  ], () => undefined);
  return await startBalancer(config, { clock });
}

/** A connection's bytes, read as needed. */
class Reader {
  #bytes = new Uint8Array(0);
  readonly #conn: Deno.Conn;
  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }
  /** Reads until `count` bytes are buffered, then takes them. */
  async take(count: number): Promise<Uint8Array> {
    while (this.#bytes.length < count) {
      const chunk = new Uint8Array(65_536);
      const n = await this.#conn.read(chunk);
      if (n === null) throw new Error(`The connection ended ${count - this.#bytes.length} short`);
      const next = new Uint8Array(this.#bytes.length + n);
      next.set(this.#bytes);
      next.set(chunk.subarray(0, n), this.#bytes.length);
      this.#bytes = next;
    }
    const taken = this.#bytes.slice(0, count);
    this.#bytes = this.#bytes.slice(count);
    return taken;
  }
  /** Reads up to and including the blank line of a response head. */
  async head(): Promise<string> {
    let text = "";
    while (!text.endsWith("\r\n\r\n")) text += new TextDecoder().decode(await this.take(1));
    return text;
  }
  /** Reads one (unmasked, unfragmented) frame. */
  async frame(): Promise<{ opcode: number; payload: Uint8Array }> {
    const [b0 = 0, b1 = 0] = await this.take(2);
    let length = b1 & 0x7f;
    if (length === 126) length = new DataView((await this.take(2)).buffer).getUint16(0);
    else if (length === 127) {
      length = Number(new DataView((await this.take(8)).buffer).getBigUint64(0));
    }
    return { opcode: b0 & 0x0f, payload: await this.take(length) };
  }
}

/** A client frame: FIN set, masked as RFC 6455 §5.3 requires. */
function clientFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const lengthBytes = payload.length < 126 ? 0 : payload.length < 65_536 ? 2 : 8;
  const head = new Uint8Array(2 + lengthBytes + 4);
  const view = new DataView(head.buffer);
  head[0] = 0x80 | opcode;
  if (lengthBytes === 0) head[1] = 0x80 | payload.length;
  else if (lengthBytes === 2) {
    head[1] = 0x80 | 126;
    view.setUint16(2, payload.length);
  } else {
    head[1] = 0x80 | 127;
    view.setBigUint64(2, BigInt(payload.length));
  }
  const mask = crypto.getRandomValues(new Uint8Array(4));
  head.set(mask, 2 + lengthBytes);
  const frame = new Uint8Array(head.length + payload.length);
  frame.set(head);
  for (let i = 0; i < payload.length; i++) {
    frame[head.length + i] = (payload[i] ?? 0) ^ (mask[i % 4] ?? 0);
  }
  return frame;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

const HANDSHAKE = "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n" +
  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
  "Sec-WebSocket-Version: 13\r\n\r\n";

Deno.test("wss: frames echo byte-identical through the tunnel and close code 4000 passes", async () => {
  await using ca = await makeTestCa();
  await using backend = startBackend();
  await using balancer = await startTlsBalancer(ca, backend.url);
  const port = Number(balancer.url.port);
  const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [ca.certPem] });
  try {
    const reader = new Reader(conn);
    const text = new TextEncoder().encode("hello over wss");
    // A frame sent right behind the handshake (early bytes) is tunnelled too.
    await writeAll(
      conn,
      new Uint8Array([
        ...new TextEncoder().encode(HANDSHAKE),
        ...clientFrame(0x1, text),
      ]),
    );
    const head = await reader.head();
    assertStringIncludes(head, "HTTP/1.1 101");
    assertStringIncludes(head.toLowerCase(), "sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=");
    assertEquals(await reader.frame(), { opcode: 0x1, payload: text });
    const binary = crypto.getRandomValues(new Uint8Array(65_536));
    const big = new Uint8Array(1024 * 1024);
    for (let at = 0; at < big.length; at += binary.length) big.set(binary, at);
    await writeAll(conn, clientFrame(0x2, big));
    const echoed = await reader.frame();
    assertEquals(echoed.opcode, 0x2);
    assertEquals(echoed.payload.length, big.length);
    assert(echoed.payload.every((byte, i) => byte === big[i]), "the 1 MB frame came back changed");
    await writeAll(conn, clientFrame(0x8, Uint8Array.of(0x0f, 0xa0))); // 4000
    const close = await reader.frame();
    assertEquals(close.opcode, 0x8);
    assertEquals(new DataView(close.payload.buffer).getUint16(0), 4000);
    await waitUntil("the backend saw the close", () => backend.seen.closeCodes.length === 1);
    assertEquals(backend.seen.closeCodes, [4000]);
    assertEquals(backend.seen.requests, [{ path: "/chat", xff: "127.0.0.1", proto: "https" }]);
  } finally {
    conn.close();
  }
});

Deno.test("wss: HTTP/1.1 keep-alive over TLS still works, the backend hears the client and https", async () => {
  await using ca = await makeTestCa();
  await using backend = startBackend();
  await using balancer = await startTlsBalancer(ca, backend.url);
  const port = Number(balancer.url.port);
  using client = await openRawTlsClient(port, "localhost", [ca.certPem]);
  for (const path of ["/a", "/b", "/c"]) {
    const response = await client.get(path);
    assertEquals([response.status, response.body], [200, `plain ${path}`]);
  }
  // One connection, counted once (not once more for the pipe to Deno's server).
  assertEquals(balancer.connectionCount, 1);
  assertEquals(backend.seen.requests, [
    { path: "/a", xff: "127.0.0.1", proto: "https" },
    { path: "/b", xff: "127.0.0.1", proto: "https" },
    { path: "/c", xff: "127.0.0.1", proto: "https" },
  ]);
  // HTTP/2 (ALPN h2) still goes to Deno's server directly.
  const h2 = await curl(`https://localhost:${port}/h2`, {
    http: "2",
    cacert: ca.certFile,
    resolve: `localhost:${port}:127.0.0.1`,
  });
  assertEquals([h2.status, h2.version, h2.body], [200, "2", "plain /h2"]);
  const h1 = await curl(`https://localhost:${port}/h1`, {
    http: "1.1",
    cacert: ca.certFile,
    resolve: `localhost:${port}:127.0.0.1`,
  });
  assertEquals([h1.status, h1.version, h1.body], [200, "1.1", "plain /h1"]);
});

Deno.test("wss: a TLS client sending a partial head is cut at --header-timeout", async () => {
  await using ca = await makeTestCa();
  await using backend = startBackend();
  const clock = new FakeClock();
  await using balancer = await startTlsBalancer(
    ca,
    backend.url,
    ["--header-timeout", "5s", "--tls-timeout", "60s"],
    clock,
  );
  const port = Number(balancer.url.port);
  const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [ca.certPem] });
  try {
    await conn.handshake();
    await writeAll(conn, new TextEncoder().encode("GET / HTTP/1.1\r\nHost: loc"));
    // The server's side of the handshake ends after the client's: the header timeout is armed
    // then (at 5 s; the handshake's would wake at 60 s).
    await waitUntil("the header timeout armed", () => clock.wakeTimes.includes(5_000));
    await clock.advance(4_999);
    assertEquals(balancer.connectionCount, 1);
    await clock.advance(1);
    await waitUntil("the connection released", () => balancer.connectionCount === 0);
    const read = await conn.read(new Uint8Array(64)).catch(() => null);
    assertEquals(read, null);
  } finally {
    conn.close();
  }
  assertEquals(backend.seen.requests, []);
});

Deno.test("wss: --max-connections counts a connection served through the pipe once", async () => {
  await using ca = await makeTestCa();
  await using backend = startBackend();
  await using balancer = await startTlsBalancer(ca, backend.url, ["--max-connections", "2"]);
  const port = Number(balancer.url.port);
  using first = await openRawTlsClient(port, "localhost", [ca.certPem]);
  using second = await openRawTlsClient(port, "localhost", [ca.certPem]);
  assertEquals((await first.get("/1")).status, 200);
  assertEquals((await second.get("/2")).status, 200);
  assertEquals(balancer.connectionCount, 2);
  // A third is refused before its handshake (the limit exists to spare that work).
  const third = await openRawTlsClient(port, "localhost", [ca.certPem]).catch(() => undefined);
  if (third !== undefined) {
    await assertRejects(() => third.get("/3"));
    third[Symbol.dispose]();
  }
  assertEquals((await first.get("/1again")).status, 200);
  assertEquals(backend.seen.requests.map((r) => r.path), ["/1", "/2", "/1again"]);
});

/** Every byte up to the connection's end (EOF or reset). */
async function readToEnd(conn: Deno.Conn): Promise<number[]> {
  const got: number[] = [];
  const buffer = new Uint8Array(4096);
  for (;;) {
    const n = await conn.read(buffer).catch(() => null);
    if (n === null) return got;
    got.push(...buffer.subarray(0, n));
  }
}

/** Reads until the connection ends; true when it ended (EOF or reset) rather than sent more. */
async function endsWithoutData(conn: Deno.Conn): Promise<boolean> {
  const n = await conn.read(new Uint8Array(64)).catch(() => null);
  return n === null;
}

Deno.test("wss: a drain closes idle piped connections and open wss tunnels", async () => {
  await using ca = await makeTestCa();
  await using backend = startBackend();
  const balancer = await startTlsBalancer(ca, backend.url);
  const port = Number(balancer.url.port);
  const piped = await Deno.connectTls({ hostname: "localhost", port, caCerts: [ca.certPem] });
  const tunnel = await Deno.connectTls({ hostname: "localhost", port, caCerts: [ca.certPem] });
  try {
    await writeAll(piped, new TextEncoder().encode("GET /p HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    assertStringIncludes(await new Reader(piped).head(), "HTTP/1.1 200");
    await writeAll(tunnel, new TextEncoder().encode(HANDSHAKE));
    assertStringIncludes(await new Reader(tunnel).head(), "HTTP/1.1 101");
    assertEquals(balancer.connectionCount, 2);
    // The tunnel's client reads what the drain sends and, at its end, closes (as a browser
    // does after a close frame): the drain waits for that, not for its grace.
    const tunnelGot = readToEnd(tunnel).finally(() => tunnel.close());
    assert(await balancer.drain(), "the drain did not finish in time");
    assert(await endsWithoutData(piped), "the piped connection stayed open");
    // 1001 Going Away, then the end.
    assertEquals([...await tunnelGot], [0x88, 0x02, 0x03, 0xe9]);
    assertEquals(balancer.connectionCount, 0);
  } finally {
    piped.close();
    try {
      tunnel.close();
    } catch {
      // Closed at its end already.
    }
    await balancer[Symbol.asyncDispose]();
  }
});

Deno.test("wss: an upgrade after another request on a TLS connection is answered 501 naming why", async () => {
  await using ca = await makeTestCa();
  await using backend = startBackend();
  await using balancer = await startTlsBalancer(ca, backend.url);
  const port = Number(balancer.url.port);
  const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [ca.certPem] });
  try {
    const reader = new Reader(conn);
    await writeAll(conn, new TextEncoder().encode("GET /p HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    const first = await reader.head();
    assertStringIncludes(first, "HTTP/1.1 200");
    await reader.take(Number(/content-length: (\d+)/i.exec(first)?.[1] ?? 0));
    await writeAll(conn, new TextEncoder().encode(HANDSHAKE));
    const head = await reader.head();
    assertStringIncludes(head, "HTTP/1.1 501");
    const body = new TextDecoder().decode(
      await reader.take(Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0)),
    );
    assertStringIncludes(body, "only as the first request of an HTTP/1.1 connection");
  } finally {
    conn.close();
  }
});

Deno.test("wss: with --websocket off TLS HTTP/1.1 is served directly and an upgrade gets 501", async () => {
  await using ca = await makeTestCa();
  await using backend = startBackend();
  await using balancer = await startTlsBalancer(ca, backend.url, ["--websocket", "off"]);
  const port = Number(balancer.url.port);
  using client = await openRawTlsClient(port, "localhost", [ca.certPem]);
  const response = await client.get("/x");
  assertEquals([response.status, response.body], [200, "plain /x"]);
  const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [ca.certPem] });
  try {
    await writeAll(conn, new TextEncoder().encode(HANDSHAKE));
    assertStringIncludes(await new Reader(conn).head(), "HTTP/1.1 501");
  } finally {
    conn.close();
  }
  assertEquals(backend.seen.requests, [{ path: "/x", xff: "127.0.0.1", proto: "https" }]);
});
