/**
 * The balancer's listener: its own accept loop over `Deno.listen`, with each connection served
 * by the HTTP server `Deno.serve` is built on (`serveHttpOnConnection`, one per connection).
 *
 * `Deno.serve` alone hides connections from the program, so it cannot do what a proxy facing
 * the internet must:
 * - survive running out of file descriptors: its native accept loop rejects `finished` with
 *   `Too many open files` and stops serving for good, and the unhandled rejection ends the
 *   process. Here a failed `accept()` is reported, waited out with a growing pause (50 ms up to
 *   1 s) and retried: serving resumes by itself when descriptors free up, and connections the
 *   kernel queued meanwhile are still accepted (nginx does the same);
 * - cut slow clients: a connection must deliver its first complete request head within the
 *   header timeout, and a kept-alive connection its next one within the keep-alive timeout,
 *   or it is closed (nginx's `client_header_timeout` and `keepalive_timeout`, HAProxy's
 *   `timeout http-request` and `timeout http-keep-alive`);
 * - report a connection that broke on bad framing (an invalid chunk size), which `Deno.serve`
 *   closes without a response or a word.
 *
 * WebSocket (`rawUpgrades`): Deno 2.9.6 closes a socket upgraded (`Deno.upgradeWebSocket`) on a
 * per-connection server as soon as the server hands the connection over, so the listener tells
 * handshakes apart before Deno's server sees a connection. It looks at the first bytes without
 * taking them (`socket_peek.ts`: `recv(MSG_PEEK)` through FFI, Linux with `--allow-ffi`); a
 * connection whose first request is a WebSocket handshake (`GET`, HTTP/1.1, `Upgrade:
 * websocket`, strictly parsed by `shared/request_head.ts`) has its head read here and goes to the
 * handler as a `Request` registered in {@linkcode RawUpgrades}, whose WebSocket path tunnels the
 * connection (`upgrade_tunnel.ts`); every other connection goes to Deno's server with its bytes
 * untouched. Either way the header timeout runs from the accept, and the connection counts
 * toward `maxConnections` until it closes, tunnel included. Without FFI the listener keeps its
 * protections and reports `websocket-unavailable`: upgrades are answered 501 naming why.
 * Over TLS there is no such look (the bytes are ciphertext), so an HTTP/1.1 connection (ALPN
 * `http/1.1` or none) has its first request head read by the listener from the decrypted
 * `TlsConn` (`tls_sniffer.ts`, same parser, same header timeout, no FFI needed): a handshake
 * goes on as above (the bytes read replayed, `replay_conn.ts`); anything else reaches Deno's
 * server through a per-listener local pipe (`local_pipe.ts`: Deno's server takes only a native
 * connection, a JS wrapper is refused with `TypeError: expected i32`), the handler still seeing
 * the client's address and an `https://` URL. An `h2` connection goes to Deno's server directly
 * (browsers open HTTP/1.1 for a WebSocket; Deno offers no RFC 8441). Measured with `wrk -c20`
 * over TLS (one isolate, 2 shared cores): the pipe costs HTTP/1.1 about 13% of its requests per
 * second against `--websocket off`, which serves TLS HTTP/1.1 directly as before.
 *
 * `serveHttpOnConnection` is internal to Deno (`Deno[Deno.internal]`); Deno 2.9.6 is pinned and
 * a test fails if it goes away. Without it the listener falls back to plain `Deno.serve` and
 * reports `degraded` once: no connection timeouts, and a failed accept loop is restarted.
 *
 * With `tls`, the socket is `Deno.listenTls` offering ALPN `h2` and `http/1.1` (rustls: TLS 1.2
 * and 1.3 only), and the same per-connection server speaks whichever the client chose. Each
 * connection must finish its handshake within the handshake timeout before the header timeout
 * starts. The certificate is chosen per handshake by SNI through Deno's internal resolver
 * (`Symbol.for("unstableSniResolver")`); Deno caches its answer per server name for the
 * socket's life, so new certificates take a new socket: {@linkcode Listener.prepareCertificates}
 * binds one beside the old (SO_REUSEPORT) and the old one is closed, its open connections kept.
 *
 * @module
 */
import { SharedCounter } from "../core/shared_state.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { type Deadline, DeadlineQueue } from "../shared/deadlines.ts";
import { ConnectionRefuser } from "./connection_limit.ts";
import { openSocketPeek, type SocketPeek } from "./socket_peek.ts";
import { MAX_HEAD_BYTES } from "../shared/http1_parser.ts";
import { type RawClient, type RawUpgrades, writeRawResponse } from "./upgrade_tunnel.ts";
import {
  canBeHandshake,
  isWebSocketHandshake,
  parseRequestHead,
  type RequestHead,
} from "../shared/request_head.ts";
import { pickCertificate, type TlsCertificate } from "../shared/tls_certificate.ts";
import { setListenerNoDelay } from "../process/tcp_nodelay.ts";
import { readFirstBytes } from "./tls_sniffer.ts";
import { errorText } from "../shared/error_text.ts";
import { LocalPipe } from "./local_pipe.ts";
import { ReplayConn } from "./replay_conn.ts";

