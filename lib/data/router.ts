/**
 * The route table in front of the request handlers: each request's host, path, method and
 * headers pick its route (`core/routes.ts`, first match wins); the route answers itself (a
 * redirect, a fixed response, 404 when nothing matches, 429 past its rate limit) or hands the
 * request to the handler of its pool (`handler.ts`, one per route, so its access-log lines
 * name the route).
 *
 * The path is routed on after the balancer's path rule (`request_target.ts`) has normalized
 * it; the pool's handler applies the rule again, then the route's rewrite, then removes dot
 * segments once more (`routed_handlers.ts`): a rewrite
 * replaces a prefix the route matched with one checked at load time, so no request reaches a
 * path outside the pool's backends' base paths. A request that fails the rule goes to a
 * handler unchanged, which answers it 400 as without routes.
 *
 * @module
 */
import type { Backend } from "../core/backend.ts";
import {
  type HeaderRules,
  matchRoute,
  type RateLimit,
  rewritePath,
  type RouteConfig,
} from "../core/routes.ts";
import type { SharedRateLimiter } from "../core/rate_limiter.ts";
import type { Metrics } from "../core/metrics.ts";
import type { AccessLogSink, AccessRecord } from "./access_log.ts";
import { resolveTarget } from "./request_target.ts";
import { textResponse } from "./answers.ts";
import { requestIdOf } from "./request_id.ts";
import type { Handler } from "./handler.ts";
import type { TrustedProxies } from "../shared/ip.ts";
import type { Clock } from "../shared/clock.ts";

/** One route ready to serve: its configuration and, for a pool route, its pool's handler. */
export interface ServedRoute {
  /** The route as configured. */
  readonly config: RouteConfig;
  /** The handler of its pool, writing access lines that name the route; none for answers. */
  readonly handler?: Handler;
}

/** What the router needs. */
export interface RouterDeps {
  /** The routes, in order. */
  readonly routes: readonly ServedRoute[];
  /** Answers the requests that fail the target rule (400) and the like. */
  readonly fallback: Handler;
  /** The whole balancer's buckets. */
  readonly limiter: SharedRateLimiter;
  /** Milliseconds to add to the clock to reach the balancer's time base. */
  readonly timeDeltaMs: number;
  /** Receives the access lines of the answers the router gives itself. */
  readonly accessLog: AccessLogSink;
  /** Counts requests, refusals and evictions. */
  readonly metrics: Metrics;
  /** Peers whose `X-Forwarded-For` names the client a limit keys on. */
  readonly trustedProxies: TrustedProxies;
  /** Measures durations and the buckets' time. */
  readonly clock: Clock;
  /** Makes a request ID when the client sent none. */
  readonly createRequestId: () => string;
  /** Requests whose connection the listener must close after the answer. */
  readonly closeAfterResponse?: WeakSet<Request>;
}

/**
 * Builds the routing handler.
 *
 * @param deps The routes with their handlers, the limiter and the access log.
 * @returns A handler that never throws.
 */
