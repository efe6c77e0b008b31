/**
 * The request loop of one request path: a request the rules accepted has its body read up to
 * the request buffer (`request_body.ts`), is admitted to a backend (`admission.ts`: a backend
 * at its in-flight limit is skipped; when all are, the request queues, then 503), and is
 * forwarded (`proxy.ts`), attempt after attempt: after a failure it is retried on another
 * backend when `canRetry` allows and the retry budget (`retry_gate.ts`) has room.
 *
 * Status mapping: no healthy backend 503 (with `Retry-After`); out of file descriptors 503;
 * backend unreachable or broken 502; no connection (`connect-timeout`) or no response headers
 * (`response-timeout`) in time 504; a client whose body broke off is logged 499 and answered 400
 * (499 never goes on the wire); a request body that stalled 408. Only a failure the backend
 * caused counts against it and reaches passive health. A streamed response body is relayed
 * (`response_body.ts`): its access record, in-flight end and passive-health outcome come when
 * it ends, with the bytes actually sent; a backend failing mid-body is its failure.
 *
 * @module
 */
import type { Logger } from "../shared/logger.ts";
import type { Backend } from "../core/backend.ts";
import type { Metrics } from "../core/metrics.ts";
import type { AttemptResult } from "../core/outlier.ts";
import type { Pool } from "../core/pool.ts";
import type { Policy } from "../policies/registry.ts";
import type { ProxySettings } from "../config/settings.ts";
import type { Clock } from "../shared/clock.ts";
import { DeadlineQueue } from "../shared/deadlines.ts";
import { LogThrottle } from "../shared/log_throttle.ts";
import type { Admission } from "./admission.ts";
import {
  FAILURE_STATUS,
  FD_EXHAUSTED_BODY,
  GET_BODY_REFUSED_BODY,
  NOT_BACKENDS_FAULT,
  textResponse,
} from "./answers.ts";
import type { IdleBodyWatch } from "./idle_body.ts";
import {
  canRetry,
  type ClientWatch,
  forward,
  type ForwardFailureReason,
  type ForwardOptions,
  type IdleBodyContext,
} from "./proxy.ts";
import { type ReadBodyOptions, readRequestBody, type RequestBody } from "./request_body.ts";
import {
  type Answered,
  CLOSE,
  type RequestContext,
  type RequestOutcomes,
} from "./request_outcomes.ts";
import type { AcceptedTarget } from "./request_target.ts";
import { relayBody, type RelayedBody } from "./response_body.ts";
import type { RetryGate } from "./retry_gate.ts";
import type { RequestTracing } from "./tracing.ts";

/**
 * How long a request waits for its backend's headers before the client is watched for
 * departure, in ms: watching costs an operation per request in Deno, and a client that leaves
 * sooner is noticed then.
 */
const CLIENT_WATCH_DELAY_MS = 100;

/** What a {@linkcode RequestLoop} works with: the handler's parts, built once per path. */
export interface RequestLoopDeps {
  /** `proxy.timeoutMs` (response headers) and `proxy.retries`, as `settings.ts` declares them. */
  readonly proxy: Pick<ProxySettings, "timeoutMs" | "retries" | "idleBodyTimeoutMs">;
  /** How the request body is read (buffer, timeout, limit). */
  readonly body: Omit<ReadBodyOptions, "deadlines" | "now">;
  /** The backends a retry picks from. */
  readonly pool: Pool;
  /** Picks a retry's backend, and adds its response headers (the cookie policy's). */
  readonly policy: Policy;
  /** Picks and begins the first backend under the in-flight limits. */
  readonly admission: Admission;
  /** The retry budget. */
  readonly retryGate: RetryGate;
  /** Records how each request ends and builds the balancer's own answers. */
  readonly outcomes: RequestOutcomes;
  /** Receives backend failures. */
  readonly logger: Logger;
  /** Counts retries, timeouts and no-backend answers. */
  readonly metrics: Metrics;
  /** Runs every timeout. */
  readonly clock: Clock;
  /** The upstream `fetch` client, and the `fetch` to send with (the http1 client's), if any. */
  readonly sender: Pick<ForwardOptions, "client" | "fetch">;
  /** Seconds in the no-backend 503's `Retry-After`. */
  readonly retryAfter: string;
  /** Whether the RFC 7239 `Forwarded` header is sent. */
  readonly isForwardedSent: boolean;
  /** `http` or `https`: the listener's scheme. */
  readonly proto: string;
  /** Appended to `Via`. Default: no `Via`. */
  readonly via?: string | undefined;
  /** Spans per attempt. Default: none. */
  readonly tracing?: RequestTracing | undefined;
  /** Told each attempt's outcome (passive health). Default: none. */
  readonly onAttempt?: ((backend: Backend, result: AttemptResult) => void) | undefined;
  /** Receives the requests answered while their upload went on. Default: none. */
  readonly lingerAfterResponse?: WeakSet<Request> | undefined;
}

