/**
 * The admin API, served on its own listener (`--admin`, default `127.0.0.1:9091`), never on the
 * proxy port: on the proxy port every path, `/_lb/...` included, goes to a backend.
 *
 * | route                              | answer                                                  |
 * | ---------------------------------- | ------------------------------------------------------- |
 * | `GET /health`                      | 200, or 503 while draining (for an upstream L4 balancer) |
 * | `GET /status`, `GET /backends`     | JSON: the balancer's and every backend's state          |
 * | `GET /metrics`                     | Prometheus text                                         |
 * | `POST /backends/{name}/drain`      | stop sending it new requests; in-flight ones finish     |
 * | `POST /backends/{name}/undrain`    | send it requests again                                  |
 * | `POST /backends`                   | add a backend: `{"url": "...", "weight": 1}`            |
 * | `DELETE /backends/{name}`          | drain a backend, then remove it                         |
 * | `POST /reload`                     | re-read the configuration; 400 with the problems        |
 * | `GET /`, `GET /events`             | the live dashboard and its server-sent events           |
 *
 * With `--admin-token` every route but `/health` and the dashboard page needs
 * `Authorization: Bearer TOKEN` (compared in constant time). The page holds no data (it is
 * opened as `/#token=TOKEN`, and a fragment never reaches the server); its event stream takes
 * `?token=`, as a browser's `EventSource` cannot send headers.
 *
 * Every route but `/health` also passes `control/admin_guard.ts` first: without a token `Host`
 * must be an IP address, `localhost` or the admin host (DNS rebinding), and a POST or DELETE
 * must come from no other site (`Origin`, `Sec-Fetch-Site`) and carry no body but JSON (403,
 * 415 otherwise).
 *
 * @module
 */
import { type Backend, DEFAULT_WEIGHT, type Ejection, parseBackendUrl } from "../core/backend.ts";
import { checkAdminRequest } from "./admin_guard.ts";
import { SSE_HEADERS } from "./dashboard.ts";
import type { BackendConfig } from "../config/settings.ts";
import { checkWeight } from "../config/kinds.ts";
import type { Metrics, RouteCounts } from "../core/metrics.ts";
import type { Pool } from "../core/pool.ts";
import { errorText } from "../shared/error_text.ts";
import type { DnsSourceStatus } from "./discovery.ts";

const TEXT_HEADERS = { "content-type": "text/plain; charset=utf-8" } as const;

/** The live dashboard, mounted at `/` and `/events`. */
export interface Dashboard {
  /** The page. */
  readonly html: string;
  /** A server-sent event stream of status snapshots; ends when `signal` aborts. */
  events(signal: AbortSignal): ReadableStream<Uint8Array>;
}

/** What the admin API can change, from the balancer that owns it. */
export interface AdminControl {
  /** Re-reads and applies the configuration. */
  reload(): Promise<
    {
      readonly ok: true;
      readonly changes: readonly string[];
      readonly needsRestart: readonly string[];
    } | {
      readonly ok: false;
      readonly problems: readonly string[];
    }
  >;
  /** Adds a backend; throws a `RangeError` when its URL is in the pool already. */
  addBackend(backend: BackendConfig): Backend;
  /** Drains a backend, then removes it (in the background). */
  removeBackend(backend: Backend): void;
}

/** What the admin API reads and acts on. */
export interface AdminDeps {
  /** The backends. */
  readonly pool: Pool;
  /** Rendered by `/metrics`; latency quantiles for `/status`. */
  readonly metrics: Metrics;
  /** The named pool a backend (by URL) belongs to, when the balancer routes. Default: none. */
  readonly poolOf?: (href: string) => string | undefined;
  /** Whether the balancer is draining: `/health` then answers 503. */
  readonly isDraining: () => boolean;
  /** The bearer token every route but `/health` requires. Default: none required. */
  readonly token?: string | undefined;
  /**
   * The admin address's host as configured: without a token, `Host` must name it, an IP
   * address or `localhost` (`control/admin_guard.ts`). Default: `localhost`.
   */
  readonly hostname?: string | undefined;
  /** The dashboard. Default: `/` and `/events` answer 404. */
  readonly dashboard?: Dashboard | undefined;
  /** Told when an operator drains or undrains a backend, for the log. Default: nothing. */
  readonly onDrainChange?: (backend: Backend, isDraining: boolean) => void;
  /** Reload and adding or removing backends. Default: those routes answer 404. */
  readonly control?: AdminControl | undefined;
  /**
   * DNS discovery: its names' state for `/status`, its counters for `/metrics`. Default: none
   * (or none listed while it has no names).
   */
  readonly discovery?: {
    readonly isActive: boolean;
    status(): readonly DnsSourceStatus[];
    renderMetrics(): string;
  };
  /** The serving isolates and their open connections, for `/status`. Default: none listed. */
  readonly isolates?: () =>
    | ReadonlyArray<{ readonly id: string; readonly connections: number }>
    | undefined;
}