export function createRouter(deps: RouterDeps): Handler {
  const { routes, limiter, clock, metrics, accessLog } = deps;
  const configs = routes.map((route) => route.config);

  /** The access line and metrics of an answer the router gave itself. */
  const record = (
    request: Request,
    client: string,
    path: string,
    started: number,
    requestId: string,
    route: string | undefined,
    status: number,
    outcome: string,
    reason: string,
  ): void => {
    const durationMs = clock.now() - started;
    metrics.recordRequest(undefined as Backend | undefined, status, durationMs);
    metrics.recordRoute(route ?? "none", "none", status);
    if (!accessLog.isEnabled) return;
    const line: AccessRecord = {
      time: Date.now(),
      client,
      method: request.method,
      path,
      status,
      bytes: undefined,
      referer: request.headers.get("referer"),
      userAgent: request.headers.get("user-agent"),
      backend: null,
      durationMs,
      backendMs: null,
      requestId,
      outcome,
      reason,
      ...(route === undefined ? {} : { route }),
    };
    void accessLog.write(line);
  };

  // Not async: a routed request's promise is its pool handler's own, so no second promise and
  // await are spent per request.
  return function route(request: Request, info: Deno.ServeHandlerInfo): Promise<Response> {
    try {
      return routeRequest(request, info);
    } catch {
      // Nothing above throws for any request; should it, the request is still answered.
      return Promise.resolve(textResponse(500, undefined));
    }
  };

  function routeRequest(request: Request, info: Deno.ServeHandlerInfo): Promise<Response> {
    const host = request.headers.get("host");
    const target = resolveTarget(request.url, host);
    if (!target.ok) return deps.fallback(request, info);
    const started = clock.now();
    const remoteAddr = info.remoteAddr;
    const peer = "hostname" in remoteAddr ? remoteAddr.hostname : "unknown";
    // A client's own X-Request-Id is kept only from a trusted proxy, as in the pools' handlers.
    const isPeerTrusted = deps.trustedProxies.has(peer);
    const choice = matchRoute(configs, {
      host: target.authority,
      path: target.path,
      method: request.method,
      header: (name) => request.headers.get(name),
    });
    if (!choice.ok) {
      const requestId = requestIdOf(request, isPeerTrusted, deps.createRequestId);
      record(
        request,
        peer,
        target.path,
        started,
        requestId,
        undefined,
        404,
        "no-route",
        "no route",
      );
      return closing(request, textResponse(404, requestId, undefined, undefined, "Not found\n"));
    }
    const served = routes[choice.index] as ServedRoute;
    const config = choice.route;
    if (config.rateLimit !== undefined) {
      const key = limitKey(config.name, config.rateLimit, request, peer, deps.trustedProxies);
      const decision = limiter.take(key, config.rateLimit, clock.now() + deps.timeDeltaMs);
      if (decision.evicted === true) metrics.recordEvent("rate-limit-evicted");
      if (!decision.ok) {
        metrics.recordEvent("rate-limited");
        const requestId = requestIdOf(request, isPeerTrusted, deps.createRequestId);
        record(
          request,
          peer,
          target.path,
          started,
          requestId,
          config.name,
          429,
          "rate-limited",
          "rate limit",
        );
        return closing(
          request,
          textResponse(
            429,
            requestId,
            String(decision.retryAfterSeconds),
            undefined,
            "Too many requests\n",
          ),
        );
      }
    }
    const path = config.rewrite === undefined
      ? target.path
      : rewritePath(target.path, config.rewrite);
    if (config.redirect !== undefined || config.respond !== undefined) {
      const requestId = requestIdOf(request, isPeerTrusted, deps.createRequestId);
      let response: Response;
      if (config.redirect !== undefined) {
        const { to, status, keepPath } = config.redirect;
        const location = keepPath === true
          ? (to.endsWith("/") ? to.slice(0, -1) : to) + path + target.query
          : to;
        response = new Response(null, {
          status,
          headers: { location, "x-request-id": requestId },
        });
      } else {
        const { status, body, contentType } = config.respond as NonNullable<RouteConfig["respond"]>;
        response = new Response(body ?? null, {
          status,
          headers: {
            "content-type": contentType ?? "text/plain; charset=utf-8",
            "x-request-id": requestId,
          },
        });
      }
      applyHeaders(response.headers, config.responseHeaders);
      record(
        request,
        peer,
        target.path,
        started,
        requestId,
        config.name,
        response.status,
        "answered",
        config.redirect !== undefined ? "redirect" : "fixed response",
      );
      return closing(request, response);
    }
    const handler = served.handler ?? deps.fallback;
    // The path rewrite is the route handler's own (no new Request); header rules need a copy.
    const forwarded = config.requestHeaders === undefined
      ? request
      : rewriteRequest(request, config.requestHeaders);
    const pool = config.pool ?? "none";
    const responseHeaders = config.responseHeaders;
    return handler(forwarded, info).then((response) => {
      metrics.recordRoute(config.name, pool, response.status);
      if (forwarded !== request && deps.closeAfterResponse?.has(forwarded)) {
        deps.closeAfterResponse.add(request);
      }
      return responseHeaders === undefined ? response : withHeaders(response, responseHeaders);
    });
  }

  /** A request answered with its body unread: its connection closes after the answer. */
  function closing(request: Request, response: Response): Promise<Response> {
    if (request.body !== null && !request.bodyUsed) {
      deps.closeAfterResponse?.add(request);
      response.headers.set("connection", "close");
    }
    return Promise.resolve(response);
  }
}

/** The bucket a request counts against: the route's name and what its limit counts apart. */
export function limitKey(
  route: string,
  limit: RateLimit,
  request: Request,
  peer: string,
  trustedProxies: TrustedProxies,
): string {
  if (limit.key === "route") return route;
  if (limit.key === "client") {
    return `${route}\u0000${clientAddress(request, peer, trustedProxies)}`;
  }
  return `${route}\u0000${request.headers.get(limit.key.slice("header:".length)) ?? ""}`;
}

/**
 * The client's address after trusted proxies: from a trusted peer, the rightmost address in
 * `X-Forwarded-For` that is not itself a trusted proxy (what nginx's `real_ip_recursive` gives).
 */
export function clientAddress(
  request: Request,
  peer: string,
  trustedProxies: TrustedProxies,
): string {
  if (trustedProxies.isEmpty || !trustedProxies.has(peer)) return peer;
  const chain = request.headers.get("x-forwarded-for");
  if (chain === null) return peer;
  const hops = chain.split(",");
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = (hops[i] ?? "").trim();
    if (hop === "") continue;
    if (!trustedProxies.has(hop)) return hop;
  }
  return peer;
}

/** The request with its headers set or removed; target, body and signal kept. */
function rewriteRequest(request: Request, rules: HeaderRules): Request {
  const headers = new Headers(request.headers);
  applyHeaders(headers, rules);
  return new Request(request.url, {
    method: request.method,
    headers,
    body: request.body,
    signal: request.signal,
    redirect: "manual",
  });
}

function applyHeaders(headers: Headers, rules: HeaderRules | undefined): void {
  if (rules === undefined) return;
  for (const name of rules.remove ?? []) headers.delete(name);
  for (const [name, value] of Object.entries(rules.set ?? {})) headers.set(name, value);
}

/** The response with the route's header rules applied (a copy when its headers are immutable). */
function withHeaders(response: Response, rules: HeaderRules): Response {
  try {
    applyHeaders(response.headers, rules);
    return response;
  } catch {
    const headers = new Headers(response.headers);
    applyHeaders(headers, rules);
    return new Response(response.body, {
      status: response.status,
      statusText: response.statusText,
      headers,
    });
  }
}
