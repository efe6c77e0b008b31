/**
 * WebSocket proxying: a client's upgrade request is relayed to a backend the policy picks.
 *
 * Two ways, decided by who read the handshake:
 * - the listener read it itself (`RawUpgrades`: on plain HTTP the default on Linux with
 *   `--allow-ffi`; over TLS always, HTTP/1.1 connections, wss included): the handshake goes to the backend over a TCP connection of its own and, after its `101`, the
 *   two connections become a byte tunnel (`upgrade_tunnel.ts`): frames, pings, close codes and
 *   extensions pass untouched, with TCP's flow control. A non-`101` answer is a refusal as below.
 *   An upgrade Deno's server parsed on such a listener (not the first request on a kept-alive
 *   connection, or over HTTP/2) is answered 501: Deno closes a socket it upgraded there;
 * - when the listener cannot read handshakes (plain HTTP not on Linux or without `--allow-ffi`;
 *   TLS without a local pipe): 501 naming why;
 * - otherwise (the listener's `Deno.serve` fallback, when Deno lacks its per-connection server)
 *   with Deno's WebSocket on both sides, as follows.
 *
 * The backend side is opened first (`new WebSocket(url, { protocols, headers, client })`), and
 * only once it is open is the client upgraded (`Deno.upgradeWebSocket`) with the subprotocol the
 * backend chose, so a backend that refuses gives the client an HTTP answer rather than a socket
 * that closes at once: its status when Deno reports one (a 4xx or 5xx), otherwise 502; 504 when
 * it does not answer within the response-header timeout.
 *
 * An upgrade goes through the same steps as a plain request: the handler's `Admission` picks
 * and `begin()`s the backend (a backend at its in-flight limit is skipped, a full balancer
 * queues the upgrade, then answers 503), the request counts toward the retry budget, a connect
 * failure is retried on another backend only while `retries` and the budget allow, and every
 * attempt's result goes to passive health (`onAttempt`).
 *
 * What is relayed, and what Deno decides for us (Deno 2.9.6):
 * - text and binary messages, both ways, whole (Deno hands over complete messages, never
 *   fragments). Deno has no flow control: a side with over 16 MiB unsent closes the pair
 *   (`websocket_relay.ts`);
 * - close codes and reasons both ways. Toward the client (a server-side socket) every code a
 *   peer may send is passed on; a backend that vanished (1006) closes the client with 1011.
 *   Toward the backend (Deno's client-side socket may only send 1000 and 3000-4999) those codes
 *   pass as they are, 1005 (no code) as no code, and any other (1001, 1011, a dropped client's
 *   1006) as 1000 with a reason naming the original code;
 * - pings and pongs are not relayed: each side's Deno answers its peer's pings itself, and the
 *   client side is pinged by Deno every 30 s (closed when no pong comes back);
 * - `permessage-deflate` is not negotiated (Deno supports no extension on either side).
 * - The backend's handshake gets the client's end-to-end headers and the forwarding headers
 *   the HTTP path sends (`proxy_headers.ts`), `Host` included; Deno's client prefixes any
 *   `User-Agent` with its own (`Deno/2.9.6, ...`).
 *
 * An open socket counts as in flight on its backend (and against its in-flight limit) until it
 * closes, and in the metrics'
 * `denolb_websockets_open`; one access record is written when it closes (status 101, the
 * socket's whole life as the duration). Every open relay is in an {@linkcode OpenWebSockets}
 * registry that outlives reloads, so the data plane can close them all with 1001 when a drain
 * runs out of time. A byte tunnel is ended by the drain itself (the listener aborts its client
 * connection): with a close frame, 1001 Going Away, to each side at a frame boundary, then the
 * TCP close, within a grace of 1 s (`byte_tunnel.ts`), so a browser sees 1001 rather than 1006.
 *
 * @module
 */
