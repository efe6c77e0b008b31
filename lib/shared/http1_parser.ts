/**
 * An incremental HTTP/1.1 response parser over bytes, shared by the load tester's lean client
 * and the balancer's `http1` upstream.
 *
 * By default it reads only what a load generator needs: the status, the body framing (RFC 9112
 * §6.3) and whether the connection may be reused. Header values are never decoded to strings:
 * the three headers that matter (Content-Length, Transfer-Encoding, Connection) are found by
 * comparing bytes, and body bytes are only counted. One parser is reused for every response on
 * a connection, so parsing allocates nothing.
 *
 * A proxy needs more, and asks for it through {@linkcode ResponseParserOptions}: the decoded
 * head (`onHead`), the body bytes themselves (`onBody`) and strict framing (`isStrict`), which
 * refuses every response whose length two parties could read differently.
 *
 * @module
 */

/** Largest response head (status line and header fields) the parser accepts. */
export const MAX_HEAD_BYTES = 65_536;
/** Largest chunk-size line (size and extensions) or trailer line the parser accepts. */
export const MAX_LINE_BYTES = 8_192;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
const COMMA = 0x2c;
const SEMICOLON = 0x3b;

const STATE_HEAD = 0;
const STATE_LENGTH = 1;
const STATE_CHUNK_SIZE = 2;
const STATE_CHUNK_DATA = 3;
const STATE_CHUNK_DATA_END = 4;
const STATE_TRAILERS = 5;
const STATE_UNTIL_EOF = 6;
const STATE_DONE = 7;

const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));
const CONTENT_LENGTH = ascii("content-length");
const TRANSFER_ENCODING = ascii("transfer-encoding");
const CONNECTION = ascii("connection");
const CHUNKED = ascii("chunked");
const CLOSE = ascii("close");
const KEEP_ALIVE = ascii("keep-alive");

/** A final response head, decoded for {@linkcode ResponseParserOptions.onHead}. */
export interface ResponseHead {
  /** The status code (never 1xx but 101: interim responses are skipped). */
  readonly status: number;
  /** The reason phrase, possibly empty. */
  readonly reason: string;
  /** The header fields in order, names and values as sent (values trimmed, bytes as Latin-1). */
  readonly headers: Array<[string, string]>;
}

/** What a {@linkcode ResponseParser} reports and refuses beyond framing. */
export interface ResponseParserOptions {
  /**
   * Refuse, besides what is always refused: Content-Length together with Transfer-Encoding,
   * a repeated Content-Length (even with equal values), a Transfer-Encoding other than exactly
   * `chunked`, obsolete line folding, a header name that is not a token (so no space before
   * the colon), control characters in a header value and a status outside 100-599. A proxy
   * passes the response on, so it must not guess where it ends (RFC 9112 §6.3, §11.2).
   * Default: false (the load tester counts what it can).
   */
  readonly isStrict?: boolean;
  /**
   * Called with each final head once it is whole, before any of its body is reported.
   * Default: none (the head is not decoded).
   */
  readonly onHead?: (head: ResponseHead) => void;
  /**
   * Called with each run of body bytes (chunk framing removed), a view into the fed buffer that
   * is valid only during the call. Default: none (body bytes are only counted).
   */
  readonly onBody?: (bytes: Uint8Array) => void;
}

/**
 * Parses one response at a time from byte ranges fed to it.
 *
 * The caller owns the buffer: it feeds `buf[start, end)`, advances `start` by the returned count
 * and keeps the unconsumed bytes for the next call, appending new ones after them. The parser
 * consumes nothing until a whole head (or chunk-size line) is available, so the caller must keep
 * such a partial unit contiguous; body bytes are consumed as they come.
 *
 * @example Parse a response in one piece
 * ```ts
 * import { assertEquals } from "../../tests/support/assert.ts";
 * import { ResponseParser } from "./http1_parser.ts";
 *
 * const bytes = new TextEncoder().encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
 * const parser = new ResponseParser();
 * parser.reset(false);
 * assertEquals(parser.feed(bytes, 0, bytes.length), bytes.length);
 * assertEquals([parser.isComplete, parser.status, parser.bodyBytes], [true, 200, 2]);
 * ```
 */
