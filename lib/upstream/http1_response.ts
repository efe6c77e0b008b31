/**
 * The responses of the `http1` upstream: ordinary `Response`s (built in this realm, so their
 * headers can be changed) that come without hop-by-hop fields and say, when the whole body
 * came with the head, how long it is.
 *
 * @module
 */

/** A response from the `http1` upstream. */
export class Http1Response extends Response {
  /**
   * The body's length in bytes when the whole body came with the head and is held as bytes
   * (then `Deno.serve` writes it directly); `undefined` when it streams.
   */
  readonly wholeBodyBytes: number | undefined;

  /**
   * @param body The body: bytes held whole, a stream, or none.
   * @param init Status, reason phrase and the header fields, hop-by-hop ones already removed.
   */
  constructor(
    body: Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array> | null,
    init: { status: number; statusText: string; headers: Array<[string, string]> },
  ) {
    super(body, init);
    this.wholeBodyBytes = body instanceof Uint8Array ? body.length : undefined;
  }
}