/** The parts of a request the rules established, for the loop. */
export interface AcceptedRequest {
  /** The client's request. */
  readonly request: Request;
  /** Its connection's facts (`completed` ends a delivered response). */
  readonly info: Deno.ServeHandlerInfo;
  /** The validated (and rewritten) target. */
  readonly target: AcceptedTarget;
  /** What its access record shares. */
  readonly context: RequestContext;
  /** Whether the peer is a trusted proxy. */
  readonly isPeerTrusted: boolean;
}

/** Reads, admits and forwards accepted requests, retrying as the rules allow. */
export class RequestLoop {
  readonly #deps: RequestLoopDeps;
  readonly #bodyOptions: ReadBodyOptions;
  /** One timer for every request's response-header timeout. */
  readonly #deadlines: DeadlineQueue;
  readonly #clientWatch: ClientWatch;
  readonly #idleBody: IdleBodyWatch<IdleBodyContext> | undefined;
  /** Descriptor exhaustion comes in floods: one WARN per second says how many there were. */
  readonly #fdThrottle: LogThrottle;

  /** @param deps The handler's parts. */
  constructor(deps: RequestLoopDeps) {
    this.#deps = deps;
    const { clock } = deps;
    this.#deadlines = new DeadlineQueue({ clock });
    // One timer for body reads too.
    this.#bodyOptions = {
      ...deps.body,
      deadlines: new DeadlineQueue({ clock }),
      now: () => clock.now(),
    };
    this.#clientWatch = { delayMs: CLIENT_WATCH_DELAY_MS, deadlines: new DeadlineQueue({ clock }) };
    this.#idleBody = idleBodyWatch(deps.proxy.idleBodyTimeoutMs, clock, deps.logger, deps.metrics);
    this.#fdThrottle = new LogThrottle({ intervalMs: 1_000, clock });
  }

  /**
   * Proxies one accepted request. Never throws: an error that escapes is a 502.
   *
   * @param accepted The request and what the rules established about it.
   * @returns The response for the client.
   */
  async run(accepted: AcceptedRequest): Promise<Response> {
    const { request, context } = accepted;
    const { admission, outcomes, retryGate } = this.#deps;
    try {
      let read = readRequestBody(request, this.#bodyOptions);
      if (read instanceof Promise) read = await read;
      if (!read.ok) return outcomes.bodyFailed(context, read.failure, read.message);
      const body: RequestBody = read.body;
      let admitted = admission.admit(request, { clientIp: context.client });
      if (admitted instanceof Promise) admitted = await admitted;
      if (typeof admitted === "string" && admitted !== "no-backend") {
        cancelBody(body);
        return outcomes.atCapacity(context, admitted);
      }
      if (typeof admitted === "string") return await this.#noBackend(context, body);
      retryGate.recordRequest(context.started);
      const relay = new BodyRelay(context, outcomes);
      // The same for every attempt: built once per request.
      const options: ForwardOptions = {
        ...this.#deps.sender,
        target: accepted.target,
        body,
        timeoutMs: this.#deps.proxy.timeoutMs,
        clientIp: context.client,
        isPeerTrusted: accepted.isPeerTrusted,
        isForwardedSent: this.#deps.isForwardedSent,
        proto: this.#deps.proto,
        requestId: context.requestId,
        via: this.#deps.via,
        clock: this.#deps.clock,
        deadlines: this.#deadlines,
        idleBody: this.#idleBody,
        clientWatch: this.#clientWatch,
        relayBody: relay.relay,
      };
      let tried: Set<Backend> | undefined;
      let backend: Backend = admitted;
      let retryReason: string | undefined;
      for (let attempt = 0;; attempt++) {
        relay.relayed = undefined;
        const outcome = await this.#attempt(accepted, backend, options, attempt, retryReason);
        if (outcome.ok) {
          const answer = this.#answered(accepted, body, backend, outcome, relay);
          return answer instanceof Promise ? await answer : answer;
        }
        const refused = this.#attemptFailed(accepted, body, backend, outcome, attempt);
        if (refused !== undefined) return refused;
        const reason = outcome.reason;
        const next = this.#nextBackend(
          accepted,
          body,
          backend,
          reason,
          attempt,
          tried ??= new Set(),
        );
        if (next === undefined) return await this.#failed(context, backend, reason);
        this.#deps.metrics.recordRetry();
        retryReason = reason;
        backend = next;
      }
    } catch (error) {
      return outcomes.failed(request, error);
    }
  }

  /** No backend is healthy: 503 with `Retry-After`. */
  async #noBackend(context: RequestContext, body: RequestBody): Promise<Response> {
    this.#deps.metrics.recordNoBackend();
    cancelBody(body);
    const response = textResponse(503, context.requestId, this.#deps.retryAfter);
    const full = this.#deps.outcomes.record(context, {
      outcome: "no-backend",
      backend: undefined,
      status: 503,
      response,
    });
    if (full !== undefined) await full;
    return response;
  }

  /** One forwarding attempt, in a span of its own when tracing is on. */
  #attempt(
    accepted: AcceptedRequest,
    backend: Backend,
    options: ForwardOptions,
    attempt: number,
    retryReason: string | undefined,
  ): ReturnType<typeof forward> {
    const { tracing } = this.#deps;
    if (tracing === undefined) return forward(accepted.request, backend, options);
    return tracing.attempt(
      {
        backend: backend.name,
        attempt: attempt + 1,
        retryReason,
        requestId: accepted.context.requestId,
      },
      (traceparent) => forward(accepted.request, backend, { ...options, traceparent }),
    );
  }

  /**
   * A backend answered: its response goes to the client. A relayed body's accounting waits for
   * its end (`BodyRelay`); a whole one is recorded now and ends the backend's in-flight count
   * when it has been delivered.
   *
   * @returns The response, or a promise of it when the access log's buffer is full.
   */
  #answered(
    accepted: AcceptedRequest,
    body: RequestBody,
    backend: Backend,
    outcome: Extract<Awaited<ReturnType<typeof forward>>, { ok: true }>,
    relay: BodyRelay,
  ): Response | Promise<Response> {
    const { request, info, context } = accepted;
    const { response } = outcome;
    // Such as the cookie policy's Set-Cookie.
    const added = this.#deps.policy.responseHeaders?.(backend, request);
    if (added !== undefined) {
      for (const [n, v] of added) response.headers.append(n, v);
    }
    if (body.kind === "streamed" && !body.state.isComplete) {
      // The backend answered before the upload ended (an early 413): the rest of the
      // body will never be read, and Deno would wait for it with the connection open,
      // so the connection closes a little after the answer (a lingering close: closing
      // at once while the client still sends would reset it, losing the answer).
      response.headers.set("connection", "close");
      this.#deps.lingerAfterResponse?.add(request);
    }
    const streaming = relay.relayed;
    if (streaming !== undefined) {
      if (relay.isLengthKnown && asksKeepAlive(request)) {
        // Deno 2.9.6 answers an HTTP/1.0 keep-alive request whose body streams with a
        // length `connection: keep-alive`, then closes (and cannot tell us the version):
        // say close, which wins over the keep-alive Deno still adds (RFC 9112 9.6). Such
        // bodies are over 64 KiB, so a new connection costs an HTTP/1.1 client little.
        response.headers.set("connection", "close");
      }
      // How the body ends decides the rest (bodyEnded); should Deno finish the response
      // without reading the body to its end or cancelling it, it ends here.
      relay.answered = { backend, status: response.status, headersMs: outcome.headersMs };
      const completed = info.completed as Promise<void> | undefined;
      if (completed === undefined) streaming.abandon();
      else completed.then(streaming.abandon, streaming.abandon);
      return response;
    }
    this.#deps.onAttempt?.(backend, response.status);
    this.#endWhenDelivered(backend, info);
    const full = this.#deps.outcomes.record(context, {
      outcome: "forwarded",
      backend,
      status: response.status,
      backendMs: outcome.headersMs,
      response,
      bodyBytes: outcome.bodyBytes,
    });
    return full === undefined ? response : full.then(() => response);
  }

  /**
   * An attempt failed: ends the backend's count (charging it only for its own fault), answers
   * a failure that is the client's at once, and logs the rest.
   *
   * @returns The answer for a failure that is the client's, or `undefined` to go on.
   */
  #attemptFailed(
    accepted: AcceptedRequest,
    body: RequestBody,
    backend: Backend,
    outcome: Extract<Awaited<ReturnType<typeof forward>>, { ok: false }>,
    attempt: number,
  ): Response | undefined {
    const { context } = accepted;
    const { outcomes, logger, metrics } = this.#deps;
    const reason = outcome.reason;
    const isBackendsFault = !NOT_BACKENDS_FAULT.has(reason);
    backend.end(isBackendsFault);
    this.#deps.admission.release();
    // Only a failure the backend caused feeds passive health.
    if (isBackendsFault) this.#deps.onAttempt?.(backend, reason);
    if (reason === "unsendable") {
      cancelBody(body);
      return outcomes.refuse(context, 400, outcome.message, CLOSE, GET_BODY_REFUSED_BODY);
    }
    if (reason === "client-abort" || reason === "client-timeout") {
      const failure = reason === "client-abort" ? "client-abort" : "timeout";
      return outcomes.bodyFailed(context, failure, outcome.message);
    }
    if (reason === "client-too-large") return outcomes.bodyTooLarge(context);
    if (reason === "fd-exhausted") {
      const suppressed = this.#fdThrottle.take("connect");
      if (suppressed !== undefined) {
        logger.warn("Out of file descriptors connecting to backend", {
          backend: backend.name,
          message: outcome.message,
          suppressed,
        });
      }
      metrics.recordEvent("connect-fd-exhausted");
      return undefined;
    }
    if (reason === "connect-timeout" || reason === "response-timeout") {
      metrics.recordEvent(reason);
    }
    logger.warn("Backend request failed", () => ({
      backend: backend.name,
      reason,
      message: outcome.message,
      attempt: attempt + 1,
      requestId: context.requestId,
    }));
    return undefined;
  }

  /**
   * The backend a failed request is retried on, begun, or `undefined` when it is not retried:
   * no retries left, a failure `canRetry` refuses, no other backend, or no budget.
   */
  #nextBackend(
    accepted: AcceptedRequest,
    body: RequestBody,
    failed: Backend,
    reason: ForwardFailureReason,
    attempt: number,
    tried: Set<Backend>,
  ): Backend | undefined {
    const { request, context } = accepted;
    const retryable = attempt < this.#deps.proxy.retries &&
      canRetry(request.method, body, reason === "fd-exhausted" ? "connect" : reason);
    if (!retryable) return undefined;
    // The policy picks from the whole pool with the tried backends excluded, so its own
    // position (the round-robin cursor) moves on as for any request. The budget is asked
    // last: only a retry that would happen spends it.
    const picked = this.#deps.policy.pick(this.#deps.pool.backends, request, tried.add(failed), {
      clientIp: context.client,
    });
    // Begun here, like admission's, against the whole balancer's limit for the backend.
    return picked !== undefined && this.#deps.retryGate.allow(failed.name, reason) &&
        picked.tryBegin()
      ? picked
      : undefined;
  }

  /** The last attempt failed and no retry follows: the failure's status. */
  async #failed(
    context: RequestContext,
    backend: Backend,
    reason: ForwardFailureReason,
  ): Promise<Response> {
    const status = FAILURE_STATUS[reason];
    const response = reason === "fd-exhausted"
      ? textResponse(503, context.requestId, this.#deps.retryAfter, undefined, FD_EXHAUSTED_BODY)
      : textResponse(status, context.requestId);
    const full = this.#deps.outcomes.record(context, {
      outcome: "failed",
      backend,
      status,
      reason,
      response,
    });
    if (full !== undefined) await full;
    return response;
  }

  /**
   * Ends the backend's in-flight count when the response body has been delivered (or the client
   * went away mid-body), using `info.completed` rather than wrapping the body in a stream.
   */
  #endWhenDelivered(backend: Backend, info: Deno.ServeHandlerInfo): void {
    const { admission } = this.#deps;
    const end = () => {
      backend.end(false);
      admission.release();
    };
    const completed = info.completed as Promise<void> | undefined;
    if (completed === undefined) end();
    else completed.then(end, end);
  }
}