export class ResponseParser {
  readonly #isStrict: boolean;
  readonly #onHead: ((head: ResponseHead) => void) | undefined;
  readonly #onBody: ((bytes: Uint8Array) => void) | undefined;
  #state = STATE_DONE;
  #isHeadRequest = false;
  #status = 0;
  #bodyBytes = 0;
  #remaining = 0;
  #canReuse = false;

  /** @param options Strictness and what to report; by default lenient and silent. */
  constructor(options: ResponseParserOptions = {}) {
    this.#isStrict = options.isStrict ?? false;
    this.#onHead = options.onHead;
    this.#onBody = options.onBody;
  }

  /** The final (non-1xx) status code, or 0 before the head is parsed. */
  get status(): number {
    return this.#status;
  }

  /** Body bytes received so far (chunked framing excluded). */
  get bodyBytes(): number {
    return this.#bodyBytes;
  }

  /** Whether the whole response has been parsed. */
  get isComplete(): boolean {
    return this.#state === STATE_DONE;
  }

  /**
   * Whether the connection may carry another request after this response: false for
   * `Connection: close`, HTTP/1.0 without `Connection: keep-alive`, and bodies delimited by the
   * end of the connection.
   */
  get canReuseConnection(): boolean {
    return this.#canReuse;
  }

  /** Whether the response body runs until the server closes the connection. */
  get isReadingUntilEof(): boolean {
    return this.#state === STATE_UNTIL_EOF;
  }

  /**
   * Prepares for the next response.
   *
   * @param isHeadRequest The request was `HEAD`, so the response has no body whatever its
   *   headers say (RFC 9110 §9.3.2).
   */
  reset(isHeadRequest: boolean): void {
    this.#state = STATE_HEAD;
    this.#isHeadRequest = isHeadRequest;
    this.#status = 0;
    this.#bodyBytes = 0;
    this.#remaining = 0;
    this.#canReuse = false;
  }

  /**
   * Consumes as much of `buf[start, end)` as it can.
   *
   * @param buf The buffer holding the bytes.
   * @param start Index of the first unconsumed byte.
   * @param end Index after the last available byte.
   * @returns How many bytes were consumed. Fewer than `end - start` means either the response
   *   is complete (the rest belongs to no request) or a head or line is still partial.
   * @throws {SyntaxError} When the response is malformed or a head or line is too long.
   */
  feed(buf: Uint8Array, start: number, end: number): number {
    let at = start;
    while (at < end) {
      switch (this.#state) {
        case STATE_HEAD: {
          const used = this.#parseHead(buf, at, end);
          if (used === 0) return at - start;
          at += used;
          break;
        }
        case STATE_LENGTH:
          at += this.#takeBody(buf, at, end, STATE_DONE);
          break;
        case STATE_CHUNK_SIZE: {
          const used = this.#parseChunkSize(buf, at, end);
          if (used === 0) return at - start;
          at += used;
          break;
        }
        case STATE_CHUNK_DATA:
          at += this.#takeBody(buf, at, end, STATE_CHUNK_DATA_END);
          break;
        case STATE_CHUNK_DATA_END: {
          // Chunk data ends with CRLF (or a bare LF); a lone CR waits for the next byte.
          const first = buf[at];
          if (first === LF) {
            at += 1;
          } else if (first === CR && at + 1 < end && buf[at + 1] === LF) {
            at += 2;
          } else if (first === CR && at + 1 === end) {
            return at - start;
          } else {
            throw new SyntaxError("Cannot parse chunked body: chunk data must end with CRLF");
          }
          this.#state = STATE_CHUNK_SIZE;
          break;
        }
        case STATE_TRAILERS: {
          const lineEnd = findLineEnd(buf, at, end, MAX_LINE_BYTES);
          if (lineEnd < 0) return at - start;
          // Trailer fields are skipped; the empty line ends the message (RFC 9112 §7.1.2).
          if (lineEnd === at || (lineEnd === at + 1 && buf[at] === CR)) this.#state = STATE_DONE;
          at = lineEnd + 1;
          break;
        }
        case STATE_UNTIL_EOF:
          this.#bodyBytes += end - at;
          this.#onBody?.(buf.subarray(at, end));
          at = end;
          break;
        default:
          return at - start;
      }
    }
    return at - start;
  }

