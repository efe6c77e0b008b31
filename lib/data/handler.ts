/**
 * The proxy port's request handler: every request is proxied to a backend the policy picks
 * (the admin API has a listener of its own, `admin.ts`), with retries, status mapping, metrics
 * and one access log record per request.
 *
 * Before anything is forwarded the request is judged once, here: header fields, target and
 * declared body over their limits are 431, 414 and 413 (`request_limits.ts`); an invalid or
 * missing `Host`, or a target that fails the path rule, is 400 (`request_target.ts`);
 * `CONNECT` and `TRACK` are 501 and `TRACE` 405 in any case (the balancer tunnels nothing and
 * echoes nothing; `fetch` refuses all three); a `GET` or `HEAD` with a body is 400 (`Deno.serve`
 * discards such a body). Each of these refusals closes the connection. A WebSocket upgrade then
 * goes to `websocket.ts`, and every other request to the request loop (`request_loop.ts`:
 * body, admission, attempts, retries). How a request ends is recorded by `request_outcomes.ts`.
 * Error bodies are one short line of plain text: never a stack trace or a backend's error
 * message.
 *
 * @module
 */
import type { Logger } from "../shared/logger.ts";
import type { Backend } from "../core/backend.ts";
import type { Metrics } from "../core/metrics.ts";
import type { AttemptResult } from "../core/outlier.ts";
import type { Policy } from "../policies/registry.ts";
import type { Pool } from "../core/pool.ts";
import type { SharedState } from "../core/shared_state.ts";
import { type AccessLogSink, NO_ACCESS_LOG } from "./access_log.ts";
import { parseTrustedProxies, type TrustedProxies } from "../shared/ip.ts";
import type {
  ClientSettings,
  HealthSettings,
  LimitsSettings,
  ProxySettings,
} from "../config/settings.ts";
import { hasHiddenBody } from "./request_body.ts";
import { type AcceptedTarget, resolveTarget } from "./request_target.ts";
import { checkRequestLimits } from "./request_limits.ts";
import { Admission, type InFlightLimits } from "./admission.ts";
import {
  createWebSocketProxy,
  isWebSocketUpgrade,
  type WebSocketProxy,
  type WebSocketSettings,
} from "./websocket.ts";
import { GET_BODY_REFUSED_BODY, refusedMethodStatus } from "./answers.ts";
import { createRequestIdSource, requestIdOf } from "./request_id.ts";
import { RetryGate } from "./retry_gate.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { withRequestId } from "../process/log_context.ts";
import type { RequestTracing } from "./tracing.ts";
import { RequestLoop } from "./request_loop.ts";
import {
  CLOSE,
  REFUSED_METHOD_HEADERS,
  type RequestContext,
  RequestOutcomes,
} from "./request_outcomes.ts";

/**
 * The settings groups the request path reads, as `settings.ts` declares them (a
 * `BalancerConfig` is one; a route's pool overrides `proxy.timeoutMs` and
 * `proxy.retries`):
 *
 * - `proxy.timeoutMs`: the wait for a backend's response headers once the request is sent;
 * - `proxy.retries`: other backends a request is retried on, after a connect failure (any
 *   method) or a broken response (idempotent methods), when its body is absent or buffered;
 * - `proxy.retryBudgetPercent`, `proxy.retryBudgetMinPerSecond`: the retry budget;
 * - `proxy.idleBodyTimeoutMs`: the longest pause in a backend's response body (0 is none);
 * - `proxy.requestBufferBytes`: request bodies up to it are read whole before forwarding;
 * - `proxy.trustedProxies`: peers whose forwarding headers are kept and appended to;
 * - `proxy.forwarded`: whether the RFC 7239 `Forwarded` header is sent;
 * - `client.bodyTimeoutMs`: the longest pause between two reads of a request body (0 is none);
 * - `health.intervalMs`: its seconds (at least 1) go in the no-backend 503's `Retry-After`;
 * - `limits`: header, target and body size limits (431, 414, 413).
 */
export interface HandlerSettings {
  /** How requests are forwarded and retried. */
  readonly proxy: Pick<
    ProxySettings,
    | "timeoutMs"
    | "retries"
    | "retryBudgetPercent"
    | "retryBudgetMinPerSecond"
    | "idleBodyTimeoutMs"
    | "requestBufferBytes"
    | "trustedProxies"
    | "forwarded"
  >;
  /** The request body's read timeout. */
  readonly client: Pick<ClientSettings, "bodyTimeoutMs">;
  /** The probe interval, for `Retry-After`. */
  readonly health: Pick<HealthSettings, "intervalMs">;
  /** The request size limits. */
  readonly limits: Pick<LimitsSettings, "maxHeaderBytes" | "maxUrlLength" | "maxBodyBytes">;
}

