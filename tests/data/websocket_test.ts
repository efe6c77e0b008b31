/**
 * WebSocket proxying through the real data plane (`--websocket on`) to real WebSocket backends
 * on port 0: messages, close codes, subprotocols, round-robin spread, refusals, a backend that
 * dies, in-flight counts and metrics, reloads, drains, and `--workers 2`.
 */
import { settingsWith } from "../support/settings.ts";
import { getLogger } from "@logtape/logtape";
import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import {
  type BalancerConfig,
  DEFAULT_BALANCER_CONFIG,
  parseBalancerArgs,
} from "../../lib/config/config.ts";
import { startDataPlane } from "../../lib/data/data_plane.ts";
import { OpenWebSockets } from "../../lib/data/websocket.ts";
import { createHandler } from "../../lib/data/handler.ts";
import type { AttemptResult } from "../../lib/core/outlier.ts";
import { createPolicy } from "../../lib/policies/registry.ts";
import { listen } from "../../lib/data/listener.ts";
import { classifyOpenError } from "../../lib/data/websocket_backend.ts";
import { toBackendClose, toClientClose } from "../../lib/data/websocket_close.ts";
import { Metrics } from "../../lib/core/metrics.ts";
import { Pool } from "../../lib/core/pool.ts";
import { startBalancer as startFullBalancer } from "../../lib/control/balancer.ts";
import type { Clock } from "../../lib/shared/clock.ts";
import { systemClock } from "../../lib/shared/clock.ts";
import { assert, assertEquals, assertLess, assertMatch } from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { captureAccessLog, signal, startServer, unusedPort } from "../support/servers.ts";
import { waitUntil } from "../support/wait.ts";

const MAIN = new URL("../../main.ts", import.meta.url);

/** A WebSocket echo backend; plain requests (health probes) get 200 "ok". */
function startEchoBackend(name: string, options: { protocol?: string } = {}) {
  const sockets = new Set<WebSocket>();
  const handshakes: Headers[] = [];
  const closes: Array<{ code: number; reason: string }> = [];
  const server = startServer((request) => {
    if (request.headers.get("upgrade") !== "websocket") return new Response("ok");
    handshakes.push(new Headers(request.headers));
    const { socket, response } = Deno.upgradeWebSocket(
      request,
      options.protocol === undefined ? {} : { protocol: options.protocol },
    );
    const url = new URL(request.url);
    socket.onopen = () => {
      sockets.add(socket);
      socket.send(`hello from ${name} ${url.pathname}${url.search}`);
    };
    socket.onmessage = (event) => {
      if (event.data === "close-me") socket.close(4010, "backend says bye");
      else socket.send(event.data);
    };
    socket.onclose = (event) => {
      sockets.delete(socket);
      closes.push({ code: event.code, reason: event.reason });
    };
    return response;
  });
  return { ...server, sockets, handshakes, closes };
}

interface TestPlane extends AsyncDisposable {
  readonly url: URL;
  readonly pool: Pool;
  readonly metrics: Metrics;
  readonly plane: ReturnType<typeof startDataPlane>;
  readonly config: BalancerConfig;
}

