/**
 * A strict HTTP/1.1 request head parser, for the one request the listener reads itself: a
 * WebSocket handshake it tunnels (every other request is Deno's HTTP server's to parse).
 *
 * Strict means whatever two parties could read differently is refused (RFC 9112 §2.2, §3,
 * §5): lines end in CRLF, the request line is exactly `method SP target SP HTTP/1.x`, a field
 * name is a token with no space before its colon, no obsolete line folding, no control
 * characters in a value.
 *
 * @module
 */

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;

/** A parsed request head. */
export interface RequestHead {
  /** The method, as sent. */
  readonly method: string;
  /** The request target, as sent. */
  readonly target: string;
  /** `HTTP/1.1` or `HTTP/1.0`. */
  readonly version: string;
  /** The header fields in order: names lower-cased, values trimmed (bytes as Latin-1). */
  readonly headers: Array<[string, string]>;
  /** The head's length in bytes, the blank line included. */
  readonly length: number;
}

/** The outcome of {@linkcode parseRequestHead}. */
export type RequestHeadResult =
  | { readonly ok: true; readonly head: RequestHead }
  | { readonly ok: false; readonly reason: "partial" | "invalid"; readonly detail: string };

/** `tchar` of RFC 9110 §5.6.2, by byte. */
const TOKEN = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  TOKEN[c.charCodeAt(0)] = 1;
}

/**
 * Finds the end of a request head: the index after its blank line (CRLF CRLF), or -1.
 *
 * @param bytes The bytes received so far.
 * @param end How many of them are valid.
 * @returns The head's length, or -1 when no blank line has arrived yet.
 *
 * @example
 * ```ts
 * import { findHeadEnd } from "./request_head.ts";
 * const bytes = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\n\r\nrest");
 * if (findHeadEnd(bytes, bytes.length) !== 27) throw new Error();
 * ```
 */
export function findHeadEnd(bytes: Uint8Array, end: number): number {
  for (let at = bytes.indexOf(LF); at >= 0 && at < end; at = bytes.indexOf(LF, at + 1)) {
    if (at >= 3 && bytes[at - 1] === CR && bytes[at - 2] === LF && bytes[at - 3] === CR) {
      return at + 1;
    }
  }
  return -1;
}

/**
 * Parses a request head strictly.
 *
 * @param bytes The bytes received so far (the head first).
 * @param end How many of them are valid.
 * @returns The head, or why not: `partial` until the blank line arrives, `invalid` naming the
 *   rule broken.
 *
 * @example
 * ```ts
 * import { parseRequestHead } from "./request_head.ts";
 * const bytes = new TextEncoder().encode("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
 * const parsed = parseRequestHead(bytes, bytes.length);
 * if (!parsed.ok || parsed.head.headers[1]?.[1] !== "websocket") throw new Error();
 * ```
 */
export function parseRequestHead(bytes: Uint8Array, end: number): RequestHeadResult {
  const length = findHeadEnd(bytes, end);
  if (length < 0) return { ok: false, reason: "partial", detail: "no blank line yet" };
  let lineEnd = bytes.indexOf(LF);
  const line = latin1(bytes, 0, lineEnd - 1);
  if (bytes[lineEnd - 1] !== CR) return invalid("request line must end in CRLF");
  const first = line.indexOf(" ");
  const second = line.indexOf(" ", first + 1);
  if (first <= 0 || second <= first + 1 || line.indexOf(" ", second + 1) >= 0) {
    return invalid("request line must be method SP target SP version");
  }
  const method = line.slice(0, first);
  for (let i = 0; i < method.length; i++) {
    if (TOKEN[method.charCodeAt(i)] !== 1) return invalid("method is not a token");
  }
  const target = line.slice(first + 1, second);
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= SP || c >= 0x7f) return invalid("request target holds a control or non-ASCII byte");
  }
  const version = line.slice(second + 1);
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") return invalid("version must be HTTP/1.x");
  const headers: Array<[string, string]> = [];
  for (let start = lineEnd + 1; start < length - 2; start = lineEnd + 1) {
    lineEnd = bytes.indexOf(LF, start);
    if (bytes[lineEnd - 1] !== CR) return invalid("header line must end in CRLF");
    const contentEnd = lineEnd - 1;
    const c0 = bytes[start];
    if (c0 === SP || c0 === HTAB) return invalid("obsolete line folding is refused");
    let colon = start;
    while (colon < contentEnd && bytes[colon] !== COLON) {
      if (TOKEN[bytes[colon] as number] !== 1) return invalid("header name is not a token");
      colon++;
    }
    if (colon === start || colon === contentEnd) return invalid("header line has no name or colon");
    let valueStart = colon + 1;
    let valueEnd = contentEnd;
    while (valueStart < valueEnd && (bytes[valueStart] === SP || bytes[valueStart] === HTAB)) {
      valueStart++;
    }
    while (valueEnd > valueStart && (bytes[valueEnd - 1] === SP || bytes[valueEnd - 1] === HTAB)) {
      valueEnd--;
    }
    for (let i = valueStart; i < valueEnd; i++) {
      const c = bytes[i] as number;
      if ((c < SP && c !== HTAB) || c === 0x7f) return invalid("header value holds a control byte");
    }
    headers.push([
      latin1(bytes, start, colon).toLowerCase(),
      latin1(bytes, valueStart, valueEnd),
    ]);
  }
  return { ok: true, head: { method, target, version, headers, length } };
}

