/**
 * How a proxied request ends, for one request path: it is counted in the metrics, gets one
 * access record (outcome `forwarded`, `failed`, `refused`, `client-abort` or `no-backend`), and
 * when the balancer answers it itself (a refusal, a client whose body failed, every backend at
 * capacity) the answer is built here. A refusal that leaves the request body unread marks the
 * request for the listener to close its connection after the answer.
 *
 * @module
 */
import type { Logger } from "../shared/logger.ts";
import type { Backend } from "../core/backend.ts";
import type { Metrics } from "../core/metrics.ts";
import type { AttemptResult } from "../core/outlier.ts";
import type { Clock } from "../shared/clock.ts";
import { errorText } from "../shared/error_text.ts";
import type { AccessLogSink } from "./access_log.ts";
import type { Admission, Refusal } from "./admission.ts";
import { ALLOWED_METHODS, AT_CAPACITY_BODY, textResponse } from "./answers.ts";
import { IDLE_BODY_TIMEOUT } from "./idle_body.ts";
import type { BodyFailure } from "./request_body.ts";
import { bodyTooLarge } from "./request_limits.ts";
import type { BodyEnd } from "./response_body.ts";

/**
 * A refusal that leaves the rest of the request unread must close the connection; refused
 * with this very object, the listener closes it once the answer is sent.
 */
export const CLOSE = { connection: "close" } as const;

/** A refused method's answer: its body, if any, is never read, so the connection closes. */
export const REFUSED_METHOD_HEADERS = { allow: ALLOWED_METHODS, connection: "close" } as const;

/** What every access record of one request shares. */
export interface RequestContext {
  /** The client's request. */
  readonly request: Request;
  /** The normalized path forwarded, or for a rejected request the raw target (cut short). */
  readonly path: string;
  /** The query forwarded, with its `?`; empty or absent when there was none. */
  readonly query?: string;
  /** When the request arrived, on the handler's clock. */
  readonly started: number;
  /** The request's ID (the client's or a new one). */
  readonly requestId: string;
  /** The client's address. */
  readonly client: string;
}

/** How one request ended, for the metrics and the access log. */
export interface AccessEntry {
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

/** An attempt whose response head went to the client, its body still on the way. */
export interface Answered {
  /** The backend that answered. */
  readonly backend: Backend;
  /** Its status. */
  readonly status: number;
  /** Time to the backend's response headers. */
  readonly headersMs: number;
}

/** What {@linkcode RequestOutcomes} records into and tells. */
export interface RequestOutcomesDeps {
  /** Times each request. */
  readonly clock: Clock;
  /** Counts each request. */
  readonly metrics: Metrics;
  /** Receives one record per request. */
  readonly accessLog: AccessLogSink;
  /** Receives the backend failures noticed mid-body and escaped errors. */
  readonly logger: Logger;
  /** Ends the in-flight slot of a request whose response body ended. */
  readonly admission: Admission;
  /** The largest request body (`limits.maxBodyBytes`), for the 413's text. */
  readonly maxBodyBytes: number;
  /** Told each attempt's outcome (passive health). Default: none. */
  readonly onAttempt?: ((backend: Backend, result: AttemptResult) => void) | undefined;
  /** Counts stalled request bodies. Default: none. */
  readonly onBodyTimeout?: (() => void) | undefined;
  /** Receives the requests whose connection closes after the answer. Default: none. */
  readonly closeAfterResponse?: WeakSet<Request> | undefined;
  /** The requests that came over HTTP/2, for the access record. Default: none. */
  readonly http2Requests?: WeakSet<Request> | undefined;
}

/** Records how requests end and builds the balancer's own answers. */
export class RequestOutcomes {
  readonly #deps: RequestOutcomesDeps;

  /** @param deps Clock, metrics, access log, logger, admission and listeners. */
  constructor(deps: RequestOutcomesDeps) {
    this.#deps = deps;
  }

  /**
   * Counts a finished request in the metrics and writes its access record.
   *
   * @param context The request.
   * @param entry How it ended.
   * @returns A promise to await only when the access log's buffer is full.
   */
  record(context: RequestContext, entry: AccessEntry): Promise<void> | undefined {
    const { clock, metrics, accessLog } = this.#deps;
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
      ...(this.#deps.http2Requests?.has(request) === true ? { protocol: "HTTP/2.0" as const } : {}),
    });
  }

  /**
   * Answers a request the balancer refuses itself (bad target, method, or body).
   *
   * @param context The request.
   * @param status The answer's status.
   * @param reason Why, for the access record.
   * @param headers The answer's headers: {@linkcode CLOSE} or {@linkcode REFUSED_METHOD_HEADERS}
   *   also close the connection after it.
   * @param body The answer's text. Default: the status's own line.
   * @returns The answer.
   */
  refuse(
    context: RequestContext,
    status: number,
    reason: string,
    headers?: Record<string, string>,
    body?: string,
  ): Response {
    // A refusal does not wait for the access log: it is cheap, and its line is kept anyway.
    void this.record(context, { outcome: "refused", backend: undefined, status, reason });
    if (headers === CLOSE || headers === REFUSED_METHOD_HEADERS) {
      this.#deps.closeAfterResponse?.add(context.request);
    }
    return textResponse(status, context.requestId, undefined, headers, body);
  }