/** A backend's entry in `/status` and `/backends`. */
export interface BackendStatus {
  /** The named pool it belongs to, when the balancer routes. */
  readonly pool?: string;
  /** Short name: `host:port`. */
  readonly name: string;
  /** Base URL. */
  readonly url: string;
  /** `"healthy"` or `"unhealthy"`, from health checks. */
  readonly health: string;
  /** Whether an operator is draining it. */
  readonly isDraining: boolean;
  /**
   * Passive health's ejection: until when (ms since the epoch), how many times in a row, and
   * the kind of failure; `null` when it is not ejected.
   */
  readonly ejected: Ejection | null;
  /** Relative share of traffic. */
  readonly weight: number;
  /** Requests forwarded and not finished. */
  readonly inFlight: number;
  /** Requests forwarded since start. */
  readonly requests: number;
  /**
   * Forwarded requests the backend did not answer since start (refused, timed out, broken): the
   * balancer's own failures, answered 502 or 504 or retried elsewhere.
   */
  readonly failures: number;
  /** Responses with a 5xx status the backend sent since start, relayed to the client. */
  readonly responses5xx: number;
  /** Median latency to response headers, estimated from the histogram; `null` before traffic. */
  readonly p50Ms: number | null;
  /** 99th percentile latency, likewise. */
  readonly p99Ms: number | null;
}

/** The body of `/status`. */
export interface StatusReport {
  /** When the report was made: milliseconds since the Unix epoch. */
  readonly atMs: number;
  /** Whether the balancer is draining. */
  readonly draining: boolean;
  /** How many backends take traffic. */
  readonly healthy: number;
  /** Requests forwarded to any backend since start (each attempt counts). */
  readonly requests: number;
  /** 5xx responses the backends sent, over every backend. */
  readonly responses5xx: number;
  /** Forwarded requests no backend answered (the balancer's own 502/504), over every backend. */
  readonly failures: number;
  /** Requests answered 503 because no backend was available. */
  readonly noBackend: number;
  /** Every backend, in configuration order. */
  readonly backends: readonly BackendStatus[];
  /** The serving isolates (data-plane workers), when there are several. */
  readonly isolates?: ReadonlyArray<{ readonly id: string; readonly connections: number }>;
  /** DNS discovery's names, when any are configured. */
  readonly discovery?: readonly DnsSourceStatus[];
  /** Requests by route and pool, when the balancer routes. */
  readonly routes?: readonly RouteCounts[];
}

/**
 * The `/status` report.
 *
 * @param pool The backends.
 * @param metrics Their latency histograms.
 * @param draining Whether the balancer is draining.
 * @returns A JSON-ready report.
 */
export function statusReport(
  pool: Pool,
  metrics: Metrics,
  draining: boolean,
  poolOf?: (href: string) => string | undefined,
): StatusReport {
  const sum = (count: (backend: Backend) => number) =>
    pool.backends.reduce((total, backend) => total + count(backend), 0);
  const routes = metrics.routeCounts();
  return {
    atMs: Date.now(),
    draining,
    healthy: pool.backends.filter((backend) => backend.isAvailable).length,
    requests: sum((backend) => backend.requests),
    responses5xx: sum((backend) => backend.responses5xx),
    failures: sum((backend) => backend.failures),
    noBackend: metrics.noBackendCount,
    ...(routes.length === 0 ? {} : { routes }),
    backends: pool.backends.map((backend) => ({
      ...poolField(poolOf?.(backend.url.href)),
      name: backend.name,
      url: backend.url.href,
      health: backend.health,
      isDraining: backend.isDraining,
      ejected: backend.ejection ?? null,
      weight: backend.weight,
      inFlight: backend.inFlight,
      requests: backend.requests,
      failures: backend.failures,
      responses5xx: backend.responses5xx,
      p50Ms: round(metrics.latencyQuantileMs(backend, 0.5)),
      p99Ms: round(metrics.latencyQuantileMs(backend, 0.99)),
    })),
  };
}

