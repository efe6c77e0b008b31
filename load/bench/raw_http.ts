/**
 * A raw HTTP/1.1 client over `Deno.connect`, for tests that must see exactly what crosses the
 * wire: header names a fetch client would hide or add, and body bytes no client decoded.
 *
 * {@linkcode rawRequest} is one exchange read to the end of the connection;
 * {@linkcode RawConnection} keeps a connection open, sends bytes in pieces, reads one response
 * at a time with a timeout and tells whether the server closed. The framing helpers
 * ({@linkcode findHeadEnd}, {@linkcode parseFieldLines}, {@linkcode scanChunked}) are shared
 * with the raw backend.
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A response as read off the socket. */
export interface RawResponse {
  /** The status code from the status line. */
  readonly status: number;
  /** The status line as sent, without its line end (`HTTP/1.1 200 OK`). */
  readonly statusLine: string;
  /** Header fields in order, names lower-cased. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** The body bytes exactly as received (not de-chunked, not decoded). */
  readonly body: Uint8Array;
}

/**
 * Sends `request` (a complete HTTP/1.1 request head, and body if any) and reads until the
 * server closes the connection: include `Connection: close`.
 *
 * @param port The server's port on 127.0.0.1.
 * @param request The raw request text, with CRLF line ends.
 * @returns The parsed status line and headers and the raw body.
 * @throws {SyntaxError} When what arrived has no complete response head.
 */
export async function rawRequest(port: number, request: string): Promise<RawResponse> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(encoder.encode(request));
    const bytes = new Uint8Array(await new Response(conn.readable).arrayBuffer());
    return parseResponse(bytes);
  } finally {
    try {
      conn.close();
    } catch {
      // The readable side closes the connection when it ends.
    }
  }
}

function parseResponse(bytes: Uint8Array): RawResponse {
  const head = findHeadEnd(bytes, 0);
  if (head === undefined) throw new SyntaxError(`Cannot parse response: no end of headers`);
  return { ...parseResponseHead(bytes.subarray(0, head.contentEnd)), body: bytes.slice(head.end) };
}

/**
 * The values of one header in a raw response.
 *
 * @param response The response.
 * @param name The header name, lower case.
 * @returns Every value of that header, in order.
 */
export function headerValues(response: RawResponse, name: string): string[] {
  return response.headers.filter(([key]) => key === name).map(([, value]) => value);
}

/** Where a message head ends in a buffer. */
export interface HeadEnd {
  /** Index of the line end that closes the last header line (the head's text ends here). */
  readonly contentEnd: number;
  /** Index just past the empty line: where the body starts. */
  readonly end: number;
}

/**
 * Finds the end of a message head starting at `from`: the first empty line, ended by CRLF or
 * by a bare LF (accepted so a peer's sloppy framing is reported, not waited on forever).
 *
 * @param bytes The buffer.
 * @param from Where the head starts.
 * @returns Where it ends, or `undefined` while it is incomplete.
 *
 * @example
 * ```ts
 * import { findHeadEnd } from "./raw_http.ts";
 * const head = findHeadEnd(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\nbody"), 0);
 * if (head?.end !== 18) throw new Error("wrong head end");
 * ```
 */
export function findHeadEnd(bytes: Uint8Array, from: number): HeadEnd | undefined {
  for (let i = bytes.indexOf(10, from); i >= 0; i = bytes.indexOf(10, i + 1)) {
    // An LF that ends an empty line: preceded by the LF of the previous line, or by CR and it.
    const previous = bytes[i - 1] === 13 ? i - 2 : i - 1;
    if (previous >= from && bytes[previous] === 10) {
      return { contentEnd: bytes[previous - 1] === 13 ? previous - 1 : previous, end: i + 1 };
    }
  }
  return undefined;
}

/**
 * Splits a message head into its start line and its field lines, keeping names as sent.
 *
 * @param head The head's bytes, without the closing empty line.
 * @returns The start line and `[name, value]` pairs (value trimmed of whitespace), or the
 *   reason a field line is malformed.
 *
 * @example
 * ```ts
 * import { parseFieldLines } from "./raw_http.ts";
 * const parsed = parseFieldLines(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a"));
 * if (!parsed.ok || parsed.fields[0]?.[0] !== "Host") throw new Error("wrong fields");
 * ```
 */
export function parseFieldLines(
  head: Uint8Array,
):
  | { readonly ok: true; readonly startLine: string; readonly fields: [string, string][] }
  | { readonly ok: false; readonly reason: string } {
  const lines = decoder.decode(head).split(/\r?\n/);
  const fields: [string, string][] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) return { ok: false, reason: `field line without a name: "${line}"` };
    fields.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  return { ok: true, startLine: lines[0] ?? "", fields };
}

