import { assertEquals, assertStringIncludes } from "@std/assert";
import { startBalancer } from "../../lib/control/balancer.ts";
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { curl, makeTestCa } from "../support/tls.ts";

/** A backend that echoes WebSocket text messages with the X-Forwarded-Proto it was sent. */
function startWebSocketBackend() {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    if (request.headers.get("upgrade") !== "websocket") return new Response("plain");
    const proto = request.headers.get("x-forwarded-proto");
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onmessage = (event) => socket.send(`${event.data} via ${proto}`);
    return response;
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** Reads from `conn` until `text` has arrived (or the connection ends). */
async function readUntil(conn: Deno.Conn, isDone: (bytes: Uint8Array) => boolean) {
  let bytes = new Uint8Array(0);
  const buffer = new Uint8Array(4096);
  while (!isDone(bytes)) {
    const n = await conn.read(buffer);
    if (n === null) break;
    const next = new Uint8Array(bytes.length + n);
    next.set(bytes);
    next.set(buffer.subarray(0, n), bytes.length);
    bytes = next;
  }
  return bytes;
}

Deno.test("wss: a WebSocket upgrade over TLS is answered 501 naming why, and the connection still serves", async () => {
  await using ca = await makeTestCa();
  const leaf = await ca.issue(["localhost"]);
  await using backend = startWebSocketBackend();
  const config = await parseBalancerArgs([
    "--port",
    "0",
    "--admin",
    "off",
    "--log-level",
    "fatal",
    "--access-log",
    "off",
    "--websocket",
    "on",
    "--backend",
    backend.url,
    "--tls-cert",
    leaf.certFile,
    "--tls-key",
    leaf.keyFile,
  ], () => undefined);
  await using balancer = await startBalancer(config, { clock: new FakeClock() });
  const port = Number(balancer.url.port);
  const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [ca.certPem] });
  try {
    await conn.write(new TextEncoder().encode(
      "GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ));
    const head = new TextDecoder().decode(
      await readUntil(conn, (b) => new TextDecoder().decode(b).includes("\r\n\r\n")),
    );
    // The listener tells a handshake apart by peeking at plain bytes; a TLS connection shows
    // only ciphertext, and Deno 2.9.6 closes a socket upgraded on its per-connection server.
    assertStringIncludes(head, "HTTP/1.1 501");
    const body = head.includes("terminate TLS in front of it") ? head : head + new TextDecoder()
      .decode(await readUntil(conn, (b) => new TextDecoder().decode(b).includes("in front of it")));
    assertStringIncludes(body, "WebSocket over TLS (wss) is not proxied: Deno 2.9.6 closes a ");
    assertStringIncludes(body, "the listener cannot read the handshake before that server does");
  } finally {
    conn.close();
  }
  // HTTP/2 on the same listener (Deno's own server with --websocket on).
  const h2 = await curl(`https://localhost:${port}/`, {
    http: "2",
    cacert: ca.certFile,
    resolve: `localhost:${port}:127.0.0.1`,
  });
  assertEquals([h2.status, h2.version, h2.body], [200, "2", "plain"]);
});
