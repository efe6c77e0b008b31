/**
 * The `http1` upstream: a lean HTTP/1.1 client over `Deno.connect` with the shape of `fetch`,
 * for plain-`http:` backends. Unlike `fetch` it sends exactly the header list it is given (no
 * `user-agent`, `accept` or `accept-language` of its own, and `host` as given), adding only the
 * body framing. Failures reject as `fetch` does, `TypeError("fetch failed")` with a cause whose
 * message names the stage, so the proxy's classification works for both: a connect failure's
 * cause reads `client error (Connect): ...`.
 *
 * @module
 */
import { DeadlineQueue } from "../shared/deadlines.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { type Http1Connection, openConnection } from "./http1_connection.ts";
import { Exchange, isBodySourceError } from "./http1_exchange.ts";
import { ConnectionPool } from "./http1_pool.ts";
import { type BodyFraming, encodeRequestHead } from "./http1_request.ts";
import { errorText } from "../shared/error_text.ts";
import type { ProxySettings } from "../config/settings.ts";

/**
 * Options for {@linkcode createHttp1Client}, as `settings.ts` declares them:
 * `proxy.maxIdlePerHost` and `proxy.keepAliveTimeoutMs` bound the pool; opening a connection
 * may take `proxy.connectTimeoutMs` (0 leaves it to the operating system), then the request
 * fails as a connect failure whose cause is a `Deno.errors.TimedOut`.
 */
export interface Http1ClientOptions
  extends Pick<ProxySettings, "maxIdlePerHost" | "keepAliveTimeoutMs" | "connectTimeoutMs"> {
  /** Runs the idle and connect timeouts. Default: the system clock. */
  readonly clock?: Clock;
}

/** A `fetch` for `http:` backends and the pool behind it. */
export interface Http1Client extends Disposable {
  /**
   * Sends one request, as `fetch` does with `redirect: "manual"`: resolves with the response
   * once its head has arrived, its body streaming. Takes a URL (string or `URL`, `http:` only)
   * and `method`, `headers`, `body` (bytes, string or stream) and `signal` from `init`; other
   * `init` fields are ignored.
   */
  readonly fetch: typeof fetch;
  /** Closes the idle connections; requests in flight finish, later ones reject. Idempotent. */
  close(): void;
  /** Idle connections held, per backend `host:port` or in all. */
  idleCount(key?: string): number;
}

/** Methods `fetch` upper-cases when given in another case (Fetch standard, "normalize"). */
const NORMALIZED_METHODS: ReadonlySet<string> = new Set([
  "DELETE",
  "GET",
  "HEAD",
  "OPTIONS",
  "POST",
  "PUT",
]);
const encoder = new TextEncoder();

/**
 * Creates an HTTP/1.1 client with a keep-alive pool per backend. A connection is reused only
 * after its response was read to the end without `Connection: close`; a reused connection the
 * backend turns out to have closed before answering (the keep-alive race) is replaced by a
 * fresh one and the request sent once more, unless its body is a stream already consumed.
 *
 * @param options Pool bounds and clock.
 * @returns The client; close it on shutdown.
 */
export function createHttp1Client(options: Http1ClientOptions): Http1Client {
  const pool = new ConnectionPool(options);
  const release = (conn: Http1Connection) => pool.put(conn);
  const connectTimeoutMs = options.connectTimeoutMs;
  // One timer for every connect in progress (connects are rarer than requests: pooled
  // connections skip them).
  const clock = options.clock ?? systemClock;
  const connectDeadlines = connectTimeoutMs > 0 ? new DeadlineQueue({ clock }) : undefined;
  const connectTimeout = connectDeadlines === undefined
    ? undefined
    : { deadlines: connectDeadlines, timeoutMs: connectTimeoutMs, clock };

  const fetchHttp1 = async (
    input: RequestInfo | URL,
    init: RequestInit = {},
  ): Promise<Response> => {
    if (input instanceof Request) {
      throw new TypeError("Invalid input: the http1 upstream takes a URL, not a Request");
    }
    const url = input instanceof URL ? input : new URL(input);
    if (url.protocol !== "http:") {
      throw new TypeError(`Invalid URL "${url.href}": the http1 upstream speaks http: only`);
    }
    const signal = init.signal ?? undefined;
    signal?.throwIfAborted();
    if (pool.isClosed) throw fetchFailed("client is closed");
    const method = normalizeMethod(init.method ?? "GET");
    const body = toBody(init.body);
    const framing: BodyFraming = body === null
      ? { kind: "none" }
      : body instanceof Uint8Array
      ? { kind: "length", bytes: body.length }
      : { kind: "chunked" };
    const { bytes: head, isClose } = encodeRequestHead(
      method,
      url,
      headerEntries(init.headers),
      framing,
    );
    const request = { head, body, isHead: method === "HEAD", isClose, signal };
    const key = url.host;
    // URL keeps IPv6 literals bracketed; Deno.connect wants the bare address.
    const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const port = url.port === "" ? 80 : Number(url.port);

    let pooled = pool.take(key);
    for (;;) {
      const conn = pooled ?? await connect(hostname, port, key, signal, connectTimeout);
      const exchange = new Exchange(conn, request, release);
      try {
        return await exchange.run();
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        // The keep-alive race (RFC 9112 §9.3.1): a pooled connection the backend closed while
        // idle fails before any response byte. Sending again is safe only if the backend never
        // saw the request, which no byte back suggests, and possible only if the body is still
        // in hand; Deno's fetch makes the same call.
        const isStale = pooled !== undefined && exchange.receivedBytes === 0 &&
          !(body instanceof ReadableStream) && isClosedByPeer(error);
        if (!isStale) throw toFetchError(error);
        pooled = undefined;
      }
    }
  };

  return {
    fetch: fetchHttp1,
    close: () => {
      pool.close();
      connectDeadlines?.clear();
    },
    idleCount: (key) => pool.idleCount(key),
    [Symbol.dispose]: () => {
      pool.close();
      connectDeadlines?.clear();
    },
  };
}

