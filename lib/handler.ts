/**
 * The per-request handler `Deno.serve` calls: admin paths under `/_lb/`, everything else
 * proxied to a backend the policy picks, with retries, status mapping, metrics and one access
 * log record per request.
 *
 * Status mapping: no healthy backend 503 (with `Retry-After`); backend unreachable or broken
 * 502; no response headers in time 504; a client that went away 499 (nobody reads it). Error
 * bodies are one short line of plain text: never a stack trace or a backend's error message.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { ADMIN_PREFIX, adminResponse } from "./admin.ts";
import type { Backend } from "./backend.ts";
import type { Metrics } from "./metrics.ts";
import type { Policy } from "./policy.ts";
import type { Pool } from "./pool.ts";
import { DeadlineQueue } from "./deadlines.ts";
import { forward, type ForwardFailureReason, isRetryable, pathStart } from "./proxy.ts";
import { type Clock, systemClock } from "./shared/clock.ts";

/** Everything the handler needs, built once by the server. */
export interface HandlerDeps {
  /** The backends. */
  readonly pool: Pool;
  /** Picks a backend per request. */
  readonly policy: Policy;
  /** The upstream client, from `createUpstreamClient`. */
  readonly client: Deno.HttpClient;
  /** Receives the access log and errors (`["denolb", "proxy"]`). */
  readonly logger: Logger;
  /** Counters and histograms; also served at `/_lb/metrics`. */
  readonly metrics: Metrics;
  /** How long to wait for a backend's response headers, in milliseconds. */
  readonly timeoutMs: number;
  /**
   * How many other backends a safe request (GET, HEAD, OPTIONS without a body) is retried on
   * after a connection failure or a broken response.
   */
  readonly retries: number;
  /** Seconds in the 503's `Retry-After` when no backend is healthy. Default: 1. */
  readonly retryAfterSeconds?: number;
  /** Whether the balancer is draining: `/_lb/health` then answers 503. Default: never. */
  readonly isDraining?: () => boolean;
  /** Measures durations and runs the response-header timeouts. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /** Appended to `Via` on forwarded requests, such as `"1.1 denolb"`. Default: no `Via`. */
  readonly via?: string;
  /** Makes a request ID when the client sent none. Default: a per-isolate prefix and counter. */
  readonly createRequestId?: () => string;
}

/** A `Deno.serve` handler that never throws. */
export type Handler = (request: Request, info: Deno.ServeHandlerInfo) => Promise<Response>;

/** The longest client `X-Request-Id` kept; a longer one is replaced. */
const MAX_REQUEST_ID_LENGTH = 128;

const TEXT_HEADERS = { "content-type": "text/plain; charset=utf-8" } as const;

/** Status codes the balancer answers with itself, and their bodies. */
const FAILURE_STATUS: Readonly<Record<ForwardFailureReason, number>> = {
  connect: 502,
  protocol: 502,
  timeout: 504,
  "client-abort": 499,
};

const FAILURE_BODY: Readonly<Record<number, string>> = {
  499: "Client closed request\n",
  502: "Bad gateway: the backend could not be reached or failed\n",
  503: "Service unavailable: no backend is healthy\n",
  504: "Gateway timeout: the backend did not answer in time\n",
};

/** What every access record of one request shares. */
interface RequestContext {
  readonly request: Request;
  /** When the request arrived, on the handler's clock. */
  readonly started: number;
  readonly requestId: string;
}

/** How one request ended, for the metrics and the access log. */
interface AccessEntry {
  readonly level: "info" | "warning";
  /** The record's fixed message. */
  readonly message: string;
  /** The backend that answered or failed last; `undefined` when none was picked. */
  readonly backend: Backend | undefined;
  /** The status the client got. */
  readonly status: number;
  /** Time to the backend's response headers, when it answered. */
  readonly backendMs?: number;
}

/**
 * Creates the request handler.
 *
 * Each proxied request: pick a healthy backend, `begin()` it, forward, and `end()` it when the
 * response body has been delivered (or at once on failure); count it in the metrics; log one
 * access record (`Request forwarded` at INFO, or `Request failed` / `No healthy backend` at
 * WARN, `Client aborted request` at INFO) with `method`, `path`, `backend`, `status`,
 * `durationMs`, `backendMs` and `requestId`.
 *
 * @param deps The pool, policy, client, logger, metrics and limits.
 * @returns The handler to pass to `Deno.serve`.
 */
