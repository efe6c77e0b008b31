import { assertEquals } from "@std/assert";
import { settingsWith } from "../support/settings.ts";
import { listen } from "../../lib/data/listener.ts";
import type { ListenerEvent } from "../../lib/data/listen_options.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { waitUntil } from "../support/wait.ts";

const encoder = new TextEncoder();

/** Reads from `conn` until it closes; returns what arrived. */
async function readToEnd(conn: Deno.Conn): Promise<string> {
  const chunks: string[] = [];
  const buffer = new Uint8Array(4096);
  const decoder = new TextDecoder();
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(buffer);
    } catch {
      break; // reset counts as closed
    }
    if (n === null) break;
    chunks.push(decoder.decode(buffer.subarray(0, n)));
  }
  try {
    conn.close();
  } catch {
    // already closed
  }
  return chunks.join("");
}

/** Reads until a full `content-length: 2` response has arrived. */
async function readResponse(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  while (!/\r\n\r\n[\s\S]{2}$/.test(text)) {
    const n = await conn.read(buffer);
    if (n === null) break;
    text += new TextDecoder().decode(buffer.subarray(0, n));
  }
  return text;
}

function startListener(clock: FakeClock, keepAliveTimeoutMs = 5_000) {
  const events: ListenerEvent[] = [];
  const listener = listen({
    hostname: "127.0.0.1",
    port: 0,
    settings: settingsWith({ client: { headerTimeoutMs: 1_000, keepAliveTimeoutMs } }),
    clock,
    onEvent: (event) => events.push(event),
  }, () => new Response("ok"));
  return { listener, events, port: listener.addr.port };
}

Deno.test("listen() closes a connection whose request head is not complete within the header timeout", async () => {
  const clock = new FakeClock();
  const { listener, events, port } = startListener(clock);
  try {
    const slow = await Deno.connect({ hostname: "127.0.0.1", port });
    await slow.write(encoder.encode("GET / HTTP/1.1\r\nHost: a\r\nX-Slow: 1"));
    const closed = readToEnd(slow);
    await clock.advance(999);
    assertEquals(listener.connectionCount, 1);
    await clock.advance(1);
    assertEquals(await closed, "");
    assertEquals(events, [{ kind: "timeout", timeout: "header" }]);
  } finally {
    await listener.shutdown();
  }
});

Deno.test("listen() serves a prompt request and then closes the idle connection after the keep-alive timeout", async () => {
  const clock = new FakeClock();
  const { listener, events, port } = startListener(clock);
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    const response = await readResponse(conn);
    assertEquals(response.startsWith("HTTP/1.1 200 OK"), true, response);
    // The header deadline no longer applies once a request arrived.
    await clock.advance(4_999);
    assertEquals(events, []);
    await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assertEquals((await readResponse(conn)).startsWith("HTTP/1.1 200 OK"), true);
    const closed = readToEnd(conn);
    await clock.advance(5_000);
    assertEquals(await closed, "");
    assertEquals(events, [{ kind: "timeout", timeout: "keepalive" }]);
  } finally {
    await listener.shutdown();
  }
});

Deno.test("listen() with a keep-alive timeout of 0 closes each connection after its response", async () => {
  const clock = new FakeClock();
  const { listener, port } = startListener(clock, 0);
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    const text = await readToEnd(conn);
    assertEquals(text.startsWith("HTTP/1.1 200 OK"), true, text);
  } finally {
    await listener.shutdown();
  }
});

Deno.test("listen() reports a connection that broke on bad chunked framing", async () => {
  const clock = new FakeClock();
  const { listener, events, port } = startListener(clock);
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(
      encoder.encode(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
      ),
    );
    // Deno's HTTP server closes such a connection before any handler runs and writes nothing:
    // the best a Deno.serve program can do is notice and count it.
    assertEquals(await readToEnd(conn), "");
    await waitUntil("a connection event", () => events.length > 0);
    assertEquals(events.map((e) => e.kind), ["connection-error"]);
  } finally {
    await listener.shutdown();
  }
});

Deno.test("listen() runs on Deno's per-connection server, not the degraded fallback", async () => {
  const clock = new FakeClock();
  const { listener, events } = startListener(clock);
  await listener.shutdown();
  assertEquals(events.filter((e) => e.kind === "degraded"), []);
});

Deno.test("listen() shutdown() closes idle connections and lets an open request finish", async () => {
  const clock = new FakeClock();
  const release = Promise.withResolvers<void>();
  const arrived = Promise.withResolvers<void>();
  const listener = listen({
    hostname: "127.0.0.1",
    port: 0,
    settings: settingsWith({ client: { headerTimeoutMs: 1_000, keepAliveTimeoutMs: 5_000 } }),
    clock,
  }, async () => {
    arrived.resolve();
    await release.promise;
    return new Response("ok");
  });
  const port = listener.addr.port;
  const idle = await Deno.connect({ hostname: "127.0.0.1", port });
  const busy = await Deno.connect({ hostname: "127.0.0.1", port });
  await busy.write(encoder.encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
  await arrived.promise;
  const shutDown = listener.shutdown();
  const idleClosed = readToEnd(idle);
  release.resolve();
  const response = await readToEnd(busy);
  await shutDown;
  assertEquals(await idleClosed, "");
  assertEquals(response.startsWith("HTTP/1.1 200 OK"), true, response);
  assertEquals(listener.connectionCount, 0);
});
