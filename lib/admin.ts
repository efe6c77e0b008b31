/**
 * The balancer's own endpoints under `/_lb/`: `metrics` (Prometheus text), `status` (JSON:
 * every backend's health and counters) and `health` (200, or 503 while draining). Only `GET`
 * and `HEAD` are allowed.
 *
 * @module
 */
import type { Metrics } from "./metrics.ts";
import type { Pool } from "./pool.ts";

/** The path prefix reserved for the balancer's own endpoints. */
export const ADMIN_PREFIX = "/_lb/";

const TEXT_HEADERS = { "content-type": "text/plain; charset=utf-8" } as const;

/** What the admin endpoints read. */
export interface AdminDeps {
  /** The backends, for `status`. */
  readonly pool: Pool;
  /** Rendered by `metrics`. */
  readonly metrics: Metrics;
  /** Whether the balancer is draining: `health` then answers 503. */
  readonly isDraining: () => boolean;
}

/**
 * Answers a request for one admin endpoint.
 *
 * @param request The client's request (only its method is read).
 * @param path The path after {@linkcode ADMIN_PREFIX}, without the query: `"metrics"`.
 * @param deps The pool, metrics and drain state.
 * @returns The endpoint's response; 404 for an unknown path, 405 for a method other than
 *   `GET` or `HEAD`.
 */
export function adminResponse(request: Request, path: string, deps: AdminDeps): Response {
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("Method not allowed\n", {
      status: 405,
      headers: { ...TEXT_HEADERS, allow: "GET, HEAD" },
    });
  }
  switch (path) {
    case "metrics":
      return new Response(deps.metrics.render(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    case "status":
      return Response.json(statusReport(deps.pool, deps.isDraining()));
    case "health":
      return deps.isDraining()
        ? new Response("draining\n", { status: 503, headers: TEXT_HEADERS })
        : new Response("ok\n", { headers: TEXT_HEADERS });
    default:
      return new Response("Not found\n", { status: 404, headers: TEXT_HEADERS });
  }
}

/** A backend's entry in `/_lb/status`. */
export interface BackendStatus {
  /** Short name: `host:port`. */
  readonly name: string;
  /** Base URL. */
  readonly url: string;
  /** `"healthy"` or `"unhealthy"`. */
  readonly health: string;
  /** Requests forwarded and not finished. */
  readonly inFlight: number;
  /** Requests forwarded since start. */
  readonly requests: number;
  /** Forwarded requests that failed since start. */
  readonly failures: number;
}

/** The body of `/_lb/status`. */
export interface StatusReport {
  /** Whether the balancer is draining. */
  readonly draining: boolean;
  /** How many backends take traffic. */
  readonly healthy: number;
  /** Every backend, in configuration order. */
  readonly backends: readonly BackendStatus[];
}

/**
 * The `/_lb/status` report.
 *
 * @param pool The backends.
 * @param draining Whether the balancer is draining.
 * @returns A JSON-ready report.
 */
export function statusReport(pool: Pool, draining: boolean): StatusReport {
  return {
    draining,
    healthy: pool.healthyCount,
    backends: pool.backends.map((backend) => ({
      name: backend.name,
      url: backend.url.href,
      health: backend.health,
      inFlight: backend.inFlight,
      requests: backend.requests,
      failures: backend.failures,
    })),
  };
}
