/**
 * One TCP connection of the `http1` upstream with its read buffer. At most one read is ever
 * outstanding, and it is shared: a connection idling in the pool keeps a read pending so that a
 * backend closing it is noticed at once, and the request that takes the connection next awaits
 * that same read for its response.
 *
 * @module
 */
import type { ResponseParser } from "../shared/http1_parser.ts";

/** A small first buffer: enough for a typical head and small body in one read. */
const INITIAL_BUFFER_BYTES = 16_384;
/** Large bodies grow the buffer up to this (a head may not exceed it, `MAX_HEAD_BYTES`). */
const MAX_BUFFER_BYTES = 65_536;

/** A connection to one backend and the unparsed bytes read from it. */
export class Http1Connection {
  /** The pool key: `host:port` of the backend. */
  readonly key: string;
  /** Whether this connection already carried a response (so the backend may have closed it). */
  isReused = false;
  /** When it was last put in the pool, on the pool's clock. */
  idleSinceMs = 0;
  readonly #conn: Deno.TcpConn;
  #buffer: Uint8Array = new Uint8Array(INITIAL_BUFFER_BYTES);
  #start = 0;
  #end = 0;
  #pending: Promise<number> | undefined;
  #isClosed = false;

  /**
   * @param conn The connected socket.
   * @param key The pool key: `host:port` of the backend.
   */
  constructor(conn: Deno.TcpConn, key: string) {
    this.#conn = conn;
    this.key = key;
  }

  /** Whether {@linkcode close} was called. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Whether bytes were read that no parser consumed. */
  get hasUnreadBytes(): boolean {
    return this.#start !== this.#end;
  }

  /**
   * Reads more bytes into the buffer, or joins the read already outstanding.
   *
   * @returns How many bytes arrived; 0 when the backend closed the connection.
   * @throws {Deno.errors.ConnectionReset} And other socket errors, or `BadResource` once closed.
   */
  fill(): Promise<number> {
    this.#pending ??= this.#read();
    return this.#pending;
  }

  /**
   * Hands the unconsumed bytes to `parser`, keeping what it leaves (a partial head or line).
   *
   * @param parser The parser of the response being read.
   * @throws {SyntaxError} From the parser, for a malformed response.
   */
  feed(parser: ResponseParser): void {
    this.#start += parser.feed(this.#buffer, this.#start, this.#end);
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  /**
   * Writes all of `bytes`.
   *
   * @param bytes What to send.
   * @throws {Deno.errors.BrokenPipe} And other socket errors.
   */
  async write(bytes: Uint8Array): Promise<void> {
    let written = await this.#conn.write(bytes);
    while (written < bytes.length) written += await this.#conn.write(bytes.subarray(written));
  }

  /** Closes the socket, failing any read or write in progress. Idempotent. */
  close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by a reset: nothing is left to release.
    }
  }

  async #read(): Promise<number> {
    try {
      if (this.#end === this.#buffer.length) this.#makeRoom();
      const read = await this.#conn.read(this.#buffer.subarray(this.#end));
      if (read === null) return 0;
      this.#end += read;
      return read;
    } finally {
      this.#pending = undefined;
    }
  }

  /** Frees space after the unconsumed bytes: moves them to the front, or doubles the buffer. */
  #makeRoom(): void {
    if (this.#start > 0) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
      return;
    }
    // The parser refuses a head or line before it fills MAX_BUFFER_BYTES, so this bound holds.
    const grown = new Uint8Array(Math.min(this.#buffer.length * 2, MAX_BUFFER_BYTES));
    grown.set(this.#buffer.subarray(0, this.#end));
    this.#buffer = grown;
  }
}

/**
 * Opens a connection with Nagle's algorithm off (requests are written whole).
 *
 * @param hostname The backend's host name or address (IPv6 without brackets).
 * @param port The backend's port.
 * @param key The pool key for the connection.
 * @param signal Aborts the connect.
 * @returns The connection.
 * @throws {Deno.errors.ConnectionRefused} And other connect errors, or the signal's reason.
 */
export async function openConnection(
  hostname: string,
  port: number,
  key: string,
  signal: AbortSignal | undefined,
): Promise<Http1Connection> {
  const conn = await Deno.connect(
    signal === undefined ? { hostname, port } : { hostname, port, signal },
  );
  conn.setNoDelay(true);
  return new Http1Connection(conn, key);
}
