/**
 * One request and its response on one connection of the `http1` upstream: the request is
 * written (its body streamed, chunked, while the response is awaited, since a backend may
 * answer before reading it all), the head is parsed strictly, and the body is handed on as a
 * stream that reads the socket only as fast as its consumer reads it.
 *
 * @module
 */
import { type ResponseHead, ResponseParser } from "../shared/http1_parser.ts";
import type { Http1Connection } from "./http1_connection.ts";
import { Http1Response } from "./http1_response.ts";
import { withoutHopByHop } from "../shared/hop_by_hop.ts";
import { concatBytes } from "../shared/bytes.ts";

/** What one exchange sends. */
export interface ExchangeRequest {
  /** The encoded head, from `encodeRequestHead`. */
  readonly head: Uint8Array;
  /** The body: bytes (already framed by `content-length`), a stream (sent chunked), or none. */
  readonly body: Uint8Array | ReadableStream<Uint8Array> | null;
  /** A `HEAD` request: the response has no body whatever its headers say. */
  readonly isHead: boolean;
  /** The request said `Connection: close`: never reuse the connection. */
  readonly isClose: boolean;
  /** Aborts the exchange: before the head the response rejects, after it the body errors. */
  readonly signal: AbortSignal | undefined;
}

/** Statuses whose responses never have a body (a Response with one cannot be built). */
const NULL_BODY_STATUSES: ReadonlySet<number> = new Set([101, 204, 205, 304]);
/** A body this small is copied behind the head so both leave in one write. */
const COALESCE_BODY_BYTES = 16_384;
const CRLF = new Uint8Array([0x0d, 0x0a]);
const LAST_CHUNK = new Uint8Array([0x30, 0x0d, 0x0a, 0x0d, 0x0a]);

/** Thrown when the request body stream failed, so the failure is not the backend's. */
class BodySourceError extends Error {}

/**
 * Runs one exchange. Settles the connection's fate once both directions are done: back to the
 * pool through `release` when reusable, otherwise closed.
 */
export class Exchange {
  readonly #conn: Http1Connection;
  readonly #request: ExchangeRequest;
  readonly #release: (conn: Http1Connection) => void;
  readonly #parser: ResponseParser;
  #head: ResponseHead | undefined;
  #controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  /** Response bytes read so far: none means the backend may never have seen the request. */
  #receivedBytes = 0;
  #isRequestSent = false;
  #isSendFailed = false;
  #sourceFailure: unknown;
  #isBodyDone = false;
  #isSettled = false;
  #hasEnqueued = false;
  /** Body bytes parsed with the head, before the response was built. */
  #early: Uint8Array<ArrayBuffer>[] | undefined;

  /**
   * @param conn The connection to use; the exchange owns it from now on.
   * @param request What to send.
   * @param release Takes the connection back when it may carry another request.
   */
  constructor(
    conn: Http1Connection,
    request: ExchangeRequest,
    release: (conn: Http1Connection) => void,
  ) {
    this.#conn = conn;
    this.#request = request;
    this.#release = release;
    this.#parser = new ResponseParser({
      isStrict: true,
      onHead: (head) => {
        this.#head = head;
        // The body bytes that came in the same read as the head are kept aside: if they are
        // the whole body, the response carries them as bytes and no stream is made at all.
        this.#early = [];
      },
      onBody: (bytes) => {
        if (this.#isBodyDone) return;
        // The view points into the connection's buffer, which the next read overwrites.
        if (this.#early !== undefined) {
          this.#early.push(bytes.slice());
          return;
        }
        if (this.#controller === undefined) return;
        this.#controller.enqueue(bytes.slice());
        this.#hasEnqueued = true;
      },
    });
    this.#parser.reset(request.isHead);
  }

  /** Response bytes read so far; 0 after a failure means nothing came back at all. */
  get receivedBytes(): number {
    return this.#receivedBytes;
  }