import type { ProxySettings } from "../config/settings.ts";
import type { Logger } from "../shared/logger.ts";
import type { Backend } from "../core/backend.ts";
import type { Metrics } from "../core/metrics.ts";
import type { AttemptResult } from "../core/outlier.ts";
import type { Policy } from "../policies/registry.ts";
import type { Pool } from "../core/pool.ts";
import type { Admission } from "./admission.ts";
import { AT_CAPACITY_BODY } from "./answers.ts";
import type { RetryGate } from "./retry_gate.ts";
import { type ForwardedInfo, upstreamRequestHeaders } from "./proxy_headers.ts";
import { upstreamUrl } from "./proxy.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import type { AccessLogSink } from "./access_log.ts";
import type { AcceptedTarget } from "./request_target.ts";
import { openBackendSocket } from "./websocket_backend.ts";
import { closeQuietly } from "./websocket_close.ts";
import { type OpenWebSockets, relayWebSocket } from "./websocket_relay.ts";
import { errorText } from "../shared/error_text.ts";
import type { OpenFailure } from "./websocket_backend.ts";
import {
  type BackendAnswer,
  type BackendTunnel,
  openBackendTunnel,
  type RawClient,
  type RawUpgrades,
  relayAnswer,
} from "./upgrade_tunnel.ts";
import { runTunnel } from "./byte_tunnel.ts";

export { OpenWebSockets } from "./websocket_relay.ts";

/** Whether WebSocket proxying is on, and the registry of open sockets (one per data plane). */
export interface WebSocketSettings {
  /** When false, upgrade requests are answered 501 saying how to turn proxying on. */
  readonly isEnabled: boolean;
  /** The open relays; it outlives reloads. */
  readonly open: OpenWebSockets;
  /**
   * The handshakes the listener read itself (`upgrade_tunnel.ts`): those are tunnelled.
   * Default: none, every upgrade is relayed with Deno's WebSocket on both sides.
   */
  readonly raw?: RawUpgrades;
}

/** What {@linkcode createWebSocketProxy} needs; the handler passes its own. */
export interface WebSocketProxyDeps {
  /** The backends. */
  readonly pool: Pool;
  /** Picks the backend for a retry, as for HTTP requests. */
  readonly policy: Policy;
  /** Picks and `begin()`s the first backend under the in-flight limits: the handler's own. */
  readonly admission: Admission;
  /** The retry budget: the handler's own, so upgrades and plain requests share it. */
  readonly retryGate: RetryGate;
  /** Counts upgrades, open sockets, failures and retries. */
  readonly metrics: Metrics;
  /** Receives backend failures. */
  readonly logger: Logger;
  /** Receives one record per socket, when it closes. */
  readonly accessLog: AccessLogSink;
  /**
   * `proxy.timeoutMs` (how long a backend may take to accept the upgrade) and `proxy.retries`
   * (how many other backends are tried after a connect failure), as `settings.ts` declares them.
   */
  readonly proxy: Pick<ProxySettings, "timeoutMs" | "retries">;
  /** The upstream client (it lets `Host` through). Default: Deno's default client. */
  readonly client?: Deno.HttpClient | undefined;
  /** Measures durations and runs the handshake timeout. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /** On/off and the registry. */
  readonly webSockets: WebSocketSettings;
  /** Told each attempt's result (101, the backend's status, or why none), for passive health. */
  readonly onAttempt?: ((backend: Backend, result: AttemptResult) => void) | undefined;
}

/** Facts about one upgrade request the handler already established. */
export interface UpgradeFacts {
  /** When the request arrived, on the proxy's clock. */
  readonly started: number;
  /** The request's ID (the client's or a new one). */
  readonly requestId: string;
  /** The forwarding facts (client IP, trust, `Via`), as the HTTP path sends them. */
  readonly forwarded: ForwardedInfo;
}

/** Relays upgrade requests; built once per request path (each reload builds a new one). */
export interface WebSocketProxy {
  /**
   * Opens a socket to a backend and upgrades the client to a relay of it. Never throws.
   *
   * @param request The client's upgrade request ({@linkcode isWebSocketUpgrade}).
   * @param target The validated target (path and query forwarded).
   * @param facts Arrival time, request ID and forwarding facts.
   * @returns The 101 response, or the failure's (501, 502, 503, 504, or the backend's 4xx/5xx).
   */
  proxy(request: Request, target: AcceptedTarget, facts: UpgradeFacts): Promise<Response>;
}