  /**
   * The client's body failed before any backend was involved: 408, 413, or a 400 logged 499.
   *
   * @param context The request.
   * @param failure How it failed.
   * @param message What failed, for the access record.
   * @returns The answer.
   */
  bodyFailed(context: RequestContext, failure: BodyFailure, message: string): Response {
    if (failure === "timeout") {
      this.#deps.onBodyTimeout?.();
      return this.refuse(context, 408, "request body timed out", { connection: "close" });
    }
    if (failure === "too-large") {
      const { status, reason, body } = bodyTooLarge(this.#deps.maxBodyBytes);
      return this.refuse(context, status, reason, CLOSE, body);
    }
    // 499 is a log code (the client closed its side first), never a response: a client that
    // is gone reads nothing, and one that only stopped sending (a half-closed upload, a chunk
    // Deno would not parse) gets a 400. Deno tells neither apart (the read fails alike and
    // `request.signal` does not abort), so both are logged 499 and answered 400.
    void this.record(context, {
      outcome: "client-abort",
      backend: undefined,
      status: 499,
      reason: message,
    });
    this.#deps.closeAfterResponse?.add(context.request);
    return textResponse(400, context.requestId, undefined, CLOSE);
  }

  /**
   * A body larger than `limits.maxBodyBytes` that the forward noticed: 413. Deno settles this
   * request's `completed` before writing the answer, so the listener must not close the
   * connection: the client does, or the keep-alive timeout.
   *
   * @param context The request.
   * @returns The answer.
   */
  bodyTooLarge(context: RequestContext): Response {
    const { status, reason, body } = bodyTooLarge(this.#deps.maxBodyBytes);
    return this.refuse(context, status, reason, { connection: "close" }, body);
  }

  /**
   * Every available backend stayed at its in-flight limit: 503, or 499 if the client left.
   *
   * @param context The request.
   * @param refusal Why admission refused it.
   * @returns The answer.
   */
  atCapacity(context: RequestContext, refusal: Exclude<Refusal, "no-backend">): Response {
    if (refusal === "client-abort") {
      return this.bodyFailed(context, "client-abort", "Client went away");
    }
    this.#deps.metrics.recordEvent(refusal);
    const reason = `backends at capacity (${refusal})`;
    return this.refuse(context, 503, reason, { "retry-after": "1" }, AT_CAPACITY_BODY);
  }

  /**
   * A relayed response body ended: ends the backend's in-flight count, tells passive health
   * and writes the access record with the body bytes actually sent. A body the backend failed
   * to deliver whole is its failure, logged naming it; a client that went away mid-body is not.
   *
   * @param context The request.
   * @param answered The attempt whose body it was.
   * @param end How the body ended.
   * @returns A promise to await only when the access log's buffer is full.
   */
  bodyEnded(context: RequestContext, answered: Answered, end: BodyEnd): Promise<void> | undefined {
    const { backend, status } = answered;
    const isFailure = end.kind === "backend-failed";
    backend.end(isFailure);
    this.#deps.admission.release();
    let reason: string | undefined;
    if (end.kind === "backend-failed") {
      // The idle-body timeout has logged its own WARN.
      const isStalled = end.error === IDLE_BODY_TIMEOUT;
      this.#deps.onAttempt?.(backend, isStalled ? "response-timeout" : "protocol");
      reason = isStalled ? "idle-body-timeout" : "body-failed";
      if (!isStalled) {
        const error = end.error;
        this.#deps.logger.warn("Backend response body failed", () => ({
          backend: backend.name,
          reason: "protocol",
          status,
          bytes: end.bytes,
          message: messageOf(error),
          requestId: context.requestId,
        }));
      }
    } else {
      this.#deps.onAttempt?.(backend, status);
      if (end.kind === "client-gone") reason = "client went away mid-body";
    }
    return this.record(context, {
      outcome: isFailure ? "failed" : "forwarded",
      backend,
      status,
      backendMs: answered.headersMs,
      bodyBytes: end.bytes,
      ...(reason === undefined ? {} : { reason }),
    });
  }

  /**
   * Answers 502 for an error that escaped; nothing should throw, and the client never sees it.
   *
   * @param request The request being handled.
   * @param error What escaped.
   * @returns The answer.
   */
  failed(request: Request, error: unknown): Response {
    this.#deps.logger.error("Request handling failed", { error, method: request.method });
    return textResponse(502, undefined);
  }
}

/** An error's message, through a `fetch` error's cause (which names what failed). */
function messageOf(error: unknown): string {
  const cause = error instanceof Error ? error.cause : undefined;
  if (cause instanceof Error) return `${(error as Error).message}: ${cause.message}`;
  return errorText(error);
}
