/**
 * Forwarding one client request to one backend with `fetch`: the upstream URL, the
 * response-header timeout and the classification of failures. The header rules in both
 * directions (and why backends are always asked for `identity` encoding) live in
 * `proxy_headers.ts`.
 *
 * Large bodies stream in both directions: the client's body is handed to `fetch` as a stream
 * (beyond the request buffer) and the backend's body is handed back to `Deno.serve` as a stream
 * through the handler's relay, so neither sits in memory. A response body of up to 64 KiB with
 * a `Content-Length` is read whole before answering (see `HELD_BODY_BYTES`).
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import { isFdExhaustion } from "../shared/fd_exhaustion.ts";
import type { BodyFailure, RequestBody } from "./request_body.ts";
import type { AcceptedTarget } from "./request_target.ts";
import { IDLE_BODY_TIMEOUT, type IdleBodyWatch, watchIdleBody } from "./idle_body.ts";
import { type Deadline, DeadlineQueue } from "../shared/deadlines.ts";
import { removeHopByHop, upstreamRequestHeaders } from "./proxy_headers.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { Http1Response } from "../upstream/http1_response.ts";

export type { ForwardFailureReason } from "../core/forward_failure.ts";
import type { ForwardFailureReason } from "../core/forward_failure.ts";
import type { ProxySettings } from "../config/settings.ts";

/** The result of {@linkcode forward}. */
export type ForwardOutcome =
  | {
    readonly ok: true;
    /** The response for the client: backend status, filtered headers, streamed body. */
    readonly response: Response;
    /** Milliseconds from sending the request to receiving the backend's response headers. */
    readonly headersMs: number;
    /**
     * The body's length when known without reading the response's headers (which would cost
     * the http1 upstream's prepared response); otherwise undefined.
     */
    readonly bodyBytes?: number | undefined;
  }
  | {
    readonly ok: false;
    readonly reason: ForwardFailureReason;
    /** What went wrong, for logs only: never send it to the client. */
    readonly message: string;
    /** Milliseconds from sending the request to the failure. */
    readonly elapsedMs: number;
  };

/** Options for {@linkcode forward}. */
export interface ForwardOptions {
  /**
   * The upstream client, from {@linkcode createUpstreamClient}. Without one, `fetch` uses its
   * default client, which drops the `Host` header and keeps every idle connection.
   * Default: the default client.
   */
  readonly client?: Deno.HttpClient | undefined;
  /** Where on the backend: the validated authority, normalized path and query. */
  readonly target: AcceptedTarget;
  /** The request body, already read (or streaming) by {@linkcode readRequestBody}. */
  readonly body: RequestBody;
  /**
   * How long to wait for the backend's response headers once the request has been sent, in
   * milliseconds. For a streamed body the wait starts when its last byte has been handed on.
   */
  readonly timeoutMs: number;
  /** The client's IP address, appended to `X-Forwarded-For`. */
  readonly clientIp: string;
  /** The scheme of the client's connection, sent as `X-Forwarded-Proto`. Default: `"http"`. */
  readonly proto?: string | undefined;
  /** Whether the peer is a trusted proxy (its forwarding headers are kept). Default: false. */
  readonly isPeerTrusted?: boolean | undefined;
  /** Whether the RFC 7239 `Forwarded` header is sent. Default: true. */
  readonly isForwardedSent?: boolean | undefined;
  /** Sent to the backend as `X-Request-Id`. Default: the client's header, if any. */
  readonly requestId?: string | undefined;
  /** Appended to `Via`, such as `"1.1 denolb"`. Default: no `Via` added. */
  readonly via?: string | undefined;
  /**
   * The attempt's W3C `traceparent`, sent instead of the client's (`tracing.ts`). Default: the
   * client's, passed on as any header.
   */
  readonly traceparent?: string | undefined;
  /** Measures `headersMs` and drives the timeout. Default: {@linkcode systemClock}. */
  readonly clock?: Clock | undefined;
  /**
   * Runs the response-header timeout; share one across requests so they share its timer. It
   * must run on `clock`. Default: a queue of this call's own, on `clock`.
   */
  readonly deadlines?: DeadlineQueue | undefined;
  /**
   * Watch the client for departure only once the backend has had `delayMs` to answer, on
   * `deadlines` (shared across requests, on `clock`). Watching (`request.signal`) costs Deno
   * one operation per request, and most responses come sooner; a client that leaves earlier
   * is noticed at the delay. Default: none, watched from the start.
   */
  readonly clientWatch?: ClientWatch | undefined;
  /** The `fetch` implementation. Default: `globalThis.fetch`. */
  readonly fetch?: typeof fetch;
  /**
   * Cuts a response body that pauses too long between chunks, calling `onTimeout` with the
   * backend and request ID. Default: none (the body streams as Deno pipes it, untouched).
   */
  readonly idleBody?: IdleBodyWatch<IdleBodyContext> | undefined;
  /**
   * Wraps a response body that streams (one held whole needs nothing) before it goes to the
   * client, given its `Content-Length` when it has one: the handler's relay, which counts the
   * bytes and learns how the body ended (`response_body.ts`). Default: none.
   */
  readonly relayBody?:
    | ((
      body: ReadableStream<Uint8Array>,
      declaredBytes: number | undefined,
    ) => ReadableStream<Uint8Array>)
    | undefined;
}

