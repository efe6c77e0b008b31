/**
 * The proxy port's request handler: every request is proxied to a backend the policy picks
 * (the admin API has a listener of its own, `admin.ts`), with retries, status mapping, metrics
 * and one access log record per request.
 *
 * Before anything is forwarded the request is judged once: header fields, target and declared
 * body over their limits are 431, 414 and 413 (`request_limits.ts`); an invalid or
 * missing `Host`, or a target that fails the path rule, is 400 (`request_target.ts`);
 * `CONNECT` and `TRACK` are 501 and `TRACE` 405 in any case (the balancer tunnels nothing and
 * echoes nothing; `fetch` refuses all three); a `GET` or `HEAD` with a body is 400 (`Deno.serve`
 * discards such a body). Each of these refusals closes the connection. The body
 * is then read up to the request buffer (`request_body.ts`) before a backend is admitted
 * (`admission.ts`: a backend at its in-flight limit is skipped; when all are, the request
 * queues, then 503).
 *
 * Status mapping: no healthy backend 503 (with `Retry-After`); out of file descriptors 503;
 * backend unreachable or broken 502; no connection (`connect-timeout`) or no response headers
 * (`response-timeout`) in time 504; a client whose body broke off is logged 499 and answered 400
 * (499 never goes on the wire); a request body that stalled 408. Only a failure the backend
 * caused counts against it and reaches passive health. A streamed response body is relayed
 * (`response_body.ts`): its access record, in-flight end and passive-health outcome come when
 * it ends, with the bytes actually sent; a backend failing mid-body is its failure. Error bodies are one short line of plain text: never a stack trace or
 * a backend's error message. Retries go to another backend when `canRetry` allows and the retry
 * budget (`retry_gate.ts`) has room; a response body that stalls past the idle-body timeout
 * is cut (`idle_body.ts`).
 *
 * @module
 */
import { errorText } from "../shared/error_text.ts";
import type { Logger } from "../shared/logger.ts";
import type { Backend } from "../core/backend.ts";
import type { Metrics } from "../core/metrics.ts";
import type { AttemptResult } from "../core/outlier.ts";
import type { Policy } from "../policies/registry.ts";
import type { Pool } from "../core/pool.ts";
import type { SharedState } from "../core/shared_state.ts";
import { DeadlineQueue } from "../shared/deadlines.ts";
import { type AccessLogSink, NO_ACCESS_LOG } from "./access_log.ts";
import { NO_TRUSTED_PROXIES, type TrustedProxies } from "../shared/ip.ts";
import {
  type BodyFailure,
  hasHiddenBody,
  readRequestBody,
  type RequestBody,
} from "./request_body.ts";
import { type AcceptedTarget, resolveTarget } from "./request_target.ts";
import { bodyTooLarge, checkRequestLimits, type RequestLimits } from "./request_limits.ts";
import { Admission, type InFlightLimits, type Refusal } from "./admission.ts";
import { createWebSocketProxy, isWebSocketUpgrade, type WebSocketSettings } from "./websocket.ts";
import { canRetry, forward, type ForwardOptions, type IdleBodyContext } from "./proxy.ts";
import {
  ALLOWED_METHODS,
  AT_CAPACITY_BODY,
  FAILURE_STATUS,
  FD_EXHAUSTED_BODY,
  GET_BODY_REFUSED_BODY,
  NOT_BACKENDS_FAULT,
  refusedMethodStatus,
  textResponse,
} from "./answers.ts";
import { IDLE_BODY_TIMEOUT, type IdleBodyWatch } from "./idle_body.ts";
import { type BodyEnd, relayBody, type RelayedBody } from "./response_body.ts";
import { createRequestIdSource, requestIdOf } from "./request_id.ts";
import { RetryGate } from "./retry_gate.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { LogThrottle } from "../shared/log_throttle.ts";
import { withRequestId } from "../process/log_context.ts";
import type { RequestTracing } from "./tracing.ts";