function poolField(name: string | undefined): { pool?: string } {
  return name === undefined ? {} : { pool: name };
}

/**
 * Creates the admin API's request handler.
 *
 * @param deps The pool, metrics, drain state, token and dashboard.
 * @returns A handler for the admin listener; it never throws.
 */
export function createAdminHandler(
  deps: AdminDeps,
): (request: Request) => Response | Promise<Response> {
  const tokenBytes = deps.token === undefined ? undefined : new TextEncoder().encode(deps.token);
  const isAuthorized = (request: Request, url: URL, isQueryAllowed: boolean): boolean => {
    if (tokenBytes === undefined) return true;
    const header = request.headers.get("authorization") ?? "";
    const offered = header.startsWith("Bearer ")
      ? header.slice(7)
      : isQueryAllowed
      ? url.searchParams.get("token") ?? ""
      : "";
    return isSameSecret(new TextEncoder().encode(offered), tokenBytes);
  };

  const guard = {
    hostname: deps.hostname ?? "localhost",
    isTokenRequired: tokenBytes !== undefined,
  };

  const findBackend = (encoded: string): Backend | undefined => {
    const name = safeDecode(encoded);
    return deps.pool.backends.find((b) => b.name === name);
  };

  return (request) => {
    const url = new URL(request.url);
    const path = url.pathname;
    const method = request.method;
    const isRead = method === "GET" || method === "HEAD";
    if (path === "/health") {
      if (!isRead) return notAllowed("GET, HEAD");
      return deps.isDraining()
        ? new Response("draining\n", { status: 503, headers: TEXT_HEADERS })
        : new Response("ok\n", { headers: TEXT_HEADERS });
    }
    // Host, Origin and body type, before anything is read or changed.
    const refusal = checkAdminRequest(request, guard);
    if (refusal !== undefined) {
      return new Response(`${refusal.message}\n`, {
        status: refusal.status,
        headers: refusal.status === 415
          ? { ...TEXT_HEADERS, "accept-post": "application/json" }
          : TEXT_HEADERS,
      });
    }
    if (path === "/" && deps.dashboard !== undefined) {
      if (!isRead) return notAllowed("GET, HEAD");
      return new Response(deps.dashboard.html, {
        headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" },
      });
    }
    const isEvents = path === "/events";
    if (!isAuthorized(request, url, isEvents)) {
      return new Response("Unauthorized: send Authorization: Bearer <admin token>\n", {
        status: 401,
        headers: { ...TEXT_HEADERS, "www-authenticate": 'Bearer realm="denolb admin"' },
      });
    }
    if (isEvents && deps.dashboard !== undefined) {
      if (!isRead) return notAllowed("GET, HEAD");
      return new Response(deps.dashboard.events(request.signal), { headers: SSE_HEADERS });
    }
    const control = deps.control;
    if (control !== undefined) {
      if (path === "/reload") {
        if (method !== "POST") return notAllowed("POST");
        return control.reload().then((outcome) =>
          Response.json(outcome, { status: outcome.ok ? 200 : 400 })
        );
      }
      if (path === "/backends" && method === "POST") return addBackend(request, control);
      const named = /^\/backends\/([^/]+)$/.exec(path);
      if (named !== null) {
        if (method !== "DELETE") return notAllowed("DELETE");
        const backend = findBackend(named[1] ?? "");
        if (backend === undefined) return noBackend(named[1] ?? "");
        control.removeBackend(backend);
        return Response.json({ removing: backend.name }, { status: 202 });
      }
    }
    if (path === "/status" || path === "/backends") {
      if (!isRead) return notAllowed("GET, HEAD");
      const report = statusReport(deps.pool, deps.metrics, deps.isDraining(), deps.poolOf);
      if (path === "/backends") return Response.json(report.backends);
      const isolates = deps.isolates?.();
      const discovery = deps.discovery?.isActive === true
        ? { discovery: deps.discovery.status() }
        : {};
      return Response.json({
        ...report,
        ...(isolates === undefined ? {} : { isolates }),
        ...discovery,
      });
    }
    if (path === "/metrics") {
      if (!isRead) return notAllowed("GET, HEAD");
      return new Response(deps.metrics.render() + (deps.discovery?.renderMetrics() ?? ""), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }
    const action = /^\/backends\/([^/]+)\/(drain|undrain)$/.exec(path);
    if (action !== null) {
      if (method !== "POST") return notAllowed("POST");
      const backend = findBackend(action[1] ?? "");
      if (backend === undefined) return noBackend(action[1] ?? "");
      const name = backend.name;
      const isDraining = action[2] === "drain";
      if (backend.setDraining(isDraining)) deps.onDrainChange?.(backend, isDraining);
      const report = statusReport(deps.pool, deps.metrics, deps.isDraining(), deps.poolOf);
      return Response.json(report.backends.find((b) => b.name === name));
    }
    return new Response("Not found\n", { status: 404, headers: TEXT_HEADERS });
  };
}

/** `POST /backends`: `{"url": "http://10.0.0.5:8080", "weight": 2}`; weight defaults to 1. */
async function addBackend(request: Request, control: AdminControl): Promise<Response> {
  let body: unknown;
  try {
    body = await request.json();
  } catch {
    return badRequest('Invalid body: send JSON such as {"url": "http://10.0.0.5:8080"}');
  }
  const fields = typeof body === "object" && body !== null
    ? body as { url?: unknown; weight?: unknown }
    : {};
  if (typeof fields.url !== "string") return badRequest("Invalid body: url must be a string");
  // The settings' own rule, so the config file, check-config and this route agree.
  const weight = checkWeight(fields.weight ?? DEFAULT_WEIGHT);
  if (!weight.ok) {
    const given = typeof fields.weight === "number"
      ? String(fields.weight)
      : JSON.stringify(fields.weight);
    return badRequest(`Invalid weight ${given}: ${weight.rule}`);
  }
  let url: URL;
  try {
    url = parseBackendUrl(fields.url);
  } catch (error) {
    return badRequest(errorText(error));
  }
  try {
    const backend = control.addBackend({ url, weight: weight.value });
    return Response.json({ added: backend.name, url: backend.url.href, weight: weight.value }, {
      status: 201,
    });
  } catch (error) {
    return new Response(`${errorText(error)}\n`, {
      status: 409,
      headers: TEXT_HEADERS,
    });
  }
}

function badRequest(message: string): Response {
  return new Response(`${message}\n`, { status: 400, headers: TEXT_HEADERS });
}

function noBackend(encoded: string): Response {
  return new Response(`No backend named "${safeDecode(encoded)}"\n`, {
    status: 404,
    headers: TEXT_HEADERS,
  });
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function notAllowed(allow: string): Response {
  return new Response("Method not allowed\n", {
    status: 405,
    headers: { ...TEXT_HEADERS, allow },
  });
}

/**
 * Compares two secrets in time that depends only on the expected one's length.
 *
 * @example
 * ```ts
 * import { isSameSecret } from "./admin.ts";
 * const e = new TextEncoder();
 * if (!isSameSecret(e.encode("s3cret"), e.encode("s3cret"))) throw new Error();
 * if (isSameSecret(e.encode("s3cre"), e.encode("s3cret"))) throw new Error();
 * ```
 */
export function isSameSecret(offered: Uint8Array, expected: Uint8Array): boolean {
  let difference = offered.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) {
    difference |= (offered[i] ?? 0) ^ (expected[i] ?? 0);
  }
  return difference === 0;
}

function round(ms: number | null): number | null {
  return ms === null ? null : Math.round(ms * 100) / 100;
}