  /**
   * Tells the parser the server closed the connection.
   *
   * @returns Whether that completes the response (a body delimited by the end of the
   *   connection); otherwise the response was cut short.
   */
  end(): boolean {
    if (this.#state === STATE_UNTIL_EOF) this.#state = STATE_DONE;
    return this.#state === STATE_DONE;
  }

  /**
   * Takes up to the bytes in `buf[at, end)` of the body part still owed (a Content-Length body
   * or one chunk's data), moving to `next` once it is complete.
   *
   * @returns How many bytes were taken.
   */
  #takeBody(buf: Uint8Array, at: number, end: number, next: number): number {
    const take = Math.min(this.#remaining, end - at);
    this.#bodyBytes += take;
    if (take > 0) this.#onBody?.(buf.subarray(at, at + take));
    this.#remaining -= take;
    if (this.#remaining === 0) this.#state = next;
    return take;
  }

  /** Parses one head if it is complete; returns the bytes used, or 0 when it is partial. */
  #parseHead(buf: Uint8Array, start: number, end: number): number {
    // One pass: the head is re-read from its start when more bytes arrive, which is rare.
    const limit = Math.min(end, start + MAX_HEAD_BYTES);
    let lineEnd = indexOfByte(buf, LF, start, limit);
    if (lineEnd < 0) return partialHead(start, end);
    const statusEnd = trimCr(buf, start, lineEnd);
    const minorVersion = parseStatusLine(buf, start, statusEnd);
    const status = (buf[start + 9] ?? 0) * 100 + (buf[start + 10] ?? 0) * 10 +
      (buf[start + 11] ?? 0) - 0x30 * 111;

    const isStrict = this.#isStrict;
    // Fields are decoded only for onHead, once the head proves whole: their offsets are kept
    // meanwhile, four per field (name start and end, value start and end).
    const offsets: number[] | undefined = this.#onHead === undefined ? undefined : [];
    if (isStrict && (status < 100 || status > 599)) {
      throw new SyntaxError(`Cannot parse status line: status ${status} is outside 100-599`);
    }
    let contentLength = -1;
    let hasTransferEncoding = false;
    let isChunked = false;
    let hasClose = false;
    let hasKeepAlive = false;
    let lineStart = lineEnd + 1;
    for (;;) {
      lineEnd = indexOfByte(buf, LF, lineStart, limit);
      if (lineEnd < 0) return partialHead(start, end);
      const contentEnd = trimCr(buf, lineStart, lineEnd);
      if (contentEnd === lineStart) break;
      const colon = indexOfByte(buf, COLON, lineStart, contentEnd);
      const first = buf[lineStart];
      // A line starting with whitespace is an obsolete folded continuation (RFC 9112 §5.2): it
      // cannot name one of the headers we read, so it is skipped like any other field, unless
      // strict: a proxy would pass the field on cut in two.
      if (isStrict && (first === SP || first === HTAB)) {
        throw new SyntaxError("Cannot parse response head: obsolete line folding is refused");
      }
      if (colon < 0) {
        if (first !== SP && first !== HTAB) {
          throw new SyntaxError("Cannot parse response head: header line has no colon");
        }
      } else {
        const nameLength = colon - lineStart;
        const valueStart = skipSpaces(buf, colon + 1, contentEnd);
        const valueEnd = trimSpacesEnd(buf, valueStart, contentEnd);
        if (isStrict) checkField(buf, lineStart, colon, valueStart, valueEnd);
        offsets?.push(lineStart, colon, valueStart, valueEnd);
        if (nameLength === 14 && equalsLower(buf, lineStart, CONTENT_LENGTH)) {
          if (isStrict && contentLength >= 0) {
            throw new SyntaxError("Cannot parse response head: Content-Length is repeated");
          }
          const value = parseContentLength(buf, valueStart, valueEnd, isStrict);
          if (contentLength >= 0 && contentLength !== value) {
            throw new SyntaxError("Cannot parse response head: Content-Length values differ");
          }
          contentLength = value;
        } else if (nameLength === 17 && equalsLower(buf, lineStart, TRANSFER_ENCODING)) {
          // Several fields form one list; only the final coding decides the framing. A proxy
          // cannot apply any other coding, so strict parsing accepts `chunked` alone.
          if (
            isStrict && (hasTransferEncoding || valueEnd - valueStart !== CHUNKED.length ||
              !equalsLower(buf, valueStart, CHUNKED))
          ) {
            throw new SyntaxError("Cannot parse response head: Transfer-Encoding must be chunked");
          }
          hasTransferEncoding = true;
          isChunked = lastTokenEquals(buf, valueStart, valueEnd, CHUNKED);
        } else if (nameLength === 10 && equalsLower(buf, lineStart, CONNECTION)) {
          hasClose ||= hasToken(buf, valueStart, valueEnd, CLOSE);
          hasKeepAlive ||= hasToken(buf, valueStart, valueEnd, KEEP_ALIVE);
        }
      }
      lineStart = lineEnd + 1;
    }
    const used = lineEnd + 1 - start;

    // Interim responses precede the real one (RFC 9110 §15.2); 101 would switch protocols,
    // which a load generator never asks for, so it ends the exchange like a final response.
    if (status >= 100 && status < 200 && status !== 101) return used;

    if (isStrict && hasTransferEncoding) {
      if (contentLength >= 0) {
        throw new SyntaxError(
          "Cannot parse response head: Content-Length and Transfer-Encoding are both present",
        );
      }
    }
    this.#status = status;
    this.#canReuse = !hasClose && (minorVersion === 1 || hasKeepAlive) && status !== 101;
    if (this.#isHeadRequest || status === 204 || status === 304 || status === 101) {
      this.#state = STATE_DONE;
    } else if (hasTransferEncoding) {
      // With both Transfer-Encoding and Content-Length, the former wins and the connection must
      // not be reused (RFC 9112 §6.3 item 3); a final coding other than chunked runs to EOF.
      if (contentLength >= 0) this.#canReuse = false;
      if (isChunked) {
        this.#state = STATE_CHUNK_SIZE;
      } else {
        this.#state = STATE_UNTIL_EOF;
        this.#canReuse = false;
      }
    } else if (contentLength > 0) {
      this.#remaining = contentLength;
      this.#state = STATE_LENGTH;
    } else if (contentLength === 0) {
      this.#state = STATE_DONE;
    } else {
      this.#state = STATE_UNTIL_EOF;
      this.#canReuse = false;
    }
    if (offsets !== undefined) {
      // One decoding of the whole head, then slices: a byte is one character either way.
      const text = latin1(buf, start, lineEnd);
      const fields: Array<[string, string]> = [];
      for (let i = 0; i < offsets.length; i += 4) {
        fields.push([
          text.slice((offsets[i] as number) - start, (offsets[i + 1] as number) - start),
          text.slice((offsets[i + 2] as number) - start, (offsets[i + 3] as number) - start),
        ]);
      }
      const reason = text.slice(Math.min(13, statusEnd - start), statusEnd - start);
      this.#onHead?.({ status, reason, headers: fields });
    }
    return used;
  }

  /** Parses one chunk-size line if complete; returns the bytes used, or 0 when partial. */
  #parseChunkSize(buf: Uint8Array, start: number, end: number): number {
    const lineEnd = findLineEnd(buf, start, end, MAX_LINE_BYTES);
    if (lineEnd < 0) return 0;
    const contentEnd = trimCr(buf, start, lineEnd);
    let size = 0;
    let at = start;
    for (; at < contentEnd; at++) {
      const digit = hexValue(buf[at] ?? 0);
      if (digit < 0) break;
      if (at - start >= 12) {
        throw new SyntaxError("Cannot parse chunked body: chunk size exceeds 12 hex digits");
      }
      size = size * 16 + digit;
    }
    if (at === start) throw new SyntaxError("Cannot parse chunked body: chunk size is not hex");
    // Chunk extensions (`;name=value`, RFC 9112 §7.1.1) carry nothing we need.
    at = skipSpaces(buf, at, contentEnd);
    if (at < contentEnd && buf[at] !== SEMICOLON) {
      throw new SyntaxError("Cannot parse chunked body: junk after the chunk size");
    }
    if (size === 0) {
      this.#state = STATE_TRAILERS;
    } else {
      this.#remaining = size;
      this.#state = STATE_CHUNK_DATA;
    }
    return lineEnd + 1 - start;
  }
}

