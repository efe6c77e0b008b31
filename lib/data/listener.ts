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
import { pickCertificate, type TlsCertificate } from "../shared/tls_certificate.ts";
import { setListenerNoDelay } from "../process/tcp_nodelay.ts";

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
   * Serve with `Deno.serve`'s own accept loop instead, as `--websocket on` needs: Deno 2.9
   * force-closes a WebSocket upgraded on a per-connection server as soon as the HTTP
   * connection hands it over. No header or keep-alive timeouts then. Default: false.
   */
  readonly isNative?: boolean;
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
  if (options.isNative === true) return fallbackListen(options, handler, onEvent, onError);
  if (serveOnConnection === undefined) {
    onEvent({ kind: "degraded", detail: "Deno.serve has no per-connection server" });
    return fallbackListen(options, handler, onEvent, onError);
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
  const refuser = new ConnectionRefuser({ clock });

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
    const finished = () => {
      connection.inFlight--;
      if (!connection.isH2 && closeAfterResponse?.has(connection.current as Request) === true) {
        // Deno would keep the connection open waiting for the unread body.
        connection.abort.abort();
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
    };
    try {
      const server = serveOnConnection(conn, connection.abort.signal, onRequest, onError, noop);
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

  let shutDown: Promise<void> | undefined;
  const stop = () => {
    if (isClosing) return;
    isClosing = true;
    stopAccepting.abort();
    refuser.close();
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
        await Promise.all(accepting);
        await Promise.all(
          [...connections].map((c) =>
            c.server?.shutdown().then(() => {
              c.isShutDown = true;
            }, noop)
          ),
        );
      })();
      return shutDown;
    },
    close() {
      stop();
      // Aborting a connection Deno already closed makes its abort listener throw.
      for (const connection of connections) {
        if (!connection.isShutDown) connection.abort.abort();
      }
    },
  };
}

function noop(): void {}

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
