/**
 * One client connection's state, and the deadlines the listener holds connections to: the
 * TLS handshake, the first request head (header timeout), the next one on a kept-alive
 * connection (keep-alive timeout), and the lingering close after an early answer. One queue
 * per timeout length keeps each queue in deadline order (its cheap case).
 *
 * @module
 */
import type { Clock } from "../shared/clock.ts";
import { type Deadline, DeadlineQueue } from "../shared/deadlines.ts";
import type { ListenerEvent } from "./listen_options.ts";

/**
 * How long a connection lingers after an answer given while the client was still uploading,
 * in milliseconds, before it is closed. Closing at once while the client is still sending makes
 * the kernel reset the connection, and the reset can destroy the answer before the client has
 * read it (nginx's `lingering_close` waits likewise). Deno's server owns the socket, so its
 * sending side cannot be shut first; a client that reads the answer's `Connection: close`
 * closes sooner.
 */
const LINGER_MS = 2_000;

/** What `Deno.serve`'s per-connection server returns. */
export interface ConnectionServer {
  /** Settles when the connection is closed. */
  readonly finished: Promise<void>;
  /** Lets the open requests finish, then closes the connection. */
  shutdown(): Promise<void>;
}

/**
 * What Deno's per-connection server takes as its `signal`: it only registers one `abort`
 * listener (`op_http_cancel`, the forced close), so a {@linkcode Connection} is enough and an
 * idle connection holds no `AbortController` (an `AbortSignal` with one listener is about
 * 770 bytes of heap in Deno 2.9.6).
 */
export interface AbortHook {
  /** Whether the connection was closed (as `AbortSignal.aborted`). */
  readonly aborted: boolean;
  /**
   * Registers the listener {@linkcode Connection.close} calls.
   *
   * @param type Always `"abort"`.
   * @param listener Closes Deno's server for the connection.
   */
  addEventListener(type: "abort", listener: () => void): void;
}

/** One client connection's state. */
export class Connection implements AbortHook {
  /** Made on first use of {@linkcode Connection.signal}; dropped by `dropSignal`. */
  #controller: AbortController | undefined;
  /** Deno's server's forced close, once it has registered it. */
  #closeServer: (() => void) | undefined;
  #isClosed = false;
  /**
   * Deno's server's graceful shutdown, once it has one. Only the function is kept, not the
   * server object (with its address and `ref`/`unref` closures, about 0.5 KB): Deno's
   * `shutdown` works on its closure alone, not on `this`.
   */
  shutdownServer: ConnectionServer["shutdown"] | undefined;
  /** Requests being answered. */
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
  /**
   * Whether the listener is still in its TLS handshake or looking at its first bytes (no
   * server yet).
   */
  isSniffing = false;
  /**
   * Its descriptor, when the listener found it (`socket_peek.ts`): a plain connection's to peek
   * at its first bytes, a TLS one's to end a handshake that never finishes. Released on close.
   */
  fd: number | undefined;
  /** For a connection the listener serves itself (a handshake, a tunnel): when it is closed. */
  finished: Promise<void> | undefined;

  /** Whether {@linkcode Connection.close} was called. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** See {@linkcode AbortHook.aborted}. */
  get aborted(): boolean {
    return this.#isClosed;
  }

  /**
   * Aborts when the connection is closed. Made on first use: the phases before Deno's server
   * (TLS handshake, sniffing) and the connections the listener serves itself use it.
   */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#isClosed) this.#controller.abort();
    }
    return this.#controller.signal;
  }

  /**
   * Forgets the signal once the phase that used it is over and nothing listens to it any more
   * (the sniffer handed the connection to Deno's server), so an idle connection holds none.
   */
  dropSignal(): void {
    if (!this.#isClosed) this.#controller = undefined;
  }

  /** See {@linkcode AbortHook.addEventListener}. */
  addEventListener(_type: "abort", listener: () => void): void {
    if (!this.#isClosed) {
      this.#closeServer = listener;
      return;
    }
    // Deno registers the listener before its server exists: close it once it does.
    queueMicrotask(() => closeServer(listener));
  }

  /** Closes the connection: aborts the signal and closes Deno's server at once. Idempotent. */
  close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    const closeDenoServer = this.#closeServer;
    this.#closeServer = undefined;
    this.#controller?.abort();
    if (closeDenoServer !== undefined) closeServer(closeDenoServer);
  }

  /** Cancels the pending deadline, if any. */
  clearDeadline(): void {
    if (this.deadline === undefined) return;
    this.deadlineQueue?.cancel(this.deadline);
    this.deadline = undefined;
    this.deadlineQueue = undefined;
  }

  /**
   * Sets the pending deadline.
   *
   * @param queue The queue it is in.
   * @param deadline The deadline.
   */
  setDeadline(queue: DeadlineQueue, deadline: Deadline): void {
    this.deadline = deadline;
    this.deadlineQueue = queue;
  }
}

