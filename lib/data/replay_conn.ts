/**
 * A connection with bytes already read from it put back in front: reads return them first, then
 * read on from the connection; everything else is the connection's own. The TLS listener reads a
 * connection's first request head itself (`tls_sniffer.ts`); a WebSocket handshake then goes on
 * over this, so the handshake reader and the tunnel see the stream from its first byte.
 *
 * @module
 */

/** A {@linkcode Deno.Conn} whose first reads return `pending`. */
export class ReplayConn implements Deno.Conn<Deno.NetAddr> {
  readonly #conn: Deno.Conn<Deno.NetAddr>;
  #pending: Uint8Array;
  #readable: ReadableStream<Uint8Array<ArrayBuffer>> | undefined;

  /**
   * @param conn The connection the bytes were read from.
   * @param pending The bytes read so far, returned before anything else.
   */
  constructor(conn: Deno.Conn<Deno.NetAddr>, pending: Uint8Array) {
    this.#conn = conn;
    this.#pending = pending;
  }

  /** The connection's local address. */
  get localAddr(): Deno.NetAddr {
    return this.#conn.localAddr;
  }

  /** The client's address. */
  get remoteAddr(): Deno.NetAddr {
    return this.#conn.remoteAddr;
  }

  /**
   * Reads the pending bytes first, then from the connection.
   *
   * @param p Where to put the bytes.
   * @returns How many were read, or `null` at the end of the stream.
   */
  read(p: Uint8Array): Promise<number | null> {
    const pending = this.#pending;
    if (pending.length === 0) return this.#conn.read(p);
    const n = Math.min(p.length, pending.length);
    p.set(pending.subarray(0, n));
    this.#pending = pending.subarray(n);
    return Promise.resolve(n);
  }

  /**
   * Writes to the connection.
   *
   * @param p The bytes.
   * @returns How many were written.
   */
  write(p: Uint8Array): Promise<number> {
    return this.#conn.write(p);
  }

  /** Closes the connection. */
  close(): void {
    this.#conn.close();
  }

  /** Shuts the connection's sending side. */
  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  /** Lets the connection keep the event loop alive. */
  ref(): void {
    this.#conn.ref();
  }

  /** Lets the event loop end while the connection is open. */
  unref(): void {
    this.#conn.unref();
  }

  /** The bytes, pending ones first, as a stream. */
  get readable(): ReadableStream<Uint8Array<ArrayBuffer>> {
    this.#readable ??= new ReadableStream<Uint8Array<ArrayBuffer>>({
      pull: async (controller) => {
        const buffer = new Uint8Array(16_384);
        const n = await this.read(buffer);
        if (n === null) controller.close();
        else controller.enqueue(buffer.subarray(0, n));
      },
    });
    return this.#readable;
  }

  /** The connection's sending side as a stream. */
  get writable(): WritableStream<Uint8Array<ArrayBufferLike>> {
    return this.#conn.writable;
  }

  /** Closes the connection. */
  [Symbol.dispose](): void {
    this.#conn[Symbol.dispose]();
  }
}