/**
 * Whether a request asks for a WebSocket (RFC 6455 section 4.1): `GET` with `Upgrade:
 * websocket`, a `Connection` naming `upgrade`, and a `Sec-WebSocket-Key`.
 *
 * @param request The client's request.
 * @returns Whether it is a WebSocket upgrade.
 *
 * @example
 * ```ts
 * import { isWebSocketUpgrade } from "./websocket.ts";
 * const headers = { upgrade: "websocket", connection: "keep-alive, Upgrade", "sec-websocket-key": "x" };
 * if (!isWebSocketUpgrade(new Request("http://a/", { headers }))) throw new Error();
 * if (isWebSocketUpgrade(new Request("http://a/"))) throw new Error();
 * ```
 */
export function isWebSocketUpgrade(request: Request): boolean {
  if (request.method !== "GET") return false;
  const headers = request.headers;
  const upgrade = headers.get("upgrade");
  if (upgrade === null || !hasToken(upgrade, "websocket")) return false;
  const connection = headers.get("connection");
  return connection !== null && hasToken(connection, "upgrade") &&
    headers.has("sec-websocket-key");
}

function hasToken(list: string, token: string): boolean {
  for (const item of list.split(",")) if (item.trim().toLowerCase() === token) return true;
  return false;
}

const TEXT_HEADERS = { "content-type": "text/plain; charset=utf-8" } as const;

// Deno 2.9.6 closes a WebSocket upgraded on `serveHttpOnConnection` at once (evidence in the
// listener's module docs), so the listener reads each connection's first request itself, over
// TLS too; a later upgrade on a kept-alive connection, or one over HTTP/2 (no Upgrade there, and
// Deno offers no RFC 8441), reaches Deno's server and cannot be upgraded.
const NOT_FIRST_BODY = "Not implemented: a WebSocket upgrade is proxied only as the first " +
  "request of an HTTP/1.1 connection; open a new connection for it\n";

const FAILURE_BODY: Readonly<Record<number, string>> = {
  501: "Not implemented: WebSocket proxying is off (start the balancer with --websocket on)\n",
  502: "Bad gateway: the backend refused or failed the WebSocket upgrade\n",
  503: "Service unavailable: no backend is healthy\n",
  504: "Gateway timeout: the backend did not accept the WebSocket upgrade in time\n",
};

/** Request headers that describe the client's own handshake: Deno's client makes its own. */
const HANDSHAKE_HEADER = /^sec-websocket-/;

/**
 * Builds the WebSocket relay of one request path.
 *
 * @param deps Pool, policy, metrics, logs, timeout, retries and the registry.
 * @returns The proxy the handler hands upgrade requests to.
 */
