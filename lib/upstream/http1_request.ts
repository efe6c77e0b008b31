/**
 * The request head the `http1` upstream writes: the request line, the caller's header list
 * exactly as given, and the body framing. Nothing else is added: no `User-Agent`, `Accept` or
 * `Accept-Language` (which `fetch` adds to every request that lacks them), so a proxy forwards
 * only what its client sent.
 *
 * @module
 */
import { isHttpToken } from "../shared/tokens.ts";

/** How the request body is framed on the wire. */
export type BodyFraming =
  /** No body. */
  | { readonly kind: "none" }
  /** A body of known length: `content-length`. */
  | { readonly kind: "length"; readonly bytes: number }
  /** A streamed body: `transfer-encoding: chunked`. */
  | { readonly kind: "chunked" };

/** The encoded head and what it asked of the connection. */
export interface EncodedHead {
  /** The head's bytes, ending with the empty line. */
  readonly bytes: Uint8Array;
  /** The header list carried `Connection: close`: the connection is not reused afterwards. */
  readonly isClose: boolean;
}

// Field values are byte strings without CR, LF or NUL (RFC 9110 §5.5); anything above U+00FF
// cannot be sent as one byte.
const FIELD_VALUE = /^[^\0\r\n\u0100-\uffff]*$/;
const NON_ASCII = /[^\0-\x7f]/;
const CLOSE_TOKEN = /(?:^|,)\s*close\s*(?:,|$)/i;
/** Methods whose requests carry a body by convention: they say `content-length: 0` for none. */
const BODY_METHODS: ReadonlySet<string> = new Set(["POST", "PUT", "PATCH"]);

/**
 * Encodes a request head: `METHOD path?query HTTP/1.1`, the header list with names and order as
 * given, `host` from the URL only when the list has none (placed first), and the framing header.
 * A `content-length` or `transfer-encoding` in the list is dropped: the framing is computed from
 * the body, as `fetch` does, so it cannot disagree with the bytes sent. A missing body is
 * `content-length: 0` for POST, PUT and PATCH and nothing for other methods (RFC 9110 §8.6).
 *
 * @param method The request method, an HTTP token.
 * @param url The target: its path and query form the request line, its host the default `host`.
 * @param headers The header fields to send, in order.
 * @param framing How the body is framed.
 * @returns The head's bytes (header values as Latin-1 bytes) and whether it asked to close.
 * @throws {TypeError} When the method or a header name is not a token, or a value holds CR, LF,
 *   NUL or a character above U+00FF.
 *
 * @example
 * ```ts
 * import { encodeRequestHead } from "./http1_request.ts";
 * const head = encodeRequestHead("GET", new URL("http://b:8080/a?q=1"), [["X-Id", "7"]], {
 *   kind: "none",
 * });
 * const text = new TextDecoder().decode(head.bytes);
 * if (text !== "GET /a?q=1 HTTP/1.1\r\nhost: b:8080\r\nX-Id: 7\r\n\r\n") throw new Error(text);
 * ```
 */
export function encodeRequestHead(
  method: string,
  url: URL,
  headers: Iterable<readonly [string, string]>,
  framing: BodyFraming,
): EncodedHead {
  if (!isHttpToken(method)) {
    throw new TypeError(`Invalid method "${method}": it must be an HTTP token`);
  }
  let fields = "";
  let hasHost = false;
  let isClose = false;
  for (const [name, value] of headers) {
    if (!isHttpToken(name)) {
      throw new TypeError(`Invalid header name "${name}": it must be an HTTP token`);
    }
    if (!FIELD_VALUE.test(value)) {
      throw new TypeError(
        `Invalid value for header "${name}": it must not hold CR, LF, NUL or non-Latin-1 text`,
      );
    }
    const lower = name.toLowerCase();
    if (lower === "content-length" || lower === "transfer-encoding") continue;
    if (lower === "host") hasHost = true;
    else if (lower === "connection" && CLOSE_TOKEN.test(value)) isClose = true;
    fields += `${name}: ${value}\r\n`;
  }
  let head = `${method} ${url.pathname}${url.search} HTTP/1.1\r\n`;
  if (!hasHost) head += `host: ${url.host}\r\n`;
  head += fields;
  if (framing.kind === "length") head += `content-length: ${framing.bytes}\r\n`;
  else if (framing.kind === "chunked") head += "transfer-encoding: chunked\r\n";
  else if (BODY_METHODS.has(method)) head += "content-length: 0\r\n";
  head += "\r\n";
  return { bytes: NON_ASCII.test(head) ? encodeLatin1(head) : encoder.encode(head), isClose };
}

const encoder = new TextEncoder();

/** One byte per character: header values are byte strings (checked to be at most U+00FF). */
function encodeLatin1(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}