export function createHandler(deps: HandlerDeps): Handler {
  const clock = deps.clock ?? systemClock;
  const createRequestId = deps.createRequestId ?? createRequestIdSource();
  const retryAfter = String(deps.retryAfterSeconds ?? 1);
  const isDraining = deps.isDraining ?? (() => false);
  const { pool, policy, logger, metrics } = deps;
  // One timer for every request's response-header timeout.
  const deadlines = new DeadlineQueue({ clock });

  /**
   * Counts a finished request in the metrics and writes its access record; the record's
   * properties are built only when its level is on.
   */
  function record(context: RequestContext, entry: AccessEntry): void {
    const durationMs = clock.now() - context.started;
    metrics.recordRequest(entry.backend, entry.status, durationMs);
    if (!logger.isEnabledFor(entry.level)) return;
    const url = context.request.url;
    const start = pathStart(url);
    const query = url.indexOf("?", start);
    logger[entry.level](entry.message, {
      method: context.request.method,
      path: start < 0 ? "/" : url.slice(start, query < 0 ? undefined : query),
      backend: entry.backend?.name ?? null,
      status: entry.status,
      durationMs: round(durationMs),
      backendMs: entry.backendMs === undefined ? null : round(entry.backendMs),
      requestId: context.requestId,
    });
  }

  /** Answers 502 for an error that escaped; nothing should throw, and the client never sees it. */
  function failed(request: Request, error: unknown): Response {
    logger.error("Request handling failed", { error, method: request.method });
    return textResponse(502, undefined);
  }

  async function proxy(
    request: Request,
    info: Deno.ServeHandlerInfo,
    started: number,
  ): Promise<Response> {
    try {
      const clientId = request.headers.get("x-request-id");
      const requestId = clientId !== null && clientId.length <= MAX_REQUEST_ID_LENGTH
        ? clientId
        : createRequestId();
      const context: RequestContext = { request, started, requestId };
      const remoteAddr = info.remoteAddr;
      const clientIp = "hostname" in remoteAddr ? remoteAddr.hostname : "unknown";
      const canRetry = deps.retries > 0 && isRetryable(request);
      const first = policy.pick(pool.backends, request);
      if (first === undefined) {
        metrics.recordNoBackend();
        record(context, {
          level: "warning",
          message: "No healthy backend",
          backend: undefined,
          status: 503,
        });
        return textResponse(503, requestId, retryAfter);
      }
      let tried: Set<Backend> | undefined;
      let backend: Backend = first;
      for (let attempt = 0;; attempt++) {
        backend.begin();
        const outcome = await forward(request, backend, {
          client: deps.client,
          timeoutMs: deps.timeoutMs,
          clientIp,
          requestId,
          via: deps.via,
          clock,
          deadlines,
        });
        if (outcome.ok) {
          endWhenDelivered(backend, info);
          record(context, {
            level: "info",
            message: "Request forwarded",
            backend,
            status: outcome.response.status,
            backendMs: outcome.headersMs,
          });
          return outcome.response;
        }
        const reason = outcome.reason;
        backend.end(reason !== "client-abort");
        if (reason === "client-abort") {
          record(context, {
            level: "info",
            message: "Client aborted request",
            backend,
            status: 499,
          });
          return textResponse(499, requestId);
        }
        const failed = backend;
        logger.warn("Backend request failed", () => ({
          backend: failed.name,
          reason,
          message: outcome.message,
          attempt: attempt + 1,
          requestId,
        }));
        const retryable = canRetry && attempt < deps.retries &&
          (reason === "connect" || reason === "protocol");
        // The policy picks from the whole pool with the tried backends excluded, so its own
        // position (the round-robin cursor) moves on as for any request.
        const next = retryable
          ? policy.pick(pool.backends, request, (tried ??= new Set()).add(failed))
          : undefined;
        if (next === undefined) {
          const status = FAILURE_STATUS[reason];
          record(context, { level: "warning", message: "Request failed", backend, status });
          return textResponse(status, requestId);
        }
        metrics.recordRetry();
        backend = next;
      }
    } catch (error) {
      return failed(request, error);
    }
  }

  // Not async: a proxied request's promise is `proxy`'s own, which catches its errors, so no
  // second promise and await are spent per request.
  return function handle(request: Request, info: Deno.ServeHandlerInfo): Promise<Response> {
    const started = clock.now();
    try {
      const url = request.url;
      const start = pathStart(url);
      if (start >= 0 && url.startsWith(ADMIN_PREFIX, start)) {
        const end = url.indexOf("?", start);
        const path = url.slice(start + ADMIN_PREFIX.length, end < 0 ? undefined : end);
        return Promise.resolve(adminResponse(request, path, { pool, metrics, isDraining }));
      }
      return proxy(request, info, started);
    } catch (error) {
      return Promise.resolve(failed(request, error));
    }
  };
}

/**
 * Ends the backend's in-flight count when the response body has been delivered (or the client
 * went away mid-body), using `info.completed` rather than wrapping the body in a stream.
 */
function endWhenDelivered(backend: Backend, info: Deno.ServeHandlerInfo): void {
  const completed = info.completed as Promise<void> | undefined;
  if (completed === undefined) {
    backend.end(false);
    return;
  }
  const end = () => backend.end(false);
  completed.then(end, end);
}

function textResponse(
  status: number,
  requestId: string | undefined,
  retryAfter?: string,
): Response {
  const headers: Record<string, string> = { ...TEXT_HEADERS };
  if (requestId !== undefined) headers["x-request-id"] = requestId;
  if (retryAfter !== undefined) headers["retry-after"] = retryAfter;
  return new Response(FAILURE_BODY[status] ?? "Error\n", { status, headers });
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/**
 * The default request ID source: a random per-isolate prefix and a counter, so IDs are unique
 * across isolates and cost one string concatenation each.
 *
 * @returns A function making the next ID, such as `"3f9a1c2e-1b"`.
 */
export function createRequestIdSource(): () => string {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  const prefix = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  let counter = 0;
  return () => `${prefix}-${(++counter).toString(36)}`;
}