export function createWebSocketProxy(deps: WebSocketProxyDeps): WebSocketProxy {
  const clock = deps.clock ?? systemClock;
  const { pool, policy, metrics, logger, accessLog, admission, retryGate } = deps;
  const open = deps.webSockets.open;

  /** Counts a request that got no socket and logs it; returns its response. */
  function fail(
    request: Request,
    target: AcceptedTarget,
    facts: UpgradeFacts,
    outcome: {
      status: number;
      backend: Backend | undefined;
      reason: string;
      kind: string;
      body?: string;
      isRetryLater?: boolean;
    },
  ): Response {
    const durationMs = clock.now() - facts.started;
    metrics.recordRequest(outcome.backend, outcome.status, durationMs);
    if (accessLog.isEnabled) {
      void accessLog.write({
        time: Date.now(),
        client: facts.forwarded.clientIp,
        method: request.method,
        path: target.path,
        status: outcome.status,
        bytes: undefined,
        referer: request.headers.get("referer"),
        userAgent: request.headers.get("user-agent"),
        backend: outcome.backend?.name ?? null,
        durationMs,
        backendMs: null,
        requestId: facts.requestId,
        outcome: outcome.kind,
        reason: outcome.reason,
      });
    }
    const body = outcome.body ?? FAILURE_BODY[outcome.status] ??
      `Backend refused the WebSocket upgrade\n`;
    const headers: Record<string, string> = { ...TEXT_HEADERS, "x-request-id": facts.requestId };
    if (outcome.isRetryLater === true) headers["retry-after"] = "1";
    return new Response(body, { status: outcome.status, headers });
  }

  async function proxy(
    request: Request,
    target: AcceptedTarget,
    facts: UpgradeFacts,
  ): Promise<Response> {
    if (!deps.webSockets.isEnabled) {
      return fail(request, target, facts, {
        status: 501,
        backend: undefined,
        reason: "websocket proxying is off",
        kind: "refused",
      });
    }
    const raw = deps.webSockets.raw?.get(request);
    const unavailable = deps.webSockets.raw?.unavailable;
    if (unavailable !== undefined) {
      return fail(request, target, facts, {
        status: 501,
        backend: undefined,
        reason: `websocket tunnel unavailable: ${unavailable}`,
        kind: "refused",
        body: `Not implemented: WebSocket proxying is unavailable here (${unavailable})\n`,
      });
    }
    if (raw === undefined && deps.webSockets.raw?.isActive === true) {
      return fail(request, target, facts, {
        status: 501,
        backend: undefined,
        reason: "websocket upgrade not first on an HTTP/1.1 connection",
        kind: "refused",
        body: NOT_FIRST_BODY,
      });
    }
    const clientIp = facts.forwarded.clientIp;
    const forwarded = upstreamRequestHeaders(request.headers, facts.forwarded)
      .filter(([name]) => name !== "accept-encoding");
    // A tunnel passes the client's own handshake on (key, version, subprotocols, extensions);
    // Deno's WebSocket client makes its own.
    const headers = raw === undefined
      ? forwarded.filter(([name]) => !HANDSHAKE_HEADER.test(name))
      : [
        ...forwarded,
        ["connection", "upgrade"] as [string, string],
        ["upgrade", request.headers.get("upgrade") ?? "websocket"] as [string, string],
      ];
    const protocols = subprotocols(request.headers.get("sec-websocket-protocol"));
    let admitted = admission.admit(request, { clientIp });
    if (admitted instanceof Promise) admitted = await admitted;
    if (typeof admitted === "string") {
      if (admitted === "no-backend") metrics.recordNoBackend();
      else if (admitted !== "client-abort") metrics.recordEvent(admitted);
      return fail(request, target, facts, refusalOutcome(admitted));
    }
    retryGate.recordRequest(facts.started);
    const first: Backend = admitted;
    let tried: Set<Backend> | undefined;
    let backend: Backend = first;
    for (let attempt = 0;; attempt++) {
      if (attempt > 0) backend.begin(); // admission began the first
      const sentAt = clock.now();
      const opened = raw === undefined
        ? await openBackendSocket(upstreamUrl(backend.url, target).replace(/^http/, "ws"), {
          protocols,
          headers,
          signal: request.signal,
          timeoutMs: deps.proxy.timeoutMs,
          client: deps.client,
          clock,
        })
        : await openBackendTunnel(
          backend.url,
          backend.url.pathname + target.path.slice(1) + target.query,
          { headers, timeoutMs: deps.proxy.timeoutMs, clock },
        );
      deps.onAttempt?.(backend, attemptResult(opened));
      if (opened.ok) {
        const handshakeMs = clock.now() - sentAt;
        return "socket" in opened
          ? upgradeClient(request, target, facts, backend, opened.socket, handshakeMs)
          : startTunnel(
            request,
            target,
            facts,
            backend,
            raw as RawClient,
            opened.tunnel,
            handshakeMs,
          );
      }
      backend.end(opened.reason !== "client-abort");
      admission.release();
      const failed: Backend = backend;
      logger.warn("Backend WebSocket upgrade failed", () => ({
        backend: failed.name,
        reason: opened.reason,
        message: opened.message,
        attempt: attempt + 1,
        requestId: facts.requestId,
      }));
      // As for plain requests: the policy picks with the tried backends excluded, and the
      // budget is asked last, so only a retry that would happen spends it.
      const picked: Backend | undefined =
        opened.reason === "connect" && attempt < deps.proxy.retries
          ? policy.pick(pool.backends, request, (tried ??= new Set()).add(failed), { clientIp })
          : undefined;
      const next = picked !== undefined && retryGate.allow(failed.name, opened.reason)
        ? picked
        : undefined;
      if (next === undefined) {
        const answer = answerOf(opened);
        if (answer !== undefined && raw !== undefined && opened.reason === "refused") {
          // The backend's own refusal (redirect, 4xx, 5xx) goes to the client as it was sent;
          // the response returned is only for the accounting.
          const response = fail(request, target, facts, {
            status: opened.status ?? 502,
            backend: failed,
            reason: `${opened.reason}: ${opened.message}`,
            kind: "failed",
          });
          const done = raw.take();
          void relayAnswer(raw.conn, answer, { timeoutMs: deps.proxy.timeoutMs, clock }).finally(
            done,
          );
          return response;
        }
        const status = opened.reason === "timeout"
          ? 504
          : opened.reason === "client-abort"
          ? 499
          : opened.reason === "refused" && opened.status !== undefined && opened.status >= 400
          ? opened.status
          : 502;
        return fail(request, target, facts, {
          status,
          backend: failed,
          reason: `${opened.reason}: ${opened.message}`,
          kind: opened.reason === "client-abort" ? "client-abort" : "failed",
        });
      }
      metrics.recordRetry();
      backend = next;
    }
  }

  /** Upgrades the client now that the backend side is open, and starts the relay. */
  function upgradeClient(
    request: Request,
    target: AcceptedTarget,
    facts: UpgradeFacts,
    backend: Backend,
    upstream: WebSocket,
    handshakeMs: number,
  ): Response {
    let upgrade: Deno.WebSocketUpgrade;
    try {
      upgrade = Deno.upgradeWebSocket(
        request,
        upstream.protocol === "" ? {} : { protocol: upstream.protocol },
      );
    } catch (error) {
      // Such as a subprotocol the client did not offer.
      closeQuietly(upstream, 1000, "Client upgrade failed");
      backend.end(false);
      admission.release();
      return fail(request, target, facts, {
        status: 502,
        backend,
        reason: errorText(error),
        kind: "failed",
      });
    }
    const added = policy.responseHeaders?.(backend, request);
    if (added !== undefined) {
      for (const [name, value] of added) upgrade.response.headers.append(name, value);
    }
    upgrade.response.headers.set("x-request-id", facts.requestId);
    metrics.recordRequest(backend, 101, clock.now() - facts.started);
    metrics.recordWebSocketOpened();
    startRelay(request, target, facts, backend, upgrade.socket, upstream, handshakeMs);
    return upgrade.response;
  }

  /**
   * Joins the client connection to the backend's after its `101`, and does the accounting when
   * the tunnel closes. The listener owns the client connection's answer: it ignores the
   * response returned here once the connection is taken.
   */
  function startTunnel(
    request: Request,
    target: AcceptedTarget,
    facts: UpgradeFacts,
    backend: Backend,
    raw: RawClient,
    tunnel: BackendTunnel,
    handshakeMs: number,
  ): Response {
    const added: Array<[string, string]> = [];
    const policyHeaders = policy.responseHeaders?.(backend, request);
    if (policyHeaders !== undefined) { for (const [n, v] of policyHeaders) added.push([n, v]); }
    added.push(["x-request-id", facts.requestId]);
    metrics.recordRequest(backend, 101, clock.now() - facts.started);
    metrics.recordWebSocketOpened();
    const done = raw.take({ closesOnAbort: true });
    const running = runTunnel(raw.conn, tunnel, { added, clock });
    // A drain ends the tunnel with 1001 Going Away to both sides (`byte_tunnel.ts`), within a
    // bounded grace: a pump blocked writing to a backend that stopped reading would otherwise
    // keep the tunnel, and the drain waiting for it, open for good.
    const relay = {
      close: (code: number, reason: string) => running.closeGracefully(code, reason),
    };
    // The request's signal is the client connection's: the listener aborts it on a drain or a
    // close.
    const onAbort = () => running.closeGracefully();
    open.add(relay);
    request.signal.addEventListener("abort", onAbort, { once: true });
    if (request.signal.aborted) onAbort();
    void running.finished.then((closedBy) => {
      request.signal.removeEventListener("abort", onAbort);
      open.delete(relay);
      closed(
        request,
        target,
        facts,
        backend,
        handshakeMs,
        `websocket tunnel closed by ${closedBy}`,
      );
      done();
    });
    return new Response(null, { status: 204 });
  }

  /** The accounting when an upgraded connection closes: counts, admission, one access line. */
  function closed(
    request: Request,
    target: AcceptedTarget,
    facts: UpgradeFacts,
    backend: Backend,
    handshakeMs: number,
    reason: string,
  ): void {
    backend.end(false);
    admission.release();
    metrics.recordWebSocketClosed();
    if (!accessLog.isEnabled) return;
    void accessLog.write({
      time: Date.now(),
      client: facts.forwarded.clientIp,
      method: request.method,
      path: target.path,
      status: 101,
      bytes: undefined,
      referer: request.headers.get("referer"),
      userAgent: request.headers.get("user-agent"),
      backend: backend.name,
      durationMs: clock.now() - facts.started,
      backendMs: handshakeMs,
      requestId: facts.requestId,
      outcome: "forwarded",
      reason,
    });
  }

  /** Relays the pair and does the accounting when it closes. */
  function startRelay(
    request: Request,
    target: AcceptedTarget,
    facts: UpgradeFacts,
    backend: Backend,
    client: WebSocket,
    upstream: WebSocket,
    handshakeMs: number,
  ): void {
    const pair = relayWebSocket(client, upstream, {
      onClosed: (closedBy, code) => {
        open.delete(pair);
        closed(
          request,
          target,
          facts,
          backend,
          handshakeMs,
          `websocket closed by ${closedBy} (${code})`,
        );
      },
    });
    open.add(pair);
  }

  return { proxy };
}

