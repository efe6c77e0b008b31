/**
 * WebSocket proxying: a client's upgrade request is relayed to a backend the policy picks.
 *
 * The backend side is opened first (`new WebSocket(url, { protocols, headers, client })`), and
 * only once it is open is the client upgraded (`Deno.upgradeWebSocket`) with the subprotocol the
 * backend chose, so a backend that refuses gives the client an HTTP answer rather than a socket
 * that closes at once: its status when Deno reports one (a 4xx or 5xx), otherwise 502; 504 when
 * it does not answer within the response-header timeout. A connect failure is retried on
 * another backend (up to `retries`), as for plain HTTP.
 *
 * What is relayed, and what Deno decides for us (Deno 2.9.6):
 * - text and binary messages, both ways, whole (Deno hands over complete messages, never
 *   fragments; there is no flow control beyond the socket buffers);
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
 * An open socket counts as in flight on its backend until it closes, and in the metrics'
 * `denolb_websockets_open`; one access record is written when it closes (status 101, the
 * socket's whole life as the duration). Every open relay is in an {@linkcode OpenWebSockets}
 * registry that outlives reloads, so the data plane can close them all with 1001 when a drain
 * runs out of time.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Backend } from "../backend.ts";
import type { Metrics } from "../metrics.ts";
import type { Policy } from "../policy.ts";
import type { Pool } from "../pool.ts";
import { type ForwardedInfo, upstreamRequestHeaders } from "../proxy_headers.ts";
import { upstreamUrl } from "../proxy.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import type { AccessLogSink } from "./access_log.ts";
import type { AcceptedTarget } from "./request_target.ts";

/** Whether WebSocket proxying is on, and the registry of open sockets (one per data plane). */
export interface WebSocketSettings {
  /** When false, upgrade requests are answered 501 saying how to turn proxying on. */
  readonly isEnabled: boolean;
  /** The open relays; it outlives reloads. */
  readonly open: OpenWebSockets;
}

/** What {@linkcode createWebSocketProxy} needs; the handler passes its own. */
export interface WebSocketProxyDeps {
  /** The backends. */
  readonly pool: Pool;
  /** Picks the backend, as for HTTP requests. */
  readonly policy: Policy;
  /** Counts upgrades, open sockets, failures and retries. */
  readonly metrics: Metrics;
  /** Receives backend failures. */
  readonly logger: Logger;
  /** Receives one record per socket, when it closes. */
  readonly accessLog: AccessLogSink;
  /** How long a backend may take to accept the upgrade, in milliseconds. */
  readonly timeoutMs: number;
  /** How many other backends are tried after a connect failure. */
  readonly retries: number;
  /** The upstream client (it lets `Host` through). Default: Deno's default client. */
  readonly client?: Deno.HttpClient | undefined;
  /** Measures durations and runs the handshake timeout. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /** On/off and the registry. */
  readonly webSockets: WebSocketSettings;
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

/** One client-backend pair, as the registry sees it. */
interface Relay {
  /** Closes both sides (the client with `code`). */
  close(code: number, reason: string): void;
}

/**
 * The open WebSocket relays of one data plane. It outlives reloads: sockets opened under an
 * old configuration stay open and stay here.
 */
export class OpenWebSockets {
  readonly #relays = new Set<Relay>();

  /** How many relays are open. */
  get size(): number {
    return this.#relays.size;
  }

  /** @internal Adds an open relay. */
  add(relay: Relay): void {
    this.#relays.add(relay);
  }

  /** @internal Forgets a closed relay. */
  delete(relay: Relay): void {
    this.#relays.delete(relay);
  }

  /**
   * Closes every open socket: the client side with `code` (1001 Going Away by default), the
   * backend side with 1000 (the only code below 3000 Deno's client may send).
   *
   * @param code The client's close code. Default: 1001.
   * @param reason The close reason. Default: `"Balancer shutting down"`.
   * @returns How many relays were closed.
   */
  closeAll(code = 1001, reason = "Balancer shutting down"): number {
    const relays = [...this.#relays];
    for (const relay of relays) relay.close(code, reason);
    return relays.length;
  }
}

const TEXT_HEADERS = { "content-type": "text/plain; charset=utf-8" } as const;

const FAILURE_BODY: Readonly<Record<number, string>> = {
  501: "Not implemented: WebSocket proxying is off (start the balancer with --websocket on)\n",
  502: "Bad gateway: the backend refused or failed the WebSocket upgrade\n",
  503: "Service unavailable: no backend is healthy\n",
  504: "Gateway timeout: the backend did not accept the WebSocket upgrade in time\n",
};

/** Why the backend side did not open. */
type OpenFailure =
  /** No connection (refused, unreachable): the request never left; another backend may try. */
  | { readonly reason: "connect"; readonly message: string }
  /** The backend answered, but not 101; `status` when Deno's error names it. */
  | { readonly reason: "refused"; readonly status: number | undefined; readonly message: string }
  | { readonly reason: "timeout"; readonly message: string }
  | { readonly reason: "client-abort"; readonly message: string };

type OpenOutcome =
  | { readonly ok: true; readonly socket: WebSocket }
  | (
    { readonly ok: false } & OpenFailure
  );

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
  const { pool, policy, metrics, logger, accessLog } = deps;
  const open = deps.webSockets.open;

