import { assert, assertEquals } from "@std/assert";
import { settingsWith } from "../support/settings.ts";
import { listen } from "../../lib/data/listener.ts";
import type { ListenerEvent } from "../../lib/data/listen_options.ts";
import { RawUpgrades } from "../../lib/data/upgrade_tunnel.ts";
import type { TlsCertificate } from "../../lib/shared/tls_certificate.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { waitUntil } from "../support/wait.ts";
import { curl, makeTestCa, negotiatedProtocol, presentedCn, type TestCa } from "../support/tls.ts";

function asCertificate(c: { certPem: string; keyPem: string; names: readonly string[] }) {
  return { certPem: c.certPem, keyPem: c.keyPem, names: c.names } satisfies TlsCertificate;
}

async function startTlsListener(
  ca: TestCa,
  options: { clock?: FakeClock; maxConnections?: number; names?: string[][] } = {},
) {
  const names = options.names ?? [["localhost"]];
  const certificates = await Promise.all(
    names.map(async (n) => asCertificate(await ca.issue(n))),
  );
  const events: ListenerEvent[] = [];
  const http2Requests = new WeakSet<Request>();
  const seen: Array<{ url: string; isH2: boolean }> = [];
  const listener = listen({
    hostname: "127.0.0.1",
    port: 0,
    reusePort: true,
    settings: settingsWith({
      client: { headerTimeoutMs: 5_000, keepAliveTimeoutMs: 5_000 },
      tls: { handshakeTimeoutMs: 1_000 },
      limits: { maxConnections: options.maxConnections ?? 0 },
    }),
    tls: { certificates },
    http2Requests,
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    onEvent: (event) => events.push(event),
  }, (request) => {
    seen.push({ url: request.url, isH2: http2Requests.has(request) });
    return new Response("ok");
  });
  return {
    listener,
    events,
    seen,
    port: listener.addr.port,
    [Symbol.dispose]: () => listener.close(),
  };
}

Deno.test("TLS listener speaks HTTP/2 and HTTP/1.1 by ALPN, and the request URL says https", async () => {
  await using ca = await makeTestCa();
  using server = await startTlsListener(ca);
  const url = `https://localhost:${server.port}/a?b=1`;
  const resolve = `localhost:${server.port}:127.0.0.1`;
  const h2 = await curl(url, { http: "2", cacert: ca.certFile, resolve });
  const h1 = await curl(url, { http: "1.1", cacert: ca.certFile, resolve });
  assertEquals([h2.status, h2.version, h2.body], [200, "2", "ok"]);
  assertEquals([h1.status, h1.version, h1.body], [200, "1.1", "ok"]);
  assertEquals(server.seen, [
    { url: `https://localhost:${server.port}/a?b=1`, isH2: true },
    { url: `https://localhost:${server.port}/a?b=1`, isH2: false },
  ]);
});

Deno.test("TLS listener accepts TLS 1.2 and 1.3 only", async () => {
  await using ca = await makeTestCa();
  using server = await startTlsListener(ca);
  assertEquals(await negotiatedProtocol(server.port, "tls1_3"), "TLSv1.3");
  assertEquals(await negotiatedProtocol(server.port, "tls1_2"), "TLSv1.2");
  assertEquals(await negotiatedProtocol(server.port, "tls1_1"), undefined);
  assertEquals(await negotiatedProtocol(server.port, "tls1"), undefined);
  await waitUntil(
    "the failed handshakes reported",
    () => server.events.filter((e) => e.kind === "handshake-failed").length >= 2,
  );
});

Deno.test("TLS listener closes a connection that does not finish its handshake in time", async () => {
  await using ca = await makeTestCa();
  const clock = new FakeClock();
  using server = await startTlsListener(ca, { clock });
  const silent = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await waitUntil("the connection accepted", () => server.listener.connectionCount === 1);
  await clock.advance(999);
  assertEquals(server.listener.connectionCount, 1);
  await clock.advance(1);
  await waitUntil("the connection released", () => server.listener.connectionCount === 0);
  assert(server.events.some((e) => e.kind === "timeout" && e.timeout === "handshake"));
  // Without FFI, Deno 2.9.6 lets go of the socket of a handshake it dropped only once the
  // client sends something (or closes): the client sees the close then. With FFI the socket is
  // shut down at the timeout (the next test); a write then meets a closed socket either way.
  await silent.write(new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]));
  const closed = await silent.read(new Uint8Array(16)).catch(() => null);
  assertEquals(closed, null);
  silent.close();
});

const hasFfi = Deno.permissions.querySync({ name: "ffi" }).state === "granted";

/**
 * This process's open descriptors, listed by `ls` (reading `/proc/self` or `/proc/<pid>` here
 * takes --allow-all). The pipe to `ls` is open at each count alike.
 */