/** How far a chunked body goes, scanned from its first chunk-size line. */
export type ChunkedScan =
  /** The last chunk and trailer section arrived: `end` is just past them. */
  | { readonly kind: "complete"; readonly end: number; readonly body: Uint8Array }
  /** More bytes are needed. */
  | { readonly kind: "incomplete" }
  /** The framing is broken (a chunk size that is not hex, data not followed by a line end). */
  | { readonly kind: "invalid"; readonly reason: string };

/**
 * Scans a chunked body (RFC 9112 section 7.1) starting at `from`. Line ends may be CRLF or a
 * bare LF; chunk extensions are skipped; trailers are read past but not kept.
 *
 * @param bytes The buffer.
 * @param from Where the first chunk-size line starts.
 * @returns Where the body ends and its de-chunked bytes, or why not.
 *
 * @example
 * ```ts
 * import { scanChunked } from "./raw_http.ts";
 * const scan = scanChunked(new TextEncoder().encode("2\r\nok\r\n0\r\n\r\n"), 0);
 * if (scan.kind !== "complete" || scan.end !== 12) throw new Error("wrong scan");
 * ```
 */
export function scanChunked(bytes: Uint8Array, from: number): ChunkedScan {
  const parts: Uint8Array[] = [];
  let position = from;
  for (;;) {
    const lineEnd = bytes.indexOf(10, position);
    if (lineEnd < 0) return { kind: "incomplete" };
    const line = decoder.decode(bytes.subarray(position, lineEnd)).replace(/\r$/, "");
    const sizeText = (line.split(";")[0] ?? "").trim();
    if (!/^[0-9a-fA-F]{1,16}$/.test(sizeText)) {
      return { kind: "invalid", reason: `invalid chunk size "${sizeText}"` };
    }
    const size = parseInt(sizeText, 16);
    position = lineEnd + 1;
    if (size === 0) break;
    if (bytes.length < position + size + 1) return { kind: "incomplete" };
    parts.push(bytes.subarray(position, position + size));
    position += size;
    if (bytes[position] === 13) {
      if (bytes.length < position + 2) return { kind: "incomplete" };
      position++;
    }
    if (bytes[position] !== 10) return { kind: "invalid", reason: "chunk data not ended by CRLF" };
    position++;
  }
  // Trailer section: field lines up to an empty line.
  for (;;) {
    const lineEnd = bytes.indexOf(10, position);
    if (lineEnd < 0) return { kind: "incomplete" };
    const isEmpty = lineEnd === position || (lineEnd === position + 1 && bytes[position] === 13);
    position = lineEnd + 1;
    if (isEmpty) return { kind: "complete", end: position, body: concat(parts) };
  }
}

/** One response message read by {@linkcode RawConnection.readResponse}. */
export type RawReadOutcome =
  /** A whole response arrived (an interim 1xx one included). */
  | { readonly kind: "response"; readonly response: RawResponse }
  /** The server closed (or reset) the connection first; `bytes` is what arrived of it. */
  | { readonly kind: "closed"; readonly bytes: Uint8Array }
  /** Nothing complete within the timeout; `bytes` is what arrived so far. */
  | { readonly kind: "timeout"; readonly bytes: Uint8Array };

/** Options for {@linkcode RawConnection.readResponse}. */
export interface ReadResponseOptions {
  /** How long to wait for the whole response, in milliseconds. */
  readonly timeoutMs: number;
  /** The request was HEAD: the response has no body whatever its headers say. Default: false. */
  readonly isHeadRequest?: boolean;
}

/**
 * An open client connection to 127.0.0.1 that sends raw bytes and reads raw responses. A
 * reader runs from the start, so whether and when the server closed is known without reading.
 */