/** Everything the handler needs, built once by the data plane. */
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
  /** The settings the request path reads, as `settings.ts` declares them. */
  readonly settings: HandlerSettings;
  /**
   * Told each attempt's outcome, its status code or failure reason: passive health's outlier
   * detection (`control/passive_health.ts`, or a worker's relay to it). Default: none.
   */
  readonly onAttempt?: (backend: Backend, result: AttemptResult) => void;
  /** Counts stalled request bodies (the listener counts its own timeouts). Default: none. */
  readonly onBodyTimeout?: () => void;
  /** Measures durations and runs the response-header timeouts. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /** Appended to `Via` on forwarded requests, such as `"1.1 denolb"`. Default: no `Via`. */
  readonly via?: string;
  /** Makes a request ID when the client sent none. Default: a per-isolate prefix and counter. */
  readonly createRequestId?: () => string;
  /** WebSocket proxying (on/off, open sockets); upgrade requests go to `websocket.ts`. */
  readonly webSockets?: WebSocketSettings;
  /**
   * Rewrites the target after the path rule accepted it (a route's prefix rewrite, `router.ts`);
   * the result must keep the rule (`routes.ts` checks the prefixes at load time). Default: none.
   */
  readonly rewriteTarget?: (target: AcceptedTarget) => AcceptedTarget;
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

/** A `Deno.serve` handler that never throws. */
export type Handler = (request: Request, info: Deno.ServeHandlerInfo) => Promise<Response>;

/** How much of a rejected target the log keeps. */
const MAX_LOGGED_TARGET = 256;

/**
 * The request handler of one request path (the one pool, or one route's pool): it judges each
 * request by the rules and hands it to the WebSocket proxy or the request loop.
 *
 * Each proxied request: pick a healthy backend, `begin()` it, forward, and `end()` it when the
 * response body has been delivered (or at once on failure); count it in the metrics; write one
 * record to the access log (outcome `forwarded`, `failed`, `refused`, `client-abort` or
 * `no-backend`). When the access log's buffer is full, the response waits for room.
 */
export class RequestHandler {
  readonly #deps: HandlerDeps;
  readonly #clock: Clock;
  readonly #createRequestId: () => string;
  readonly #trustedProxies: TrustedProxies;
  readonly #proto: "http" | "https";
  readonly #isForwardedSent: boolean;
  readonly #outcomes: RequestOutcomes;
  readonly #loop: RequestLoop;
  readonly #webSockets: WebSocketProxy | undefined;