async function openDescriptors(): Promise<number> {
  const listed = await new Deno.Command("ls", {
    args: [`/proc/${Deno.pid}/fd`],
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(listed.stdout).split("\n").filter((line) => line !== "")
    .length;
}

/** What a read on `conn` ends with, once it does: EOF and a reset both count as the close. */
function watchClose(conn: Deno.Conn): { readonly isClosed: () => boolean } {
  let isClosed = false;
  const mark = () => {
    isClosed = true;
  };
  conn.read(new Uint8Array(16)).then((n) => {
    if (n === null) mark();
  }, mark);
  return { isClosed: () => isClosed };
}

Deno.test({
  name: "TLS listener frees the socket of a handshake that times out, the client silent or not",
  // Deno keeps that socket after close(); shutting it down takes FFI (`data/socket_peek.ts`).
  ignore: !hasFfi || Deno.build.os !== "linux",
  fn: async () => {
    await using ca = await makeTestCa();
    const clock = new FakeClock();
    using server = await startTlsListener(ca, { clock });
    const before = await openDescriptors();
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const partial = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    // The first bytes of a ClientHello: a record header and part of the handshake header.
    await partial.write(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    await waitUntil("both accepted", () => server.listener.connectionCount === 2);
    const silentClose = watchClose(silent);
    const partialClose = watchClose(partial);
    await clock.advance(1_000);
    await waitUntil("both released", () => server.listener.connectionCount === 0);
    await waitUntil("the silent client sees the close", silentClose.isClosed);
    await waitUntil("the partial client sees the close", partialClose.isClosed);
    // The server's two sockets are gone; the clients' two are still open.
    await waitUntil(
      "the server's descriptors closed",
      async () => await openDescriptors() <= before + 2,
    );
    // Deno 2.9.6 fails a handshake whose ClientHello stops midway at once ("operation would
    // block"), without waiting for the rest: only the silent client's is timed out.
    assert(server.events.some((e) => e.kind === "timeout" && e.timeout === "handshake"));
    silent.close();
    partial.close();
  },
});

Deno.test({
  name: "TLS listener frees the sockets of handshakes still open at shutdown and beyond the limit",
  ignore: !hasFfi || Deno.build.os !== "linux",
  fn: async () => {
    await using ca = await makeTestCa();
    const clock = new FakeClock();
    using server = await startTlsListener(ca, { clock, maxConnections: 1 });
    const before = await openDescriptors();
    const first = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    await waitUntil("the first accepted", () => server.listener.connectionCount === 1);
    const refused = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const refusedClose = watchClose(refused);
    await waitUntil("the refused client sees the close", refusedClose.isClosed);
    const firstClose = watchClose(first);
    await server.listener.shutdown();
    await waitUntil("the handshaking client sees the close", firstClose.isClosed);
    await waitUntil(
      "the server's descriptors closed",
      async () => await openDescriptors() <= before + 2,
    );
    assertEquals(server.events.filter((e) => e.kind === "timeout").length, 0);
    first.close();
    refused.close();
  },
});

Deno.test("TLS listener chooses the certificate by SNI, the first one by default", async () => {
  await using ca = await makeTestCa();
  using server = await startTlsListener(ca, {
    names: [["a.test"], ["b.test", "*.wild.test"]],
  });
  assertEquals(await presentedCn(server.port, "a.test"), "a.test");
  assertEquals(await presentedCn(server.port, "b.test"), "b.test");
  assertEquals(await presentedCn(server.port, "x.wild.test"), "b.test");
  assertEquals(await presentedCn(server.port, "other.test"), "a.test");
  assertEquals(await presentedCn(server.port, ""), "a.test");
});

Deno.test("TLS listener serves new certificates to new connections and keeps open ones", async () => {
  await using ca = await makeTestCa();
  using server = await startTlsListener(ca);
  // An HTTP/1.1 connection opened before the change, used again after it.
  const held = await Deno.connectTls({
    hostname: "localhost",
    port: server.port,
    caCerts: [ca.certPem],
  });
  const ask = async (path: string) => {
    await held.write(new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`));
    const buffer = new Uint8Array(1024);
    const n = await held.read(buffer);
    return new TextDecoder().decode(buffer.subarray(0, n ?? 0));
  };
  assert((await ask("/before")).startsWith("HTTP/1.1 200"));
  assertEquals(await presentedCn(server.port, "localhost"), "localhost");
  const renewed = asCertificate(await ca.issue(["renewed.test", "localhost"]));
  server.listener.prepareCertificates([renewed]).commit();
  assertEquals(await presentedCn(server.port, "localhost"), "renewed.test");
  assertEquals(await presentedCn(server.port, ""), "renewed.test");
  assert((await ask("/after")).startsWith("HTTP/1.1 200"));
  held.close();
  assertEquals(server.seen.map((s) => new URL(s.url).pathname), ["/before", "/after"]);
});

Deno.test("TLS listener: an aborted certificate change leaves the old certificate served", async () => {
  await using ca = await makeTestCa();
  using server = await startTlsListener(ca);
  const other = asCertificate(await ca.issue(["other.test"]));
  server.listener.prepareCertificates([other]).abort();
  assertEquals(await presentedCn(server.port, ""), "localhost");
});

Deno.test("TLS listener holds --max-connections: the connection beyond it is closed unanswered", async () => {
  await using ca = await makeTestCa();
  using server = await startTlsListener(ca, { maxConnections: 1 });
  const first = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await waitUntil("the first connection accepted", () => server.listener.connectionCount === 1);
  const second = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await waitUntil(
    "the second connection refused",
    () => server.events.some((e) => e.kind === "connection-refused"),
  );
  // As for a handshake timeout, without FFI Deno lets go of the socket once the client sends.
  await second.write(new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]));
  const read = await second.read(new Uint8Array(16)).catch(() => null);
  assertEquals(read, null);
  second.close();
  first.close();
  assert(server.events.some((e) => e.kind === "connection-refused"));
});

Deno.test({
  name: "TLS listener sets TCP_NODELAY: sequential responses do not wait for delayed ACKs",
  // Setting it takes FFI (`process/tcp_nodelay.ts`): run this file with --allow-ffi.
  ignore: Deno.permissions.querySync({ name: "ffi" }).state !== "granted",
  fn: async () => {
    await using ca = await makeTestCa();
    const leaf = asCertificate(await ca.issue(["localhost"]));
    const body = new Uint8Array(2048).fill(97);
    const listener = listen({
      hostname: "127.0.0.1",
      port: 0,
      settings: settingsWith({ client: { headerTimeoutMs: 5_000, keepAliveTimeoutMs: 5_000 } }),
      tls: { certificates: [leaf] },
    }, () => new Response(body.slice()));
    try {
      const conn = await Deno.connectTls({
        hostname: "localhost",
        port: listener.addr.port,
        caCerts: [ca.certPem],
      });
      const buffer = new Uint8Array(8192);
      const exchange = async () => {
        await conn.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
        let received = 0;
        while (received < body.length + 60) {
          const n = await conn.read(buffer);
          if (n === null) throw new Error("closed");
          received += n;
        }
      };
      await exchange(); // the handshake and the first exchange are not timed
      const count = 25;
      const started = performance.now();
      for (let i = 0; i < count; i++) await exchange();
      const elapsedMs = performance.now() - started;
      conn.close();
      // Without TCP_NODELAY each response's body waits ~40 ms for the client's delayed ACK.
      assert(elapsedMs < count * 40 / 2, `${count} exchanges took ${elapsedMs.toFixed(0)} ms`);
    } finally {
      listener.close();
    }
  },
});

Deno.test("TLS listener reading heads (WebSocket on): a piped request has the URL and client address a direct one has", async () => {
  await using ca = await makeTestCa();
  const leaf = asCertificate(await ca.issue(["localhost"]));
  const seen: Array<{ url: string; remote: string }> = [];
  const listener = listen({
    hostname: "127.0.0.1",
    port: 0,
    settings: settingsWith({ client: { headerTimeoutMs: 5_000, keepAliveTimeoutMs: 5_000 } }),
    tls: { certificates: [leaf] },
    rawUpgrades: new RawUpgrades(),
  }, (request, info) => {
    seen.push({ url: request.url, remote: `${info.remoteAddr.hostname}` });
    return new Response("ok");
  });
  try {
    const port = listener.addr.port;
    const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [ca.certPem] });
    const ask = async (target: string) => {
      await conn.write(
        new TextEncoder().encode(`GET ${target} HTTP/1.1\r\nHost: localhost\r\n\r\n`),
      );
      const buffer = new Uint8Array(1024);
      const n = await conn.read(buffer);
      return new TextDecoder().decode(buffer.subarray(0, n ?? 0));
    };
    assert((await ask("/a?b=1")).startsWith("HTTP/1.1 200"));
    assert((await ask("http://localhost/abs")).startsWith("HTTP/1.1 200"));
    conn.close();
    assertEquals(seen, [
      { url: `https://localhost/a?b=1`, remote: "127.0.0.1" },
      { url: "http://localhost/abs", remote: "127.0.0.1" },
    ]);
  } finally {
    listener.close();
  }
});

Deno.test({
  name: "TLS listener without FFI reports once that it cannot free an unfinished handshake",
  // The other side of the FFI tests above. Last in the file: revoking lasts for the file.
  fn: async () => {
    await Deno.permissions.revoke({ name: "ffi" });
    await using ca = await makeTestCa();
    using server = await startTlsListener(ca);
    const degraded = server.events.filter((e) => e.kind === "degraded").map((e) => e.detail);
    assertEquals(degraded.filter((d) => d.startsWith("TLS handshake timeout")), [
      "TLS handshake timeout cannot free the socket (it needs --allow-ffi): a client that " +
      "never finishes its handshake holds a descriptor until it sends or leaves",
    ]);
  },
});