export class RawConnection implements AsyncDisposable {
  readonly #conn: Deno.Conn;
  #buffer: Uint8Array = new Uint8Array(0);
  /** Start of the bytes no read has returned yet. */
  #offset = 0;
  #isClosedByPeer = false;
  #isClosed = false;
  #changed: PromiseWithResolvers<void> = Promise.withResolvers();
  readonly #reading: Promise<void>;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.#reading = this.#pump();
  }

  /**
   * Connects to a port on 127.0.0.1.
   *
   * @param port The server's port.
   * @returns The open connection.
   */
  static async open(port: number): Promise<RawConnection> {
    return new RawConnection(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Whether the server closed or reset the connection. */
  get isClosedByPeer(): boolean {
    return this.#isClosedByPeer;
  }

  /** Bytes received that no read has returned yet. */
  get bufferedBytes(): number {
    return this.#buffer.length - this.#offset;
  }

  /**
   * Writes bytes (text is UTF-8 encoded) in one piece.
   *
   * @param data What to send.
   * @throws {Error} When the connection is closed or broken.
   */
  async send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    for (let written = 0; written < bytes.length;) {
      written += await this.#conn.write(bytes.subarray(written));
    }
  }

  /**
   * Reads the next response message: an interim 1xx response counts as one (`101` ends the
   * HTTP part: bytes after its head stay buffered for {@linkcode readUntilClosed}).
   *
   * @param options The timeout, and whether the request was HEAD.
   * @returns The response, or that the server closed first, or that time ran out.
   */
  async readResponse(options: ReadResponseOptions): Promise<RawReadOutcome> {
    return await this.#waitFor<RawReadOutcome>(options.timeoutMs, () => {
      const found = frameResponse(this.#buffer, this.#offset, {
        isHeadRequest: options.isHeadRequest ?? false,
        isClosed: this.#isClosedByPeer,
      });
      if (found === undefined) return undefined;
      this.#offset = found.end;
      return { kind: "response", response: found.response };
    }, (kind) => ({ kind, bytes: this.#buffer.slice(this.#offset) }));
  }

  /**
   * Reads until the server closes the connection or time runs out.
   *
   * @param timeoutMs How long to wait, in milliseconds.
   * @returns Whether the server closed, and every byte not returned by an earlier read.
   */
  async readUntilClosed(
    timeoutMs: number,
  ): Promise<{ readonly isClosed: boolean; readonly bytes: Uint8Array }> {
    const outcome = await this.#waitFor<{ readonly kind: "closed" | "timeout" }>(
      timeoutMs,
      () => this.#isClosedByPeer ? { kind: "closed" } : undefined,
      (kind) => ({ kind }),
    );
    const bytes = this.#buffer.slice(this.#offset);
    this.#offset = this.#buffer.length;
    return { isClosed: outcome.kind === "closed", bytes };
  }

  /** Closes the connection and waits for the reader to stop. Idempotent. */
  async close(): Promise<void> {
    if (!this.#isClosed) {
      this.#isClosed = true;
      try {
        this.#conn.close();
      } catch {
        // Already closed by the reader.
      }
    }
    await this.#reading;
  }

  /** Same as {@linkcode close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #pump(): Promise<void> {
    const chunk = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        this.#buffer = concat([this.#buffer, chunk.subarray(0, n)]);
        this.#notify();
      }
    } catch {
      // A reset, or our own close(): either way no more bytes come.
    }
    if (!this.#isClosed) this.#isClosedByPeer = true;
    this.#notify();
  }

  #notify(): void {
    this.#changed.resolve();
    this.#changed = Promise.withResolvers();
  }

  /** Re-tries `attempt` whenever bytes arrive or the connection ends, until it answers. */
  async #waitFor<T>(
    timeoutMs: number,
    attempt: () => T | undefined,
    otherwise: (kind: "closed" | "timeout") => T,
  ): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    try {
      for (;;) {
        const result = attempt();
        if (result !== undefined) return result;
        if (this.#isClosedByPeer || this.#isClosed) return otherwise("closed");
        const woke = await Promise.race([this.#changed.promise, expired]);
        if (woke === "timeout") return attempt() ?? otherwise("timeout");
      }
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Finds one whole response message at `from`, or `undefined` while it is incomplete. */
function frameResponse(
  bytes: Uint8Array,
  from: number,
  options: { readonly isHeadRequest: boolean; readonly isClosed: boolean },
): { readonly response: RawResponse; readonly end: number } | undefined {
  const head = findHeadEnd(bytes, from);
  if (head === undefined) return undefined;
  const parsed = parseResponseHead(bytes.subarray(from, head.contentEnd));
  const withBody = (end: number) => ({
    response: { ...parsed, body: bytes.slice(head.end, end) },
    end,
  });
  const { status } = parsed;
  if (
    options.isHeadRequest || (status >= 100 && status < 200) || status === 204 || status === 304
  ) {
    return withBody(head.end);
  }
  const header = (name: string) =>
    parsed.headers.filter(([key]) => key === name).map(([, value]) => value).join(",");
  if (/(^|,)\s*chunked\s*$/i.test(header("transfer-encoding"))) {
    const scan = scanChunked(bytes, head.end);
    if (scan.kind === "complete") return withBody(scan.end);
    return options.isClosed ? withBody(bytes.length) : undefined;
  }
  const length = header("content-length");
  if (/^\d+$/.test(length)) {
    const end = head.end + Number(length);
    if (bytes.length >= end) return withBody(end);
    return undefined;
  }
  // No framing: the body runs to the end of the connection.
  return options.isClosed ? withBody(bytes.length) : undefined;
}

function parseResponseHead(head: Uint8Array): Omit<RawResponse, "body"> {
  const lines = decoder.decode(head).split(/\r?\n/);
  const statusLine = lines[0] ?? "";
  const status = Number(statusLine.split(" ")[1]);
  const headers = lines.slice(1).map((line): readonly [string, string] => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  });
  return { status, statusLine, headers };
}

/**
 * Joins byte arrays into one.
 *
 * @param parts The arrays, in order.
 * @returns A new array holding them all.
 */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}
