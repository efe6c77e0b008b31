/**
 * Forwarding one client request to one backend with `fetch`: the upstream URL, the
 * response-header timeout and the classification of failures. The header rules in both
 * directions (and why backends are always asked for `identity` encoding) live in
 * `proxy_headers.ts`.
 *
 * Bodies stream in both directions: the client's body is handed to `fetch` as a stream and the
 * backend's body is handed back to `Deno.serve` as a stream, so neither sits in memory.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import { isFdExhaustion } from "./listener.ts";
import type { BodyFailure, RequestBody } from "./request_body.ts";
import type { AcceptedTarget } from "./request_target.ts";
import { type IdleBodyWatch, watchIdleBody } from "./idle_body.ts";
import { type Deadline, DeadlineQueue } from "../shared/deadlines.ts";
import { removeHopByHop, upstreamRequestHeaders } from "./proxy_headers.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { Http1Response } from "../upstream/http1_response.ts";

export type { ForwardFailureReason } from "../core/forward_failure.ts";
import type { ForwardFailureReason } from "../core/forward_failure.ts";

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
}

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

/** Options for {@linkcode createUpstreamClient}. */
export interface UpstreamClientOptions {
  /** Idle keep-alive connections kept per backend. Default: 64. */
  readonly maxIdlePerHost?: number;
  /** How long an idle connection is kept, in milliseconds. Default: 30000. */
  readonly idleTimeoutMs?: number;
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
 * @param options Pool bounds.
 * @returns A client to pass to {@linkcode forward}; close it on shutdown.
 */
export function createUpstreamClient(options: UpstreamClientOptions = {}): Deno.HttpClient {
  return Deno.createHttpClient({
    allowHost: true,
    poolMaxIdlePerHost: options.maxIdlePerHost ?? 64,
    poolIdleTimeout: options.idleTimeoutMs ?? 30_000,
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

function call(callback: () => void): void {
  callback();
}

function abortForTimeout(controller: AbortController): void {
  controller.abort(TIMEOUT_REASON);
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
  const controller = new AbortController();
  // The client's departure aborts the upstream request until its headers arrive: after that
  // `Deno.serve` ignores this signal and cancels the upstream body itself when the client
  // leaves mid-download (tests/proxy_test.ts covers both). One listener, not AbortSignal.any.
  let clientSignal: AbortSignal | undefined;
  const watchClient = () => {
    clientSignal = request.signal;
    if (clientSignal.aborted) controller.abort(CLIENT_ABORT_REASON);
    else clientSignal.addEventListener("abort", () => controller.abort(CLIENT_ABORT_REASON));
  };
  const clientWatch = options.clientWatch;
  let watch: Deadline | undefined;
  if (clientWatch === undefined || clientWatch.delayMs <= 0) {
    watchClient();
    if (controller.signal.aborted) {
      return { ok: false, reason: "client-abort", message: "Client went away", elapsedMs: 0 };
    }
  } else {
    watch = clientWatch.deadlines.add(started + clientWatch.delayMs, call, watchClient);
  }
  const deadlines = options.deadlines ?? new DeadlineQueue({ clock });
  const body = options.body;
  let deadline: Deadline | undefined;
  const armTimeout = () => {
    deadline = deadlines.add(clock.now() + options.timeoutMs, abortForTimeout, controller);
  };
  let fetchBody: BodyInit | null = null;
  if (body.kind === "buffered") fetchBody = body.bytes;
  else if (body.kind === "streamed") fetchBody = body.stream;
  // The response timeout starts once the request is sent: at once for a body in hand, at the
  // last byte of a streamed one (a slow upload is the body timeout's business).
  if (body.kind === "streamed" && !body.state.isComplete) body.state.onComplete = armTimeout;
  else deadline = deadlines.add(started + options.timeoutMs, abortForTimeout, controller);
  try {
    const init: RequestInit & { client?: Deno.HttpClient } = {
      method: request.method,
      headers: upstreamRequestHeaders(request.headers, {
        clientIp: options.clientIp,
        proto: options.proto ?? "http",
        host: options.target.authority,
        requestId: options.requestId,
        via: options.via,
        isPeerTrusted: options.isPeerTrusted,
        isForwardedSent: options.isForwardedSent,
      }),
      body: fetchBody,
      redirect: "manual",
      signal: controller.signal,
    };
    if (options.client !== undefined) init.client = options.client;
    const doFetch = options.fetch ?? fetch;
    const upstream = await doFetch(upstreamUrl(backend.url, options.target), init);
    if (deadline !== undefined) deadlines.cancel(deadline);
    if (watch !== undefined) clientWatch?.deadlines.cancel(watch);
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
    if (idleBody === undefined && upstream instanceof Http1Response) {
      // Already without hop-by-hop fields: passed on untouched, so a body that came whole with
      // the head stays bytes, and the response Deno prepared for them at construction is the
      // one it sends (touching its headers would throw that away).
      return { ok: true, response: upstream, headersMs, bodyBytes: upstream.wholeBodyBytes };
    }
    // The Response constructor copies a Headers object's fields directly (Set-Cookie and
    // repeated fields as they came); stripping the copy in place is three times cheaper than
    // building a filtered Headers (nginx sends `Connection: keep-alive` with every response).
    // Wrapped only when the idle-body timeout is on: otherwise Deno pipes the body natively.
    const responseBody = idleBody === undefined || upstream.body === null
      ? upstream.body
      : watchIdleBody(upstream.body, idleBody, { backend, requestId: options.requestId });
    const response = new Response(responseBody, {
      status: upstream.status,
      statusText: upstream.statusText,
      headers: upstream.headers,
    });
    removeHopByHop(response.headers);
    return { ok: true, response, headersMs };
  } catch (error) {
    if (deadline !== undefined) deadlines.cancel(deadline);
    if (watch !== undefined) clientWatch?.deadlines.cancel(watch);
    if (body.kind === "streamed") body.state.onComplete = undefined;
    const elapsedMs = clock.now() - started;
    const reason = controller.signal.reason;
    if (reason === TIMEOUT_REASON) {
      return { ok: false, reason: "response-timeout", message: TIMEOUT_REASON.message, elapsedMs };
    }
    if (body.kind === "streamed" && body.state.failure !== undefined) {
      const failure = CLIENT_BODY_FAILURE[body.state.failure];
      return { ok: false, reason: failure, message: "Client request body failed", elapsedMs };
    }
    if (reason === CLIENT_ABORT_REASON || clientSignal?.aborted === true) {
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
function classifyFetchError(
  error: unknown,
): { reason: "connect" | "connect-timeout" | "fd-exhausted" | "protocol"; message: string } {
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