/** Everything the handler needs, built once by the server. */
/**
 * How long a request waits for its backend's headers before the client is watched for
 * departure, in ms: watching costs an operation per request in Deno, and a client that leaves
 * sooner is noticed then.
 */
const CLIENT_WATCH_DELAY_MS = 100;

export interface HandlerDeps {
  /** The backends. */
  readonly pool: Pool;
  /** Picks a backend per request. */
  readonly policy: Policy;
  /** The upstream client, from `createUpstreamClient`. */
  readonly client: Deno.HttpClient;
  /**
   * Sends each upstream request, `fetch`-shaped (such as the HTTP/1.1 client's). Default:
   * `fetch` with {@linkcode HandlerDeps.client}.
   */
  readonly fetch?: typeof fetch;
  /** Receives errors and backend failures (`["denolb", "proxy"]`). */
  readonly logger: Logger;
  /** Spans per request and attempt (`tracing.ts`). Default: none (no tracing). */
  readonly tracing?: RequestTracing | undefined;
  /** Receives one access record per request. Default: {@linkcode NO_ACCESS_LOG}. */
  readonly accessLog?: AccessLogSink;
  /** Counters and histograms (served by the admin API). */
  readonly metrics: Metrics;
  /** How long to wait for a backend's response headers once the request is sent, in ms. */
  readonly timeoutMs: number;
  /**
   * How many other backends a request is retried on: after a connect failure (any method), or
   * a broken response (idempotent methods), when its body is absent or buffered.
   */
  readonly retries: number;
  /**
   * Told each attempt's outcome, its status code or failure reason: passive health's outlier
   * detection (`control/passive_health.ts`, or a worker's relay to it). Default: none.
   */
  readonly onAttempt?: (backend: Backend, result: AttemptResult) => void;
  /** Retries allowed as a percentage of the last 10 s of requests (`retry_budget.ts`). Default: 20. */
  readonly retryBudgetPercent?: number;
  /** Retries per second the budget always allows. Default: 3. */
  readonly retryBudgetMinPerSecond?: number;
  /** Longest pause between two chunks of a backend's response body, in ms; 0 is none. Default: 0. */
  readonly idleBodyTimeoutMs?: number;
  /** Request bodies up to this many bytes are read whole before forwarding. Default: 1 MiB. */
  readonly requestBufferBytes?: number;
  /** The longest pause between two reads of a request body, in ms; 0 is none. Default: 30000. */
  readonly bodyTimeoutMs?: number;
  /** Counts stalled request bodies (the listener counts its own timeouts). Default: none. */
  readonly onBodyTimeout?: () => void;
  /** Seconds in the 503's `Retry-After` when no backend is healthy. Default: 1. */
  readonly retryAfterSeconds?: number;
  /** Measures durations and runs the response-header timeouts. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /** Appended to `Via` on forwarded requests, such as `"1.1 denolb"`. Default: no `Via`. */
  readonly via?: string;
  /** Makes a request ID when the client sent none. Default: a per-isolate prefix and counter. */
  readonly createRequestId?: () => string;
  /** Peers whose forwarding headers are kept and appended to. Default: none. */
  readonly trustedProxies?: TrustedProxies;
  /** Whether the RFC 7239 `Forwarded` header is sent. Default: true. */
  readonly isForwardedSent?: boolean;
  /** WebSocket proxying (on/off, open sockets); upgrade requests go to `websocket.ts`. */
  readonly webSockets?: WebSocketSettings;
  /**
   * Rewrites the target after the path rule accepted it (a route's prefix rewrite, `router.ts`);
   * the result must keep the rule (`routes.ts` checks the prefixes at load time). Default: none.
   */
  readonly rewriteTarget?: (target: AcceptedTarget) => AcceptedTarget;
  /** Header, target and body size limits (413, 414, 431). Default: none. */
  readonly limits?: RequestLimits;
  /**
   * Receives the requests refused with `Connection: close`, for the listener to close their
   * connection after the response (Deno would wait for the unread body). Default: none.
   */
  readonly closeAfterResponse?: WeakSet<Request>;
  /**
   * Receives the requests answered while their upload was still coming (a backend's early
   * 413), for the listener to close their connection a little after the response. Default:
   * none.
   */
  readonly lingerAfterResponse?: WeakSet<Request>;
  /** The requests that came over HTTP/2 (the listener adds them), for the access log. */
  readonly http2Requests?: WeakSet<Request>;
  /**
   * Whether the listener speaks TLS: `X-Forwarded-Proto` and `Forwarded` say `https`. Decided by
   * the connection, never by the request target (an absolute-form `https://` target over plain
   * HTTP is still `http`). Default: false.
   */
  readonly isTls?: boolean;
  /** Per-backend in-flight limits and the queue for a slot (`admission.ts`). Default: none. */
  readonly inFlightLimits?: InFlightLimits;
  /**
   * The balancer's shared state: the queue's length and the retry budget are counted there,
   * once for every isolate. Default: this handler's own.
   */
  readonly shared?: SharedState;
}

