/**
 * The lean HTTP/1.1 client for `http:` targets: one TCP connection per {@linkcode Transport},
 * request bytes built once, one write per request and responses parsed from a reusable buffer.
 *
 * `fetch` costs several times more per request than the server under test on a small machine,
 * which would make the load generator the bottleneck; this client does the minimum a load
 * generator needs and stays correct about framing (Content-Length, chunked, read to EOF).
 * Pipelining is not used: one request is in flight per connection.
 *
 * @module
 */
import { isHttpToken } from "../lib/shared/tokens.ts";
import { MAX_TIMER_MS } from "../lib/shared/duration.ts";
import { ResponseParser } from "../lib/shared/http1_parser.ts";
import type { NetworkErrorKind, Outcome, RequestSpec, Transport } from "./transport.ts";
import { errorText } from "../lib/shared/error_text.ts";

/** The `User-Agent` sent unless the spec's headers name one. */
export const DEFAULT_USER_AGENT = "denolb-loadtest/0.1";

/**
 * Read buffer per transport: small, since a run may hold 10,000 of them, yet enough for a
 * typical head and small body in one read.
 */
const INITIAL_BUFFER_BYTES = 8_192;
/**
 * Large bodies grow the read buffer up to this size (a head may not exceed it either, see
 * `MAX_HEAD_BYTES`), so they take fewer reads; it never shrinks.
 */
const MAX_BUFFER_BYTES = 65_536;
// Field values may hold visible characters, spaces and tabs, never CR, LF or NUL (RFC 9110 §5.5).
const FIELD_VALUE = /^[^\0\r\n]*$/;
/** Headers the client computes itself, so a spec's copies would frame the body wrongly. */
const FRAMING_HEADERS = new Set(["content-length", "transfer-encoding"]);
const ABORTED: Outcome = { ok: false, error: "network", message: "aborted" };
const BUSY: Outcome = {
  ok: false,
  error: "network",
  message: "Cannot send a request while another is in flight on the same transport",
};
const CLOSED: Outcome = { ok: false, error: "network", message: "transport closed" };

/** Why the current request was cut short from outside the read/write loop. */
type Interruption = "timeout" | "aborted" | "closed";
/** An idle kept-alive connection: nothing heard, closed by the server, or sent unasked bytes. */
type IdleState = "quiet" | "closed" | "spoke";

/**
 * Encodes the request head and body a spec describes, once for a whole run.
 *
 * The head holds the request line (path and query of the URL), `Host`, `User-Agent` (unless
 * the spec's headers set them), the spec's headers in order, `Connection: close` when
 * keep-alive is off (unless a `Connection` header is given) and `Content-Length` when there is
 * a body or the method usually carries one. Spec headers named Content-Length or
 * Transfer-Encoding are dropped: the client frames the body itself.
 *
 * @param spec What to send.
 * @returns The bytes to write for every request.
 * @throws {TypeError} When the method or a header name is not an HTTP token, or a header
 *   value holds CR, LF or NUL (which would split the request).
 * @example
 * ```ts
 * import { assertEquals } from "../tests/support/assert.ts";
 * import { encodeRequest } from "./http1_transport.ts";
 *
 * const bytes = encodeRequest({
 *   url: new URL("http://127.0.0.1:8080/a?b=1"),
 *   method: "GET",
 *   headers: [["User-Agent", "probe"]],
 *   keepAlive: true,
 *   timeoutMs: 1000,
 * });
 * assertEquals(
 *   new TextDecoder().decode(bytes),
 *   "GET /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: probe\r\n\r\n",
 * );
 * ```
 */