/**
 * A body with a `Content-Length` up to this size is read whole before the response is answered
 * (as nginx buffers responses), and handed on as bytes:
 * - its length is then known exactly, and a backend that fails in the middle of it is a 502
 *   (and may be retried) instead of a connection cut after a `200`;
 * - it needs no relay stream, which costs more per request than reading it whole (the http1
 *   upstream hands small bodies on as bytes too);
 * - Deno 2.9.6 answers an HTTP/1.0 keep-alive request whose response body streams with
 *   `connection: keep-alive` and then closes the connection; one whose body is bytes is kept.
 */
const HELD_BODY_BYTES = 64 * 1024;

/** When a request starts watching its client, and the queue that times it. */
export interface ClientWatch {
  /** Milliseconds after the request is sent; 0 watches at once. */
  readonly delayMs: number;
  /** Runs the delays; it must run on the forward's clock. */
  readonly deadlines: DeadlineQueue;
}

/** What an idle-body timeout reports: whose body stalled, for which request. */
export interface IdleBodyContext {
  readonly backend: Backend;
  readonly requestId: string | undefined;
}

/** Options for {@linkcode createUpstreamClient}: its pool bounds, as `settings.ts` declares them. */
export interface UpstreamClientOptions
  extends Pick<ProxySettings, "maxIdlePerHost" | "keepAliveTimeoutMs"> {
  /**
   * PEM certificates of the authorities `https:` backends are verified against, instead of the
   * system's (`--backend-ca`). Verification is never off. Default: the system's.
   */
  readonly caCerts?: readonly string[];
}

/**
 * Creates the `fetch` client used for every backend: it sends the client's `Host` header
 * (`allowHost`) and keeps a bounded pool of idle keep-alive connections per backend (the
 * default client keeps every idle connection it ever opened).
 *
 * @param options Pool bounds (`proxy.maxIdlePerHost`, `proxy.keepAliveTimeoutMs`).
 * @returns A client to pass to {@linkcode forward}; close it on shutdown.
 */
export function createUpstreamClient(options: UpstreamClientOptions): Deno.HttpClient {
  return Deno.createHttpClient({
    allowHost: true,
    poolMaxIdlePerHost: options.maxIdlePerHost,
    poolIdleTimeout: options.keepAliveTimeoutMs,
    ...(options.caCerts === undefined ? {} : { caCerts: [...options.caCerts] }),
  });
}

/**
 * The upstream URL: the backend's base URL followed by the request's normalized path and
 * query. Only those come from the request: an absolute-form target or a `Host` header never
 * chooses where the request goes.
 *
 * @param base The backend's base URL (its path ends in `/`).
 * @param target The request's normalized path (starting with `/`) and query.
 * @returns The URL to fetch.
 *
 * @example
 * ```ts
 * import { upstreamUrl } from "./proxy.ts";
 * const url = upstreamUrl(new URL("http://10.0.0.2:8080/app/"), { path: "/a", query: "?b=1" });
 * if (url !== "http://10.0.0.2:8080/app/a?b=1") throw new Error(url);
 * ```
 */
export function upstreamUrl(
  base: URL,
  target: Pick<AcceptedTarget, "path" | "query">,
): string {
  // base.href ends in "/", and the path starts with one.
  return base.href + target.path.slice(1) + target.query;
}

/** Methods that RFC 9110 section 9.2.2 calls idempotent (TRACE is refused before forwarding). */
const IDEMPOTENT: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