/** The answer to an upgrade that got no backend, as for a plain request. */
function refusalOutcome(
  refusal: "no-backend" | "queue-full" | "queue-timeout" | "client-abort",
): {
  status: number;
  backend: undefined;
  reason: string;
  kind: string;
  body?: string;
  isRetryLater?: boolean;
} {
  switch (refusal) {
    case "no-backend":
      return {
        status: 503,
        backend: undefined,
        reason: "no healthy backend",
        kind: "no-backend",
        isRetryLater: true,
      };
    case "client-abort":
      return { status: 499, backend: undefined, reason: "Client went away", kind: "client-abort" };
    default:
      return {
        status: 503,
        backend: undefined,
        reason: `backends at capacity (${refusal})`,
        kind: "refused",
        body: AT_CAPACITY_BODY,
        isRetryLater: true,
      };
  }
}

/** What passive health is told about one attempt to open the backend side. */
function attemptResult(
  opened: { readonly ok: true } | ({ readonly ok: false } & OpenFailure),
): AttemptResult {
  if (opened.ok) return 101;
  switch (opened.reason) {
    case "connect":
      return "connect";
    case "timeout":
      return "response-timeout";
    case "client-abort":
      return "client-abort";
    case "refused":
      return opened.status ?? "protocol";
  }
}

/** The backend's refusal to relay as it is, when the tunnel's attempt kept one. */
function answerOf(
  failure: { readonly ok: false; readonly answer?: BackendAnswer },
): BackendAnswer | undefined {
  return failure.answer;
}

/** The subprotocols a client offered, in its order. */
function subprotocols(header: string | null): string[] {
  if (header === null) return [];
  return header.split(",").map((p) => p.trim()).filter((p) => p !== "");
}
