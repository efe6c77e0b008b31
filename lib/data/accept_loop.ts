/**
 * The listener's own accept loop over `Deno.listen` (or `Deno.listenTls`) and the registry of
 * the connections it accepted, each served by Deno's per-connection server (see `listener.ts`
 * for why). It enforces the connection limit at accept, the TLS handshake, header and
 * keep-alive timeouts (`client_connection.ts`), hands WebSocket handshakes to
 * `connection_sniffer.ts`, and swaps its socket for one with new certificates.
 *
 * @module
 */
import { SharedCounter } from "../core/shared_state.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { isFdExhaustion } from "../shared/fd_exhaustion.ts";
import { pickCertificate, type TlsCertificate } from "../shared/tls_certificate.ts";
import { setListenerNoDelay } from "../process/tcp_nodelay.ts";
import {
  type AbortHook,
  Connection,
  ConnectionDeadlines,
  type ConnectionServer,
} from "./client_connection.ts";
import { ConnectionRefuser } from "./connection_limit.ts";
import { serveRawHandshake, Sniffer } from "./connection_sniffer.ts";
import type {
  ConnectionSettings,
  Listener,
  ListenerEvent,
  ListenOptions,
  RequestHandler,
} from "./listen_options.ts";
import { openSocketPeek, type SocketPeek } from "./socket_peek.ts";
import { readFirstBytes } from "./tls_sniffer.ts";
import { errorText } from "../shared/error_text.ts";
import { LocalPipe } from "./local_pipe.ts";
import { ReplayConn } from "./replay_conn.ts";
import type { RawUpgrades } from "./upgrade_tunnel.ts";

/** The first pause after a failed `accept()`, in milliseconds; it doubles up to the max. */
export const ACCEPT_BACKOFF_MIN_MS = 50;
/** The longest pause after a failed `accept()`, in milliseconds. */
export const ACCEPT_BACKOFF_MAX_MS = 1_000;
/** Deno's internal SNI hook for `Deno.listenTls` (see `listener.ts`). */
export const SNI_RESOLVER: symbol = Symbol.for("unstableSniResolver");

const ALPN_PROTOCOLS = ["h2", "http/1.1"];
/** Answers a request that arrived on a lingering connection (never sent: it is closing). */
const LINGERING_RESPONSE = () => new Response(null, { status: 400 });

/** Deno's per-connection server, as `Deno.serve` uses it. */
export type ServeOnConnection = (
  conn: Deno.Conn,
  signal: AbortHook,
  handler: RequestHandler,
  onError: (error: unknown) => Response,
  onListen: () => void,
) => ConnectionServer;

/**
 * Looks up Deno's per-connection server, if this Deno still has it.
 *
 * @returns It, or `undefined`.
 */
export function findServeOnConnection(): ServeOnConnection | undefined {
  const deno = Deno as unknown as Record<symbol, Record<string, unknown> | undefined>;
  const key = (Deno as unknown as { internal?: symbol }).internal;
  const serve = key === undefined ? undefined : deno[key]?.serveHttpOnConnection;
  return typeof serve === "function" ? serve as ServeOnConnection : undefined;
}

/** A bound socket, its accept loop and the connections it accepted. */
export class AcceptLoop implements Listener {
  /** The bound address. */
  readonly addr: Deno.NetAddr;
  readonly #options: ListenOptions;
  readonly #handler: RequestHandler;
  readonly #onEvent: (event: ListenerEvent) => void;
  readonly #onError: (error: unknown) => Response;
  readonly #serveOnConnection: ServeOnConnection;
  readonly #clock: Clock;
  readonly #rawUpgrades: RawUpgrades | undefined;
  readonly #peek: SocketPeek | undefined;
  /** With TLS and WebSocket: how an HTTP/1.1 connection whose head was read reaches Deno. */
  readonly #pipe: LocalPipe | undefined;
  readonly #port: number;
  #socket: Deno.Listener;
  readonly #connections = new Set<Connection>();
  readonly #deadlines: ConnectionDeadlines;
  #settings: ConnectionSettings;
  readonly #openConnections: SharedCounter;
  readonly #refuser: ConnectionRefuser;
  readonly #stopAccepting = new AbortController();
  readonly #accepting = new Set<Promise<void>>();
  #isClosing = false;
  #shutDown: Promise<void> | undefined;