/**
 * Whether a request that failed with `reason` may be sent again to another backend. A connect
 * failure or connect timeout means the request never left, so any method may go again; after
 * a connection was made only idempotent methods may, and only when it broke (a response-header
 * timeout is not retried: the backend may still be working on it). Either way the body must
 * still be in hand: absent or buffered (it fit `--request-buffer`, which is the replay
 * buffer), not a stream the first attempt consumed.
 *
 * @param method The request's method.
 * @param body The request body as read.
 * @param reason Why the attempt failed.
 * @returns Whether a retry is safe.
 *
 * @example
 * ```ts
 * import { canRetry } from "./proxy.ts";
 * const body = { kind: "buffered", bytes: new Uint8Array(3) } as const;
 * if (!canRetry("POST", body, "connect") || canRetry("POST", body, "protocol")) throw new Error();
 * ```
 */
export function canRetry(method: string, body: RequestBody, reason: ForwardFailureReason): boolean {
  if (body.kind === "streamed") return false;
  if (reason === "connect" || reason === "connect-timeout") return true;
  return reason === "protocol" && IDEMPOTENT.has(method);
}

const TIMEOUT_REASON = new DOMException("Backend response headers timed out", "TimeoutError");
const CLIENT_ABORT_REASON = new DOMException("Client went away", "AbortError");

/** How a streamed body's failure shows in the forward's outcome. */
const CLIENT_BODY_FAILURE = {
  "client-abort": "client-abort",
  timeout: "client-timeout",
  "too-large": "client-too-large",
} as const satisfies Record<BodyFailure, ForwardFailureReason>;

function abortForTimeout(controller: AbortController): void {
  controller.abort(TIMEOUT_REASON);
}

/**
 * One forwarding attempt's abort wiring: the controller of the upstream request, the client it
 * watches and its response-header deadline. An object with methods rather than closures, so an
 * attempt allocates one object for all of it.
 */
class AttemptSignals {
  readonly controller = new AbortController();
  readonly request: Request;
  readonly deadlines: DeadlineQueue;
  readonly clock: Clock;
  readonly timeoutMs: number;
  /** The client's signal, once watched. */
  clientSignal: AbortSignal | undefined;
  /** The pending response-header deadline. */
  deadline: Deadline | undefined;
  /** The pending start of the client watch. */
  watch: Deadline | undefined;

  constructor(request: Request, deadlines: DeadlineQueue, clock: Clock, timeoutMs: number) {
    this.request = request;
    this.deadlines = deadlines;
    this.clock = clock;
    this.timeoutMs = timeoutMs;
  }

  /** Aborts the upstream request when the client goes away (`request.signal`, one Deno op). */
  watchClient(): void {
    const signal = this.request.signal;
    this.clientSignal = signal;
    if (signal.aborted) this.controller.abort(CLIENT_ABORT_REASON);
    else signal.addEventListener("abort", this);
  }

  /** The client's signal fired (this object is its listener). */
  handleEvent(): void {
    this.controller.abort(CLIENT_ABORT_REASON);
  }

  /** Starts the response-header timeout from now (a streamed body's last byte was sent). */
  armTimeout(): void {
    this.deadline = this.deadlines.add(
      this.clock.now() + this.timeoutMs,
      abortForTimeout,
      this.controller,
    );
  }
}

function watchClientOf(signals: AttemptSignals): void {
  signals.watchClient();
}

/**
 * Forwards one request to one backend and returns its response, or why there is none. Never
 * throws. The method, normalized path and query, filtered headers and body go to the backend;
 * redirects come back as they are, not followed. The timeout covers the wait for the response
 * headers once the request has been sent: upload time does not count, and once the headers
 * arrive the body streams for as long as it takes. A client that goes away aborts the upstream
 * request, before or after the headers.
 *
 * @param request The client's request.
 * @param backend Where to send it.
 * @param options The target, body, client, header timeout and the forwarding facts.
 * @returns The response for the client, or the failure's reason.
 */