/**
 * Whether a head is a WebSocket opening handshake a tunnel can carry (RFC 6455 §4.1): `GET`
 * over HTTP/1.1, one `Host`, `Upgrade` naming `websocket`, `Connection` naming `upgrade`, one
 * `Sec-WebSocket-Key`, and no body (no `Content-Length` but 0, no `Transfer-Encoding`).
 *
 * @param head A parsed head.
 * @returns Whether to tunnel it.
 *
 * @example
 * ```ts
 * import { isWebSocketHandshake, parseRequestHead } from "./request_head.ts";
 * const text = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
 *   "Sec-WebSocket-Key: x\r\n\r\n";
 * const parsed = parseRequestHead(new TextEncoder().encode(text), text.length);
 * if (!parsed.ok || !isWebSocketHandshake(parsed.head)) throw new Error();
 * ```
 */
export function isWebSocketHandshake(head: RequestHead): boolean {
  if (head.method !== "GET" || head.version !== "HTTP/1.1") return false;
  let hosts = 0;
  let keys = 0;
  let isUpgrade = false;
  let isConnectionUpgrade = false;
  for (const [name, value] of head.headers) {
    switch (name) {
      case "host":
        hosts++;
        break;
      case "sec-websocket-key":
        keys++;
        break;
      case "upgrade":
        isUpgrade ||= hasToken(value, "websocket");
        break;
      case "connection":
        isConnectionUpgrade ||= hasToken(value, "upgrade");
        break;
      case "content-length":
        if (value !== "0") return false;
        break;
      case "transfer-encoding":
        return false;
    }
  }
  return hosts === 1 && keys === 1 && isUpgrade && isConnectionUpgrade;
}

/**
 * Whether the bytes so far could still begin a WebSocket handshake (`GET `), so peeking at more
 * of them is worth it.
 *
 * @param bytes The bytes received so far.
 * @param end How many of them are valid.
 * @returns `false` as soon as they cannot.
 *
 * @example
 * ```ts
 * import { canBeHandshake } from "./request_head.ts";
 * if (!canBeHandshake(new TextEncoder().encode("GE"), 2)) throw new Error();
 * if (canBeHandshake(new TextEncoder().encode("POST"), 4)) throw new Error();
 * ```
 */
export function canBeHandshake(bytes: Uint8Array, end: number): boolean {
  const n = Math.min(end, 4);
  for (let i = 0; i < n; i++) if (bytes[i] !== GET_SP[i]) return false;
  return true;
}

const GET_SP = Uint8Array.of(0x47, 0x45, 0x54, SP);

function hasToken(list: string, token: string): boolean {
  for (const item of list.split(",")) if (item.trim().toLowerCase() === token) return true;
  return false;
}

function invalid(detail: string): RequestHeadResult {
  return { ok: false, reason: "invalid", detail: `Cannot parse request head: ${detail}` };
}

function latin1(bytes: Uint8Array, start: number, end: number): string {
  let out = "";
  for (let i = start; i < end; i += 4096) {
    out += String.fromCharCode(...bytes.subarray(i, Math.min(end, i + 4096)));
  }
  return out;
}