export function encodeRequest(spec: RequestSpec): Uint8Array {
  if (!isHttpToken(spec.method)) {
    throw new TypeError(`Cannot use method "${spec.method}": it must be an HTTP token`);
  }
  const given = new Set<string>();
  const fields: string[] = [];
  for (const [name, value] of spec.headers) {
    if (!isHttpToken(name)) {
      throw new TypeError(`Cannot send header "${name}": its name must be an HTTP token`);
    }
    if (!FIELD_VALUE.test(value)) {
      throw new TypeError(`Cannot send header "${name}": its value must not hold CR, LF or NUL`);
    }
    const lower = name.toLowerCase();
    if (FRAMING_HEADERS.has(lower)) continue;
    given.add(lower);
    fields.push(`${name}: ${value}\r\n`);
  }
  let head = `${spec.method} ${spec.url.pathname}${spec.url.search} HTTP/1.1\r\n`;
  if (!given.has("host")) head += `Host: ${spec.url.host}\r\n`;
  if (!given.has("user-agent")) head += `User-Agent: ${DEFAULT_USER_AGENT}\r\n`;
  head += fields.join("");
  if (!spec.keepAlive && !given.has("connection")) head += "Connection: close\r\n";
  const body = spec.body ?? new Uint8Array(0);
  // RFC 9110 §8.6: a body needs its length; POST, PUT and PATCH send 0 rather than none.
  if (body.length > 0 || ["POST", "PUT", "PATCH"].includes(spec.method)) {
    head += `Content-Length: ${body.length}\r\n`;
  }
  head += "\r\n";
  const headBytes = new TextEncoder().encode(head);
  const bytes = new Uint8Array(headBytes.length + body.length);
  bytes.set(headBytes, 0);
  bytes.set(body, headBytes.length);
  return bytes;
}

/**
 * Creates the lean HTTP/1.1 {@linkcode Transport} for an `http:` spec.
 *
 * Keep-alive reuses one connection. When the server closed it while idle and its EOF arrived
 * before the next request was written, that request goes on a new connection and counts in
 * `resent`; a request that fails after it was written is an error, never resent. Without keep-alive every request opens and
 * closes its own connection. The timeout covers connect, write and the whole body; on timeout
 * or error the connection is closed. A `timeoutMs` of 0 or `Infinity` means no timeout.
 *
 * @param spec What to send; its URL must be `http:`.
 * @returns A transport owned by one virtual user.
 * @throws {TypeError} When the URL is not `http:`, or the method or headers are invalid (see
 *   {@linkcode encodeRequest}).
 */
export function createHttp1Transport(spec: RequestSpec): Transport {
  if (spec.url.protocol !== "http:") {
    throw new TypeError(
      `Cannot use the HTTP/1.1 client for "${spec.url.href}": protocol must be http`,
    );
  }
  return new Http1Transport(spec);
}

class Http1Transport implements Transport {
  readonly #request: Uint8Array;
  readonly #hostname: string;
  readonly #port: number;
  readonly #isKeepAlive: boolean;
  readonly #isHeadRequest: boolean;
  readonly #timeoutMs: number;
  readonly #hasTimeout: boolean;
  readonly #parser = new ResponseParser();
  #buffer = new Uint8Array(INITIAL_BUFFER_BYTES);
  #conn: Deno.TcpConn | undefined;
  #connecting: AbortController | undefined;
  /** The read started when `#conn` went idle; it carries the next response (see `#watchIdle`). */
  #idleRead: Promise<number | null> | undefined;
  /** What the idle connection did before the next request was written. */
  #idle: IdleState = "quiet";
  /** Requests moved to a new connection because the idle one had closed (see `#exchange`). */
  #resent = 0;
  #isBusy = false;
  #isClosed = false;
  #interruption: Interruption | undefined;
  /** Response bytes read for the current attempt. */
  #receivedBytes = 0;
  /** When the request in flight times out, on the `performance.now()` scale. */
  #deadline = 0;
  /** The watchdog timer, left armed between requests (see `#watch`). */
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(spec: RequestSpec) {
    this.#request = encodeRequest(spec);
    // URL keeps IPv6 literals bracketed; Deno.connect wants the bare address.
    this.#hostname = spec.url.hostname.replace(/^\[(.*)\]$/, "$1");
    this.#port = spec.url.port === "" ? 80 : Number(spec.url.port);
    this.#isKeepAlive = spec.keepAlive;
    this.#isHeadRequest = spec.method === "HEAD";
    this.#timeoutMs = spec.timeoutMs;
    this.#hasTimeout = spec.timeoutMs > 0 && spec.timeoutMs !== Infinity;
  }

