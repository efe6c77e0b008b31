/**
 * Reading a client's request body before a backend is contacted (nginx's
 * `proxy_request_buffering`, bounded): a body of up to `requestBufferBytes` is read whole, so a slow
 * uploader holds no backend connection and the request can be sent again to another backend;
 * a larger body is forwarded as a stream that starts with the bytes already read. Every read,
 * buffered or streamed, must make progress within `bodyTimeoutMs`.
 *
 * A body that fails to arrive is the client's fault, never the backend's: the client went away
 * (`client-abort`, logged as 499), it stalled (`timeout`, answered 408), or its framing broke.
 * `Deno.serve` closes a connection with broken chunked framing itself, before the handler can
 * answer (the listener reports it), so what reaches this module then is the resource closing.
 *
 * @module
 */
import type { ClientSettings, LimitsSettings, ProxySettings } from "../config/settings.ts";
import type { Deadline, DeadlineQueue } from "../shared/deadlines.ts";
import { concatBytes } from "../shared/bytes.ts";
import { errorText } from "../shared/error_text.ts";

/** Why a request body could not be read. */
export type BodyFailure =
  /** The connection closed or broke before the body ended. */
  | "client-abort"
  /** No bytes arrived within the body timeout. */
  | "timeout"
  /** The body grew past `maxBodyBytes`. */
  | "too-large";

/** A request body, ready to forward. */
export type RequestBody =
  /** No body is forwarded (none sent, or empty). */
  | { readonly kind: "none" }
  /** The whole body, in memory: it can be sent again. */
  | { readonly kind: "buffered"; readonly bytes: Uint8Array<ArrayBuffer> }
  /** The body is larger than the buffer: it streams once, starting with what was read. */
  | {
    readonly kind: "streamed";
    readonly stream: ReadableStream<Uint8Array>;
    readonly state: StreamState;
  };

/** How a streamed body is going; read after `fetch` settles to tell whose fault a failure was. */
export interface StreamState {
  /** Set when reading from the client failed mid-stream. */
  failure: BodyFailure | undefined;
  /** Whether the whole body has been handed on. */
  isComplete: boolean;
  /** Called once when the whole body has been handed on (the upload is done). */
  onComplete: (() => void) | undefined;
}

/** The outcome of {@linkcode readRequestBody}. */
export type BodyReadResult =
  | { readonly ok: true; readonly body: RequestBody }
  | { readonly ok: false; readonly failure: BodyFailure; readonly message: string };

/**
 * Options for {@linkcode readRequestBody}: the settings as `settings.ts` declares them
 * (`proxy.requestBufferBytes`: bodies up to this size are read whole before forwarding, 0
 * streams every body; `client.bodyTimeoutMs`: the longest wait for the next bytes, 0 waits
 * forever; `limits.maxBodyBytes`: a larger body fails `too-large`, 0 is no limit), and the
 * deadline queue that times the reads.
 */
export interface ReadBodyOptions
  extends
    Pick<ProxySettings, "requestBufferBytes">,
    Pick<ClientSettings, "bodyTimeoutMs">,
    Pick<LimitsSettings, "maxBodyBytes"> {
  /** Runs the idle timeouts; its clock decides when they fire. */
  readonly deadlines: DeadlineQueue;
  /** The deadlines' clock's `now`. */
  readonly now: () => number;
}

const NONE: RequestBody = { kind: "none" };
const NO_BODY_READ: BodyReadResult = { ok: true, body: NONE };
const BODY_TIMEOUT = new DOMException("Request body timed out", "TimeoutError");
const TOO_LARGE_MESSAGE = "Request body too large";

/**
 * Whether the request carries a body to forward; a `Content-Length` of 0 means none. (A `GET`
 * or `HEAD` body never gets here: see {@linkcode hasHiddenBody}.)
 *
 * @param request The client's request.
 * @returns Whether to read and forward its body.
 */
export function hasBody(request: Request): boolean {
  // The method first: a GET's body stream is then never asked for.
  const method = request.method;
  if (method === "GET" || method === "HEAD") return false;
  if (request.body === null) return false;
  return request.headers.get("content-length") !== "0";
}

/**
 * Whether a `GET` or `HEAD` request declares a body the handler cannot see: `Deno.serve` reads
 * such a body off the connection and discards it (`request.body` is `null`: a `Request` with
 * one cannot be built), and `fetch` would refuse to send one anyway. Forwarding the request
 * without it would drop it silently, so it is refused instead (nginx and HAProxy forward it).
 *
 * @param request The client's request.
 * @returns Whether the request is a GET or HEAD with a non-empty `Content-Length` or any
 *   `Transfer-Encoding`.
 *
 * @example
 * ```ts
 * import { hasHiddenBody } from "./request_body.ts";
 * const get = (headers: Record<string, string>) => new Request("http://a/", { headers });
 * if (!hasHiddenBody(get({ "content-length": "5" }))) throw new Error();
 * if (hasHiddenBody(get({ "content-length": "0" })) || hasHiddenBody(get({}))) throw new Error();
 * ```
 */
export function hasHiddenBody(request: Request): boolean {
  const method = request.method;
  if (method !== "GET" && method !== "HEAD") return false;
  const headers = request.headers;
  const length = headers.get("content-length");
  return (length !== null && length !== "0") || headers.has("transfer-encoding");
}

