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
import type { Backend } from "./backend.ts";
import { DeadlineQueue } from "./deadlines.ts";
import { removeHopByHop, upstreamRequestHeaders } from "./proxy_headers.ts";
import { type Clock, systemClock } from "./shared/clock.ts";

/** Why a forward produced no response. */
export type ForwardFailureReason =
  /** No connection to the backend (refused, unreachable, DNS): the request was never sent. */
  | "connect"
  /** The backend did not send response headers within the timeout. */
  | "timeout"
  /** The client went away (or aborted its upload) before the response headers arrived. */
  | "client-abort"
  /** The connection broke or the backend answered with something that is not HTTP. */
  | "protocol";

/** The result of {@linkcode forward}. */
export type ForwardOutcome =
  | {
    readonly ok: true;
    /** The response for the client: backend status, filtered headers, streamed body. */
    readonly response: Response;
    /** Milliseconds from sending the request to receiving the backend's response headers. */
    readonly headersMs: number;
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
  /** How long to wait for the backend's response headers, in milliseconds. */
  readonly timeoutMs: number;
  /** The client's IP address, appended to `X-Forwarded-For`. */
  readonly clientIp: string;
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
  /** The `fetch` implementation. Default: `globalThis.fetch`. */
  readonly fetch?: typeof fetch;
}

/** Options for {@linkcode createUpstreamClient}. */
export interface UpstreamClientOptions {
  /** Idle keep-alive connections kept per backend. Default: 64. */
  readonly maxIdlePerHost?: number;
  /** How long an idle connection is kept, in milliseconds. Default: 30000. */
  readonly idleTimeoutMs?: number;
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
  });
}

/**
 * The upstream URL: the backend's base URL followed by the request's path and query. Only the
 * path and query are taken from the request: an absolute-form target or a `Host` header never
 * chooses where the request goes.
 *
 * @param base The backend's base URL (its path ends in `/`).
 * @param requestUrl The request's URL, as `Request.url` gives it (absolute).
 * @returns The URL to fetch.
 *
 * @example
 * ```ts
 * import { upstreamUrl } from "./proxy.ts";
 * const url = upstreamUrl(new URL("http://10.0.0.2:8080/app/"), "http://evil.example/a?b=1");
 * if (url !== "http://10.0.0.2:8080/app/a?b=1") throw new Error(url);
 * ```
 */
export function upstreamUrl(base: URL, requestUrl: string): string {
  const start = pathStart(requestUrl);
  // base.href ends in "/", and the request path starts with one.
  return start < 0 ? base.href : base.href + requestUrl.slice(start + 1);
}

/**
 * The index where the path starts in an absolute URL string, or -1 when it has none.
 *
 * @param url An absolute URL such as `Request.url`.
 * @returns The index of the `/` that starts the path, or -1.
 */
export function pathStart(url: string): number {
  const authority = url.indexOf("//");
  return url.indexOf("/", authority < 0 ? 0 : authority + 2);
}

/**
 * Whether the request can be sent again to another backend after a failure that happened
 * before any response: its method is safe and idempotent (RFC 9110 section 9.2) and it carries
 * no body (a streamed body is consumed by the first attempt).
 *
 * @param request The client's request.
 * @returns Whether a retry is safe.
 */
export function isRetryable(request: Request): boolean {
  const method = request.method;
  if (method === "GET" || method === "HEAD") return true; // no body is ever forwarded
  return method === "OPTIONS" && !hasBody(request);
}

/**
 * Whether the request's body must be forwarded. `GET` and `HEAD` bodies are dropped (fetch
 * cannot send them); a zero `Content-Length` means none. A request without `Content-Length`
 * or `Transfer-Encoding` still forwards its stream: HTTP/2 clients frame bodies without them.
 */
function hasBody(request: Request): boolean {
  if (request.body === null) return false;
  const method = request.method;
  if (method === "GET" || method === "HEAD") return false;
  return request.headers.get("content-length") !== "0";
}