/**
 * One request's relayed response body: the forward hands the body stream over (`relay`), and
 * once the attempt's head has been answered the body's end is that attempt's accounting.
 */
class BodyRelay {
  /** The attempt whose body is being relayed, once its head has been answered. */
  answered: Answered | undefined;
  /** The relay the current attempt set up, if its body streams. */
  relayed: RelayedBody | undefined;
  /** Whether the relayed body declared its length. */
  isLengthKnown = false;
  readonly #context: RequestContext;
  readonly #outcomes: RequestOutcomes;

  constructor(context: RequestContext, outcomes: RequestOutcomes) {
    this.#context = context;
    this.#outcomes = outcomes;
  }

  /** What the forward calls with a response body to relay; returns the client's stream. */
  readonly relay = (
    stream: ReadableStream<Uint8Array>,
    declaredBytes: number | undefined,
  ): ReadableStream<Uint8Array> => {
    this.isLengthKnown = declaredBytes !== undefined;
    this.relayed = relayBody(
      stream,
      declaredBytes,
      (end) =>
        this.answered === undefined
          ? undefined
          : this.#outcomes.bodyEnded(this.#context, this.answered, end),
    );
    return this.relayed.stream;
  };
}

/**
 * The idle-body timeout's watch, or none when it is off (0): then response bodies are not
 * wrapped at all. When it fires the client's stream is cut; it is logged naming the backend.
 */
function idleBodyWatch(
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

/** Releases a streamed body nobody will forward. */
export function cancelBody(body: RequestBody): void {
  if (body.kind === "streamed") body.stream.cancel().catch(() => {});
}

/** Whether the request's `Connection` field has the `keep-alive` option. */
function asksKeepAlive(request: Request): boolean {
  const connection = request.headers.get("connection");
  return connection !== null && /(^|,)\s*keep-alive\s*(,|$)/i.test(connection);
}
