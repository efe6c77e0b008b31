/**
 * Telling WebSocket handshakes apart before Deno's server sees a connection (see
 * `listener.ts`): the {@linkcode Sniffer} looks at a new plain connection's first bytes without
 * taking them (`socket_peek.ts`), and a connection whose first request is a WebSocket handshake
 * is served here ({@linkcode serveRawHandshake}): its head is read, the handler gets it as a
 * `Request` registered in `RawUpgrades`, and its WebSocket path tunnels the connection
 * (`upgrade_tunnel.ts`) or the answer is written and the connection closed.
 *
 * @module
 */
import type { Clock } from "../shared/clock.ts";
import { MAX_HEAD_BYTES } from "../shared/http1_parser.ts";
import {
  canBeHandshake,
  isWebSocketHandshake,
  parseRequestHead,
  type RequestHead,
} from "../shared/request_head.ts";
import type { Connection } from "./client_connection.ts";
import type { ListenerEvent, RequestHandler } from "./listen_options.ts";
import type { SocketPeek } from "./socket_peek.ts";
import { type RawClient, type RawUpgrades, writeRawResponse } from "./upgrade_tunnel.ts";

/** What a {@linkcode Sniffer} does with the connection it looked at. */
export interface SnifferActions {
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
export class Sniffer {
  readonly #conn: Deno.Conn;
  readonly #connection: Connection;
  readonly #fd: number;
  readonly #peek: SocketPeek;
  readonly #actions: SnifferActions;

  /**
   * @param conn The new connection.
   * @param connection Its state.
   * @param fd Its descriptor, claimed for peeking.
   * @param peek The peeking.
   * @param actions What to do with what it sees.
   */
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

  /** Starts looking; the actions say what came of it. */
  start(): void {
    this.#connection.isSniffing = true;
    this.#connection.signal.addEventListener("abort", this.#onAbort, { once: true });
    void this.#run();
  }

  readonly #onAbort = () => this.#peek.cancelWait(this.#fd);

  async #run(): Promise<void> {
    const signal = this.#connection.signal;
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
    this.#connection.signal.removeEventListener("abort", this.#onAbort);
  }

  #handOver(): void {
    this.#stop();
    this.#connection.dropSignal();
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

/** What serving a handshake the listener read needs from it. */
export interface HandshakeServing {
  /** Answers the handshake's request. */
  readonly handler: RequestHandler;
  /** Answers an error that escaped the handler. */
  readonly onError: (error: unknown) => Response;
  /** Told of a connection that broke. */
  readonly onEvent: (event: ListenerEvent) => void;
  /** Whether the connection is TLS (the request's URL is then `https://`). Default: false. */
  readonly isTls?: boolean;
}

/**
 * Reads a WebSocket handshake's head, asks the handler, then tunnels or answers and closes.
 *
 * @param conn The client connection.
 * @param connection Its state.
 * @param head The handshake's head, as peeked (it is read off the connection here).
 * @param registry Where the handler finds the connection to tunnel.
 * @param serving The handler, its error answer and the event sink.
 * @returns When the connection is closed.
 */
export async function serveRawHandshake(
  conn: Deno.Conn,
  connection: Connection,
  head: RequestHead,
  registry: RawUpgrades,
  serving: HandshakeServing,
): Promise<void> {
  const { handler, onError, onEvent } = serving;
  connection.inFlight++;
  connection.clearDeadline();
  const closeConn = () => {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  };
  connection.signal.addEventListener("abort", closeConn, { once: true });
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
      request = handshakeRequest(head, connection.signal, serving.isTls === true);
    } catch {
      await writeRawResponse(conn, new Response("Bad request\n", { status: 400 }));
      return;
    }
    let tunnelClosed: Promise<void> | undefined;
    const client: RawClient = {
      conn,
      take(options) {
        // A tunnel closes the connection itself on abort, after its close frames.
        if (options?.closesOnAbort === true) {
          connection.signal.removeEventListener("abort", closeConn);
        }
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
    if (!connection.isClosed) onEvent({ kind: "connection-error", error });
  } finally {
    connection.signal.removeEventListener("abort", closeConn);
    closeConn();
  }
}