/** Something that happened on the listener, for logs and metrics. */
export type ListenerEvent =
  /** `accept()` failed; `isFdExhausted` when the process or system ran out of descriptors. */
  | { readonly kind: "accept-error"; readonly isFdExhausted: boolean; readonly error: unknown }
  /** A client connection was closed for want of a complete request head (or handshake) in time. */
  | { readonly kind: "timeout"; readonly timeout: "header" | "keepalive" | "handshake" }
  /** A TLS handshake failed (an old protocol version, no shared cipher, not TLS). */
  | { readonly kind: "handshake-failed"; readonly error: unknown }
  /** A client connection broke with an HTTP error (bad framing, reset). */
  | { readonly kind: "connection-error"; readonly error: unknown }
  /** A client connection beyond `maxConnections` was answered 503 and closed. */
  | { readonly kind: "connection-refused"; readonly limit: number }
  /** WebSocket upgrades cannot be tunnelled here (no FFI, not Linux): they are answered 501. */
  | { readonly kind: "websocket-unavailable"; readonly detail: string }
  /** Serving without per-connection control (see the module docs). */
  | { readonly kind: "degraded"; readonly detail: string };

/** A request handler, as `Deno.serve` takes it. */
export type RequestHandler = (
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

/** TLS for {@linkcode listen}. */
export interface ListenTlsOptions {
  /** The certificates, the default first (`shared/tls_certificate.ts`); not empty. */
  readonly certificates: readonly TlsCertificate[];
}

/** Options for {@linkcode listen}. */
export interface ListenOptions {
  /** The address to bind. */
  readonly hostname: string;
  /** The port to bind; 0 picks a free one. */
  readonly port: number;
  /**
   * Bind with SO_REUSEPORT so several isolates share the address and the kernel spreads
   * connections over them (needs `--unstable-net`). Default: false.
   */
  readonly reusePort?: boolean;
  /** Time from accepting a connection to its first complete request head, in milliseconds. */
  readonly headerTimeoutMs: number;
  /**
   * Time a kept-alive connection may wait for its next complete request head after a
   * response, in milliseconds; 0 closes each connection after its response.
   */
  readonly keepAliveTimeoutMs: number;
  /** Called for each {@linkcode ListenerEvent}; must not throw. Default: ignore them. */
  readonly onEvent?: (event: ListenerEvent) => void;
  /** Answers an error that escaped the handler. Default: a plain 500. */
  readonly onError?: (error: unknown) => Response;
  /** Runs the timeouts and the accept back-off. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /**
   * Client connections open at once; one more is answered 503 and closed
   * (`connection_limit.ts`). Default: 0, no limit.
   */
  readonly maxConnections?: number;
  /**
   * Counts the client connections open over every isolate of the balancer (shared memory), so
   * `maxConnections` is the whole balancer's limit. Default: this listener's own count.
   */
  readonly openConnections?: SharedCounter;
  /**
   * Requests whose connection is closed once their response has been sent (a refusal that
   * left the request body unread, which Deno would otherwise wait for). Default: none.
   */
  readonly closeAfterResponse?: WeakSet<Request>;
  /**
   * Requests whose connection is closed a little after their response has been sent (an answer
   * given while the client was still uploading; see `LINGER_MS`): meanwhile nothing more is
   * read from it as a request. Default: none.
   */
  readonly lingerAfterResponse?: WeakSet<Request>;
  /**
   * Tell WebSocket handshakes apart and hand them to the handler registered here, for a tunnel
   * (see the module docs). When this process cannot peek (not Linux, no `--allow-ffi`), the
   * registry says why and upgrades are answered 501. Default: none, every connection goes to
   * Deno's per-connection server.
   */
  readonly rawUpgrades?: RawUpgrades;
  /**
   * Receives every request that came over HTTP/2 (for the access log; absent means HTTP/1.x).
   * Default: none.
   */
  readonly http2Requests?: WeakSet<Request>;
  /** Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with these certificates. Default: plain HTTP. */
  readonly tls?: ListenTlsOptions;
  /**
   * Time a TLS client has, from being accepted, to complete its handshake, in milliseconds.
   * Default: 10 s.
   */
  readonly handshakeTimeoutMs?: number;
}

/** A listener that is accepting connections. */
export interface Listener {
  /** The bound address. */
  readonly addr: Deno.NetAddr;
  /** Client connections currently open. */
  readonly connectionCount: number;
  /**
   * Stops accepting, closes idle connections and lets each open request finish, then resolves.
   * Idempotent.
   */
  shutdown(): Promise<void>;
  /** Closes every connection at once, mid-request or not. */
  close(): void;
  /**
   * Applies new connection timeouts and connection limit without binding anew (a reload):
   * connections accepted from now on, and deadlines set from now on, use them. The plain
   * `Deno.serve` mode has neither, so there it does nothing.
   *
   * @param settings The new timeouts and limit.
   */
  reconfigure(settings: ConnectionSettings): void;
  /**
   * The half of a certificate change that can fail: binds a TLS socket with the new
   * certificates beside the serving one (SO_REUSEPORT). `commit()` serves new connections from
   * it and closes the old socket (its open connections carry on); `abort()` closes the new one.
   *
   * @param certificates The new certificates, the default first.
   * @returns The change, to commit or abort.
   * @throws {Error} On a plain-HTTP listener, without SO_REUSEPORT, or when binding fails.
   */
  prepareCertificates(certificates: readonly TlsCertificate[]): {
    commit(): void;
    abort(): void;
  };
}

/** What a reload may change on a listener without binding anew. */
export type ConnectionSettings = Pick<
  ListenOptions,
  "headerTimeoutMs" | "keepAliveTimeoutMs" | "maxConnections" | "handshakeTimeoutMs"
>;

/** What `Deno.serve`'s per-connection server returns. */
interface ConnectionServer {
  readonly finished: Promise<void>;
  shutdown(): Promise<void>;
}

type ServeOnConnection = (
  conn: Deno.Conn,
  signal: AbortSignal,
  handler: RequestHandler,
  onError: (error: unknown) => Response,
  onListen: () => void,
) => ConnectionServer;

/** Looks up Deno's per-connection server, if this Deno still has it. */
function findServeOnConnection(): ServeOnConnection | undefined {
  const deno = Deno as unknown as Record<symbol, Record<string, unknown> | undefined>;
  const key = (Deno as unknown as { internal?: symbol }).internal;
  const serve = key === undefined ? undefined : deno[key]?.serveHttpOnConnection;
  return typeof serve === "function" ? serve as ServeOnConnection : undefined;
}

/**
 * Whether an error means the process or the system ran out of file descriptors (EMFILE,
 * ENFILE).
 *
 * @param error What `accept()`, `connect()` or `fetch` threw.
 * @returns Whether it is descriptor exhaustion, looking through `cause`.
 *
 * @example
 * ```ts
 * import { isFdExhaustion } from "./listener.ts";
 * if (!isFdExhaustion(new Error("Too many open files (os error 24)"))) throw new Error();
 * ```
 */
export function isFdExhaustion(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 4; depth++) {
    if (/too many open files|os error 2[34]\b/i.test(e.message)) return true;
    e = e.cause;
  }
  return false;
}