export async function forward(
  request: Request,
  backend: Backend,
  options: ForwardOptions,
): Promise<ForwardOutcome> {
  const clock = options.clock ?? systemClock;
  const started = clock.now();
  const deadlines = options.deadlines ?? new DeadlineQueue({ clock });
  const signals = new AttemptSignals(request, deadlines, clock, options.timeoutMs);
  const controller = signals.controller;
  // The client's departure aborts the upstream request until its headers arrive: after that
  // `Deno.serve` ignores this signal and cancels the upstream body itself when the client
  // leaves mid-download (tests/proxy_test.ts covers both). One listener, not AbortSignal.any.
  const clientWatch = options.clientWatch;
  if (clientWatch === undefined || clientWatch.delayMs <= 0) {
    signals.watchClient();
    if (controller.signal.aborted) {
      return { ok: false, reason: "client-abort", message: "Client went away", elapsedMs: 0 };
    }
  } else {
    signals.watch = clientWatch.deadlines.add(
      started + clientWatch.delayMs,
      watchClientOf,
      signals,
    );
  }
  const body = options.body;
  let fetchBody: BodyInit | null = null;
  if (body.kind === "buffered") fetchBody = body.bytes;
  else if (body.kind === "streamed") fetchBody = body.stream;
  // The response timeout starts once the request is sent: at once for a body in hand, at the
  // last byte of a streamed one (a slow upload is the body timeout's business).
  if (body.kind === "streamed" && !body.state.isComplete) {
    body.state.onComplete = () => signals.armTimeout();
  } else {
    signals.deadline = deadlines.add(started + options.timeoutMs, abortForTimeout, controller);
  }
  try {
    const init: RequestInit & { client?: Deno.HttpClient } = {
      method: request.method,
      headers: withTraceparent(
        upstreamRequestHeaders(request.headers, {
          clientIp: options.clientIp,
          proto: options.proto ?? "http",
          host: options.target.authority,
          requestId: options.requestId,
          via: options.via,
          isPeerTrusted: options.isPeerTrusted,
          isForwardedSent: options.isForwardedSent,
        }),
        options.traceparent,
      ),
      body: fetchBody,
      redirect: "manual",
      signal: controller.signal,
    };
    if (options.client !== undefined) init.client = options.client;
    const doFetch = options.fetch ?? fetch;
    const upstream = await doFetch(upstreamUrl(backend.url, options.target), init);
    if (signals.deadline !== undefined) deadlines.cancel(signals.deadline);
    if (signals.watch !== undefined) clientWatch?.deadlines.cancel(signals.watch);
    const headersMs = clock.now() - started;
    if (upstream.status === 101) {
      // Nothing asked to switch protocols: passing it on would leave the client speaking HTTP
      // on a connection the backend considers upgraded.
      upstream.body?.cancel().catch(() => {});
      return {
        ok: false,
        reason: "protocol",
        message: "Backend switched protocols unrequested (101)",
        elapsedMs: headersMs,
      };
    }
    const idleBody = options.idleBody;
    const relay = options.relayBody;
    if (
      upstream instanceof Http1Response &&
      (upstream.wholeBodyBytes !== undefined || upstream.body === null ||
        (idleBody === undefined && relay === undefined))
    ) {
      // Already without hop-by-hop fields: passed on untouched, so a body that came whole with
      // the head stays bytes, and the response Deno prepared for them at construction is the
      // one it sends (touching its headers would throw that away).
      return { ok: true, response: upstream, headersMs, bodyBytes: upstream.wholeBodyBytes };
    }
    const declaredBytes = declaredLength(upstream.headers);
    if (
      upstream.body !== null && declaredBytes !== undefined && declaredBytes <= HELD_BODY_BYTES
    ) {
      // A failure reading it is the backend's, answered 502 like any other before the head;
      // a stall is cut by the idle-body timeout, or by the client leaving.
      const bytes = idleBody === undefined ? await upstream.bytes() : await new Response(
        watchIdleBody(upstream.body, idleBody, { backend, requestId: options.requestId }),
      ).bytes();
      const response = new Response(bytes, {
        status: upstream.status,
        statusText: upstream.statusText,
        headers: upstream.headers,
      });
      removeHopByHop(response.headers);
      return { ok: true, response, headersMs, bodyBytes: bytes.byteLength };
    }
    // The Response constructor copies a Headers object's fields directly (Set-Cookie and
    // repeated fields as they came); stripping the copy in place is three times cheaper than
    // building a filtered Headers (nginx sends `Connection: keep-alive` with every response).
    let responseBody: ReadableStream<Uint8Array> | null = upstream.body;
    if (responseBody !== null) {
      if (idleBody !== undefined) {
        responseBody = watchIdleBody(responseBody, idleBody, {
          backend,
          requestId: options.requestId,
        });
      }
      if (relay !== undefined) responseBody = relay(responseBody, declaredBytes);
    }
    const response = new Response(responseBody, {
      status: upstream.status,
      statusText: upstream.statusText,
      headers: upstream.headers,
    });
    // Both framings at once (a smuggling shape): `fetch` read the body by its chunks, and
    // Transfer-Encoding wins (RFC 9112 section 6.3); its Content-Length would cut the body.
    if (response.headers.has("transfer-encoding")) response.headers.delete("content-length");
    removeHopByHop(response.headers);
    return { ok: true, response, headersMs };
  } catch (error) {
    if (signals.deadline !== undefined) deadlines.cancel(signals.deadline);
    if (signals.watch !== undefined) clientWatch?.deadlines.cancel(signals.watch);
    if (body.kind === "streamed") body.state.onComplete = undefined;
    const elapsedMs = clock.now() - started;
    const reason = controller.signal.reason;
    if (reason === TIMEOUT_REASON) {
      return { ok: false, reason: "response-timeout", message: TIMEOUT_REASON.message, elapsedMs };
    }
    if (error === IDLE_BODY_TIMEOUT) {
      // A body read whole before answering stalled: no byte went to the client yet.
      return {
        ok: false,
        reason: "response-timeout",
        message: IDLE_BODY_TIMEOUT.message,
        elapsedMs,
      };
    }
    if (body.kind === "streamed" && body.state.failure !== undefined) {
      const failure = CLIENT_BODY_FAILURE[body.state.failure];
      return { ok: false, reason: failure, message: "Client request body failed", elapsedMs };
    }
    if (reason === CLIENT_ABORT_REASON || signals.clientSignal?.aborted === true) {
      return { ok: false, reason: "client-abort", message: CLIENT_ABORT_REASON.message, elapsedMs };
    }
    return { ok: false, ...classifyFetchError(error), elapsedMs };
  }
}