  /**
   * Binds the socket and starts accepting.
   *
   * @param options Address, settings, TLS, event sink and clock.
   * @param handler Answers each request.
   * @param serveOnConnection Deno's per-connection server.
   * @throws {Deno.errors.AddrInUse} And the other errors of `Deno.listen` when binding fails.
   */
  constructor(
    options: ListenOptions,
    handler: RequestHandler,
    serveOnConnection: ServeOnConnection,
  ) {
    this.#options = options;
    this.#handler = handler;
    this.#serveOnConnection = serveOnConnection;
    const onEvent = options.onEvent ?? (() => {});
    this.#onEvent = onEvent;
    this.#onError = options.onError ?? (() => new Response("Internal error\n", { status: 500 }));
    this.#rawUpgrades = options.rawUpgrades;
    if (options.rawUpgrades !== undefined && options.tls !== undefined) {
      // TLS: the listener reads the decrypted first head itself (no FFI needed).
      try {
        this.#pipe = LocalPipe.open();
        options.rawUpgrades.isActive = true;
      } catch (error) {
        options.rawUpgrades.unavailable = errorText(error);
        onEvent({ kind: "websocket-unavailable", detail: options.rawUpgrades.unavailable });
      }
    } else if (options.rawUpgrades !== undefined) {
      const opened = openSocketPeek();
      if (opened.ok) {
        this.#peek = opened.peek;
        options.rawUpgrades.isActive = true;
      } else {
        // The protections stay; upgrades are answered 501 naming the reason.
        options.rawUpgrades.unavailable = opened.reason;
        onEvent({ kind: "websocket-unavailable", detail: opened.reason });
      }
    }
    if (options.tls !== undefined) this.#peek = this.#openHandshakeCloser();
    const clock = options.clock ?? systemClock;
    this.#clock = clock;
    this.#socket = bindSocket(options, options.port, options.tls?.certificates);
    this.addr = this.#socket.addr as Deno.NetAddr;
    this.#port = this.addr.port;
    this.#noDelay();
    this.#deadlines = new ConnectionDeadlines(clock, onEvent);
    this.#settings = options.settings;
    this.#openConnections = options.openConnections ?? SharedCounter.standalone();
    this.#refuser = new ConnectionRefuser({ clock });
    this.#startAccepting(this.#socket);
  }

  /** Client connections currently open. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** See {@linkcode Listener.reconfigure}. */
  reconfigure(settings: ConnectionSettings): void {
    this.#settings = settings;
  }