const DEFAULT_ON_ERROR = () => new Response("Internal error\n", { status: 500 });
/**
 * How long a connection lingers after an answer given while the client was still uploading,
 * in milliseconds, before it is closed. Closing at once while the client is still sending makes
 * the kernel reset the connection, and the reset can destroy the answer before the client has
 * read it (nginx's `lingering_close` waits likewise). Deno's server owns the socket, so its
 * sending side cannot be shut first; a client that reads the answer's `Connection: close`
 * closes sooner.
 */
const LINGER_MS = 2_000;
/** Answers a request that arrived on a lingering connection (never sent: it is closing). */
const LINGERING_RESPONSE = () => new Response(null, { status: 400 });
const ACCEPT_BACKOFF_MIN_MS = 50;
const ACCEPT_BACKOFF_MAX_MS = 1_000;

/** One client connection's state. */
class Connection {
  readonly abort = new AbortController();
  server: ConnectionServer | undefined;
  inFlight = 0;
  /** The request being answered (HTTP/1.1 answers one at a time). */
  current: Request | undefined;
  /** Whether it speaks HTTP/2 (streams at once; one stream never closes the connection). */
  isH2 = false;
  /** The pending header or keep-alive deadline. */
  deadline: Deadline | undefined;
  /** The queue `deadline` is in (a queue must only cancel its own entries). */
  deadlineQueue: DeadlineQueue | undefined;
  /** Set once a graceful shutdown of this connection has completed: nothing left to abort. */
  isShutDown = false;
  /** Closing after an early answer: no further request is served. */
  isLingering = false;
  /** Whether the listener is still looking at its first bytes (no server yet). */
  isSniffing = false;
  /** For a connection the listener serves itself (a handshake, a tunnel): when it is closed. */
  finished: Promise<void> | undefined;

  /** Cancels the pending deadline, if any. */
  clearDeadline(): void {
    if (this.deadline === undefined) return;
    this.deadlineQueue?.cancel(this.deadline);
    this.deadline = undefined;
    this.deadlineQueue = undefined;
  }

  /** Sets the pending deadline. */
  setDeadline(queue: DeadlineQueue, deadline: Deadline): void {
    this.deadline = deadline;
    this.deadlineQueue = queue;
  }
}

