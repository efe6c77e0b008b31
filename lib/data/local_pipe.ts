/**
 * Hands a TLS connection whose first bytes the listener already read to Deno's per-connection
 * HTTP server, which serves only a native connection (a JS object standing in for one is refused:
 * `TypeError: expected i32`). Each such connection gets a pair of connected sockets over a local
 * pipe: the pipe's accepted (native) side goes to the server, and the listener pumps bytes between
 * the client and the other side, writing the bytes already read first.
 *
 * The pipe is a Unix socket in a private temporary directory (mode 0700, removed on close), or,
 * where one cannot be made (no Unix sockets, no write permission), a TCP socket on 127.0.0.1 whose
 * connections are paired by port and strangers closed.
 *
 * The server sees the pipe, not the client: {@linkcode LocalPipe.serveVia} gives the handler the
 * client's address as `remoteAddr` and the request URL the server would have built for the TLS
 * connection (`https://`; over a Unix socket Deno builds `http+unix://`). The connection timeouts
 * and the connection count stay on the client's connection (the listener's `Connection`); the
 * pipe's side is never counted.
 *
 * Pumping: each direction reads a chunk only once the previous one is written (the client's TCP
 * window is the flow control); the client's end of stream half-closes the pipe, so the server
 * still answers a client that shut its sending side; the server closing its side ends the client's
 * connection once every byte is written (with TLS `close_notify`); a client error closes both.
 *
 * @module
 */
import type { AbortHook } from "./client_connection.ts";

