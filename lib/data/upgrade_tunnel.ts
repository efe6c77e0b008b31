/**
 * WebSocket as a byte tunnel, as HAProxy and nginx carry it: the client's handshake goes to the
 * backend over a TCP connection of its own, and after the backend's `101` the two connections
 * are joined, every byte passed as it came (frames, masks, pings, close codes, extensions such
 * as `permessage-deflate`: the balancer reads none of them).
 *
 * Flow control is TCP's: each direction reads a chunk only once the previous one is written, so
 * a side that stops reading stops the other side's sender (its kernel buffers fill) and the
 * balancer holds at most one chunk per direction. The running tunnel, and how a drain ends it
 * with close frames, is `byte_tunnel.ts`.
 *
 * The listener reads the handshake itself (`listener.ts`) and registers the connection in
 * {@linkcode RawUpgrades} under the `Request` it builds for the handler, so the request goes
 * through the same rules, admission and retry loop as any other; `websocket.ts` then opens the
 * backend side here and takes the client connection.
 *
 * @module
 */
import { errorText } from "../shared/error_text.ts";
import { type ResponseHead, ResponseParser } from "../shared/http1_parser.ts";
import type { Clock } from "../shared/clock.ts";
import { statusText } from "../shared/std_status.ts";
import type { OpenFailure } from "./websocket_backend.ts";

/** A client connection whose handshake the listener read, waiting for the handler's verdict. */
export interface RawClient {
  /** The client connection, read up to the end of the handshake's head. */
  readonly conn: Deno.Conn;
  /**
   * Takes the connection for a tunnel: the listener then leaves it alone until `done`.
   *
   * @param options `closesOnAbort`: the taker closes the connection itself when the listener
   * aborts it (a drain), as a tunnel does after its close frames. Default: the listener closes
   * it at once.
   * @returns Call once the tunnel has closed both connections.
   */
  take(options?: { readonly closesOnAbort?: boolean }): () => void;
}

/** The connections the listener read a handshake from, by the request it built. */
export class RawUpgrades {
  readonly #clients = new WeakMap<Request, RawClient>();
  /**
   * Whether the listener reads handshakes itself (set by the listener): then a WebSocket
   * upgrade that reaches the handler without a raw connection cannot be upgraded.
   */
  isActive = false;
  /**
   * Why the listener cannot read handshakes (set by the listener: not Linux, no `--allow-ffi`):
   * then upgrades are answered 501 saying so.
   */
  unavailable: string | undefined;

  /** @internal Registers the request the listener built from a handshake. */
  add(request: Request, client: RawClient): void {
    this.#clients.set(request, client);
  }

  /**
   * The raw connection of a request the listener read itself, if it is one.
   *
   * @param request The handler's request.
   * @returns Its connection, or `undefined` for a request Deno's server parsed.
   */
  get(request: Request): RawClient | undefined {
    return this.#clients.get(request);
  }
}

/** The backend side, once it answered the handshake. */
export interface BackendTunnel {
  /** The connection to the backend. */
  readonly conn: Deno.Conn;
  /** The backend's response head, as sent. */
  readonly head: Uint8Array;
  /** Bytes the backend sent after its head (early frames). */
  readonly early: Uint8Array;
  /** The parsed head. */
  readonly response: ResponseHead;
}

/**
 * A backend's refusal to relay as it is (a redirect, 4xx or 5xx, its own headers and body): its
 * connection, what was read of it, and the parser that knows where it ends.
 */
export interface BackendAnswer {
  readonly conn: Deno.Conn;
  /** The bytes read so far, head first. */
  readonly bytes: Uint8Array;
  /** Bytes read but not yet consumed by the parser (a partial chunk-size line). */
  readonly carry: Uint8Array;
  readonly parser: ResponseParser;
}

/** The result of {@linkcode openBackendTunnel}. */
export type TunnelOutcome =
  | { readonly ok: true; readonly tunnel: BackendTunnel }
  | ({ readonly ok: false; readonly answer?: BackendAnswer } & OpenFailure);

/** Options for {@linkcode openBackendTunnel}. */
export interface OpenTunnelOptions {
  /** The handshake's header fields (forwarding headers added, hop-by-hop ones removed). */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** How long the backend may take to connect and answer, in milliseconds. */
  readonly timeoutMs: number;
  /** Runs the timeout. */
  readonly clock: Clock;
}

const MAX_RESPONSE_HEAD_BYTES = 65_536;
const CHUNK_BYTES = 65_536;
const encoder = new TextEncoder();

/**
 * Connects to the backend, sends the handshake and reads the answer's head. Never throws. Any
 * answer but `101` is a failure (`refused`, naming the status), and its connection is closed.
 *
 * @param base The backend's base URL (`http:` or `https:`).
 * @param target The request target to send (the backend's path prefix included).
 * @param options Header fields, timeout and clock.
 * @returns The open backend side, or why not.
 */