  /**
   * Sends the request and reads the response head.
   *
   * @returns The response, its body streaming from the connection.
   * @throws The signal's reason when it aborts first; {@linkcode BodySourceError} when the
   *   request body stream fails; socket errors (`Deno.errors.UnexpectedEof` when the backend
   *   closed the connection before the head was complete); `SyntaxError` for a malformed head.
   */
  async run(): Promise<Response> {
    const signal = this.#request.signal;
    signal?.addEventListener("abort", this.#onAbort);
    try {
      this.#send().then(() => {
        this.#isRequestSent = true;
        this.#settleIfDone();
      }, (error) => {
        this.#isSendFailed = true;
        if (error instanceof BodySourceError) {
          // Our side failed: end the exchange (the pending read fails) and say why below.
          this.#sourceFailure = error.cause;
          this.#conn.close();
        }
        // A socket write failure is left to the read: the backend may have answered early.
        this.#settleIfDone();
      });
      let bodyFailure: unknown;
      while (this.#head === undefined) {
        try {
          if (!(await this.#readMore())) {
            throw new Deno.errors.UnexpectedEof(
              this.#receivedBytes === 0
                ? "connection closed before any response byte"
                : "connection closed before the response head was complete",
            );
          }
        } catch (error) {
          // Whether a bad body byte came in the head's read or the next is up to the network:
          // once the head is whole, the response stands and only its body fails.
          if (this.#head === undefined) throw error;
          bodyFailure = error;
        }
      }
      const head = this.#head;
      const early = this.#early ?? [];
      this.#early = undefined;
      if (bodyFailure === undefined && this.#parser.isComplete) {
        // The whole response came with its head (the common case for small bodies): its body
        // is handed on as bytes, which Deno.serve writes directly, with no stream to pump.
        const body = this.#hasNoBody(head.status) ? null : concatBytes(early);
        this.#isBodyDone = true;
        this.#settleIfDone();
        return this.#respond(head, body);
      }
      const body = this.#hasNoBody(head.status) ? null : this.#createBody(early);
      const response = this.#respond(head, body);
      if (bodyFailure !== undefined) {
        this.#failBody(bodyFailure);
      } else if (this.#controller === undefined) {
        // A body where none may be (a 205 with a length): nobody reads it, so drop the connection.
        this.#isBodyDone = true;
        this.#fail();
      }
      return response;
    } catch (error) {
      this.#fail();
      if (signal?.aborted) throw signal.reason;
      if (this.#sourceFailure !== undefined) {
        throw new BodySourceError("Request body stream failed", { cause: this.#sourceFailure });
      }
      throw error;
    }
  }

  /** Whether a response with `status` to this request can have no body. */
  #hasNoBody(status: number): boolean {
    return this.#request.isHead || NULL_BODY_STATUSES.has(status);
  }

  /** The body stream, starting with the bytes that came with the head. */
  #createBody(early: readonly Uint8Array<ArrayBuffer>[]): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
        for (const bytes of early) controller.enqueue(bytes);
      },
      pull: () => this.#pull(),
      cancel: () => this.#cancelBody(),
    });
  }

  #respond(
    head: ResponseHead,
    body: Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array> | null,
  ): Response {
    // The connection's own fields are this client's business, not the caller's; a 101 is
    // passed on as it came (the caller decides what to do with the switch).
    const headers = head.status === 101 ? head.headers : withoutHopByHop(head.headers);
    return new Http1Response(body, { status: head.status, statusText: head.reason, headers });
  }

  /** Reads until the body has given the stream something, or ends. */
  async #pull(): Promise<void> {
    this.#hasEnqueued = false;
    try {
      while (!this.#parser.isComplete && !this.#hasEnqueued) {
        if (!(await this.#readMore())) {
          throw new Deno.errors.UnexpectedEof("connection closed in the middle of the body");
        }
      }
      if (this.#parser.isComplete) this.#endBody();
    } catch (error) {
      this.#failBody(error);
    }
  }

  /** Errors the body stream as `fetch` does, unless it was cancelled or aborted meanwhile. */
  #failBody(error: unknown): void {
    if (this.#isBodyDone) return;
    this.#isBodyDone = true;
    this.#controller?.error(
      new TypeError("error reading a body from connection", { cause: error }),
    );
    this.#fail();
  }

  /**
   * Reads once and parses what came.
   *
   * @returns false when the backend closed the connection and that did not end the response.
   */
  async #readMore(): Promise<boolean> {
    const read = await this.#conn.fill();
    if (read === 0) return this.#parser.end();
    this.#receivedBytes += read;
    this.#conn.feed(this.#parser);
    return true;
  }

  #endBody(): void {
    if (this.#isBodyDone) return;
    this.#isBodyDone = true;
    this.#controller?.close();
    this.#settleIfDone();
  }

  #cancelBody(): void {
    this.#isBodyDone = true;
    this.#fail();
  }

  readonly #onAbort = (): void => {
    const reason = this.#request.signal?.reason;
    if (this.#head !== undefined && !this.#isBodyDone) {
      this.#isBodyDone = true;
      this.#controller?.error(reason);
    }
    this.#fail();
  };

  /** Gives the connection back once the response was read whole and the request sent whole. */
  #settleIfDone(): void {
    if (this.#isSettled || !this.#isBodyDone) return;
    if (!this.#isRequestSent && !this.#isSendFailed) {
      // A backend that answered and is closing wants no more of the body: stop sending it
      // (RFC 9112 §9.3). One that keeps the connection may still read the rest.
      if (!this.#parser.canReuseConnection) this.#fail();
      return;
    }
    const isReusable = this.#isRequestSent && this.#parser.isComplete &&
      this.#parser.canReuseConnection && !this.#request.isClose && !this.#conn.hasUnreadBytes &&
      !this.#conn.isClosed;
    this.#settle();
    if (isReusable) this.#release(this.#conn);
    else this.#conn.close();
  }

  /** Ends the exchange on failure, cancel or abort: the connection is never reused. */
  #fail(): void {
    if (this.#isSettled) return;
    this.#settle();
    this.#conn.close();
    this.#reader?.cancel(this.#request.signal?.reason).catch(() => {});
  }

  #settle(): void {
    this.#isSettled = true;
    this.#request.signal?.removeEventListener("abort", this.#onAbort);
  }

  /** Writes the head and body; a stream goes chunked (RFC 9112 §7.1). */
  async #send(): Promise<void> {
    const { head, body } = this.#request;
    if (body === null) {
      await this.#conn.write(head);
    } else if (body instanceof Uint8Array) {
      if (body.length <= COALESCE_BODY_BYTES) {
        const bytes = new Uint8Array(head.length + body.length);
        bytes.set(head);
        bytes.set(body, head.length);
        await this.#conn.write(bytes);
      } else {
        await this.#conn.write(head);
        await this.#conn.write(body);
      }
    } else {
      await this.#conn.write(head);
      const reader = body.getReader();
      this.#reader = reader;
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (error) {
          throw new BodySourceError("Request body stream failed", { cause: error });
        }
        if (chunk.done) break;
        if (chunk.value.length === 0) continue;
        await this.#conn.write(frameChunk(chunk.value));
      }
      await this.#conn.write(LAST_CHUNK);
    }
  }
}

/** One chunk with its size line and CRLF, in one buffer for one write. */
function frameChunk(data: Uint8Array): Uint8Array {
  const sizeLine = data.length.toString(16);
  const bytes = new Uint8Array(sizeLine.length + 2 + data.length + 2);
  for (let i = 0; i < sizeLine.length; i++) bytes[i] = sizeLine.charCodeAt(i);
  bytes.set(CRLF, sizeLine.length);
  bytes.set(data, sizeLine.length + 2);
  bytes.set(CRLF, sizeLine.length + 2 + data.length);
  return bytes;
}

/**
 * Whether `error` says the request body stream failed (not the backend).
 *
 * @param error What an exchange threw.
 * @returns True for a request body failure.
 */
export function isBodySourceError(error: unknown): boolean {
  return error instanceof BodySourceError;
}