/**
 * Reads the request body up to `options.requestBufferBytes`, then returns it whole or as a stream.
 * A request without a body (most are GETs) is answered at once, not through a promise: the
 * hot path spends no promise and no await on it.
 *
 * @param request The client's request.
 * @param options Buffer bound and idle timeout.
 * @returns The body to forward, or why the client failed to send it (a promise when there is a
 *   body to read).
 */
export function readRequestBody(
  request: Request,
  options: ReadBodyOptions,
): BodyReadResult | Promise<BodyReadResult> {
  if (!hasBody(request) || request.body === null) return NO_BODY_READ;
  return readBody(request, options);
}

async function readBody(request: Request, options: ReadBodyOptions): Promise<BodyReadResult> {
  const body = request.body as ReadableStream<Uint8Array<ArrayBuffer>>;
  const source: Source = { reader: body.getReader(), isTimedOut: false };
  const declared = Number(request.headers.get("content-length") ?? Number.NaN);
  // A body declared larger than the buffer streams at once: buffering part of it gains little.
  const isTooLarge = declared > options.requestBufferBytes;
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  let size = 0;
  const maxBytes = options.maxBodyBytes;
  if (!isTooLarge && options.requestBufferBytes > 0) {
    for (;;) {
      const read = await readWithTimeout(source, options);
      if (!read.ok) return read;
      if (read.chunk === undefined) {
        return {
          ok: true,
          body: size === 0 ? NONE : { kind: "buffered", bytes: concatBytes(chunks) },
        };
      }
      chunks.push(read.chunk);
      size += read.chunk.byteLength;
      if (maxBytes > 0 && size > maxBytes) {
        source.reader.cancel().catch(() => {});
        return { ok: false, failure: "too-large", message: TOO_LARGE_MESSAGE };
      }
      if (size > options.requestBufferBytes) break;
    }
  }
  return { ok: true, body: streamRest(chunks, size, source, options) };
}

type TimedRead =
  | { readonly ok: true; readonly chunk: Uint8Array<ArrayBuffer> | undefined }
  | { readonly ok: false; readonly failure: BodyFailure; readonly message: string };

async function readWithTimeout(source: Source, options: ReadBodyOptions): Promise<TimedRead> {
  let deadline: Deadline | undefined;
  if (options.bodyTimeoutMs > 0) {
    deadline = options.deadlines.add(
      options.now() + options.bodyTimeoutMs,
      cancelForTimeout,
      source,
    );
  }
  try {
    const { done, value } = await source.reader.read();
    if (source.isTimedOut) return TIMED_OUT_READ;
    return { ok: true, chunk: done ? undefined : value };
  } catch (error) {
    if (source.isTimedOut) return TIMED_OUT_READ;
    return { ok: false, failure: "client-abort", message: messageOf(error) };
  } finally {
    if (deadline !== undefined) options.deadlines.cancel(deadline);
  }
}

const TIMED_OUT_READ: TimedRead = { ok: false, failure: "timeout", message: BODY_TIMEOUT.message };

/** The client's body reader, and whether its idle timeout fired. */
interface Source {
  readonly reader: ReadableStreamDefaultReader<Uint8Array<ArrayBuffer>>;
  /** Set by the timeout: cancelling the reader resolves its pending read as done. */
  isTimedOut: boolean;
}

function cancelForTimeout(source: Source): void {
  source.isTimedOut = true;
  source.reader.cancel(BODY_TIMEOUT).catch(() => {});
}

/**
 * A stream of the bytes already read (`size` of them) followed by the rest of the client's
 * body, erroring `too-large` when the whole passes `options.maxBodyBytes`.
 */
function streamRest(
  chunks: Uint8Array<ArrayBuffer>[],
  size: number,
  source: Source,
  options: ReadBodyOptions,
): RequestBody {
  const state: StreamState = { failure: undefined, isComplete: false, onComplete: undefined };
  const maxBytes = options.maxBodyBytes;
  let total = size;
  let index = 0;
  const complete = () => {
    state.isComplete = true;
    state.onComplete?.();
  };
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const buffered = chunks[index];
      if (buffered !== undefined) {
        chunks[index++] = EMPTY;
        controller.enqueue(buffered);
        return;
      }
      const read = await readWithTimeout(source, options);
      if (!read.ok) {
        state.failure = read.failure;
        controller.error(read.failure === "timeout" ? BODY_TIMEOUT : new Error(read.message));
        return;
      }
      if (read.chunk === undefined) {
        controller.close();
        complete();
        return;
      }
      total += read.chunk.byteLength;
      if (maxBytes > 0 && total > maxBytes) {
        state.failure = "too-large";
        source.reader.cancel().catch(() => {});
        controller.error(new RangeError(TOO_LARGE_MESSAGE));
        return;
      }
      controller.enqueue(read.chunk);
    },
    cancel(reason) {
      return source.reader.cancel(reason);
    },
  });
  return { kind: "streamed", stream, state };
}

const EMPTY = new Uint8Array(0);

function messageOf(error: unknown): string {
  return errorText(error);
}
