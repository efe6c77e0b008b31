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
 * @module
 */
import { SharedCounter } from "../core/shared_state.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { type Deadline, DeadlineQueue } from "../shared/deadlines.ts";
import { ConnectionRefuser } from "./connection_limit.ts";

/** Something that happened on the listener, for logs and metrics. */
export type ListenerEvent =
  /** `accept()` failed; `isFdExhausted` when the process or system ran out of descriptors. */
  | { readonly kind: "accept-error"; readonly isFdExhausted: boolean; readonly error: unknown }
  /** A client connection was closed for want of a complete request head in time. */
  | { readonly kind: "timeout"; readonly timeout: "header" | "keepalive" }
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
}

/** What a reload may change on a listener without binding anew. */
export type ConnectionSettings = Pick<
  ListenOptions,
  "headerTimeoutMs" | "keepAliveTimeoutMs" | "maxConnections"
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
  const listener = Deno.listen({
    hostname: options.hostname,
    port: options.port,
    ...(options.reusePort === true ? { reusePort: true } : {}),
  });
  const connections = new Set<Connection>();
  // One queue per timeout length keeps each queue in deadline order (its cheap case).
  const headerDeadlines = new DeadlineQueue({ clock });
  const keepAliveDeadlines = new DeadlineQueue({ clock });
  const stopAccepting = new AbortController();
  let isClosing = false;
  let settings: ConnectionSettings = {
    headerTimeoutMs: options.headerTimeoutMs,
    keepAliveTimeoutMs: options.keepAliveTimeoutMs,
    maxConnections: options.maxConnections ?? 0,
  };
  const closeAfterResponse = options.closeAfterResponse;
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

  const serveConnection = (conn: Deno.Conn) => {
    const connection = new Connection();
    connection.setDeadline(
      headerDeadlines,
      headerDeadlines.add(clock.now() + settings.headerTimeoutMs, expireHeader, connection),
    );
    const finished = () => {
      connection.inFlight--;
      const request = connection.current;
      // An idle connection keeps nothing of its last request (headers, URL, signal).
      if (connection.inFlight === 0) connection.current = undefined;
      if (request !== undefined && closeAfterResponse?.has(request) === true) {
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
      return handler(request, info);
    };
    connections.add(connection);
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

  const acceptLoop = async () => {
    let backoffMs = ACCEPT_BACKOFF_MIN_MS;
    while (!isClosing) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (isClosing || error instanceof Deno.errors.BadResource) return;
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
        void refuser.refuse(conn);
        onEvent({ kind: "connection-refused", limit: maxConnections });
        continue;
      }
      serveConnection(conn);
    }
  };
  const accepting = acceptLoop();

  let shutDown: Promise<void> | undefined;
  const stop = () => {
    if (isClosing) return;
    isClosing = true;
    stopAccepting.abort();
    refuser.close();
    try {
      listener.close();
    } catch {
      // Already closed.
    }
  };
  return {
    addr: listener.addr as Deno.NetAddr,
    get connectionCount() {
      return connections.size;
    },
    reconfigure(next) {
      settings = { ...next };
    },
    shutdown() {
      shutDown ??= (async () => {
        stop();
        await accepting;
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

/** Plain `Deno.serve`, restarted when its accept loop fails. */
function fallbackListen(
  options: ListenOptions,
  handler: RequestHandler,
  onEvent: (event: ListenerEvent) => void,
  onError: (error: unknown) => Response,
): Listener {
  const clock = options.clock ?? systemClock;
  let isClosing = false;
  const start = (port: number): Deno.HttpServer<Deno.NetAddr> => {
    const server = Deno.serve(
      {
        hostname: options.hostname,
        port,
        onListen: noop,
        onError,
        ...(options.reusePort === true ? { reusePort: true } : {}),
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
  };
}