export async function openBackendTunnel(
  base: URL,
  target: string,
  options: OpenTunnelOptions,
): Promise<TunnelOutcome> {
  const hostname = base.hostname.replace(/^\[|\]$/g, "");
  const isTls = base.protocol === "https:";
  const port = base.port === "" ? (isTls ? 443 : 80) : Number(base.port);
  const timer = new AbortController();
  let conn: Deno.Conn | undefined;
  let isTimedOut = false;
  const timeout = options.clock.sleep(options.timeoutMs, timer.signal).then(() => {
    isTimedOut = true;
    closeQuietly(conn);
  }, () => {});
  try {
    try {
      const connecting = isTls
        ? Deno.connectTls({ hostname, port })
        : Deno.connect({ hostname, port, transport: "tcp" });
      conn = await Promise.race([connecting, timeout.then(() => undefined)]);
      if (conn === undefined) {
        void connecting.then((late) => late.close(), () => {});
        return {
          ok: false,
          reason: "timeout",
          message: `No connection within ${options.timeoutMs} ms`,
        };
      }
    } catch (error) {
      return { ok: false, reason: "connect", message: messageOf(error) };
    }
    let text = `GET ${target} HTTP/1.1\r\n`;
    for (const [name, value] of options.headers) text += `${name}: ${value}\r\n`;
    text += "\r\n";
    try {
      await writeAll(conn, encoder.encode(text));
      return await readHead(conn);
    } catch (error) {
      closeQuietly(conn);
      if (isTimedOut) {
        return {
          ok: false,
          reason: "timeout",
          message: `No upgrade within ${options.timeoutMs} ms`,
        };
      }
      return { ok: false, reason: "refused", status: undefined, message: messageOf(error) };
    }
  } finally {
    timer.abort();
  }
}

/** Reads the backend's response head; closes the connection unless it is a `101`. */
async function readHead(conn: Deno.Conn): Promise<TunnelOutcome> {
  let head: ResponseHead | undefined;
  const parser = new ResponseParser({ isStrict: true, onHead: (h) => head = h });
  parser.reset(false);
  const buffer = new Uint8Array(MAX_RESPONSE_HEAD_BYTES);
  let end = 0;
  for (;;) {
    if (end === buffer.length) throw new SyntaxError("Backend response head is too long");
    const n = await conn.read(buffer.subarray(end));
    if (n === null) throw new Error("Backend closed the connection before answering");
    end += n;
    // The parser consumes nothing until the head is whole, and stops after a 101's head.
    const used = parser.feed(buffer, 0, end);
    if (head === undefined) continue;
    if (head.status !== 101) {
      const message = `Backend answered ${head.status} to the WebSocket upgrade`;
      // A 2xx (or another 1xx) is no answer to a handshake: the caller answers 502.
      if (head.status < 300) {
        conn.close();
        return { ok: false, reason: "refused", status: head.status, message };
      }
      const consumed = used + parser.feed(buffer, used, end);
      const answer = {
        conn,
        bytes: buffer.slice(0, end),
        carry: parser.isComplete ? new Uint8Array(0) : buffer.slice(consumed, end),
        parser,
      };
      return { ok: false, reason: "refused", status: head.status, message, answer };
    }
    const headEnd = used;
    return {
      ok: true,
      tunnel: {
        conn,
        head: buffer.slice(0, headEnd),
        early: buffer.slice(headEnd, end),
        response: head,
      },
    };
  }
}

/**
 * Relays a backend's refusal to the client as the backend sent it, up to the end of its body
 * (Content-Length, chunked, or the backend's close), then closes both connections. Never
 * throws; gives up after `timeoutMs` without the end.
 *
 * @param client The client connection.
 * @param answer The backend's answer, as {@linkcode openBackendTunnel} read it.
 * @param options How long the whole relay may take, and the clock that runs it.
 */
export async function relayAnswer(
  client: Deno.Conn,
  answer: BackendAnswer,
  options: { readonly timeoutMs: number; readonly clock: Clock },
): Promise<void> {
  const { conn, parser } = answer;
  const timer = new AbortController();
  void options.clock.sleep(options.timeoutMs, timer.signal).then(
    () => closeQuietly(conn),
    () => {},
  );
  try {
    await writeAll(client, answer.bytes);
    let carry = answer.carry;
    const buffer = new Uint8Array(CHUNK_BYTES);
    while (!parser.isComplete) {
      const n = await conn.read(buffer);
      if (n === null) {
        parser.end();
        break;
      }
      await writeAll(client, buffer.subarray(0, n));
      const data = carry.length === 0
        ? buffer.subarray(0, n)
        : concat(carry, buffer.subarray(0, n));
      const used = parser.feed(data, 0, data.length);
      carry = parser.isComplete ? new Uint8Array(0) : data.slice(used);
    }
  } catch {
    // Either side went away, or the answer was malformed: the client's connection closes.
  } finally {
    timer.abort();
    closeQuietly(conn);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * Sends a `Response` on a raw client connection as an HTTP/1.1 answer that closes the
 * connection (the handshake's refusals: 400, 501, 502, 503, 504). Never throws.
 *
 * @param conn The client connection.
 * @param response The handler's answer; its body is read whole (these are short).
 */
export async function writeRawResponse(conn: Deno.Conn, response: Response): Promise<void> {
  try {
    const body = new Uint8Array(await response.arrayBuffer());
    let text = `HTTP/1.1 ${response.status} ${
      response.statusText || statusText(response.status)
    }\r\n`;
    for (const [name, value] of response.headers) {
      if (name === "content-length" || name === "connection" || name === "transfer-encoding") {
        continue;
      }
      text += `${name}: ${value}\r\n`;
    }
    text += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
    const head = encoder.encode(text);
    const out = new Uint8Array(head.length + body.length);
    out.set(head);
    out.set(body, head.length);
    await writeAll(conn, out);
  } catch {
    // The client went away: nothing to tell it.
  }
}

/** Writes every byte (a `Deno.Conn` write may take fewer). */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

function closeQuietly(conn: Deno.Conn | undefined): void {
  try {
    conn?.close();
  } catch {
    // Already closed.
  }
}

function messageOf(error: unknown): string {
  return errorText(error);
}