  /** Counts a request that got no socket and logs it; returns its response. */
  function fail(
    request: Request,
    target: AcceptedTarget,
    facts: UpgradeFacts,
    outcome: { status: number; backend: Backend | undefined; reason: string; kind: string },
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
    const body = FAILURE_BODY[outcome.status] ?? `Backend refused the WebSocket upgrade\n`;
    return new Response(body, {
      status: outcome.status,
      headers: { ...TEXT_HEADERS, "x-request-id": facts.requestId },
    });
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
    const clientIp = facts.forwarded.clientIp;
    const headers = upstreamRequestHeaders(request.headers, facts.forwarded)
      .filter(([name]) => !HANDSHAKE_HEADER.test(name) && name !== "accept-encoding");
    const protocols = subprotocols(request.headers.get("sec-websocket-protocol"));
    const first = policy.pick(pool.backends, request, undefined, { clientIp });
    if (first === undefined) {
      metrics.recordNoBackend();
      return fail(request, target, facts, {
        status: 503,
        backend: undefined,
        reason: "no healthy backend",
        kind: "no-backend",
      });
    }
    let tried: Set<Backend> | undefined;
    let backend: Backend = first;
    for (let attempt = 0;; attempt++) {
      backend.begin();
      const sentAt = clock.now();
      const url = upstreamUrl(backend.url, target).replace(/^http/, "ws");
      const opened = await openBackend(url, protocols, headers, request.signal, deps, clock);
      if (opened.ok) {
        return upgradeClient(request, target, facts, backend, opened.socket, clock.now() - sentAt);
      }
      backend.end(opened.reason !== "client-abort");
      const failed: Backend = backend;
      logger.warn("Backend WebSocket upgrade failed", () => ({
        backend: failed.name,
        reason: opened.reason,
        message: opened.message,
        attempt: attempt + 1,
        requestId: facts.requestId,
      }));
      const next: Backend | undefined = opened.reason === "connect" && attempt < deps.retries
        ? policy.pick(pool.backends, request, (tried ??= new Set()).add(failed), { clientIp })
        : undefined;
      if (next === undefined) {
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
      return fail(request, target, facts, {
        status: 502,
        backend,
        reason: error instanceof Error ? error.message : String(error),
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

  function startRelay(
    request: Request,
    target: AcceptedTarget,
    facts: UpgradeFacts,
    backend: Backend,
    client: WebSocket,
    upstream: WebSocket,
    handshakeMs: number,
  ): void {
    client.binaryType = "arraybuffer";
    // Backend messages that arrive before the client side is open wait here.
    let early: Array<string | ArrayBuffer> | undefined = [];
    let isFinished = false;
    const finish = (closedBy: string, code: number) => {
      if (isFinished) return;
      isFinished = true;
      open.delete(relay);
      backend.end(false);
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
        reason: `websocket closed by ${closedBy} (${code})`,
      });
    };
    const relay: Relay = {
      close(code, reason) {
        closeQuietly(client, code, reason);
        closeQuietly(upstream, 1000, reason);
      },
    };
    open.add(relay);
    upstream.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
      if (early !== undefined) early.push(event.data);
      else if (client.readyState === WebSocket.OPEN) client.send(event.data);
    };
    client.onopen = () => {
      const queued = early ?? [];
      early = undefined;
      for (const data of queued) client.send(data);
    };
    client.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
      if (upstream.readyState === WebSocket.OPEN) upstream.send(event.data);
    };
    client.onclose = (event: CloseEvent) => {
      const [code, reason] = toBackendClose(event.code, event.reason);
      closeQuietly(upstream, code, reason);
      finish("client", event.code);
    };
    upstream.onclose = (event: CloseEvent) => {
      const [code, reason] = toClientClose(event.code, event.reason);
      closeQuietly(client, code, reason);
      finish("backend", event.code);
    };
    // An error is followed by a close event, which does the work.
    client.onerror = () => {};
    upstream.onerror = () => {};
  }

  return { proxy };
}

/**
 * Opens the backend side, within the timeout; a client that goes away meanwhile aborts it.
 */
function openBackend(
  url: string,
  protocols: string[],
  headers: Array<[string, string]>,
  clientSignal: AbortSignal,
  deps: WebSocketProxyDeps,
  clock: Clock,
): Promise<OpenOutcome> {
  let socket: WebSocket;
  try {
    socket = new WebSocket(url, {
      protocols,
      headers,
      ...(deps.client === undefined ? {} : { client: deps.client }),
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return Promise.resolve({ ok: false, reason: "connect", message });
  }
  socket.binaryType = "arraybuffer";
  const { promise, resolve } = Promise.withResolvers<OpenOutcome>();
  const timer = new AbortController();
  const settle = (outcome: OpenOutcome) => {
    timer.abort();
    clientSignal.removeEventListener("abort", onClientAbort);
    socket.onopen = null;
    socket.onerror = null;
    if (!outcome.ok) closeQuietly(socket, 1000, "");
    resolve(outcome);
  };
  const onClientAbort = () =>
    settle({ ok: false, reason: "client-abort", message: "Client went away" });
  clientSignal.addEventListener("abort", onClientAbort, { once: true });
  clock.sleep(deps.timeoutMs, timer.signal).then(
    () =>
      settle({
        ok: false,
        reason: "timeout",
        message: `No upgrade within ${deps.timeoutMs} ms`,
      }),
    () => {},
  );
  socket.onopen = () => settle({ ok: true, socket });
  socket.onerror = (event: Event) => {
    const message = event instanceof ErrorEvent ? event.message : "WebSocket error";
    settle(classifyOpenError(message));
  };
  return promise;
}

/**
 * Classifies the error Deno's WebSocket client reports when it cannot open: a non-101 answer
 * names its status (`Invalid status code: 403`); anything else is a connect failure.
 *
 * @param message The `ErrorEvent`'s message.
 * @returns The failure.
 *
 * @example
 * ```ts
 * import { classifyOpenError } from "./websocket.ts";
 * const failure = classifyOpenError("NetworkError: failed to connect to WebSocket: Invalid status code: 403");
 * if (failure.reason !== "refused" || failure.status !== 403) throw new Error();
 * ```
 */
export function classifyOpenError(message: string): { ok: false } & OpenFailure {
  const match = /Invalid status code:? (\d{3})/.exec(message);
  if (match !== null) {
    return { ok: false, reason: "refused", status: Number(match[1]), message };
  }
  if (/status|protocol|header|handshake/i.test(message) && !/connect error/i.test(message)) {
    return { ok: false, reason: "refused", status: undefined, message };
  }
  return { ok: false, reason: "connect", message };
}

/** The subprotocols a client offered, in its order. */
function subprotocols(header: string | null): string[] {
  if (header === null) return [];
  return header.split(",").map((p) => p.trim()).filter((p) => p !== "");
}

/**
 * The close a backend's close becomes toward the client: the same code when a peer may send
 * it, 1011 for a backend that vanished (1006) or sent nothing valid, no code for 1005.
 *
 * @param code The backend side's close code.
 * @param reason Its reason.
 * @returns The code (`undefined`: none) and reason for the client.
 *
 * @example
 * ```ts
 * import { toClientClose } from "./websocket.ts";
 * if (toClientClose(1006, "")[0] !== 1011 || toClientClose(4001, "x")[0] !== 4001) throw new Error();
 * ```
 */
export function toClientClose(
  code: number,
  reason: string,
): [code: number | undefined, reason: string] {
  if (code === 1005) return [undefined, ""];
  if (isSendable(code)) return [code, reason];
  return [1011, "Backend connection lost"];
}

/**
 * The close a client's close becomes toward the backend. Deno's client side may only send
 * 1000 or 3000-4999: those pass; 1005 passes as no code; any other becomes 1000 with a reason
 * naming it.
 *
 * @param code The client side's close code.
 * @param reason Its reason.
 * @returns The code (`undefined`: none) and reason for the backend.
 *
 * @example
 * ```ts
 * import { toBackendClose } from "./websocket.ts";
 * if (toBackendClose(4002, "y")[0] !== 4002 || toBackendClose(1001, "")[1] !== "client closed with 1001") throw new Error();
 * ```
 */
export function toBackendClose(
  code: number,
  reason: string,
): [code: number | undefined, reason: string] {
  if (code === 1005) return [undefined, ""];
  if (code === 1000 || (code >= 3000 && code <= 4999)) return [code, reason];
  return [1000, reason === "" ? `client closed with ${code}` : reason];
}

/** Codes a peer may put in a close frame (RFC 6455 section 7.4). */
function isSendable(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/** Closes a socket that may be closing or closed already. */
function closeQuietly(socket: WebSocket, code: number | undefined, reason: string): void {
  if (socket.readyState === WebSocket.CLOSING || socket.readyState === WebSocket.CLOSED) return;
  try {
    if (code === undefined) socket.close();
    else socket.close(code, reason);
  } catch {
    try {
      socket.close();
    } catch {
      // Already closed.
    }
  }
}