/**
 * Sorts a `fetch` rejection into `connect` (the request never left: safe to retry anywhere),
 * `connect-timeout` (the same, after too long a wait), `fd-exhausted` (no descriptor for the
 * connection: also never left) or `protocol`. Deno reports these as `TypeError("fetch failed")`
 * with the cause's message naming the failed stage: `client error (Connect)` for TCP and DNS
 * failures. A connect that timed out has a `Deno.errors.TimedOut` below that (the http1
 * upstream's connect timeout, or the operating system's), or says so in its message.
 */
/** The headers with the client's `traceparent` replaced by the attempt's, when traced. */
function withTraceparent(
  headers: Array<[string, string]>,
  traceparent: string | undefined,
): Array<[string, string]> {
  if (traceparent === undefined) return headers;
  const kept = headers.filter(([name]) => name.toLowerCase() !== "traceparent");
  kept.push(["traceparent", traceparent]);
  return kept;
}

function classifyFetchError(
  error: unknown,
): {
  reason: "connect" | "connect-timeout" | "fd-exhausted" | "protocol" | "unsendable";
  message: string;
} {
  if (isUnsendable(error)) return { reason: "unsendable", message: (error as Error).message };
  const cause = error instanceof Error ? error.cause : undefined;
  const message = cause instanceof Error
    ? cause.message
    : error instanceof Error
    ? error.message
    : String(error);
  if (isFdExhaustion(error)) return { reason: "fd-exhausted", message };
  if (!message.includes("(Connect)")) return { reason: "protocol", message };
  const isTimedOut = (cause instanceof Error && cause.cause instanceof Deno.errors.TimedOut) ||
    /timed out/i.test(message);
  return { reason: isTimedOut ? "connect-timeout" : "connect", message };
}

/**
 * Whether `fetch` refused the request itself, before any connection: a plain `TypeError` with
 * no cause, such as "Request with GET/HEAD method cannot have body" or "Method is forbidden"
 * (a failure on the way to the backend is `TypeError("fetch failed")` with a cause).
 */
function isUnsendable(error: unknown): boolean {
  return error instanceof TypeError && error.cause === undefined &&
    /cannot have body|method is forbidden/i.test(error.message);
}

/**
 * The body length a response's head declares: its `Content-Length` when it has no
 * `Transfer-Encoding` (which wins, RFC 9112 section 6.3) and the value is one decimal number.
 */
function declaredLength(headers: Headers): number | undefined {
  const length = headers.get("content-length");
  if (length === null || !/^\d{1,15}$/.test(length) || headers.has("transfer-encoding")) {
    return undefined;
  }
  return Number(length);
}