/** An attempt whose response head went to the client, its body still on the way. */
interface Answered {
  readonly backend: Backend;
  readonly status: number;
  /** Time to the backend's response headers. */
  readonly headersMs: number;
}

/** A `Deno.serve` handler that never throws. */
export type Handler = (request: Request, info: Deno.ServeHandlerInfo) => Promise<Response>;

/** No size limits (tests and embedders that give none). */
const NO_LIMITS: RequestLimits = { maxHeaderBytes: 0, maxUrlLength: 0, maxBodyBytes: 0 };
/**
 * A refusal that leaves the rest of the request unread must close the connection; refused
 * with this very object, the listener closes it once the answer is sent.
 */
const CLOSE = { connection: "close" } as const;
/** A refused method's answer: its body, if any, is never read, so the connection closes. */
const REFUSED_METHOD_HEADERS = { allow: ALLOWED_METHODS, connection: "close" } as const;

/** How much of a rejected target the log keeps. */
const MAX_LOGGED_TARGET = 256;

/** What every access record of one request shares. */
interface RequestContext {
  readonly request: Request;
  /** The normalized path forwarded, or for a rejected request the raw target (cut short). */
  readonly path: string;
  /** The query forwarded, with its `?`; empty or absent when there was none. */
  readonly query?: string;
  /** When the request arrived, on the handler's clock. */
  readonly started: number;
  readonly requestId: string;
  /** The client's address. */
  readonly client: string;
}

/** How one request ended, for the metrics and the access log. */
interface AccessEntry {
  /** How the request ended: `forwarded`, `failed`, `refused`, `client-abort`, `no-backend`. */
  readonly outcome: string;
  /** The backend that answered or failed last; `undefined` when none was picked. */
  readonly backend: Backend | undefined;
  /** The status the client got. */
  readonly status: number;
  /** Time to the backend's response headers, when it answered. */
  readonly backendMs?: number;
  /** Why the request was refused or failed, when it was. */
  readonly reason?: string;
  /** The response, for its body length. */
  readonly response?: Response;
  /** The body length, when known without reading the response's headers. */
  readonly bodyBytes?: number | undefined;
}

/**
 * Creates the request handler.
 *
 * Each proxied request: pick a healthy backend, `begin()` it, forward, and `end()` it when the
 * response body has been delivered (or at once on failure); count it in the metrics; write one
 * record to the access log (outcome `forwarded`, `failed`, `refused`, `client-abort` or
 * `no-backend`). When the access log's buffer is full, the response waits for room.
 *
 * @param deps The pool, policy, client, logger, metrics and limits.
 * @returns The handler to pass to `Deno.serve`.
 */