/**
 * Binds `hostname:port` and serves `handler` on every connection until shut down.
 *
 * @param options Address, connection timeouts, event sink and clock.
 * @param handler Answers each request.
 * @returns The listener, already accepting.
 * @throws {Deno.errors.AddrInUse} And the other errors of `Deno.listen` when binding fails.
 */
export function listen(options: ListenOptions, handler: RequestHandler): Listener {
  const onEvent = options.onEvent ?? (() => {});
  const onError = options.onError ?? DEFAULT_ON_ERROR;
  const serveOnConnection = findServeOnConnection();
  if (serveOnConnection === undefined) {
    onEvent({ kind: "degraded", detail: "Deno.serve has no per-connection server" });
    return fallbackListen(options, handler, onEvent, onError);
  }
  const rawUpgrades = options.rawUpgrades;
  let peek: SocketPeek | undefined;
  let pipe: LocalPipe | undefined;
  if (rawUpgrades !== undefined && options.tls !== undefined) {
    // TLS: the listener reads the decrypted first head itself (no FFI needed).
    try {
      pipe = LocalPipe.open();
      rawUpgrades.isActive = true;
    } catch (error) {
      rawUpgrades.unavailable = errorText(error);
      onEvent({ kind: "websocket-unavailable", detail: rawUpgrades.unavailable });
    }
  } else if (rawUpgrades !== undefined) {
    const opened = openSocketPeek();
    if (opened.ok) {
      peek = opened.peek;
      rawUpgrades.isActive = true;
    } else {
      // The protections stay; upgrades are answered 501 naming the reason.
      rawUpgrades.unavailable = opened.reason;
      onEvent({ kind: "websocket-unavailable", detail: opened.reason });
    }
  }
  const clock = options.clock ?? systemClock;
  const isReusePort = options.reusePort === true;
  let socket: Deno.Listener = bindSocket(options, options.port, options.tls?.certificates);
  const port = (socket.addr as Deno.NetAddr).port;
  // Deno leaves TCP_NODELAY off on TLS connections (`process/tcp_nodelay.ts`).
  const noDelay = () => {
    if (options.tls === undefined) return;
    const outcome = setListenerNoDelay(port);
    if (!outcome.ok) {
      onEvent({
        kind: "degraded",
        detail: `TCP_NODELAY not set on the TLS listener (${outcome.reason}): HTTP/1.1 ` +
          "responses may wait 40 ms each for the client's delayed ACK",
      });
    }
  };
  noDelay();
  const connections = new Set<Connection>();
  // One queue per timeout length keeps each queue in deadline order (its cheap case).
  const headerDeadlines = new DeadlineQueue({ clock });
  const keepAliveDeadlines = new DeadlineQueue({ clock });
  const stopAccepting = new AbortController();
  let isClosing = false;
  const handshakeDeadlines = new DeadlineQueue({ clock });
  let settings: ConnectionSettings = {
    headerTimeoutMs: options.headerTimeoutMs,
    keepAliveTimeoutMs: options.keepAliveTimeoutMs,
    maxConnections: options.maxConnections ?? 0,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
  };
  const closeAfterResponse = options.closeAfterResponse;
  const http2Requests = options.http2Requests;
  const openConnections = options.openConnections ?? SharedCounter.standalone();
  const lingerAfterResponse = options.lingerAfterResponse;
  const refuser = new ConnectionRefuser({ clock });
  const lingerDeadlines = new DeadlineQueue({ clock });
  const endLinger = (connection: Connection) => {
    connection.deadline = undefined;
    connection.deadlineQueue = undefined;
    connection.abort.abort();
  };

  const expire = (which: "header" | "keepalive") => (connection: Connection) => {
    connection.deadline = undefined;
    connection.deadlineQueue = undefined;
    if (connection.inFlight > 0) return;
    onEvent({ kind: "timeout", timeout: which });
    connection.abort.abort();
  };
  const expireHeader = expire("header");
  const expireKeepAlive = expire("keepalive");

  const serveConnection = (conn: Deno.Conn, connection: Connection) => {
    connection.setDeadline(
      headerDeadlines,
      headerDeadlines.add(clock.now() + settings.headerTimeoutMs, expireHeader, connection),
    );
    connections.add(connection);
    if (pipe !== undefined && rawUpgrades !== undefined && !connection.isH2) {
      serveTlsHttp1(conn, connection, pipe, rawUpgrades);
      return;
    }
    // A TLS connection's bytes are ciphertext: only a plain one can show a handshake.
    const fd = options.tls === undefined ? peek?.claim(conn) : undefined;
    if (peek !== undefined && rawUpgrades !== undefined && fd !== undefined) {
      const sniffer = new Sniffer(conn, connection, fd, peek, {
        clock,
        handOver: () => serveHttp(conn, connection, fd),
        serveHandshake: (head, forget) => {
          connection.finished = serveHandshake(conn, connection, head, rawUpgrades).finally(forget);
        },
        forget: () => {
          if (connections.delete(connection)) openConnections.release();
          connection.clearDeadline();
          peek?.release(fd);
        },
      });
      sniffer.start();
      return;
    }
    serveHttp(conn, connection, undefined);
  };

  /**
   * An HTTP/1.1 TLS connection (`tls_sniffer.ts`): a first request that is a WebSocket handshake
   * is served as a plain one is, anything else goes to Deno's server through the local pipe.
   */
  const serveTlsHttp1 = (
    conn: Deno.Conn,
    connection: Connection,
    via: LocalPipe,
    registry: RawUpgrades,
  ) => {
    const forget = () => {
      if (connections.delete(connection)) openConnections.release();
      connection.clearDeadline();
    };
    connection.isSniffing = true;
    void readFirstBytes(conn, connection.abort.signal).then((first) => {
      connection.isSniffing = false;
      if (first.kind === "closed") {
        closeQuietly(conn);
        return forget();
      }
      if (first.kind === "other") {
        return serveHttp(conn, connection, undefined, via.serveVia(serveOnConnection, first.bytes));
      }
      const replay = new ReplayConn(conn as Deno.Conn<Deno.NetAddr>, first.bytes);
      connection.finished = serveHandshake(replay, connection, first.head, registry).finally(
        forget,
      );
    });
  };

  /** Reads a WebSocket handshake's head, asks the handler, then tunnels or answers and closes. */
  const serveHandshake = async (
    conn: Deno.Conn,
    connection: Connection,
    head: RequestHead,
    registry: RawUpgrades,
  ): Promise<void> => {
    connection.inFlight++;
    connection.clearDeadline();
    const closeConn = () => {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    };
    connection.abort.signal.addEventListener("abort", closeConn, { once: true });
    try {
      // Exactly the head: bytes after it (early frames) stay for the tunnel.
      const bytes = new Uint8Array(head.length);
      for (let at = 0; at < bytes.length;) {
        const n = await conn.read(bytes.subarray(at));
        if (n === null) return;
        at += n;
      }
      let request: Request;
      try {
        request = handshakeRequest(head, connection.abort.signal, options.tls !== undefined);
      } catch {
        await writeRawResponse(conn, new Response("Bad request\n", { status: 400 }));
        return;
      }
      let tunnelClosed: Promise<void> | undefined;
      const client: RawClient = {
        conn,
        take() {
          const { promise, resolve } = Promise.withResolvers<void>();
          tunnelClosed = promise;
          return resolve;
        },
      };
      registry.add(request, client);
      const completed = Promise.withResolvers<void>();
      let response: Response;
      try {
        response = await handler(request, {
          remoteAddr: conn.remoteAddr as Deno.NetAddr,
          completed: completed.promise,
        });
      } catch (error) {
        response = onError(error);
      }
      if (tunnelClosed !== undefined) {
        await response.body?.cancel();
        await tunnelClosed;
      } else {
        await writeRawResponse(conn, response);
      }
      completed.resolve();
    } catch (error) {
      if (!connection.abort.signal.aborted) onEvent({ kind: "connection-error", error });
    } finally {
      connection.abort.signal.removeEventListener("abort", closeConn);
      closeConn();
    }
  };

  const serveHttp = (
    conn: Deno.Conn,
    connection: Connection,
    fd: number | undefined,
    serve: ServeOnConnection = serveOnConnection,
  ) => {
    const finished = () => {
      connection.inFlight--;
      const request = connection.current;
      // An idle connection keeps nothing of its last request (headers, URL, signal).
      if (connection.inFlight === 0) connection.current = undefined;
      if (!connection.isH2 && request !== undefined && closeAfterResponse?.has(request) === true) {
        // Deno would keep the connection open waiting for the unread body.
        connection.abort.abort();
        return;
      }
      if (connection.isLingering) return;
      if (request !== undefined && lingerAfterResponse?.has(request) === true) {
        connection.isLingering = true;
        connection.clearDeadline();
        connection.setDeadline(
          lingerDeadlines,
          lingerDeadlines.add(clock.now() + LINGER_MS, endLinger, connection),
        );
        return;
      }
      if (connection.inFlight > 0 || isClosing) return;
      if (settings.keepAliveTimeoutMs <= 0) {
        connection.abort.abort();
        return;
      }
      connection.setDeadline(
        keepAliveDeadlines,
        keepAliveDeadlines.add(
          clock.now() + settings.keepAliveTimeoutMs,
          expireKeepAlive,
          connection,
        ),
      );
    };
    const onRequest: RequestHandler = (request, info) => {
      if (connection.isLingering) {
        // Bytes after an early answer are the rest of an upload, never a request.
        connection.abort.abort();
        return LINGERING_RESPONSE();
      }
      connection.inFlight++;
      connection.current = request;
      connection.clearDeadline();
      info.completed.then(finished, finished);
      if (connection.isH2) http2Requests?.add(request);
      return handler(request, info);
    };
    const done = () => {
      if (connections.delete(connection)) openConnections.release();
      connection.clearDeadline();
      if (fd !== undefined) peek?.release(fd);
    };
    try {
      const server = serve(conn, connection.abort.signal, onRequest, onError, noop);
      connection.server = server;
      server.finished.then(done, (error) => {
        done();
        // A forced close (timeout, shutdown) is ours, not the client's error.
        if (!connection.abort.signal.aborted) onEvent({ kind: "connection-error", error });
      });
    } catch (error) {
      done();
      onEvent({ kind: "connection-error", error });
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  };

  /**
   * Completes a TLS connection's handshake within the handshake timeout, then serves it. The
   * connection counts as open (and against `maxConnections`) from its accept.
   */
  const handshakeThenServe = async (conn: Deno.TlsConn) => {
    const connection = new Connection();
    connections.add(connection);
    let isTimedOut = false;
    const deadline = handshakeDeadlines.add(
      clock.now() + (settings.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS),
      () => {
        isTimedOut = true;
        closeQuietly(conn);
      },
      connection,
    );
    // A close() or shutdown() during the handshake ends it too.
    const onAbort = () => closeQuietly(conn);
    connection.abort.signal.addEventListener("abort", onAbort, { once: true });
    let alpn: string | null;
    try {
      alpn = (await conn.handshake()).alpnProtocol;
    } catch (error) {
      if (connections.delete(connection)) openConnections.release();
      closeQuietly(conn);
      if (isTimedOut) onEvent({ kind: "timeout", timeout: "handshake" });
      else if (!connection.abort.signal.aborted) onEvent({ kind: "handshake-failed", error });
      return;
    } finally {
      handshakeDeadlines.cancel(deadline);
      connection.abort.signal.removeEventListener("abort", onAbort);
    }
    if (connection.abort.signal.aborted || isClosing) {
      if (connections.delete(connection)) openConnections.release();
      closeQuietly(conn);
      return;
    }
    connection.isH2 = alpn === "h2";
    serveConnection(conn, connection);
  };

  const acceptLoop = async (from: Deno.Listener) => {
    let backoffMs = ACCEPT_BACKOFF_MIN_MS;
    while (!isClosing) {
      let conn: Deno.Conn;
      try {
        conn = await from.accept();
      } catch (error) {
        // A closed socket: shutting down, or replaced by one with new certificates.
        if (isClosing || error instanceof Deno.errors.BadResource || from !== socket) return;
        onEvent({ kind: "accept-error", isFdExhausted: isFdExhaustion(error), error });
        try {
          await clock.sleep(backoffMs, stopAccepting.signal);
        } catch {
          return; // shutting down
        }
        backoffMs = Math.min(backoffMs * 2, ACCEPT_BACKOFF_MAX_MS);
        continue;
      }
      backoffMs = ACCEPT_BACKOFF_MIN_MS;
      const maxConnections = settings.maxConnections ?? 0;
      if (!openConnections.tryAcquire(maxConnections)) {
        if (options.tls === undefined) void refuser.refuse(conn);
        else closeQuietly(conn); // a 503 would need the handshake the limit exists to avoid
        onEvent({ kind: "connection-refused", limit: maxConnections });
        continue;
      }
      if (options.tls !== undefined) {
        void handshakeThenServe(conn as Deno.TlsConn);
        continue;
      }
      const connection = new Connection();
      connections.add(connection);
      serveConnection(conn, connection);
    }
  };
  const accepting = new Set<Promise<void>>();
  const startAccepting = (from: Deno.Listener) => {
    const loop = acceptLoop(from);
    accepting.add(loop);
    void loop.finally(() => accepting.delete(loop));
  };
  startAccepting(socket);

  /** Closes the lingering connections now: nothing more will be sent on them. */
  const endLingering = () => {
    for (const connection of connections) {
      if (connection.isLingering && connection.deadlineQueue === lingerDeadlines) {
        endLinger(connection);
      }
    }
    lingerDeadlines.clear();
  };
  let shutDown: Promise<void> | undefined;
  const stop = () => {
    if (isClosing) return;
    isClosing = true;
    stopAccepting.abort();
    refuser.close();
    // Connections still showing no request are idle: close them as Deno's server does.
    for (const connection of connections) if (connection.isSniffing) connection.abort.abort();
    closeQuietly(socket);
  };
  return {
    addr: socket.addr as Deno.NetAddr,
    get connectionCount() {
      return connections.size;
    },
    reconfigure(next) {
      settings = { ...next };
    },
    prepareCertificates(certificates) {
      if (options.tls === undefined) {
        throw new Error("Cannot change certificates: the listener serves plain HTTP");
      }
      if (!isReusePort) {
        throw new Error(
          "Cannot change certificates without rebinding: that needs SO_REUSEPORT " +
            "(Deno's --unstable-net flag)",
        );
      }
      const next = bindSocket(options, port, certificates);
      let isSettled = false;
      return {
        commit() {
          if (isSettled) return;
          isSettled = true;
          if (isClosing) {
            closeQuietly(next);
            return;
          }
          const old = socket;
          socket = next;
          noDelay();
          startAccepting(next);
          // Connections the kernel already queued on the old socket are reset by its close; a
          // new one arriving in the instant between the swap and the close can be lost too
          // (Linux's net.ipv4.tcp_migrate_req=1 hands them to the new socket instead).
          closeQuietly(old);
        },
        abort() {
          if (isSettled) return;
          isSettled = true;
          closeQuietly(next);
        },
      };
    },
    shutdown() {
      shutDown ??= (async () => {
        stop();
        endLingering();
        await Promise.all(accepting);
        // A tunnel has no requests to finish: a drain ends it (its client sees the close).
        for (const c of connections) if (c.finished !== undefined) c.abort.abort();
        await Promise.all(
          [...connections].map((c) =>
            c.finished ?? c.server?.shutdown().then(() => {
              c.isShutDown = true;
            }, noop)
          ),
        );
        peek?.close();
        pipe?.close();
      })();
      return shutDown;
    },
    close() {
      stop();
      endLingering();
      // Aborting a connection Deno already closed makes its abort listener throw.
      for (const connection of connections) {
        if (!connection.isShutDown) connection.abort.abort();
      }
      peek?.close();
      pipe?.close();
    },
  };
}

function noop(): void {}

/** What a {@linkcode Sniffer} does with the connection it looked at. */
interface SnifferActions {
  /** Runs the wait for the rest of a partial head. */
  readonly clock: Clock;
  /** Not a handshake: Deno's server takes the connection, its bytes untouched. */
  readonly handOver: () => void;
  /** A WebSocket handshake; call `forget` once the connection is closed. */
  readonly serveHandshake: (head: RequestHead, forget: () => void) => void;
  /** Forgets a connection the sniffer closed (timed out, shut down). */
  readonly forget: () => void;
}

/** Peek buffer, shared: every peek is read before the next await. */
const PEEKED = new Uint8Array(MAX_HEAD_BYTES);
/** The longest pause between two looks at a partial head, in milliseconds. */
const MAX_PARTIAL_WAIT_MS = 50;

/**
 * Looks at a new connection's first bytes, without taking them, until it can tell whether they
 * are a WebSocket handshake. The header deadline bounds the wait (it aborts the connection).
 */
class Sniffer {
  readonly #conn: Deno.Conn;
  readonly #connection: Connection;
  readonly #fd: number;
  readonly #peek: SocketPeek;
  readonly #actions: SnifferActions;

  constructor(
    conn: Deno.Conn,
    connection: Connection,
    fd: number,
    peek: SocketPeek,
    actions: SnifferActions,
  ) {
    this.#conn = conn;
    this.#connection = connection;
    this.#fd = fd;
    this.#peek = peek;
    this.#actions = actions;
  }

  start(): void {
    this.#connection.isSniffing = true;
    this.#connection.abort.signal.addEventListener("abort", this.#onAbort, { once: true });
    void this.#run();
  }

  readonly #onAbort = () => this.#peek.cancelWait(this.#fd);

  async #run(): Promise<void> {
    const signal = this.#connection.abort.signal;
    let delayMs = 1;
    let wasReadable = false;
    try {
      for (;;) {
        if (signal.aborted) return this.#close();
        const n = this.#peek.peek(this.#fd, PEEKED);
        if (n < 0) {
          // Readable yet nothing to peek: an error Deno's server will report.
          if (wasReadable) return this.#handOver();
          if (await this.#peek.waitReadable(this.#fd) === "cancelled") return this.#close();
          wasReadable = true;
          continue;
        }
        if (n === 0 || !canBeHandshake(PEEKED, n)) return this.#handOver();
        const parsed = parseRequestHead(PEEKED, n);
        if (parsed.ok) {
          if (!isWebSocketHandshake(parsed.head)) return this.#handOver();
          this.#stop();
          this.#actions.serveHandshake(parsed.head, this.#actions.forget);
          return;
        }
        if (parsed.reason === "invalid" || n === PEEKED.length) return this.#handOver();
        // Part of a head: poll(2) would report these bytes again at once, so wait on a timer.
        await this.#actions.clock.sleep(delayMs, signal);
        delayMs = Math.min(delayMs * 2, MAX_PARTIAL_WAIT_MS);
        wasReadable = false;
      }
    } catch {
      this.#close();
    }
  }

  #stop(): void {
    this.#connection.isSniffing = false;
    this.#connection.abort.signal.removeEventListener("abort", this.#onAbort);
  }

  #handOver(): void {
    this.#stop();
    this.#actions.handOver();
  }

  #close(): void {
    this.#stop();
    this.#peek.cancelWait(this.#fd);
    this.#actions.forget();
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** The `Request` the handler gets for a handshake the listener read, as Deno would build it. */
function handshakeRequest(head: RequestHead, signal: AbortSignal, isTls: boolean): Request {
  let host: string | undefined;
  for (const [name, value] of head.headers) if (name === "host") host = value;
  const url = head.target.startsWith("/")
    ? `${isTls ? "https" : "http"}://${host ?? "invalid"}${head.target}`
    : head.target;
  return new Request(url, { method: head.method, headers: head.headers, signal });
}

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
const ALPN_PROTOCOLS = ["h2", "http/1.1"];
/** Deno's internal SNI hook for `Deno.listenTls` (see the module docs). */
const SNI_RESOLVER = Symbol.for("unstableSniResolver");