  async send(signal?: AbortSignal): Promise<Outcome> {
    if (this.#isClosed) return CLOSED;
    if (this.#isBusy) return BUSY;
    if (signal?.aborted) return ABORTED;
    this.#isBusy = true;
    this.#interruption = undefined;
    if (this.#hasTimeout) {
      this.#deadline = performance.now() + this.#timeoutMs;
      this.#timer ??= this.#arm(this.#timeoutMs);
    }
    signal?.addEventListener("abort", this.#onAbort);
    try {
      const outcome = await this.#exchange();
      return this.#interruption === undefined ? outcome : this.#interrupted(this.#interruption);
    } catch (error) {
      this.#dropConnection();
      if (this.#interruption !== undefined) return this.#interrupted(this.#interruption);
      return { ok: false, error: classifyError(error), message: describeError(error) };
    } finally {
      signal?.removeEventListener("abort", this.#onAbort);
      this.#isBusy = false;
    }
  }

  get resent(): number {
    return this.#resent;
  }

  close(): Promise<void> {
    if (!this.#isClosed) {
      this.#isClosed = true;
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#interrupt("closed");
    }
    return Promise.resolve();
  }

  /**
   * The watchdog: one timer per transport instead of one per request, because creating and
   * clearing a timer costs about as much as the rest of a small request. It stays armed across
   * requests and, when it fires early for the request now in flight, re-arms for the time left.
   */
  readonly #watch = (): void => {
    this.#timer = undefined;
    if (!this.#isBusy) return;
    const leftMs = this.#deadline - performance.now();
    if (leftMs <= 0) this.#interrupt("timeout");
    else this.#timer = this.#arm(leftMs);
  };

  #arm(delayMs: number): ReturnType<typeof setTimeout> {
    const timer = setTimeout(this.#watch, Math.min(Math.ceil(delayMs), MAX_TIMER_MS));
    // An idle transport's watchdog must not keep the process alive.
    Deno.unrefTimer(timer);
    return timer;
  }

  readonly #onAbort = (): void => this.#interrupt("aborted");

  /** Ends the request in flight: closing the connection rejects its pending read or write. */
  #interrupt(reason: Interruption): void {
    this.#interruption ??= reason;
    this.#connecting?.abort();
    this.#dropConnection();
  }

  #interrupted(reason: Interruption): Outcome {
    if (reason === "aborted") return ABORTED;
    if (reason === "closed") return CLOSED;
    return {
      ok: false,
      error: "timeout",
      message: `no complete response within ${this.#timeoutMs} ms`,
    };
  }

  async #exchange(): Promise<Outcome> {
    let conn = this.#conn;
    if (conn !== undefined && this.#idle !== "quiet") {
      // The server closed the kept-alive connection while it was idle (its keep-alive timeout),
      // or spoke out of turn, and we saw it before writing a byte of this request: the request
      // goes on a new connection and reaches the server once. A connection that fails after the
      // request was written is never resent: the server may have acted on it (RFC 9110 §9.2.2
      // allows retrying only idempotent methods, and even then a load generator that retries
      // hides the very failures it is there to count).
      this.#dropConnection();
      this.#resent++;
      conn = undefined;
    }
    conn ??= await this.#connect();
    this.#receivedBytes = 0;
    await writeAll(conn, this.#request);
    await this.#readResponse(conn);
    const parser = this.#parser;
    if (this.#isKeepAlive && parser.canReuseConnection && this.#conn === conn) {
      this.#watchIdle(conn);
    } else {
      this.#dropConnection();
    }
    return { ok: true, status: parser.status, bodyBytes: parser.bodyBytes };
  }

  /**
   * Starts the read of the next response at once, so the connection's EOF (the server closing
   * it while idle) is seen before the next request is written rather than after. The same read
   * then carries the next response's first bytes, so this costs no extra read per request.
   */
  #watchIdle(conn: Deno.TcpConn): void {
    const read = conn.read(this.#buffer);
    this.#idleRead = read;
    this.#idle = "quiet";
    read.then(
      (count) => {
        if (this.#idleRead === read && !this.#isBusy) {
          this.#idle = count === null ? "closed" : "spoke";
        }
      },
      () => {
        if (this.#idleRead === read && !this.#isBusy) this.#idle = "closed";
      },
    );
  }

  async #connect(): Promise<Deno.TcpConn> {
    const connecting = new AbortController();
    this.#connecting = connecting;
    try {
      const conn = await Deno.connect({
        hostname: this.#hostname,
        port: this.#port,
        signal: connecting.signal,
      });
      if (this.#interruption !== undefined) {
        conn.close();
        throw new Deno.errors.Interrupted("connect interrupted");
      }
      conn.setNoDelay(true);
      this.#conn = conn;
      return conn;
    } finally {
      this.#connecting = undefined;
    }
  }

  /** Reads one whole response, leaving the parser complete; throws when the connection fails. */
  async #readResponse(conn: Deno.TcpConn): Promise<void> {
    const parser = this.#parser;
    parser.reset(this.#isHeadRequest);
    let buffer = this.#buffer;
    let start = 0;
    let end = 0;
    for (;;) {
      if (end === buffer.length) {
        // Only a partial head or chunk-size line is kept: make room for the rest of it.
        if (start > 0) {
          buffer.copyWithin(0, start, end);
          end -= start;
          start = 0;
        } else {
          buffer = this.#grow(end);
        }
      }
      const idleRead = this.#idleRead;
      this.#idleRead = undefined;
      const read = idleRead !== undefined
        ? await idleRead
        : await conn.read(end === 0 ? buffer : buffer.subarray(end));
      if (read === null) {
        if (parser.end()) return;
        throw new Deno.errors.UnexpectedEof(
          this.#receivedBytes === 0
            ? "connection closed before any response byte"
            : "connection closed in the middle of the response",
        );
      }
      this.#receivedBytes += read;
      end += read;
      start += parser.feed(buffer, start, end);
      if (parser.isComplete) {
        // Bytes after a complete response answer no request of ours: the connection is out of
        // step, so it is not reused.
        if (start !== end) this.#dropConnection();
        return;
      }
      if (start === end) {
        // A read that filled the whole buffer hints at a large body: fewer, larger reads.
        if (read === buffer.length && buffer.length < MAX_BUFFER_BYTES) buffer = this.#grow(0);
        start = 0;
        end = 0;
      }
    }
  }

  /** Doubles the read buffer, keeping its first `keep` bytes. */
  #grow(keep: number): Uint8Array<ArrayBuffer> {
    const grown = new Uint8Array(this.#buffer.length * 2);
    grown.set(this.#buffer.subarray(0, keep));
    this.#buffer = grown;
    return grown;
  }

  #dropConnection(): void {
    const conn = this.#conn;
    this.#conn = undefined;
    this.#idleRead = undefined;
    this.#idle = "quiet";
    if (conn === undefined) return;
    try {
      conn.close();
    } catch {
      // Already closed by the peer's reset or an earlier failure: nothing is left to release.
    }
  }
}

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  let written = await conn.write(bytes);
  while (written < bytes.length) {
    written += await conn.write(bytes.subarray(written));
  }
}

function isStaleConnectionError(error: unknown): boolean {
  return error instanceof Deno.errors.UnexpectedEof ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BrokenPipe;
}

/**
 * Maps an error from connect, write, read or parse to the runner's error kinds.
 *
 * @param error What was thrown.
 * @returns `refused`, `reset` (reset, broken pipe, aborted, or closed mid-response), or
 *   `network` for anything else (including malformed responses).
 */
export function classifyError(error: unknown): NetworkErrorKind {
  if (error instanceof Deno.errors.ConnectionRefused) return "refused";
  if (isStaleConnectionError(error)) return "reset";
  if (error instanceof Deno.errors.TimedOut) return "timeout";
  return "network";
}

function describeError(error: unknown): string {
  if (error instanceof SyntaxError) return `malformed response: ${error.message}`;
  return errorText(error);
}