  /** See {@linkcode Listener.prepareCertificates}. */
  prepareCertificates(certificates: readonly TlsCertificate[]): {
    commit(): void;
    abort(): void;
  } {
    if (this.#options.tls === undefined) {
      throw new Error("Cannot change certificates: the listener serves plain HTTP");
    }
    if (this.#options.reusePort !== true) {
      throw new Error(
        "Cannot change certificates without rebinding: that needs SO_REUSEPORT " +
          "(Deno's --unstable-net flag)",
      );
    }
    const next = bindSocket(this.#options, this.#port, certificates);
    let isSettled = false;
    return {
      commit: () => {
        if (isSettled) return;
        isSettled = true;
        if (this.#isClosing) {
          closeQuietly(next);
          return;
        }
        const old = this.#socket;
        this.#socket = next;
        this.#noDelay();
        this.#startAccepting(next);
        // Connections the kernel already queued on the old socket are reset by its close; a
        // new one arriving in the instant between the swap and the close can be lost too
        // (Linux's net.ipv4.tcp_migrate_req=1 hands them to the new socket instead).
        closeQuietly(old);
      },
      abort: () => {
        if (isSettled) return;
        isSettled = true;
        closeQuietly(next);
      },
    };
  }

  /** See {@linkcode Listener.shutdown}. */
  shutdown(): Promise<void> {
    this.#shutDown ??= (async () => {
      this.#stop();
      this.#deadlines.endLingering(this.#connections);
      await Promise.all(this.#accepting);
      // A tunnel has no requests to finish: a drain ends it (its client sees the close).
      for (const c of this.#connections) if (c.finished !== undefined) c.close();
      await Promise.all(
        [...this.#connections].map((c) =>
          c.finished ?? c.shutdownServer?.().then(() => {
            c.isShutDown = true;
          }, noop)
        ),
      );
      this.#peek?.close();
      this.#pipe?.close();
    })();
    return this.#shutDown;
  }

  /** See {@linkcode Listener.close}. */
  close(): void {
    this.#stop();
    this.#deadlines.endLingering(this.#connections);
    // Aborting a connection Deno already closed makes its abort listener throw.
    for (const connection of this.#connections) {
      if (!connection.isShutDown) connection.close();
    }
    this.#peek?.close();
    this.#pipe?.close();
  }

  /** TLS: what frees the socket of a handshake that never finishes (`socket_peek.ts`). */
  #openHandshakeCloser(): SocketPeek | undefined {
    const opened = openSocketPeek();
    if (opened.ok) return opened.peek;
    this.#onEvent({
      kind: "degraded",
      detail: `TLS handshake timeout cannot free the socket (${opened.reason}): a client that ` +
        "never finishes its handshake holds a descriptor until it sends or leaves",
    });
    return undefined;
  }

  /**
   * Closes a TLS connection whose handshake has not finished (or was refused before one). Deno
   * keeps the socket of an unfinished handshake after `close()`: it is shut down first.
   */
  #closeUnfinished(conn: Deno.Conn, fd: number | undefined): void {
    this.#peek?.shutdown(conn, fd);
    closeQuietly(conn);
  }

  /** Deno leaves TCP_NODELAY off on TLS connections (`process/tcp_nodelay.ts`). */
  #noDelay(): void {
    if (this.#options.tls === undefined) return;
    const outcome = setListenerNoDelay(this.#port);
    if (!outcome.ok) {
      this.#onEvent({
        kind: "degraded",
        detail: `TCP_NODELAY not set on the TLS listener (${outcome.reason}): HTTP/1.1 ` +
          "responses may wait 40 ms each for the client's delayed ACK",
      });
    }
  }

  #startAccepting(from: Deno.Listener): void {
    const loop = this.#acceptLoop(from);
    this.#accepting.add(loop);
    void loop.finally(() => this.#accepting.delete(loop));
  }

  async #acceptLoop(from: Deno.Listener): Promise<void> {
    let backoffMs = ACCEPT_BACKOFF_MIN_MS;
    while (!this.#isClosing) {
      let conn: Deno.Conn;
      try {
        conn = await from.accept();
      } catch (error) {
        // A closed socket: shutting down, or replaced by one with new certificates.
        if (
          this.#isClosing || error instanceof Deno.errors.BadResource || from !== this.#socket
        ) return;
        this.#onEvent({ kind: "accept-error", isFdExhausted: isFdExhaustion(error), error });
        try {
          await this.#clock.sleep(backoffMs, this.#stopAccepting.signal);
        } catch {
          return; // shutting down
        }
        backoffMs = Math.min(backoffMs * 2, ACCEPT_BACKOFF_MAX_MS);
        continue;
      }
      backoffMs = ACCEPT_BACKOFF_MIN_MS;
      const maxConnections = this.#settings.limits.maxConnections;
      if (!this.#openConnections.tryAcquire(maxConnections)) {
        // Over TLS a 503 would need the handshake the limit exists to avoid.
        if (this.#options.tls === undefined) void this.#refuser.refuse(conn);
        else this.#closeUnfinished(conn, undefined);
        this.#onEvent({ kind: "connection-refused", limit: maxConnections });
        continue;
      }
      if (this.#options.tls !== undefined) {
        void this.#handshakeThenServe(conn as Deno.TlsConn);
        continue;
      }
      const connection = new Connection();
      this.#connections.add(connection);
      this.#serveConnection(conn, connection);
    }
  }

  /** Forgets a closed connection: its count, its deadline, its peek claim. */
  #forget(connection: Connection, fd: number | undefined): void {
    if (this.#connections.delete(connection)) this.#openConnections.release();
    connection.clearDeadline();
    const claimed = fd ?? connection.fd;
    if (claimed !== undefined) this.#peek?.release(claimed);
  }

  /**
   * Completes a TLS connection's handshake within the handshake timeout, then serves it. The
   * connection counts as open (and against `maxConnections`) from its accept.
   */
  async #handshakeThenServe(conn: Deno.TlsConn): Promise<void> {
    const connection = new Connection();
    this.#connections.add(connection);
    connection.fd = this.#peek?.claim(conn);
    // No request yet: a shutdown() closes it as it closes a connection still being sniffed.
    connection.isSniffing = true;
    let isTimedOut = false;
    const deadline = this.#deadlines.handshake(
      connection,
      this.#settings.tls.handshakeTimeoutMs,
      () => {
        isTimedOut = true;
        this.#closeUnfinished(conn, connection.fd);
      },
    );
    // A close() or shutdown() during the handshake ends it too.
    const onAbort = () => this.#closeUnfinished(conn, connection.fd);
    connection.signal.addEventListener("abort", onAbort, { once: true });
    let alpn: string | null;
    try {
      alpn = (await conn.handshake()).alpnProtocol;
    } catch (error) {
      this.#closeUnfinished(conn, connection.fd);
      this.#forget(connection, undefined);
      if (isTimedOut) this.#onEvent({ kind: "timeout", timeout: "handshake" });
      else if (!connection.isClosed) this.#onEvent({ kind: "handshake-failed", error });
      return;
    } finally {
      connection.isSniffing = false;
      this.#deadlines.handshakeDone(deadline);
      connection.signal.removeEventListener("abort", onAbort);
      connection.dropSignal();
    }
    if (connection.isClosed || this.#isClosing) {
      this.#forget(connection, undefined);
      closeQuietly(conn);
      return;
    }
    connection.isH2 = alpn === "h2";
    this.#serveConnection(conn, connection);
  }

  #serveConnection(conn: Deno.Conn, connection: Connection): void {
    this.#deadlines.awaitFirstHead(connection, this.#settings.client.headerTimeoutMs);
    this.#connections.add(connection);
    const peek = this.#peek;
    const rawUpgrades = this.#rawUpgrades;
    if (this.#pipe !== undefined && rawUpgrades !== undefined && !connection.isH2) {
      this.#serveTlsHttp1(conn, connection, this.#pipe, rawUpgrades);
      return;
    }
    // A TLS connection's bytes are ciphertext: only a plain one can show a handshake.
    const fd = this.#options.tls === undefined ? peek?.claim(conn) : undefined;
    if (peek !== undefined && rawUpgrades !== undefined && fd !== undefined) {
      const sniffer = new Sniffer(conn, connection, fd, peek, {
        clock: this.#clock,
        handOver: () => this.#serveHttp(conn, connection, fd),
        serveHandshake: (head, forget) => {
          connection.finished = serveRawHandshake(conn, connection, head, rawUpgrades, {
            handler: this.#handler,
            onError: this.#onError,
            onEvent: this.#onEvent,
          }).finally(forget);
        },
        forget: () => this.#forget(connection, fd),
      });
      sniffer.start();
      return;
    }
    this.#serveHttp(conn, connection, undefined);
  }

  /**
   * An HTTP/1.1 TLS connection (`tls_sniffer.ts`): a first request that is a WebSocket handshake
   * is served as a plain one is, anything else goes to Deno's server through the local pipe.
   */
  #serveTlsHttp1(
    conn: Deno.Conn,
    connection: Connection,
    pipe: LocalPipe,
    rawUpgrades: RawUpgrades,
  ): void {
    connection.isSniffing = true;
    void readFirstBytes(conn, connection.signal).then((first) => {
      connection.isSniffing = false;
      if (first.kind === "closed") {
        closeQuietly(conn);
        return this.#forget(connection, undefined);
      }
      if (first.kind === "other") {
        connection.dropSignal();
        return this.#serveHttp(
          conn,
          connection,
          undefined,
          pipe.serveVia(this.#serveOnConnection, first.bytes),
        );
      }
      const replay = new ReplayConn(conn as Deno.Conn<Deno.NetAddr>, first.bytes);
      connection.finished = serveRawHandshake(replay, connection, first.head, rawUpgrades, {
        handler: this.#handler,
        onError: this.#onError,
        onEvent: this.#onEvent,
        isTls: true,
      }).finally(() => this.#forget(connection, undefined));
    });
  }

  /**
   * Hands the connection to Deno's server. What an idle connection keeps alive here is one
   * closure context (this listener and the connection) and the three closures Deno holds:
   * the request handler and the two reactions to `finished`; the rest lives on `connection`.
   */
  #serveHttp(
    conn: Deno.Conn,
    connection: Connection,
    fd: number | undefined,
    serve: ServeOnConnection = this.#serveOnConnection,
  ): void {
    if (fd !== undefined) connection.fd = fd;
    const onRequest: RequestHandler = (request, info) => this.#onRequest(connection, request, info);
    try {
      // The connection is the signal: Deno's server registers its forced close on it.
      const server = serve(conn, connection, onRequest, this.#onError, noop);
      connection.shutdownServer = server.shutdown;
      server.finished.then(() => this.#forget(connection, undefined), (error) => {
        this.#forget(connection, undefined);
        // A forced close (timeout, shutdown) is ours, not the client's error.
        if (!connection.isClosed) this.#onEvent({ kind: "connection-error", error });
      });
    } catch (error) {
      this.#forget(connection, fd);
      this.#onEvent({ kind: "connection-error", error });
      closeQuietly(conn);
    }
  }

  #onRequest(
    connection: Connection,
    request: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ): Response | Promise<Response> {
    if (connection.isLingering) {
      // Bytes after an early answer are the rest of an upload, never a request.
      connection.close();
      return LINGERING_RESPONSE();
    }
    connection.inFlight++;
    connection.current = request;
    connection.clearDeadline();
    // A closure per request, not one kept per idle connection.
    const finished = () => this.#requestFinished(connection);
    info.completed.then(finished, finished);
    if (connection.isH2) this.#options.http2Requests?.add(request);
    return this.#handler(request, info);
  }

  #requestFinished(connection: Connection): void {
    const { closeAfterResponse, lingerAfterResponse } = this.#options;
    connection.inFlight--;
    const request = connection.current;
    // An idle connection keeps nothing of its last request (headers, URL, signal).
    if (connection.inFlight === 0) connection.current = undefined;
    if (!connection.isH2 && request !== undefined && closeAfterResponse?.has(request) === true) {
      // Deno would keep the connection open waiting for the unread body.
      connection.close();
      return;
    }
    if (connection.isLingering) return;
    if (request !== undefined && lingerAfterResponse?.has(request) === true) {
      this.#deadlines.linger(connection);
      return;
    }
    if (connection.inFlight > 0 || this.#isClosing) return;
    const keepAliveTimeoutMs = this.#settings.client.keepAliveTimeoutMs;
    if (keepAliveTimeoutMs <= 0) {
      connection.close();
      return;
    }
    this.#deadlines.awaitNextHead(connection, keepAliveTimeoutMs);
  }

  #stop(): void {
    if (this.#isClosing) return;
    this.#isClosing = true;
    this.#stopAccepting.abort();
    this.#refuser.close();
    // Connections still showing no request are idle: close them as Deno's server does.
    for (const connection of this.#connections) {
      if (connection.isSniffing) connection.close();
    }
    closeQuietly(this.#socket);
  }
}

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

function noop(): void {}