export function createHandler(deps: HandlerDeps): Handler {
  const clock = deps.clock ?? systemClock;
  const createRequestId = deps.createRequestId ?? createRequestIdSource();
  const retryAfter = String(deps.retryAfterSeconds ?? 1);
  const { pool, policy, logger, metrics, tracing, rewriteTarget } = deps;
  const proto = deps.isTls === true ? "https" : "http";
  const accessLog = deps.accessLog ?? NO_ACCESS_LOG;
  const trustedProxies = deps.trustedProxies ?? NO_TRUSTED_PROXIES;
  // Decided once: with no trusted proxies (the default) no peer address is parsed per request.
  const isTrusted = trustedProxies.isEmpty ? () => false : (ip: string) => trustedProxies.has(ip);
  const isForwardedSent = deps.isForwardedSent ?? true;
  // One timer for every request's response-header timeout, one for body reads.
  const deadlines = new DeadlineQueue({ clock });
  const bodyDeadlines = new DeadlineQueue({ clock });
  const clientWatch = {
    delayMs: CLIENT_WATCH_DELAY_MS,
    deadlines: new DeadlineQueue({ clock }),
  };
  // Built once: every attempt sends through the same client (and `fetch`, when one is given).
  const sender = deps.fetch === undefined
    ? { client: deps.client }
    : { client: deps.client, fetch: deps.fetch };
  const limits = deps.limits ?? NO_LIMITS;
  const admission = new Admission({
    pool,
    policy,
    clock,
    ...(deps.inFlightLimits === undefined ? {} : { limits: deps.inFlightLimits }),
    ...(deps.shared === undefined ? {} : { queue: deps.shared.queue }),
  });
  const bodyOptions = {
    maxBytes: limits.maxBodyBytes,
    limitBytes: deps.requestBufferBytes ?? 1024 * 1024,
    idleTimeoutMs: deps.bodyTimeoutMs ?? 30_000,
    deadlines: bodyDeadlines,
    now: () => clock.now(),
  };
  // Descriptor exhaustion comes in floods: one WARN per second says how many there were.
  const fdThrottle = new LogThrottle({ intervalMs: 1_000, clock });
  const retryGate = new RetryGate({
    percent: deps.retryBudgetPercent,
    minPerSecond: deps.retryBudgetMinPerSecond,
    storage: deps.shared?.retryBudget,
    clock,
    metrics,
    logger,
  });
  const idleBody = createIdleBodyWatch(deps.idleBodyTimeoutMs ?? 0, clock, logger, metrics);
  // Upgrades share the admission and the retry budget with plain requests.
  const webSockets = deps.webSockets === undefined ? undefined : createWebSocketProxy({
    ...deps,
    accessLog,
    clock,
    webSockets: deps.webSockets,
    admission,
    retryGate,
  });

  /**
   * Counts a finished request in the metrics and writes its access record.
   *
   * @returns A promise to await only when the access log's buffer is full.
   */
  function record(context: RequestContext, entry: AccessEntry): Promise<void> | undefined {
    const durationMs = clock.now() - context.started;
    metrics.recordRequest(entry.backend, entry.status, durationMs);
    if (!accessLog.isEnabled) return undefined;
    const { request } = context;
    const length = entry.bodyBytes ?? entry.response?.headers.get("content-length");
    return accessLog.write({
      time: Date.now(),
      client: context.client,
      method: request.method,
      path: context.path,
      ...(context.query === undefined || context.query === "" ? {} : { query: context.query }),
      status: entry.status,
      bytes: length === undefined || length === null ? undefined : Number(length),
      referer: request.headers.get("referer"),
      userAgent: request.headers.get("user-agent"),
      backend: entry.backend?.name ?? null,
      durationMs,
      backendMs: entry.backendMs ?? null,
      requestId: context.requestId,
      outcome: entry.outcome,
      ...(entry.reason === undefined ? {} : { reason: entry.reason }),
      ...(deps.http2Requests?.has(request) === true ? { protocol: "HTTP/2.0" as const } : {}),
    });
  }

  /** Answers a request the balancer refuses itself (bad target, method, or body). */
  function refuse(
    context: RequestContext,
    status: number,
    reason: string,
    headers?: Record<string, string>,
    body?: string,
  ): Response {
    // A refusal does not wait for the access log: it is cheap, and its line is kept anyway.
    void record(context, { outcome: "refused", backend: undefined, status, reason });
    if (headers === CLOSE || headers === REFUSED_METHOD_HEADERS) {
      deps.closeAfterResponse?.add(context.request);
    }
    return textResponse(status, context.requestId, undefined, headers, body);
  }

  /** The client's body failed before any backend was involved. */
  function bodyFailed(context: RequestContext, failure: BodyFailure, message: string): Response {
    if (failure === "timeout") {
      deps.onBodyTimeout?.();
      return refuse(context, 408, "request body timed out", { connection: "close" });
    }
    if (failure === "too-large") {
      const { status, reason, body } = bodyTooLarge(limits.maxBodyBytes);
      return refuse(context, status, reason, CLOSE, body);
    }
    // 499 is a log code (the client closed its side first), never a response: a client that
    // is gone reads nothing, and one that only stopped sending (a half-closed upload, a chunk
    // Deno would not parse) gets a 400. Deno tells neither apart (the read fails alike and
    // `request.signal` does not abort), so both are logged 499 and answered 400.
    void record(context, {
      outcome: "client-abort",
      backend: undefined,
      status: 499,
      reason: message,
    });
    deps.closeAfterResponse?.add(context.request);
    return textResponse(400, context.requestId, undefined, CLOSE);
  }

  /** Every available backend stayed at its in-flight limit: 503, or 499 if the client left. */
  function atCapacity(context: RequestContext, refusal: Exclude<Refusal, "no-backend">): Response {
    if (refusal === "client-abort") return bodyFailed(context, "client-abort", "Client went away");
    metrics.recordEvent(refusal);
    const reason = `backends at capacity (${refusal})`;
    return refuse(context, 503, reason, { "retry-after": "1" }, AT_CAPACITY_BODY);
  }

  /**
   * A relayed response body ended: ends the backend's in-flight count, tells passive health
   * and writes the access record with the body bytes actually sent. A body the backend failed
   * to deliver whole is its failure, logged naming it; a client that went away mid-body is not.
   *
   * @returns A promise to await only when the access log's buffer is full.
   */
  function bodyEnded(
    context: RequestContext,
    answered: Answered,
    end: BodyEnd,
  ): Promise<void> | undefined {
    const { backend, status } = answered;
    const isFailure = end.kind === "backend-failed";
    backend.end(isFailure);
    admission.release();
    let reason: string | undefined;
    if (end.kind === "backend-failed") {
      // The idle-body timeout has logged its own WARN.
      const isStalled = end.error === IDLE_BODY_TIMEOUT;
      deps.onAttempt?.(backend, isStalled ? "response-timeout" : "protocol");
      reason = isStalled ? "idle-body-timeout" : "body-failed";
      if (!isStalled) {
        const error = end.error;
        logger.warn("Backend response body failed", () => ({
          backend: backend.name,
          reason: "protocol",
          status,
          bytes: end.bytes,
          message: messageOf(error),
          requestId: context.requestId,
        }));
      }
    } else {
      deps.onAttempt?.(backend, status);
      if (end.kind === "client-gone") reason = "client went away mid-body";
    }
    return record(context, {
      outcome: isFailure ? "failed" : "forwarded",
      backend,
      status,
      backendMs: answered.headersMs,
      bodyBytes: end.bytes,
      ...(reason === undefined ? {} : { reason }),
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
    target: AcceptedTarget,
    context: RequestContext,
    isPeerTrusted: boolean,
  ): Promise<Response> {
    try {
      const { requestId } = context;
      let read = readRequestBody(request, bodyOptions);
      if (read instanceof Promise) read = await read;
      if (!read.ok) return bodyFailed(context, read.failure, read.message);
      const body: RequestBody = read.body;
      const clientIp = context.client;
      let admitted = admission.admit(request, { clientIp });
      if (admitted instanceof Promise) admitted = await admitted;
      if (typeof admitted === "string" && admitted !== "no-backend") {
        cancelBody(body);
        return atCapacity(context, admitted);
      }
      const first = typeof admitted === "string" ? undefined : admitted;
      if (first === undefined) {
        metrics.recordNoBackend();
        cancelBody(body);
        const response = textResponse(503, requestId, retryAfter);
        const full = record(context, {
          outcome: "no-backend",
          backend: undefined,
          status: 503,
          response,
        });
        if (full !== undefined) await full;
        return response;
      }
      retryGate.recordRequest(context.started);
      let tried: Set<Backend> | undefined;
      let backend: Backend = first;
      // The attempt whose body is being relayed, once its head has been answered.
      let answered: Answered | undefined;
      let relayed: RelayedBody | undefined;
      let isRelayedLengthKnown = false;
      const relay = (stream: ReadableStream<Uint8Array>, declaredBytes: number | undefined) => {
        isRelayedLengthKnown = declaredBytes !== undefined;
        relayed = relayBody(
          stream,
          declaredBytes,
          (end) => answered === undefined ? undefined : bodyEnded(context, answered, end),
        );
        return relayed.stream;
      };
      // The same for every attempt: built once per request.
      const forwardOptions: ForwardOptions = {
        ...sender,
        target,
        body,
        timeoutMs: deps.timeoutMs,
        clientIp,
        isPeerTrusted,
        isForwardedSent,
        proto,
        requestId,
        via: deps.via,
        clock,
        deadlines,
        idleBody,
        clientWatch,
        relayBody: relay,
      };
      let retryReason: string | undefined;
      for (let attempt = 0;; attempt++) {
        relayed = undefined;
        const outcome = tracing === undefined
          ? await forward(request, backend, forwardOptions)
          : await tracing.attempt(
            { backend: backend.name, attempt: attempt + 1, retryReason, requestId },
            (traceparent) => forward(request, backend, { ...forwardOptions, traceparent }),
          );
        if (outcome.ok) {
          // Such as the cookie policy's Set-Cookie.
          const added = policy.responseHeaders?.(backend, request);
          if (added !== undefined) {
            for (const [n, v] of added) outcome.response.headers.append(n, v);
          }
          if (body.kind === "streamed" && !body.state.isComplete) {
            // The backend answered before the upload ended (an early 413): the rest of the
            // body will never be read, and Deno would wait for it with the connection open,
            // so the connection closes a little after the answer (a lingering close: closing
            // at once while the client still sends would reset it, losing the answer).
            outcome.response.headers.set("connection", "close");
            deps.lingerAfterResponse?.add(request);
          }
          // Set by `relay` during the forward (which the compiler cannot see).
          const streaming = relayed as RelayedBody | undefined;
          if (streaming !== undefined) {
            if (isRelayedLengthKnown && asksKeepAlive(request)) {
              // Deno 2.9.6 answers an HTTP/1.0 keep-alive request whose body streams with a
              // length `connection: keep-alive`, then closes (and cannot tell us the version):
              // say close, which wins over the keep-alive Deno still adds (RFC 9112 9.6). Such
              // bodies are over 64 KiB, so a new connection costs an HTTP/1.1 client little.
              outcome.response.headers.set("connection", "close");
            }
            // How the body ends decides the rest (bodyEnded); should Deno finish the response
            // without reading the body to its end or cancelling it, it ends here.
            answered = { backend, status: outcome.response.status, headersMs: outcome.headersMs };
            const completed = info.completed as Promise<void> | undefined;
            if (completed === undefined) streaming.abandon();
            else completed.then(streaming.abandon, streaming.abandon);
            return outcome.response;
          }
          deps.onAttempt?.(backend, outcome.response.status);
          endWhenDelivered(backend, info, admission);
          const full = record(context, {
            outcome: "forwarded",
            backend,
            status: outcome.response.status,
            backendMs: outcome.headersMs,
            response: outcome.response,
            bodyBytes: outcome.bodyBytes,
          });
          if (full !== undefined) await full;
          return outcome.response;
        }
        const reason = outcome.reason;
        const isBackendsFault = !NOT_BACKENDS_FAULT.has(reason);
        backend.end(isBackendsFault);
        admission.release();
        // Only a failure the backend caused feeds passive health.
        if (isBackendsFault) deps.onAttempt?.(backend, reason);
        if (reason === "unsendable") {
          cancelBody(body);
          return refuse(context, 400, outcome.message, CLOSE, GET_BODY_REFUSED_BODY);
        }
        if (reason === "client-abort" || reason === "client-timeout") {
          return bodyFailed(
            context,
            reason === "client-abort" ? "client-abort" : "timeout",
            outcome.message,
          );
        }
        if (reason === "client-too-large") {
          // Deno settles this request's `completed` before writing the answer, so the listener
          // must not close the connection: the client does, or the keep-alive timeout.
          const { status, reason, body } = bodyTooLarge(limits.maxBodyBytes);
          return refuse(context, status, reason, { connection: "close" }, body);
        }
        const failed = backend;
        if (reason === "fd-exhausted") {
          const suppressed = fdThrottle.take("connect");
          if (suppressed !== undefined) {
            logger.warn("Out of file descriptors connecting to backend", {
              backend: failed.name,
              message: outcome.message,
              suppressed,
            });
          }
          metrics.recordEvent("connect-fd-exhausted");
        } else {
          if (reason === "connect-timeout" || reason === "response-timeout") {
            metrics.recordEvent(reason);
          }
          logger.warn("Backend request failed", () => ({
            backend: failed.name,
            reason,
            message: outcome.message,
            attempt: attempt + 1,
            requestId,
          }));
        }
        const retryable = attempt < deps.retries &&
          canRetry(request.method, body, reason === "fd-exhausted" ? "connect" : reason);
        // The policy picks from the whole pool with the tried backends excluded, so its own
        // position (the round-robin cursor) moves on as for any request. The budget is asked
        // last: only a retry that would happen spends it.
        const picked = retryable
          ? policy.pick(pool.backends, request, (tried ??= new Set()).add(failed), { clientIp })
          : undefined;
        // Begun here, like admission's, against the whole balancer's limit for the backend.
        const next = picked !== undefined && retryGate.allow(failed.name, reason) &&
            picked.tryBegin()
          ? picked
          : undefined;
        if (next === undefined) {
          const status = FAILURE_STATUS[reason];
          const response = reason === "fd-exhausted"
            ? textResponse(503, requestId, retryAfter, undefined, FD_EXHAUSTED_BODY)
            : textResponse(status, requestId);
          const full = record(context, { outcome: "failed", backend, status, reason, response });
          if (full !== undefined) await full;
          return response;
        }
        metrics.recordRetry();
        retryReason = reason;
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
      const remoteAddr = info.remoteAddr;
      const client = "hostname" in remoteAddr ? remoteAddr.hostname : "unknown";
      const isPeerTrusted = isTrusted(client);
      const requestId = requestIdOf(request, isPeerTrusted, createRequestId);
      const tooLarge = checkRequestLimits(request, limits);
      if (tooLarge !== undefined) {
        const context = {
          request,
          path: request.url.slice(0, MAX_LOGGED_TARGET),
          started,
          requestId,
          client,
        };
        return Promise.resolve(
          refuse(context, tooLarge.status, tooLarge.reason, CLOSE, tooLarge.body),
        );
      }
      const refusedStatus = refusedMethodStatus(request.method);
      const resolved = resolveTarget(request.url, hostOf(request, deps.http2Requests));
      const target = resolved.ok && rewriteTarget !== undefined
        ? rewriteTarget(resolved)
        : resolved;
      if (!target.ok || refusedStatus !== undefined) {
        const context: RequestContext = {
          request,
          path: request.url.slice(0, MAX_LOGGED_TARGET),
          started,
          requestId,
          client,
        };
        if (refusedStatus !== undefined) {
          return Promise.resolve(
            refuse(
              context,
              refusedStatus,
              `method ${request.method} is not supported`,
              REFUSED_METHOD_HEADERS,
            ),
          );
        }
        // A body behind a refused target is never read: the connection closes.
        return Promise.resolve(refuse(context, 400, target.ok ? "" : target.reason, CLOSE));
      }
      if (hasHiddenBody(request)) {
        const context = { request, path: target.path, started, requestId, client };
        const reason = `a ${request.method} request's body cannot be forwarded`;
        return Promise.resolve(refuse(context, 400, reason, CLOSE, GET_BODY_REFUSED_BODY));
      }
      if (webSockets !== undefined && isWebSocketUpgrade(request)) {
        return webSockets.proxy(request, target, {
          started,
          requestId,
          forwarded: {
            clientIp: client,
            proto,
            host: target.authority,
            requestId,
            via: deps.via,
            isPeerTrusted,
            isForwardedSent,
          },
        });
      }
      const context = {
        request,
        path: target.path,
        query: target.query,
        started,
        requestId,
        client,
      };
      // Every record logged while the request is proxied, by any module, names it.
      const run = () =>
        withRequestId(requestId, () => proxy(request, info, target, context, isPeerTrusted));
      return tracing === undefined ? run() : tracing.request(request, requestId, run);
    } catch (error) {
      return Promise.resolve(failed(request, error));
    }
  };
}

/**
 * The idle-body timeout's watch, or none when it is off (0): then response bodies are not
 * wrapped at all. When it fires the client's stream is cut; it is logged naming the backend.
 */
function createIdleBodyWatch(
  timeoutMs: number,
  clock: Clock,
  logger: Logger,
  metrics: Metrics,
): IdleBodyWatch<IdleBodyContext> | undefined {
  if (timeoutMs <= 0) return undefined;
  return {
    timeoutMs,
    deadlines: new DeadlineQueue({ clock }),
    now: () => clock.now(),
    onTimeout: ({ backend, requestId }) => {
      metrics.recordEvent("idle-body-timeout");
      logger.warn("Backend response body stalled; cut the client's response", {
        backend: backend.name,
        reason: "idle-body-timeout",
        timeoutMs,
        requestId,
      });
    },
  };
}

/**
 * Ends the backend's in-flight count when the response body has been delivered (or the client
 * went away mid-body), using `info.completed` rather than wrapping the body in a stream.
 */
function endWhenDelivered(
  backend: Backend,
  info: Deno.ServeHandlerInfo,
  admission: Admission,
): void {
  const completed = info.completed as Promise<void> | undefined;
  if (completed === undefined) {
    backend.end(false);
    admission.release();
    return;
  }
  const end = () => {
    backend.end(false);
    admission.release();
  };
  completed.then(end, end);
}

/** Releases a streamed body nobody will forward. */
function cancelBody(body: RequestBody): void {
  if (body.kind === "streamed") body.stream.cancel().catch(() => {});
}

/** An error's message, through a `fetch` error's cause (which names what failed). */
function messageOf(error: unknown): string {
  const cause = error instanceof Error ? error.cause : undefined;
  if (cause instanceof Error) return `${(error as Error).message}: ${cause.message}`;
  return errorText(error);
}

/** Whether the request's `Connection` field has the `keep-alive` option. */
function asksKeepAlive(request: Request): boolean {
  const connection = request.headers.get("connection");
  return connection !== null && /(^|,)\s*keep-alive\s*(,|$)/i.test(connection);
}

/**
 * The request's `Host`: the header, or on HTTP/2 (which sends `:authority` instead, RFC 9113
 * section 8.3.1) the authority Deno put into `request.url`.
 */
function hostOf(request: Request, http2Requests: WeakSet<Request> | undefined): string | null {
  const host = request.headers.get("host");
  if (host !== null || http2Requests?.has(request) !== true) return host;
  const start = request.url.indexOf("://") + 3;
  const end = request.url.indexOf("/", start);
  return request.url.slice(start, end < 0 ? undefined : end);
}