/** The data plane lb runs, with `--websocket on` unless told otherwise. */
function startPlane(
  backends: readonly URL[],
  options: {
    websocket?: "on" | "off";
    timeoutMs?: number;
    retries?: number;
    clock?: Clock;
    keepAliveTimeoutMs?: number;
    accessLog?: ReturnType<typeof captureAccessLog>;
    limits?: Partial<BalancerConfig["limits"]>;
    retryBudgetPercent?: number;
    retryBudgetMinPerSecond?: number;
  } = {},
): TestPlane {
  const pool = new Pool(backends.map((url) => new Backend(parseBackendUrl(url.href))));
  const metrics = new Metrics(pool);
  const D = DEFAULT_BALANCER_CONFIG;
  const config: BalancerConfig = {
    ...D,
    host: "127.0.0.1",
    port: 0,
    workers: "1",
    websocket: options.websocket ?? D.websocket,
    backends: pool.backends.map((b) => ({ url: b.url, weight: b.weight })),
    client: {
      ...D.client,
      keepAliveTimeoutMs: options.keepAliveTimeoutMs ?? D.client.keepAliveTimeoutMs,
    },
    proxy: {
      ...D.proxy,
      timeoutMs: options.timeoutMs ?? 5_000,
      retries: options.retries ?? 1,
      retryBudgetPercent: options.retryBudgetPercent ?? D.proxy.retryBudgetPercent,
      retryBudgetMinPerSecond: options.retryBudgetMinPerSecond ?? D.proxy.retryBudgetMinPerSecond,
    },
    limits: { ...D.limits, ...options.limits },
    admin: { listen: "off", insecure: "off" },
    accessLog: { ...D.accessLog, path: "off" },
  };
  const plane = startDataPlane(config, {
    pool,
    metrics,
    clock: options.clock ?? systemClock,
    logger: getLogger(["denolb", "server"]),
    proxyLogger: getLogger(["denolb", "proxy"]),
    ...(options.accessLog === undefined ? {} : { accessLog: options.accessLog.sink }),
  });
  const url = new URL(`ws://127.0.0.1:${plane.listener.addr.port}/`);
  let closed: Promise<void> | undefined;
  const close = () => closed ??= plane.shutdown().finally(() => plane.close());
  return { url, pool, metrics, plane, config, [Symbol.asyncDispose]: close };
}

/** A client socket with its messages queued, so none is missed between awaits. */
class Client {
  readonly socket: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<CloseEvent>;
  readonly #queue: Array<string | ArrayBuffer> = [];
  #waiter: ((data: string | ArrayBuffer) => void) | undefined;

  constructor(url: URL | string, options: WebSocketOptions = {}) {
    this.socket = new WebSocket(url, options);
    this.socket.binaryType = "arraybuffer";
    const opened = Promise.withResolvers<void>();
    this.opened = opened.promise;
    this.socket.onopen = () => opened.resolve();
    this.socket.onerror = (event) =>
      opened.reject(new Error(event instanceof ErrorEvent ? event.message : "error"));
    this.closed = new Promise((resolve) => this.socket.onclose = resolve);
    this.socket.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      if (waiter !== undefined) waiter(event.data);
      else this.#queue.push(event.data);
    };
  }

  /** The next message. */
  next(): Promise<string | ArrayBuffer> {
    const data = this.#queue.shift();
    if (data !== undefined) return Promise.resolve(data);
    return new Promise((resolve) => this.#waiter = resolve);
  }
}

/** A port that accepts connections and never answers: a backend that hangs. */
function startSilentBackend() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) conns.push(conn);
    } catch {
      // Closed.
    }
  })();
  return {
    url: new URL(`http://127.0.0.1:${listener.addr.port}/`),
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) conn.close();
      await accepting;
    },
  };
}

/**
 * A backend that completes the WebSocket handshake by hand and then drops the TCP connection
 * when told: a backend process dying mid-socket, with no close frame.
 */
function startDyingBackend() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const upgraded = signal();
  const conns: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      const buffer = new Uint8Array(4096);
      let head = "";
      while (!head.includes("\r\n\r\n")) {
        const n = await conn.read(buffer);
        if (n === null) break;
        head += new TextDecoder().decode(buffer.subarray(0, n));
      }
      const key = /sec-websocket-key: *(\S+)/i.exec(head)?.[1] ?? "";
      const digest = await crypto.subtle.digest(
        "SHA-1",
        new TextEncoder().encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
      );
      const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
      await conn.write(
        new TextEncoder().encode(
          "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n" +
            `sec-websocket-accept: ${accept}\r\n\r\n`,
        ),
      );
      upgraded.resolve();
    }
  })().catch(() => {});
  return {
    url: new URL(`http://127.0.0.1:${listener.addr.port}/`),
    upgraded: upgraded.promise,
    die() {
      for (const conn of conns.splice(0)) conn.close();
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      this.die();
      await serving;
    },
  };
}