/** Binds the plain or TLS socket `options` asks for. */
function bindSocket(
  options: ListenOptions,
  port: number,
  certificates: readonly TlsCertificate[] | undefined,
): Deno.Listener {
  const reuse = options.reusePort === true ? { reusePort: true } : {};
  if (options.tls === undefined || certificates === undefined) {
    return Deno.listen({ hostname: options.hostname, port, ...reuse });
  }
  if (certificates.length === 0) throw new Error("TLS needs at least one certificate");
  const resolve = (serverName: string) => {
    const chosen = pickCertificate(certificates, serverName) as TlsCertificate;
    return { cert: chosen.certPem, key: chosen.keyPem };
  };
  const tlsOptions = {
    hostname: options.hostname,
    port,
    alpnProtocols: ALPN_PROTOCOLS,
    ...reuse,
    [SNI_RESOLVER]: resolve,
  } as unknown as Deno.ListenTlsOptions & Deno.TlsCertifiedKeyPem;
  return Deno.listenTls(tlsOptions);
}

function closeQuietly(closable: { close(): void }): void {
  try {
    closable.close();
  } catch {
    // Already closed.
  }
}

/** Plain `Deno.serve`, restarted when its accept loop fails. */
function fallbackListen(
  options: ListenOptions,
  handler: RequestHandler,
  onEvent: (event: ListenerEvent) => void,
  onError: (error: unknown) => Response,
): Listener {
  const clock = options.clock ?? systemClock;
  let isClosing = false;
  const http2Requests = options.http2Requests;
  if (options.tls !== undefined && http2Requests !== undefined) {
    // Deno's own server does not say which protocol a request came over. HTTP/2 sends no
    // `Host` (its `:authority` is in the URL), and HTTP/1.1 requires one: a request over TLS
    // without it is taken for HTTP/2 (an HTTP/1.1 one then gets its URL's authority, which
    // Deno fills from the SNI, instead of a 400).
    const inner = handler;
    handler = (request, info) => {
      if (!request.headers.has("host")) http2Requests.add(request);
      return inner(request, info);
    };
  }
  const start = (port: number): Deno.HttpServer<Deno.NetAddr> => {
    const server = Deno.serve(
      {
        hostname: options.hostname,
        port,
        onListen: noop,
        onError,
        ...(options.reusePort === true ? { reusePort: true } : {}),
        ...nativeTls(options.tls),
      },
      handler,
    );
    server.finished.catch(async (error) => {
      if (isClosing) return;
      onEvent({ kind: "accept-error", isFdExhausted: isFdExhaustion(error), error });
      for (let delay = ACCEPT_BACKOFF_MIN_MS; !isClosing;) {
        await clock.sleep(delay);
        try {
          current = start(port);
          return;
        } catch (retryError) {
          onEvent({ kind: "accept-error", isFdExhausted: isFdExhaustion(retryError), error });
          delay = Math.min(delay * 2, ACCEPT_BACKOFF_MAX_MS);
        }
      }
    });
    return server;
  };
  let current = start(options.port);
  const addr = current.addr;
  return {
    addr,
    connectionCount: 0,
    shutdown() {
      isClosing = true;
      return current.shutdown();
    },
    close() {
      isClosing = true;
      current.shutdown().catch(noop);
    },
    reconfigure() {
      // Deno's own server has no connection timeouts or limit to change.
    },
    prepareCertificates() {
      throw new Error(
        "Cannot change certificates of Deno's own server (--websocket on) without a restart",
      );
    },
  };
}

/** `Deno.serve`'s TLS options: the default certificate, and SNI as in {@linkcode bindSocket}. */
function nativeTls(tls: ListenTlsOptions | undefined): Record<string | symbol, unknown> {
  const first = tls?.certificates[0];
  if (tls === undefined || first === undefined) return {};
  const resolve = (serverName: string) => {
    const chosen = pickCertificate(tls.certificates, serverName) as TlsCertificate;
    return { cert: chosen.certPem, key: chosen.keyPem };
  };
  return { cert: first.certPem, key: first.keyPem, [SNI_RESOLVER]: resolve };
}