/**
 * Finds the LF that ends a line starting at `start`, or -1 when none is within `end`.
 *
 * @throws {SyntaxError} When no LF appears within `maxBytes`.
 */
function findLineEnd(buf: Uint8Array, start: number, end: number, maxBytes: number): number {
  const at = indexOfByte(buf, LF, start, Math.min(end, start + maxBytes));
  if (at >= 0) return at;
  if (end - start >= maxBytes) {
    throw new SyntaxError(`Cannot parse response: line exceeds ${maxBytes} bytes`);
  }
  return -1;
}

/** Finds `byte` in `buf[start, end)`, or -1 (unlike `indexOf`, never scans past `end`). */
function indexOfByte(buf: Uint8Array, byte: number, start: number, end: number): number {
  for (let at = start; at < end; at++) {
    if (buf[at] === byte) return at;
  }
  return -1;
}

/**
 * Returns 0 (nothing consumed) for a head still arriving.
 *
 * @throws {SyntaxError} When it already exceeds {@linkcode MAX_HEAD_BYTES}.
 */
function partialHead(start: number, end: number): number {
  if (end - start >= MAX_HEAD_BYTES) {
    throw new SyntaxError(`Cannot parse response head: it exceeds ${MAX_HEAD_BYTES} bytes`);
  }
  return 0;
}