Deno.test("websocket: text, binary, 1 MB, path and query, forwarded headers, close both ways", async () => {
  await using backend = startEchoBackend("a");
  const log = captureAccessLog();
  await using lb = startPlane([backend.url], { accessLog: log });
  const client = new Client(new URL("/chat/room?x=1", lb.url), {
    headers: { "x-request-id": "ws-1", "x-forwarded-for": "10.9.9.9" },
  });
  await client.opened;
  assertEquals(await client.next(), "hello from a /chat/room?x=1");

  client.socket.send("text message");
  assertEquals(await client.next(), "text message");

  const binary = new Uint8Array([0, 1, 2, 254, 255]);
  client.socket.send(binary);
  assertEquals([...new Uint8Array(await client.next() as ArrayBuffer)], [...binary]);

  const big = new Uint8Array(1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
  client.socket.send(big);
  const echoed = new Uint8Array(await client.next() as ArrayBuffer);
  assertEquals(echoed.length, big.length);
  assert(echoed.every((byte, i) => byte === big[i]), "the 1 MB message came back intact");
  const bigText = "x".repeat(1024 * 1024);
  client.socket.send(bigText);
  assertEquals(await client.next(), bigText);

  const seen = backend.handshakes[0];
  assert(seen !== undefined);
  // An untrusted peer's X-Forwarded-For is replaced by what the balancer saw.
  assertMatch(seen.get("x-forwarded-for") ?? "", /127\.0\.0\.1$/);
  assertEquals(seen.get("x-forwarded-proto"), "http");
  // So is its X-Request-Id, by one of the balancer's.
  assertMatch(seen.get("x-request-id") ?? "", /^[0-9a-f]{8}-[0-9a-z]+$/);
  assertEquals(seen.get("host"), `127.0.0.1:${lb.plane.listener.addr.port}`);

  // Client closes with a code and reason: the backend sees them.
  client.socket.close(4001, "client says bye");
  const closeEvent = await client.closed;
  assertEquals(closeEvent.code, 4001);
  await waitUntil("the backend to see a close", () => backend.closes.length > 0);
  assertEquals(backend.closes[0], { code: 4001, reason: "client says bye" });

  // Backend closes with a code and reason: the client sees them.
  const second = new Client(lb.url);
  await second.opened;
  await second.next();
  second.socket.send("close-me");
  const backendClose = await second.closed;
  assertEquals([backendClose.code, backendClose.reason], [4010, "backend says bye"]);

  // One access record per socket, written when it closed: status 101 and the socket's life.
  await waitUntil(
    "two access records with status 101",
    () => log.records.filter((r) => r.status === 101).length >= 2,
  );
  const record = log.records.find((r) => r.requestId === seen.get("x-request-id"));
  assert(record !== undefined);
  assertEquals(record.status, 101);
  assertEquals(record.path, "/chat/room");
  assertEquals(record.backend, `127.0.0.1:${backend.port}`);
  // The tunnel reads no frames: who closed the connection first (the backend, answering the close).
  assertMatch(record.reason ?? "", /websocket tunnel closed by (client|backend)/);
});

Deno.test("websocket: the backend's subprotocol is negotiated with the client", async () => {
  await using backend = startEchoBackend("a", { protocol: "chat.v2" });
  await using lb = startPlane([backend.url]);
  const client = new Client(lb.url, { protocols: ["chat.v1", "chat.v2"] });
  await client.opened;
  assertEquals(client.socket.protocol, "chat.v2");
  assertEquals(backend.handshakes[0]?.get("sec-websocket-protocol"), "chat.v1, chat.v2");
  await client.next();
  client.socket.close();
  await client.closed;
});

Deno.test("websocket: 200 concurrent sockets spread round-robin over 3 backends", async () => {
  await using a = startEchoBackend("a");
  await using b = startEchoBackend("b");
  await using c = startEchoBackend("c");
  await using lb = startPlane([a.url, b.url, c.url]);
  const started = performance.now();
  const clients = Array.from({ length: 200 }, () => new Client(lb.url));
  await Promise.all(clients.map((client) => client.opened));
  const greetings = await Promise.all(clients.map((client) => client.next()));
  const openMs = performance.now() - started;
  const counts = { a: 0, b: 0, c: 0 };
  for (const greeting of greetings) counts[String(greeting).split(" ")[2] as "a" | "b" | "c"]++;
  assertEquals(
    [counts.a, counts.b, counts.c].sort(),
    [66, 67, 67],
    `spread ${JSON.stringify(counts)}`,
  );
  assertEquals([a.sockets.size, b.sockets.size, c.sockets.size].sort(), [66, 67, 67]);
  assertEquals(lb.pool.inFlight, 200);
  assertEquals(lb.metrics.webSocketsOpen, 200);
  // Every socket relays its own messages.
  await Promise.all(clients.map(async (client, i) => {
    client.socket.send(`m${i}`);
    assertEquals(await client.next(), `m${i}`);
  }));
  for (const client of clients) client.socket.close();
  await Promise.all(clients.map((client) => client.closed));
  await waitUntil("no request in flight", () => lb.pool.inFlight === 0);
  assertEquals(lb.metrics.webSocketsOpen, 0);
  assertEquals(lb.metrics.webSocketUpgrades, 200);
  // 560 ms measured on the development machine.
  assertLess(openMs, 10_000, `200 sockets opened and greeted in ${openMs.toFixed(0)} ms`);
});

Deno.test("websocket: a backend that refuses the upgrade gives the client its status or 502, fast", async () => {
  await using forbidden = startServer(() => new Response("no", { status: 403 }));
  await using plain = startServer(() => new Response("plain"));
  for (const [backend, status] of [[forbidden, 403], [plain, 502]] as const) {
    await using lb = startPlane([backend.url]);
    const started = performance.now();
    const client = new Client(lb.url);
    const error = await client.opened.then(() => undefined, (e: Error) => e);
    const elapsedMs = performance.now() - started;
    assert(error !== undefined, "the client socket did not open");
    assertMatch(error.message, new RegExp(`Invalid status code: ${status}`));
    assertLess(elapsedMs, 1_000);
    assertEquals(lb.pool.inFlight, 0);
    assertEquals(lb.metrics.webSocketsOpen, 0);
  }
});

Deno.test("websocket: a backend that never answers the upgrade gives 504 after --timeout", async () => {
  await using silent = startSilentBackend();
  await using lb = startPlane([silent.url], { timeoutMs: 200 });
  const started = performance.now();
  const client = new Client(lb.url);
  const error = await client.opened.then(() => undefined, (e: Error) => e);
  const elapsedMs = performance.now() - started;
  assertMatch(error?.message ?? "", /Invalid status code: 504/);
  assert(elapsedMs >= 150 && elapsedMs < 2_000, `504 after ${elapsedMs.toFixed(0)} ms`);
});

Deno.test("websocket: a connect failure is retried on another backend", async () => {
  await using live = startEchoBackend("live");
  const dead = new URL(`http://127.0.0.1:${unusedPort()}/`);
  await using lb = startPlane([dead, live.url], { retries: 1 });
  const client = new Client(lb.url);
  await client.opened;
  assertEquals(await client.next(), "hello from live /");
  assertEquals(lb.metrics.retryCount, 1);
  client.socket.close();
  await client.closed;
});

Deno.test("websocket: a backend killed mid-socket closes the client's connection (1006, as the tunnel passes the close)", async () => {
  await using dying = startDyingBackend();
  await using lb = startPlane([dying.url]);
  const client = new Client(lb.url);
  await client.opened;
  await dying.upgraded;
  assertEquals(lb.pool.inFlight, 1);
  dying.die();
  const event = await client.closed;
  // No close frame: Deno's client reports such a close with code 0 (1006 in browsers).
  assertEquals(event.wasClean, false);
  await waitUntil("no request in flight", () => lb.pool.inFlight === 0);
  assertEquals(lb.metrics.webSocketsOpen, 0);
});

Deno.test("websocket: an open socket is in flight on its backend and in denolb_websockets_open", async () => {
  await using backend = startEchoBackend("a");
  await using lb = startPlane([backend.url]);
  const client = new Client(lb.url);
  await client.opened;
  await client.next();
  assertEquals(lb.pool.backends[0]?.inFlight, 1);
  const text = lb.metrics.render();
  assertMatch(text, /^denolb_websockets_open 1$/m);
  assertMatch(text, /^denolb_websocket_upgrades_total 1$/m);
  assertMatch(text, /^denolb_requests_total\{backend="[^"]+",code="101"\} 1$/m);
  client.socket.close();
  await client.closed;
  await waitUntil("no request in flight", () => lb.pool.inFlight === 0);
  assertMatch(lb.metrics.render(), /^denolb_websockets_open 0$/m);
  // The gauge survives the cross-isolate merge.
  const other = new Metrics([]);
  other.absorb("worker-1", { ...lb.metrics.exportState(), webSocketsOpen: 3 });
  assertEquals(other.webSocketsOpen, 3);
  assertEquals(other.webSocketUpgrades, 1);
});

Deno.test("websocket: a socket outlives a reload and the keep-alive timeout", async () => {
  await using backend = startEchoBackend("a");
  const clock = new FakeClock();
  await using lb = startPlane([backend.url], { clock, keepAliveTimeoutMs: 1_000 });
  const client = new Client(lb.url);
  await client.opened;
  await client.next();
  // Past the header and keep-alive timeouts on the listener's clock.
  await clock.advance(60_000);
  await lb.plane.configure({ ...lb.config, proxy: { ...lb.config.proxy, retries: 0 } });
  client.socket.send("still here");
  assertEquals(await client.next(), "still here");
  client.socket.close();
  await client.closed;
});

Deno.test("websocket: with --websocket off an upgrade is answered 501", async () => {
  await using backend = startEchoBackend("a");
  await using lb = startPlane([backend.url], { websocket: "off" });
  const client = new Client(lb.url);
  const error = await client.opened.then(() => undefined, (e: Error) => e);
  assertMatch(error?.message ?? "", /Invalid status code: 501/);
  assertEquals(backend.handshakes.length, 0);
});

Deno.test("websocket: closing the data plane (a drain that timed out) closes tunnels", async () => {
  await using backend = startEchoBackend("a");
  const lb = startPlane([backend.url]);
  const client = new Client(lb.url);
  await client.opened;
  await client.next();
  await lb.plane.close();
  const event = await client.closed;
  // The tunnel sends 1001 Going Away before it closes (not 1006, a lost connection).
  assertEquals([event.wasClean, event.code], [true, 1001]);
  await waitUntil("the backend to see a close", () => backend.closes.length > 0);
  // The tunnel ends once both peers answered its close frames.
  await waitUntil("the tunnel to end", () => lb.metrics.webSocketsOpen === 0);
});

Deno.test("websocket: a drain closes open tunnels and does not wait out its timeout", async () => {
  await using backend = startEchoBackend("a");
  const config = await parseBalancerArgs([
    "--port",
    "0",
    "--admin",
    "off",
    "--workers",
    "1",
    "--websocket",
    "on",
    "--drain-timeout",
    "30s",
    "--access-log",
    "off",
    "--log-level",
    "error",
    "--backend",
    backend.url.href,
  ], () => undefined);
  const lb = await startFullBalancer(config);
  await lb.health.firstRound;
  const client = new Client(`ws://127.0.0.1:${lb.url.port}/`);
  await client.opened;
  await client.next();
  const started = performance.now();
  // The listener's graceful shutdown ends every tunnel at once, with 1001 Going Away.
  const isClean = await lb.drain();
  const event = await client.closed;
  assertEquals([event.wasClean, event.code], [true, 1001]);
  assertEquals(isClean, true);
  assertLess(performance.now() - started, 5_000);
  // The backend side is closed too (Deno reports the server-initiated close as 1005 here).
  await waitUntil("the backend to see a close", () => backend.closes.length > 0);
  assertEquals(backend.sockets.size, 0);
});

Deno.test("websocket: --workers 2 relays sockets and reports them in one view", async () => {
  await using backend = startEchoBackend("a");
  const config = await parseBalancerArgs([
    "--port",
    "0",
    "--admin",
    "127.0.0.1:0",
    "--workers",
    "2",
    "--websocket",
    "on",
    "--access-log",
    "off",
    "--log-level",
    "error",
    "--backend",
    backend.url.href,
  ], () => undefined);
  const lb = await startFullBalancer(config, { workerEntry: MAIN });
  try {
    assertEquals(lb.isolateCount, 2);
    await lb.health.firstRound;
    const clients = Array.from({ length: 20 }, () => new Client(`ws://127.0.0.1:${lb.url.port}/`));
    await Promise.all(clients.map((client) => client.opened));
    for (const client of clients) assertEquals(await client.next(), "hello from a /");
    assert(lb.adminUrl !== undefined);
    // Workers report a few times a second.
    const adminUrl = lb.adminUrl;
    let metrics = "";
    await waitUntil("20 open sockets in /metrics", async () => {
      metrics = await (await fetch(new URL("/metrics", adminUrl))).text();
      return /^denolb_websockets_open 20$/m.test(metrics);
    }, { intervalMs: 50 });
    assertMatch(metrics, /^denolb_websocket_upgrades_total 20$/m);
    for (const client of clients) client.socket.close();
    await Promise.all(clients.map((client) => client.closed));
  } finally {
    await lb.drain();
  }
});

Deno.test("classifyOpenError() and the close-code maps", () => {
  assertEquals(classifyOpenError("failed: Invalid status code: 404").reason, "refused");
  assertEquals(
    classifyOpenError("NetworkError: failed to connect to WebSocket: tcp connect error").reason,
    "connect",
  );
  assertEquals(toClientClose(1006, ""), [1011, "Backend connection lost"]);
  assertEquals(toClientClose(1005, ""), [undefined, ""]);
  assertEquals(toClientClose(1001, "going"), [1001, "going"]);
  assertEquals(toBackendClose(1001, ""), [1000, "client closed with 1001"]);
  assertEquals(toBackendClose(1006, ""), [1000, "client closed with 1006"]);
  assertEquals(toBackendClose(3001, "r"), [3001, "r"]);
});

Deno.test("--websocket is on or off, on by default", async () => {
  assertEquals(DEFAULT_BALANCER_CONFIG.websocket, "on");
  const config = await parseBalancerArgs(["--websocket", "off"], () => undefined);
  assertEquals(config.websocket, "off");
  const error = await parseBalancerArgs(["--websocket", "maybe"], () => undefined).then(
    () => undefined,
    (e: Error) => e,
  );
  assertEquals(error?.message, 'Invalid --websocket "maybe": must be one of on, off');
});

Deno.test("websocket: with --websocket on plain requests are still proxied", async () => {
  await using backend = startEchoBackend("a");
  await using lb = startPlane([backend.url]);
  const response = await fetch(`http://127.0.0.1:${lb.plane.listener.addr.port}/plain`);
  assertEquals([response.status, await response.text()], [200, "ok"]);
});

Deno.test("Deno 2.9.6 still closes a WebSocket upgraded on a per-connection server (why the listener tunnels WebSocket itself)", async () => {
  // When this fails, Deno keeps such sockets open: the tunnel and its FFI peek could go.
  const listener = listen(
    {
      hostname: "127.0.0.1",
      port: 0,
      settings: settingsWith({ client: { headerTimeoutMs: 10_000, keepAliveTimeoutMs: 10_000 } }),
    },
    (request) => {
      const { socket, response } = Deno.upgradeWebSocket(request);
      socket.onmessage = (event) => socket.send(event.data);
      return response;
    },
  );
  try {
    const client = new Client(`ws://127.0.0.1:${listener.addr.port}/`);
    await client.opened.catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const kept = new Promise<"kept">((resolve) => timer = setTimeout(() => resolve("kept"), 5_000));
    const outcome = await Promise.race([client.closed, kept]);
    clearTimeout(timer);
    assert(outcome !== "kept", "Deno now keeps the socket open");
    client.socket.close();
  } finally {
    listener.close();
  }
});

Deno.test("websocket: each attempt's result reaches passive health (onAttempt)", async () => {
  await using live = startEchoBackend("live");
  await using forbidden = startServer(() => new Response("no", { status: 403 }));
  const dead = new URL(`http://127.0.0.1:${unusedPort()}/`);
  const pool = new Pool(
    [dead, live.url, forbidden.url].map((url) => new Backend(parseBackendUrl(url.href))),
  );
  const results: Array<[string, AttemptResult]> = [];
  using client = Deno.createHttpClient({ allowHost: true });
  const handler = createHandler({
    pool,
    policy: createPolicy("round-robin", DEFAULT_BALANCER_CONFIG),
    client,
    logger: getLogger(["denolb", "proxy"]),
    metrics: new Metrics(pool),
    settings: settingsWith({ proxy: { timeoutMs: 5_000, retries: 1 } }),
    webSockets: { isEnabled: true, open: new OpenWebSockets() },
    onAttempt: (backend, result) => results.push([backend.name, result]),
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  try {
    // dead (connect, retried) then live (101); then forbidden (403).
    const first = new Client(`ws://127.0.0.1:${server.addr.port}/`);
    await first.opened;
    const second = new Client(`ws://127.0.0.1:${server.addr.port}/`);
    await second.opened.catch(() => {});
    assertEquals(results, [
      [`127.0.0.1:${dead.port}`, "connect"],
      [`127.0.0.1:${live.port}`, 101],
      [`127.0.0.1:${forbidden.port}`, 403],
    ]);
    first.socket.close();
    await first.closed;
  } finally {
    await server.shutdown();
  }
});

Deno.test("websocket: an upgrade goes through admission: a backend at its in-flight limit is skipped, a full balancer queues, then 503", async () => {
  await using a = startEchoBackend("a");
  await using b = startEchoBackend("b");
  await using lb = startPlane([a.url, b.url], {
    limits: { maxInFlight: 1, queueSize: 1, queueTimeoutMs: 200 },
  });
  const first = new Client(lb.url);
  await first.opened;
  assertEquals(await first.next(), "hello from a /");
  // a holds one socket, its limit: the round-robin turn goes to b, and a third has nowhere.
  const second = new Client(lb.url);
  await second.opened;
  assertEquals(await second.next(), "hello from b /");
  const refused = await rawUpgrade(lb.plane.listener.addr.port);
  assertMatch(refused, /^HTTP\/1\.1 503 /);
  assertMatch(refused, /retry-after: 1/i);
  assertMatch(refused, /every backend is at its in-flight limit/);
  assertEquals(lb.metrics.webSocketsOpen, 2);
  // A waiting upgrade gets the slot a closing socket frees.
  const waiting = new Client(lb.url);
  first.socket.close(1000);
  await first.closed;
  await waiting.opened;
  assertEquals(await waiting.next(), "hello from a /");
  for (const client of [second, waiting]) {
    client.socket.close();
    await client.closed;
  }
});

Deno.test("websocket: a connect failure is retried only while the retry budget allows", async () => {
  await using live = startEchoBackend("live");
  const dead = new URL(`http://127.0.0.1:${unusedPort()}/`);
  await using lb = startPlane([dead, live.url], {
    retries: 1,
    retryBudgetPercent: 0,
    retryBudgetMinPerSecond: 0,
  });
  // The round-robin starts on the dead backend; the budget allows no retry: 502.
  const answer = await rawUpgrade(lb.plane.listener.addr.port);
  assertMatch(answer, /^HTTP\/1\.1 502 /);
  assertEquals(lb.metrics.retryCount, 0);
});

/** Sends a WebSocket handshake on a raw connection and returns the answer (5 s at most). */
async function rawUpgrade(port: number): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(
    new TextEncoder().encode(
      "GET / HTTP/1.1\r\nhost: lb\r\nupgrade: websocket\r\nconnection: Upgrade\r\n" +
        "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    ),
  );
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(4096);
  let text = "";
  // The deadline: a connection that answers nothing more is closed, ending the read.
  const deadline = setTimeout(() => conn.close(), 5_000);
  try {
    while (!/\r\n\r\n[\s\S]*\n$/.test(text)) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += decoder.decode(buffer.subarray(0, n));
    }
  } catch {
    // Closed by the deadline: what came so far is the answer.
  } finally {
    clearTimeout(deadline);
    try {
      conn.close();
    } catch {
      // Closed by the deadline.
    }
  }
  return text;
}

Deno.test("websocket: 50 sockets echo text and 1 MB binary byte-identical; close codes 1001 and 4000 both ways", async () => {
  await using backend = startEchoBackend("a");
  await using lb = startPlane([backend.url]);
  const big = new Uint8Array(1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
  const clients = Array.from({ length: 50 }, () => new Client(lb.url));
  await Promise.all(clients.map((c) => c.opened));
  await Promise.all(clients.map(async (client, i) => {
    assertEquals(await client.next(), "hello from a /");
    client.socket.send(`text ${i}`);
    assertEquals(await client.next(), `text ${i}`);
    client.socket.send(big);
    const echoed = new Uint8Array(await client.next() as ArrayBuffer);
    assertEquals(echoed.length, big.length);
    assert(echoed.every((byte, j) => byte === big[j]), `socket ${i}: 1 MB intact`);
  }));
  assertEquals(lb.metrics.webSocketsOpen, 50);
  // Backend to client: every code a peer may send passes as it is.
  const byBackend = [...backend.sockets];
  const [first, second] = [byBackend[0], byBackend[1]];
  assert(first !== undefined && second !== undefined);
  first.close(1001, "backend going away");
  second.close(4000, "backend app code");
  const seen: Array<[number, string]> = [];
  for (const client of clients) void client.closed.then((e) => seen.push([e.code, e.reason]));
  await waitFor(() => seen.length >= 2);
  seen.sort();
  assertEquals(seen, [[1001, "backend going away"], [4000, "backend app code"]]);
  // Client to backend: 4000 and 1001 (a browser leaving the page; Deno's own client cannot
  // send it, so a raw client does) both pass as they are: the tunnel forwards the close frame.
  const open = clients.filter((c) => c.socket.readyState === WebSocket.OPEN);
  const before = backend.closes.length;
  open[0]?.socket.close(4000, "client app code");
  await rawClientClose(lb.plane.listener.addr.port, 1001);
  await waitFor(() => backend.closes.length >= before + 2);
  const fromClients = backend.closes.slice(before).map((c) => [c.code, c.reason]).sort();
  assertEquals(fromClients, [[1001, ""], [4000, "client app code"]]);
  for (const client of open) client.socket.close();
  await Promise.all(open.map((c) => c.closed));
  await waitFor(() => lb.metrics.webSocketsOpen === 0);
});

/** Polls `condition` every 10 ms until it holds; fails after 5 s. */
async function waitFor(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!condition()) {
    assert(Date.now() < deadline, "condition not met within 5 s");
    await tick();
  }
}

/**
 * Opens a socket with a raw client, waits for the first message, then sends a close frame with
 * `code` (masked, as a client must) and waits for the balancer to close the connection.
 */
async function rawClientClose(port: number, code: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const deadline = setTimeout(() => conn.close(), 5_000);
  try {
    await conn.write(
      new TextEncoder().encode(
        "GET / HTTP/1.1\r\nhost: lb\r\nupgrade: websocket\r\nconnection: Upgrade\r\n" +
          "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
      ),
    );
    const buffer = new Uint8Array(4096);
    let text = "";
    // The 101's head and the backend's hello message.
    while (!text.includes("hello from")) {
      const n = await conn.read(buffer);
      if (n === null) throw new Error("closed before the first message");
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    // FIN + close, masked with a zero key, 2-byte payload: the code.
    await conn.write(new Uint8Array([0x88, 0x82, 0, 0, 0, 0, code >> 8, code & 0xff]));
    while (await conn.read(buffer) !== null) {
      // The balancer's close frame, then the end of the connection.
    }
  } finally {
    clearTimeout(deadline);
    try {
      conn.close();
    } catch {
      // Closed by the deadline.
    }
  }
}

/** One turn of the event loop's timers: lets socket events in flight arrive. */
function tick(): Promise<undefined> {
  return new Promise((resolve) => setTimeout(() => resolve(undefined), 10));
}