/** The connect timeout: the client's deadline queue and how long a connect may take. */
interface ConnectTimeout {
  readonly deadlines: DeadlineQueue;
  readonly timeoutMs: number;
  /** The deadlines' clock. */
  readonly clock: Clock;
}

const CONNECT_TIMED_OUT = new DOMException("Connect timed out", "TimeoutError");

function abortConnect(controller: AbortController): void {
  controller.abort(CONNECT_TIMED_OUT);
}

/**
 * Connects, rejecting as `fetch` does: the signal's reason, or a `(Connect)` failure (one
 * whose cause is a `Deno.errors.TimedOut` when the connect timeout fired).
 */
async function connect(
  hostname: string,
  port: number,
  key: string,
  signal: AbortSignal | undefined,
  timeout: ConnectTimeout | undefined,
): Promise<Http1Connection> {
  if (timeout === undefined) {
    try {
      return await openConnection(hostname, port, key, signal);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw fetchFailed(`client error (Connect): ${errorText(error)}`, error);
    }
  }
  const controller = new AbortController();
  const relay = () => controller.abort(signal?.reason);
  signal?.addEventListener("abort", relay, { once: true });
  const { deadlines, timeoutMs } = timeout;
  const deadline = deadlines.add(timeout.clock.now() + timeoutMs, abortConnect, controller);
  try {
    return await openConnection(hostname, port, key, controller.signal);
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    if (controller.signal.reason === CONNECT_TIMED_OUT) {
      const message = `connection timed out after ${timeoutMs}ms`;
      throw fetchFailed(`client error (Connect): ${message}`, new Deno.errors.TimedOut(message));
    }
    throw fetchFailed(`client error (Connect): ${errorText(error)}`, error);
  } finally {
    deadlines.cancel(deadline);
    signal?.removeEventListener("abort", relay);
  }
}

function normalizeMethod(method: string): string {
  const upper = method.toUpperCase();
  return NORMALIZED_METHODS.has(upper) ? upper : method;
}

/** The body as bytes, a stream or none; the other `BodyInit` kinds are refused. */
function toBody(
  body: BodyInit | null | undefined,
): Uint8Array | ReadableStream<Uint8Array> | null {
  if (body === null || body === undefined) return null;
  if (body instanceof Uint8Array) return body;
  if (body instanceof ReadableStream) return body;
  if (typeof body === "string") return encoder.encode(body);
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) {
    return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  }
  throw new TypeError("Invalid body: the http1 upstream takes bytes, a string or a stream");
}

function headerEntries(headers: HeadersInit | undefined): Iterable<readonly [string, string]> {
  if (headers === undefined) return [];
  if (Array.isArray(headers)) return headers as Array<[string, string]>;
  if (headers instanceof Headers) return headers;
  return Object.entries(headers);
}

function isClosedByPeer(error: unknown): boolean {
  return error instanceof Deno.errors.UnexpectedEof ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BrokenPipe;
}

/** Wraps a failure after connecting the way `fetch` reports one. */
function toFetchError(error: unknown): TypeError {
  if (isBodySourceError(error)) return fetchFailed("request body stream failed", error);
  if (error instanceof SyntaxError) return fetchFailed(`invalid response: ${error.message}`, error);
  return fetchFailed(errorText(error), error);
}

function fetchFailed(message: string, cause?: unknown): TypeError {
  return new TypeError("fetch failed", { cause: new Error(message, { cause }) });
}