  /** @param deps The pool, policy, client, logger, metrics and settings. */
  constructor(deps: HandlerDeps) {
    this.#deps = deps;
    const { settings, pool, policy, logger, metrics } = deps;
    const clock = deps.clock ?? systemClock;
    this.#clock = clock;
    this.#createRequestId = deps.createRequestId ?? createRequestIdSource();
    this.#trustedProxies = parseTrustedProxies(settings.proxy.trustedProxies);
    this.#proto = deps.isTls === true ? "https" : "http";
    this.#isForwardedSent = settings.proxy.forwarded === "on";
    const accessLog = deps.accessLog ?? NO_ACCESS_LOG;
    const admission = new Admission({
      pool,
      policy,
      clock,
      ...(deps.inFlightLimits === undefined ? {} : { limits: deps.inFlightLimits }),
      ...(deps.shared === undefined ? {} : { queue: deps.shared.queue }),
    });
    const retryGate = new RetryGate({
      ...settings.proxy,
      storage: deps.shared?.retryBudget,
      clock,
      metrics,
      logger,
    });
    this.#outcomes = new RequestOutcomes({
      clock,
      metrics,
      accessLog,
      logger,
      admission,
      maxBodyBytes: settings.limits.maxBodyBytes,
      onAttempt: deps.onAttempt,
      onBodyTimeout: deps.onBodyTimeout,
      closeAfterResponse: deps.closeAfterResponse,
      http2Requests: deps.http2Requests,
    });
    this.#loop = new RequestLoop({
      proxy: settings.proxy,
      body: { ...settings.proxy, ...settings.client, ...settings.limits },
      pool,
      policy,
      admission,
      retryGate,
      outcomes: this.#outcomes,
      logger,
      metrics,
      clock,
      // Built once: every attempt sends through the same client (and `fetch`, when given).
      sender: deps.fetch === undefined
        ? { client: deps.client }
        : { client: deps.client, fetch: deps.fetch },
      retryAfter: String(Math.max(1, Math.ceil(settings.health.intervalMs / 1000))),
      isForwardedSent: this.#isForwardedSent,
      proto: this.#proto,
      via: deps.via,
      tracing: deps.tracing,
      onAttempt: deps.onAttempt,
      lingerAfterResponse: deps.lingerAfterResponse,
    });
    // Upgrades share the admission and the retry budget with plain requests.
    this.#webSockets = deps.webSockets === undefined ? undefined : createWebSocketProxy({
      ...deps,
      proxy: settings.proxy,
      accessLog,
      clock,
      webSockets: deps.webSockets,
      admission,
      retryGate,
    });
  }

  /**
   * Answers one request. Never throws. Not async: a proxied request's promise is the request
   * loop's own, which catches its errors, so no second promise and await are spent per request.
   *
   * @param request The client's request.
   * @param info Its connection's facts.
   * @returns The response.
   */
  handle(request: Request, info: Deno.ServeHandlerInfo): Promise<Response> {
    const started = this.#clock.now();
    try {
      const remoteAddr = info.remoteAddr;
      const client = "hostname" in remoteAddr ? remoteAddr.hostname : "unknown";
      // With no trusted proxies (the default) no peer address is parsed per request.
      const isPeerTrusted = !this.#trustedProxies.isEmpty && this.#trustedProxies.has(client);
      const requestId = requestIdOf(request, isPeerTrusted, this.#createRequestId);
      const refused = this.#judge(request, started, requestId, client);
      if (refused instanceof Response) return Promise.resolve(refused);
      const target = refused;
      if (this.#webSockets !== undefined && isWebSocketUpgrade(request)) {
        return this.#upgrade(this.#webSockets, request, target, {
          started,
          requestId,
          client,
          isPeerTrusted,
        });
      }
      const context: RequestContext = {
        request,
        path: target.path,
        query: target.query,
        started,
        requestId,
        client,
      };
      const accepted = { request, info, target, context, isPeerTrusted };
      // Every record logged while the request is proxied, by any module, names it.
      const run = () => withRequestId(requestId, () => this.#loop.run(accepted));
      const { tracing } = this.#deps;
      return tracing === undefined ? run() : tracing.request(request, requestId, run);
    } catch (error) {
      return Promise.resolve(this.#outcomes.failed(request, error));
    }
  }

  /**
   * The request rules: size limits, refused methods, the target's path rule (and a route's
   * rewrite), a body a GET or HEAD hides.
   *
   * @returns The accepted target, or the refusal.
   */
  #judge(
    request: Request,
    started: number,
    requestId: string,
    client: string,
  ): AcceptedTarget | Response {
    const outcomes = this.#outcomes;
    const rejected = (): RequestContext => ({
      request,
      path: request.url.slice(0, MAX_LOGGED_TARGET),
      started,
      requestId,
      client,
    });
    const tooLarge = checkRequestLimits(request, this.#deps.settings.limits);
    if (tooLarge !== undefined) {
      return outcomes.refuse(rejected(), tooLarge.status, tooLarge.reason, CLOSE, tooLarge.body);
    }
    const refusedStatus = refusedMethodStatus(request.method);
    const resolved = resolveTarget(request.url, hostOf(request, this.#deps.http2Requests));
    const { rewriteTarget } = this.#deps;
    const target = resolved.ok && rewriteTarget !== undefined ? rewriteTarget(resolved) : resolved;
    if (refusedStatus !== undefined) {
      const reason = `method ${request.method} is not supported`;
      return outcomes.refuse(rejected(), refusedStatus, reason, REFUSED_METHOD_HEADERS);
    }
    // A body behind a refused target is never read: the connection closes.
    if (!target.ok) return outcomes.refuse(rejected(), 400, target.reason, CLOSE);
    if (hasHiddenBody(request)) {
      const context = { request, path: target.path, started, requestId, client };
      const reason = `a ${request.method} request's body cannot be forwarded`;
      return outcomes.refuse(context, 400, reason, CLOSE, GET_BODY_REFUSED_BODY);
    }
    return target;
  }

  /** The WebSocket entry: an upgrade goes to the WebSocket proxy with the forwarding facts. */
  #upgrade(
    webSockets: WebSocketProxy,
    request: Request,
    target: AcceptedTarget,
    facts: { started: number; requestId: string; client: string; isPeerTrusted: boolean },
  ): Promise<Response> {
    const { started, requestId, client, isPeerTrusted } = facts;
    return webSockets.proxy(request, target, {
      started,
      requestId,
      forwarded: {
        clientIp: client,
        proto: this.#proto,
        host: target.authority,
        requestId,
        via: this.#deps.via,
        isPeerTrusted,
        isForwardedSent: this.#isForwardedSent,
      },
    });
  }
}

/**
 * Creates the request handler as `Deno.serve` takes it.
 *
 * @param deps The pool, policy, client, logger, metrics and settings.
 * @returns The handler: {@linkcode RequestHandler.handle}.
 */
export function createHandler(deps: HandlerDeps): Handler {
  const handler = new RequestHandler(deps);
  return (request, info) => handler.handle(request, info);
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