const TIMEOUT_REASON = new DOMException("Backend response headers timed out", "TimeoutError");
const CLIENT_ABORT_REASON = new DOMException("Client went away", "AbortError");

function abortForTimeout(controller: AbortController): void {
  controller.abort(TIMEOUT_REASON);
}

/**
 * Forwards one request to one backend and returns its response, or why there is none. Never
 * throws. The method, path and query, filtered headers and streamed body go to the backend;
 * redirects come back as they are, not followed. The timeout covers the response headers only:
 * once they arrive the body streams for as long as it takes. A client that goes away aborts the
 * upstream request, before or after the headers.
 *
 * @param request The client's request.
 * @param backend Where to send it.
 * @param options The client, the header timeout and the forwarding facts.
 * @returns The response for the client, or the failure's reason.
 */
export async function forward(
  request: Request,
  backend: Backend,
  options: ForwardOptions,
): Promise<ForwardOutcome> {
  const clock = options.clock ?? systemClock;
  const started = clock.now();
  const clientSignal = request.signal;
  if (clientSignal.aborted) {
    return { ok: false, reason: "client-abort", message: "Client went away", elapsedMs: 0 };
  }
  const controller = new AbortController();
  // One listener instead of AbortSignal.any (cheaper). It matters until the headers arrive:
  // after that `Deno.serve` pipes the fetch body natively, ignores this signal, and cancels the
  // upstream body itself when the client leaves mid-download (tests/proxy_test.ts covers both).
  clientSignal.addEventListener("abort", () => controller.abort(CLIENT_ABORT_REASON), {
    once: true,
  });
  const deadlines = options.deadlines ?? new DeadlineQueue({ clock });
  const deadline = deadlines.add(started + options.timeoutMs, abortForTimeout, controller);
  try {
    const init: RequestInit & { client?: Deno.HttpClient } = {
      method: request.method,
      headers: upstreamRequestHeaders(request.headers, {
        clientIp: options.clientIp,
        proto: request.url.startsWith("https:") ? "https" : "http",
        requestId: options.requestId,
        via: options.via,
      }),
      body: hasBody(request) ? request.body : null,
      redirect: "manual",
      signal: controller.signal,
    };
    if (options.client !== undefined) init.client = options.client;
    const doFetch = options.fetch ?? fetch;
    const upstream = await doFetch(upstreamUrl(backend.url, request.url), init);
    deadlines.cancel(deadline);
    const headersMs = clock.now() - started;
    // The Response constructor copies a Headers object's fields directly (Set-Cookie and
    // repeated fields as they came); stripping the copy in place is three times cheaper than
    // building a filtered Headers (nginx sends `Connection: keep-alive` with every response).
    const response = new Response(upstream.body, {
      status: upstream.status,
      statusText: upstream.statusText,
      headers: upstream.headers,
    });
    removeHopByHop(response.headers);
    return { ok: true, response, headersMs };
  } catch (error) {
    deadlines.cancel(deadline);
    const elapsedMs = clock.now() - started;
    const reason = controller.signal.reason;
    if (reason === TIMEOUT_REASON) {
      return { ok: false, reason: "timeout", message: TIMEOUT_REASON.message, elapsedMs };
    }
    if (reason === CLIENT_ABORT_REASON || clientSignal.aborted) {
      return { ok: false, reason: "client-abort", message: CLIENT_ABORT_REASON.message, elapsedMs };
    }
    return { ok: false, ...classifyFetchError(error), elapsedMs };
  }
}

/**
 * Sorts a `fetch` rejection into `connect` (the request never left: safe to retry anywhere) or
 * `protocol`. Deno reports both as `TypeError("fetch failed")` with the cause's message naming
 * the failed stage: `client error (Connect)` for TCP and DNS failures.
 */
function classifyFetchError(error: unknown): { reason: "connect" | "protocol"; message: string } {
  const cause = error instanceof Error ? error.cause : undefined;
  const message = cause instanceof Error
    ? cause.message
    : error instanceof Error
    ? error.message
    : String(error);
  return { reason: message.includes("(Connect)") ? "connect" : "protocol", message };
}