/** Returns the end of a line's content: `lineEnd` minus a CR before it. */
function trimCr(buf: Uint8Array, start: number, lineEnd: number): number {
  return lineEnd > start && buf[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd;
}

/** Validates `HTTP/1.x SSS[ reason]` and returns the minor version. */
function parseStatusLine(buf: Uint8Array, start: number, end: number): number {
  const isValid = end - start >= 12 &&
    buf[start] === 0x48 && buf[start + 1] === 0x54 && buf[start + 2] === 0x54 &&
    buf[start + 3] === 0x50 && buf[start + 4] === 0x2f && buf[start + 5] === 0x31 &&
    buf[start + 6] === 0x2e && isDigit(buf[start + 7]) && buf[start + 8] === SP &&
    isDigit(buf[start + 9]) && isDigit(buf[start + 10]) && isDigit(buf[start + 11]) &&
    (end - start === 12 || buf[start + 12] === SP);
  if (!isValid) {
    const shown = String.fromCharCode(...buf.subarray(start, Math.min(end, start + 40)));
    throw new SyntaxError(
      `Cannot parse status line "${shown}": it must look like "HTTP/1.1 200 OK"`,
    );
  }
  return (buf[start + 7] ?? 0x30) - 0x30;
}

/**
 * Checks a field for strict parsing: the name is a token (RFC 9110 §5.1, so no whitespace
 * before the colon) and the value holds no control character but HTAB (§5.5).
 *
 * @throws {SyntaxError} When either rule is broken.
 */
function checkField(
  buf: Uint8Array,
  nameStart: number,
  nameEnd: number,
  valueStart: number,
  valueEnd: number,
): void {
  if (nameEnd === nameStart) {
    throw new SyntaxError("Cannot parse response head: header name is empty");
  }
  for (let at = nameStart; at < nameEnd; at++) {
    if (TOKEN[buf[at] ?? 0] !== 1) {
      const name = latin1(buf, nameStart, Math.min(nameEnd, nameStart + 40));
      throw new SyntaxError(`Cannot parse response head: header name "${name}" is not a token`);
    }
  }
  for (let at = valueStart; at < valueEnd; at++) {
    const byte = buf[at] ?? 0;
    if ((byte < SP && byte !== HTAB) || byte === 0x7f) {
      throw new SyntaxError(
        "Cannot parse response head: header value holds a control character",
      );
    }
  }
}

/** 1 for the bytes allowed in a token (RFC 9110 §5.6.2), else 0. */
const TOKEN: Uint8Array = (() => {
  const table = new Uint8Array(256);
  for (const c of "!#$%&'*+-.^_`|~0123456789") table[c.charCodeAt(0)] = 1;
  for (let c = 0x41; c <= 0x5a; c++) table[c] = table[c + 0x20] = 1;
  return table;
})();

/** Decodes `buf[start, end)` one byte to one character, as header values are byte strings. */
function latin1(buf: Uint8Array, start: number, end: number): string {
  let text = "";
  // Slices keep the argument count of String.fromCharCode small.
  for (let at = start; at < end; at += 4096) {
    const slice = buf.subarray(at, Math.min(end, at + 4096)) as unknown as number[];
    text += String.fromCharCode.apply(null, slice);
  }
  return text;
}

function isDigit(byte: number | undefined): boolean {
  return byte !== undefined && byte >= 0x30 && byte <= 0x39;
}

function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  const lower = byte | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

function toLower(byte: number): number {
  return byte >= 0x41 && byte <= 0x5a ? byte + 0x20 : byte;
}

/** Whether `buf` at `start` equals the lower-case `name`, ignoring ASCII case. */
function equalsLower(buf: Uint8Array, start: number, name: Uint8Array): boolean {
  for (let i = 0; i < name.length; i++) {
    if (toLower(buf[start + i] ?? 0) !== name[i]) return false;
  }
  return true;
}

function skipSpaces(buf: Uint8Array, start: number, end: number): number {
  let at = start;
  while (at < end && (buf[at] === SP || buf[at] === HTAB)) at++;
  return at;
}

function trimSpacesEnd(buf: Uint8Array, start: number, end: number): number {
  let at = end;
  while (at > start && (buf[at - 1] === SP || buf[at - 1] === HTAB)) at--;
  return at;
}

/**
 * Parses a Content-Length value; a list of identical values is accepted (RFC 9110 §8.6) unless
 * `isStrict`.
 *
 * @throws {SyntaxError} When it is not a decimal number or the listed values differ.
 */
function parseContentLength(
  buf: Uint8Array,
  start: number,
  end: number,
  isStrict: boolean,
): number {
  let result = -1;
  let at = start;
  while (at < end) {
    at = skipSpaces(buf, at, end);
    let value = 0;
    const digitsStart = at;
    while (at < end && isDigit(buf[at])) {
      value = value * 10 + (buf[at] ?? 0) - 0x30;
      at++;
    }
    if (at === digitsStart || at - digitsStart > 15) {
      throw new SyntaxError("Cannot parse response head: Content-Length must be a decimal number");
    }
    if (result >= 0 && (isStrict || result !== value)) {
      throw new SyntaxError(
        isStrict
          ? "Cannot parse response head: Content-Length is repeated"
          : "Cannot parse response head: Content-Length values differ",
      );
    }
    result = value;
    at = skipSpaces(buf, at, end);
    if (at < end) {
      if (buf[at] !== COMMA) {
        throw new SyntaxError(
          "Cannot parse response head: Content-Length must be a decimal number",
        );
      }
      at++;
    }
  }
  if (result < 0) {
    throw new SyntaxError("Cannot parse response head: Content-Length must be a decimal number");
  }
  return result;
}

/** Whether the comma-separated list in `buf[start, end)` holds `token`, ignoring case. */
function hasToken(buf: Uint8Array, start: number, end: number, token: Uint8Array): boolean {
  let at = start;
  while (at < end) {
    const tokenStart = skipSpaces(buf, at, end);
    let tokenEnd = indexOfByte(buf, COMMA, tokenStart, end);
    if (tokenEnd < 0) tokenEnd = end;
    const trimmedEnd = trimSpacesEnd(buf, tokenStart, tokenEnd);
    if (trimmedEnd - tokenStart === token.length && equalsLower(buf, tokenStart, token)) {
      return true;
    }
    at = tokenEnd + 1;
  }
  return false;
}

/** Whether the last element of the list in `buf[start, end)` is `token` (parameters ignored). */
function lastTokenEquals(buf: Uint8Array, start: number, end: number, token: Uint8Array): boolean {
  let tokenStart = start;
  for (let at = end - 1; at >= start; at--) {
    if (buf[at] === COMMA) {
      tokenStart = at + 1;
      break;
    }
  }
  tokenStart = skipSpaces(buf, tokenStart, end);
  let tokenEnd = indexOfByte(buf, SEMICOLON, tokenStart, end);
  if (tokenEnd < 0) tokenEnd = end;
  tokenEnd = trimSpacesEnd(buf, tokenStart, tokenEnd);
  return tokenEnd - tokenStart === token.length && equalsLower(buf, tokenStart, token);
}