/** The listener's connection deadlines, one queue per kind. */
export class ConnectionDeadlines {
  readonly #clock: Clock;
  readonly #onEvent: (event: ListenerEvent) => void;
  readonly #header: DeadlineQueue;
  readonly #keepAlive: DeadlineQueue;
  readonly #linger: DeadlineQueue;
  readonly #handshake: DeadlineQueue;

  /**
   * @param clock Runs every deadline.
   * @param onEvent Told of each connection closed by a timeout.
   */
  constructor(clock: Clock, onEvent: (event: ListenerEvent) => void) {
    this.#clock = clock;
    this.#onEvent = onEvent;
    this.#header = new DeadlineQueue({ clock });
    this.#keepAlive = new DeadlineQueue({ clock });
    this.#linger = new DeadlineQueue({ clock });
    this.#handshake = new DeadlineQueue({ clock });
  }

  /**
   * Gives a new connection `timeoutMs` to deliver its first complete request head.
   *
   * @param connection The connection.
   * @param timeoutMs The header timeout.
   */
  awaitFirstHead(connection: Connection, timeoutMs: number): void {
    const at = this.#clock.now() + timeoutMs;
    connection.setDeadline(this.#header, this.#header.add(at, this.#expireHeader, connection));
  }

  /**
   * Gives an idle kept-alive connection `timeoutMs` to deliver its next request head.
   *
   * @param connection The connection.
   * @param timeoutMs The keep-alive timeout.
   */
  awaitNextHead(connection: Connection, timeoutMs: number): void {
    const at = this.#clock.now() + timeoutMs;
    connection.setDeadline(
      this.#keepAlive,
      this.#keepAlive.add(at, this.#expireKeepAlive, connection),
    );
  }

  /**
   * Closes a connection a little after an answer given while its upload went on.
   *
   * @param connection The connection.
   */
  linger(connection: Connection): void {
    connection.isLingering = true;
    connection.clearDeadline();
    const at = this.#clock.now() + LINGER_MS;
    connection.setDeadline(this.#linger, this.#linger.add(at, endLinger, connection));
  }

  /**
   * Closes the lingering connections now: nothing more will be sent on them.
   *
   * @param connections The listener's connections.
   */
  endLingering(connections: Iterable<Connection>): void {
    for (const connection of connections) {
      if (connection.isLingering && connection.deadlineQueue === this.#linger) {
        endLinger(connection);
      }
    }
    this.#linger.clear();
  }

  /**
   * Bounds a TLS handshake.
   *
   * @param connection The connection shaking hands.
   * @param timeoutMs The handshake timeout.
   * @param onTimeout Ends the handshake.
   * @returns The deadline, for {@linkcode ConnectionDeadlines.handshakeDone}.
   */
  handshake(connection: Connection, timeoutMs: number, onTimeout: () => void): Deadline {
    return this.#handshake.add(this.#clock.now() + timeoutMs, onTimeout, connection);
  }

  /**
   * The handshake ended (done, failed or timed out): its deadline goes.
   *
   * @param deadline What {@linkcode ConnectionDeadlines.handshake} returned.
   */
  handshakeDone(deadline: Deadline): void {
    this.#handshake.cancel(deadline);
  }

  readonly #expireHeader = (connection: Connection): void => this.#expire(connection, "header");
  readonly #expireKeepAlive = (connection: Connection): void =>
    this.#expire(connection, "keepalive");

  #expire(connection: Connection, timeout: "header" | "keepalive"): void {
    connection.deadline = undefined;
    connection.deadlineQueue = undefined;
    if (connection.inFlight > 0) return;
    this.#onEvent({ kind: "timeout", timeout });
    connection.close();
  }
}

function endLinger(connection: Connection): void {
  connection.deadline = undefined;
  connection.deadlineQueue = undefined;
  connection.close();
}

/** Calls Deno's forced close, which throws when its server is already gone. */
function closeServer(listener: () => void): void {
  try {
    listener();
  } catch {
    // Closed already (finished, or shut down gracefully).
  }
}