/** A handler as the listener gives it to Deno's server. */
export type PipedHandler = (
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

/** What Deno's per-connection server returns (as the listener declares it). */
export interface PipedServer {
  /** Settles once the connection is closed, both pumped sides included. */
  readonly finished: Promise<void>;
  /** Lets open requests finish, then closes; resolves once the client's connection is closed. */
  shutdown(): Promise<void>;
}

/** Deno's per-connection server (as the listener declares it). */
export type ServeOnConnection = (
  conn: Deno.Conn,
  signal: AbortHook,
  handler: PipedHandler,
  onError: (error: unknown) => Response,
  onListen: () => void,
) => PipedServer;

/** The two ends of one piped connection. */
interface Pair {
  /** Ours: the pump reads and writes it. */
  readonly near: Deno.Conn;
  /** Accepted from the pipe's socket: a native connection for Deno's server. */
  readonly far: Deno.Conn;
}

const PUMP_CHUNK_BYTES = 16_384;
/** Attempts to accept our own connection on the TCP pipe past strangers. */
const MAX_STRANGERS = 8;

/** A per-listener local socket that turns connections the listener read from into native ones. */
export class LocalPipe {
  readonly #socket: Deno.Listener;
  readonly #dir: string | undefined;
  readonly #connectTo: Deno.ConnectOptions | Deno.UnixConnectOptions;
  /** Pairs are made one at a time, so the next accepted connection is the one just made. */
  #queue: Promise<unknown> = Promise.resolve();
  #isClosed = false;
  #accepting: Promise<Deno.Conn> | undefined;

  private constructor(
    socket: Deno.Listener,
    dir: string | undefined,
    connectTo: Deno.ConnectOptions | Deno.UnixConnectOptions,
  ) {
    this.#socket = socket;
    this.#dir = dir;
    this.#connectTo = connectTo;
  }

  /**
   * Opens a pipe: a Unix socket in a private temporary directory, else 127.0.0.1 TCP.
   *
   * @returns The pipe.
   * @throws {Error} When neither can be bound (the TCP error, the Unix one in `cause`).
   */
  static open(): LocalPipe {
    let unixError: unknown;
    let dir: string | undefined;
    try {
      dir = Deno.makeTempDirSync({ prefix: "denolb-pipe-" });
      const path = `${dir}/http.sock`;
      const socket = Deno.listen({ transport: "unix", path });
      return new LocalPipe(socket, dir, { transport: "unix", path });
    } catch (error) {
      unixError = error;
      if (dir !== undefined) removeQuietly(dir);
    }
    try {
      const socket = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (socket.addr as Deno.NetAddr).port;
      return new LocalPipe(socket, undefined, { hostname: "127.0.0.1", port });
    } catch (error) {
      throw new Error(`Cannot open a local pipe to Deno's HTTP server: ${String(error)}`, {
        cause: unixError,
      });
    }
  }

  /** Where the pipe listens: `unix` or `tcp`. */
  get transport(): "unix" | "tcp" {
    return this.#dir === undefined ? "tcp" : "unix";
  }

  /**
   * A stand-in for Deno's per-connection server that serves `client` through the pipe: the
   * returned function takes the client connection and opens a pair, pumps the client to it
   * (`read` first), and serves the pair's native side with `serve`.
   *
   * @param serve Deno's per-connection server.
   * @param read The bytes already read from the client.
   * @returns A per-connection server for the client's connection.
   */
  serveVia(serve: ServeOnConnection, read: Uint8Array): ServeOnConnection {
    return (client, signal, handler, onError, onListen) => {
      const remoteAddr = client.remoteAddr as Deno.NetAddr;
      const originScheme = this.#dir === undefined ? "http://" : UNIX_SCHEME;
      const piped: PipedHandler = (request, info) => {
        asTlsRequest(request, originScheme);
        return handler(request, { remoteAddr, completed: info.completed });
      };
      let server: PipedServer | undefined;
      let pump: Pump | undefined;
      const opened = (async () => {
        let pair: Pair;
        try {
          pair = await this.#pair();
        } catch (error) {
          closeQuietly(client);
          throw error;
        }
        if (signal.aborted) {
          closeQuietly(client);
          closeQuietly(pair.near);
          closeQuietly(pair.far);
          return;
        }
        pump = new Pump(client, pair.near, read);
        try {
          server = serve(pair.far, signal, piped, onError, onListen);
        } catch (error) {
          pump.close();
          closeQuietly(pair.far);
          throw error;
        }
      })();
      const finished = (async () => {
        await opened;
        if (server === undefined || pump === undefined) return;
        try {
          await server.finished;
        } finally {
          await pump.finished;
        }
      })();
      return {
        finished,
        async shutdown() {
          await opened.catch(noop);
          await server?.shutdown();
          await pump?.finished;
        },
      };
    };
  }

  /** Closes the pipe's socket and removes its directory. Idempotent. */
  close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    closeQuietly(this.#socket);
    if (this.#dir !== undefined) removeQuietly(this.#dir);
  }

  #pair(): Promise<Pair> {
    const next = this.#queue.then(() => this.#makePair());
    this.#queue = next.catch(noop);
    return next;
  }

  async #makePair(): Promise<Pair> {
    if (this.#isClosed) throw new Error("The local pipe to Deno's HTTP server is closed");
    // Deno refuses a second accept() while one is pending: one left by a failed connect is the
    // one to wait on (pairs are made one at a time, so it is ours).
    const accepting = this.#accepting ?? this.#socket.accept();
    this.#accepting = accepting;
    accepting.catch(noop); // a pending accept rejects when the pipe closes: not an error
    const near = await Deno.connect(this.#connectTo as Deno.ConnectOptions);
    let far: Deno.Conn;
    try {
      far = await accepting;
    } catch (error) {
      closeQuietly(near);
      throw error;
    } finally {
      this.#accepting = undefined;
    }
    if (this.#dir !== undefined) return { near, far };
    // TCP: anyone on this host can connect; ours is the one from near's port.
    const port = (near.localAddr as Deno.NetAddr).port;
    for (let strangers = 0; (far.remoteAddr as Deno.NetAddr).port !== port; strangers++) {
      closeQuietly(far);
      if (strangers === MAX_STRANGERS) {
        closeQuietly(near);
        throw new Error("The local pipe to Deno's HTTP server is flooded by other connections");
      }
      far = await this.#socket.accept();
    }
    return { near, far };
  }
}

/** Bytes pumped both ways between a client and the pipe (see the module docs). */
class Pump {
  readonly finished: Promise<void>;
  readonly #client: Deno.Conn;
  readonly #near: Deno.Conn;
  #isClosed = false;

  constructor(client: Deno.Conn, near: Deno.Conn, read: Uint8Array) {
    this.#client = client;
    this.#near = near;
    this.finished = Promise.all([this.#inbound(read), this.#outbound()]).then(() => this.close());
  }

  /** Closes both sides at once. Idempotent. */
  close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    closeQuietly(this.#client);
    closeQuietly(this.#near);
  }

  /** Client to server. The server's side failing ends only this direction (see outbound). */
  async #inbound(read: Uint8Array): Promise<void> {
    try {
      await writeAll(this.#near, read);
    } catch {
      return;
    }
    const buffer = new Uint8Array(PUMP_CHUNK_BYTES);
    for (;;) {
      let n: number | null;
      try {
        n = await this.#client.read(buffer);
      } catch {
        this.close();
        return;
      }
      try {
        if (n === null) {
          await this.#near.closeWrite();
          return;
        }
        await writeAll(this.#near, buffer.subarray(0, n));
      } catch {
        // The server closed its side: its last answer may still be on its way out.
        return;
      }
    }
  }

  /** Server to client; its end (the server closed, or the client failed) ends everything. */
  async #outbound(): Promise<void> {
    const buffer = new Uint8Array(PUMP_CHUNK_BYTES);
    try {
      for (;;) {
        const n = await this.#near.read(buffer);
        if (n === null) break;
        await writeAll(this.#client, buffer.subarray(0, n));
      }
      await this.#client.closeWrite();
    } catch {
      // Either side failed: both close.
    }
    this.close();
  }
}

/**
 * Deno's URL for an origin-form target over a Unix socket starts `http+unix://` (over TLS,
 * `https://`); an absolute-form target keeps its own scheme either way.
 */
const UNIX_SCHEME = "http+unix://";

/**
 * Gives `request` the URL Deno's server builds for a TLS connection: `originScheme` (what it
 * builds for an origin-form target over the pipe) becomes `https://`. Over the TCP pipe that is
 * `http://`, which an absolute-form `http://` target shares: that one is taken for origin-form.
 * An own property shadows `Request.prototype.url` without copying the request (body, signal and
 * headers stay Deno's).
 */
function asTlsRequest(request: Request, originScheme: string): void {
  const url = request.url;
  if (!url.startsWith(originScheme)) return;
  const value = "https://" + url.slice(originScheme.length);
  Object.defineProperty(request, "url", { value, enumerable: true });
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

function closeQuietly(closable: { close(): void }): void {
  try {
    closable.close();
  } catch {
    // Already closed.
  }
}

function removeQuietly(dir: string): void {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // Already gone.
  }
}

function noop(): void {}
