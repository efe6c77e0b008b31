/**
 * One isolate's data plane: the request handler built from a configuration, the upstream
 * clients it sends with, and the listener it serves on. The control plane (`server.ts`) runs
 * one in its own isolate with `--workers 1`, and each data-plane worker runs one with more.
 * A reload calls {@linkcode DataPlane.prepare} (which binds a new listener when the address or
 * server mode changed, and may fail) and then commits it: the handler is swapped under the
 * listener and the old listener, if replaced, closes after its connections. With several
 * isolates every one prepares before any commits, so a reload applies everywhere or nowhere.
 *
 * @module
 */
import type { Logger } from "../shared/logger.ts";
import type { Backend } from "../core/backend.ts";
import { createHandler } from "./handler.ts";
import { inFlightLimitsOf } from "./admission.ts";
import type { AttemptResult } from "../core/outlier.ts";
import { SlowStart } from "../policies/slow_start.ts";
import { AccessLog, type AccessLogSink, accessLogTarget, NO_ACCESS_LOG } from "./access_log.ts";
import type { Metrics } from "../core/metrics.ts";
import { createPolicy } from "../policies/registry.ts";
import type { Pool } from "../core/pool.ts";
import { SharedState } from "../core/shared_state.ts";
import { createUpstreamClient } from "./proxy.ts";
import type { BalancerConfig } from "../config/settings.ts";
import type { Clock } from "../shared/clock.ts";
import { LogThrottle } from "../shared/log_throttle.ts";
import { listenForReopen, type SignalApi } from "../process/signals.ts";
import { createHttp1Client, type Http1Client } from "../upstream/http1.ts";
import { OpenWebSockets } from "./websocket.ts";
import { RawUpgrades } from "./upgrade_tunnel.ts";
import { listen } from "./listener.ts";
import type { Listener, ListenerEvent, RequestHandler } from "./listen_options.ts";
import { errorText } from "../shared/error_text.ts";
import { ResponseBodyCut } from "./response_body.ts";
import { createRequestTracing } from "./tracing.ts";
import { buildRouter } from "./routed_handlers.ts";
import { isSameCertificates, type TlsCertificate } from "../shared/tls_certificate.ts";
import { type AcmeChallengeHook, createRedirectHandler } from "./redirect.ts";
import { parseHostPort } from "../shared/ip.ts";

export type { AcmeChallengeHook };

/** The `--redirect-http` listener: its address, and how to stop it. */
export type RedirectListener = Pick<Listener, "addr" | "shutdown" | "close">;

/**
 * Starts the `--redirect-http` listener, unless it is off: plain HTTP answered 308 to https
 * (`redirect.ts`), with the proxy listener's header and keep-alive timeouts and connection
 * limit. One per process: the control plane runs it.
 *
 * @param config The configuration (`tls.redirectHttp`, the client timeouts, the limit).
 * @param httpsPort The port HTTPS is served on, for the redirects' URL.
 * @param acmeChallenge Answers ACME HTTP-01 challenges. Default: none.
 * @returns The listener, or `undefined` without `--redirect-http`.
 * @throws {Error} When its address cannot be bound, naming it.
 */
export function startRedirectListener(
  config: BalancerConfig,
  httpsPort: number,
  acmeChallenge?: AcmeChallengeHook,
): RedirectListener | undefined {
  const address = config.tls.redirectHttp;
  if (address === undefined) return undefined;
  const parsed = parseHostPort(address);
  if (parsed === undefined) throw new Error(`Invalid --redirect-http "${address}"`);
  const handler = createRedirectHandler({
    httpsPort,
    ...(acmeChallenge === undefined ? {} : { acmeChallenge }),
  });
  try {
    return listen({
      hostname: parsed.hostname,
      port: parsed.port,
      settings: config,
    }, handler);
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new Error(`Cannot listen on --redirect-http ${address}: ${detail}`, { cause });
  }
}

/** What a data plane works with, from its isolate. */
export interface DataPlaneDeps {
  /** The backends this isolate routes over. */
  readonly pool: Pool;
  /** This isolate's counters. */
  readonly metrics: Metrics;
  /** Runs every timeout. */
  readonly clock: Clock;
  /** Lifecycle and listener records. */
  readonly logger: Logger;
  /** The request path's errors, and the access log's write failures. */
  readonly proxyLogger: Logger;
  /**
   * Receives the access records instead of the log `accessLog` configures (tests capture
   * with it). Default: the configured one.
   */
  readonly accessLog?: AccessLogSink;
  /** Where the SIGHUP and SIGUSR1 (reopen the access log) listeners go. Default: `Deno`. */
  readonly signals?: SignalApi;
  /** Bind with SO_REUSEPORT, so several isolates share the address. Default: false. */
  readonly reusePort?: boolean;
  /** Told each forwarding attempt's outcome (passive health). Default: none. */
  readonly onAttempt?: (backend: Backend, result: AttemptResult) => void;
  /**
   * The balancer's shared state (rotation, connection count, queue, retry budget), the same
   * buffer in every isolate. Default: this data plane's own.
   */
  readonly shared?: SharedState;
  /**
   * The TLS certificates (`shared/tls_certificate.ts`), the default first: with any, the
   * listener serves HTTPS (HTTP/2 and HTTP/1.1). Default: none, plain HTTP.
   */
  readonly certificates?: readonly TlsCertificate[];
}

/** A running data plane. */
export interface DataPlane {
  /** The listener serving now. */
  readonly listener: Listener;
  /**
   * Applies a new configuration to new requests: {@linkcode DataPlane.prepare}, then commit.
   *
   * @param config The new configuration.
   * @param certificates The TLS certificates from now on. Default: the ones in use.
   * @returns The old listener's shutdown, when it was replaced.
   * @throws {Error} When the new address cannot be bound; nothing changed then.
   */
  configure(
    config: BalancerConfig,
    certificates?: readonly TlsCertificate[],
  ): Promise<void> | undefined;
  /**
   * The first half of a reload, the half that can fail: binds a new listener when the address
   * or server mode changed, and changes nothing else. Several isolates all prepare before any
   * commits, so a reload is applied everywhere or nowhere.
   *
   * New certificates bind a TLS socket beside the serving one (`listener.ts`); connections
   * open on the old one carry on.
   *
   * @param config The new configuration.
   * @param certificates The TLS certificates from now on (an empty list serves plain HTTP).
   *   Default: the ones in use.
   * @returns The change, ready to commit (swap the listener and the request path) or abort
   *   (close the new listener).
   * @throws {Error} When the new address cannot be bound, naming it; nothing changed then.
   */
  prepare(config: BalancerConfig, certificates?: readonly TlsCertificate[]): PreparedChange;
  /** Stops accepting and lets open requests finish; resolves when they have. */
  shutdown(): Promise<void>;
  /** Closes every connection and upstream client at once; resolves when the access log is. */
  close(): Promise<void>;
}

/** A reload a data plane has prepared: the new listener, if any, is bound and not serving. */
export interface PreparedChange {
  /**
   * Applies it to new requests; the old listener, if replaced, finishes its connections in the
   * background. Never throws.
   *
   * @returns The old listener's shutdown, when it was replaced.
   */
  commit(): Promise<void> | undefined;
  /** Drops it: closes the listener it bound. */
  abort(): void;
}

/** The upstream clients of one configuration. */
interface Upstreams {
  readonly client: Deno.HttpClient;
  readonly http1: Http1Client | undefined;
}

/**
 * Starts a data plane: builds the handler and binds the listener.
 *
 * @param config The validated configuration.
 * @param deps Pool, metrics, clock and loggers.
 * @returns The data plane, serving.
 * @throws {Error} When the address cannot be bound, naming it.
 */
export function startDataPlane(config: BalancerConfig, deps: DataPlaneDeps): DataPlane {
  const { pool, metrics, clock, logger } = deps;
  // Outlives reloads: the rotation, the queue and the retry budget carry over.
  const shared = deps.shared ?? SharedState.create();
  const accessLogs = new AccessLogs(deps, metrics, clock);
  accessLogs.configure(config);
  // Every set of clients ever made: one replaced by a reload still serves its requests in
  // flight, so all are closed at the end.
  const upstreamSets: Upstreams[] = [createUpstreams(config, clock)];
  const closeUpstreams = () => {
    for (const { client, http1 } of upstreamSets) {
      client.close();
      http1?.close();
    }
  };
  // Every attempt's outcome: a backend's own answer is counted (its 5xx for /status and the
  // dashboard), then passive health hears it.
  const onAttempt = (backend: Backend, result: AttemptResult): void => {
    if (typeof result === "number") backend.recordResponse(result);
    deps.onAttempt?.(backend, result);
  };
  // Outlives reloads: sockets opened under an old configuration stay open and listed.
  const openWebSockets = new OpenWebSockets();
  // Handshakes the listener read itself, by the request it built (outlives reloads too).
  const rawUpgrades = new RawUpgrades();
  // Outlives reloads too: a backend ramping up keeps ramping under a new policy.
  const slowStart = new SlowStart(clock, shared.timeDeltaMs);
  // On with OTEL_DENO=true (Deno's exporter); read once per isolate.
  const tracing = createRequestTracing();
  // What every request path of this data plane shares, one pool or a route's pool alike.
  const handlerDeps = (c: BalancerConfig, upstreams: Upstreams) => ({
    shared,
    onAttempt,
    client: upstreams.client,
    ...(upstreams.http1 === undefined ? {} : { fetch: upstreamFetch(upstreams.http1) }),
    logger: deps.proxyLogger,
    tracing,
    metrics,
    onBodyTimeout: () => metrics.recordEvent("body-timeout"),
    webSockets: { isEnabled: c.websocket === "on", open: openWebSockets, raw: rawUpgrades },
    closeAfterResponse,
    lingerAfterResponse,
    http2Requests,
    isTls: certificates.length > 0,
    clock,
  });
  const buildPoolHandler = (c: BalancerConfig, upstreams: Upstreams) =>
    createHandler({
      ...handlerDeps(c, upstreams),
      settings: c,
      pool,
      policy: createPolicy(c.policy, c, {
        random: Math.random,
        weightOf: slowStart.weigher(c.slowStartMs),
        rotation: shared.rotation,
      }),
      accessLog: accessLogs.sink,
      inFlightLimits: inFlightLimitsOf(c),
    });
  // With a route table each route gets its pool's handler, built as the one-pool handler is
  // with the pool's own settings over a view of the balancer's pool (`routed_handlers.ts`).
  const buildHandler = (c: BalancerConfig, upstreams: Upstreams) =>
    c.routes.length === 0 ? buildPoolHandler(c, upstreams) : buildRouter(c, {
      pool,
      shared,
      metrics,
      clock,
      accessLog: accessLogs.sink,
      closeAfterResponse,
      build: (poolConfig, view, rotation, accessLog, rewriteTarget) =>
        createHandler({
          ...handlerDeps(c, upstreams),
          // A route's pool has its own response timeout and retries.
          settings: {
            ...c,
            proxy: { ...c.proxy, timeoutMs: poolConfig.timeoutMs, retries: poolConfig.retries },
          },
          pool: view,
          ...(rewriteTarget === undefined ? {} : { rewriteTarget }),
          policy: createPolicy(poolConfig.policy, poolConfig, {
            random: Math.random,
            weightOf: slowStart.weigher(c.slowStartMs),
            rotation,
          }),
          accessLog,
          inFlightLimits: inFlightLimitsOf({
            limits: { ...c.limits, maxInFlight: poolConfig.maxInFlight },
            backends: poolConfig.backends,
          }),
        }),
    });
  let current = config;
  let certificates: readonly TlsCertificate[] = deps.certificates ?? [];
  // Requests refused with their body unread: the listener closes their connections.
  const closeAfterResponse = new WeakSet<Request>();
  // Requests answered while their upload went on: the listener closes them after a linger.
  const lingerAfterResponse = new WeakSet<Request>();
  // Requests that came over HTTP/2, for the access log.
  const http2Requests = new WeakSet<Request>();
  let handler = buildHandler(config, upstreamSets[0] as Upstreams);
  // One indirection, so a reload swaps the request path under an unchanged listener.
  let serve: RequestHandler = serveWith(() => handler, config, certificates);
  const onEvent = createListenerEventSink(logger, metrics, clock);
  const bind = (c: BalancerConfig, certs: readonly TlsCertificate[]): Listener => {
    try {
      return listen({
        hostname: c.host,
        port: c.port,
        reusePort: deps.reusePort ?? false,
        settings: c,
        ...(c.websocket === "on" ? { rawUpgrades } : {}),
        openConnections: shared.connections,
        closeAfterResponse,
        lingerAfterResponse,
        http2Requests,
        ...(certs.length === 0 ? {} : { tls: { certificates: certs } }),
        clock,
        onEvent,
        // The handler answers every failure itself; this only catches what escapes it.
        onError: (error) => {
          // A response body cut because its backend failed mid-way: logged and counted by
          // the handler already (Deno reports a body stream's error here too).
          if (error instanceof ResponseBodyCut) return new Response(null, { status: 502 });
          logger.error("Unhandled error in request handler", { error });
          return new Response("Internal error\n", { status: 500 });
        },
      }, (request, info) => serve(request, info));
    } catch (cause) {
      const detail = errorText(cause);
      throw new Error(`Cannot listen on ${c.host}:${c.port}: ${detail}`, { cause });
    }
  };
  let listener: Listener;
  try {
    listener = bind(config, certificates);
  } catch (error) {
    closeUpstreams();
    void accessLogs.close();
    throw error;
  }
  const retiring = new Set<Promise<void>>();
  /** Swaps in a prepared configuration (and its listener, when one was bound). */
  const apply = (
    next: BalancerConfig,
    nextListener: Listener | undefined,
    nextCertificates: readonly TlsCertificate[],
  ) => {
    if (nextListener === undefined) {
      listener.reconfigure(next);
    }
    certificates = nextCertificates;
    const isClientChanged = next.proxy.maxIdlePerHost !== current.proxy.maxIdlePerHost ||
      next.proxy.keepAliveTimeoutMs !== current.proxy.keepAliveTimeoutMs ||
      next.proxy.upstream !== current.proxy.upstream ||
      next.proxy.connectTimeoutMs !== current.proxy.connectTimeoutMs;
    if (isClientChanged) upstreamSets.push(createUpstreams(next, clock));
    accessLogs.configure(next);
    handler = buildHandler(next, upstreamSets[upstreamSets.length - 1] as Upstreams);
    serve = serveWith(() => handler, next, nextCertificates);
    current = next;
    if (nextListener === undefined) return undefined;
    const old = listener;
    listener = nextListener;
    const closing = old.shutdown();
    retiring.add(closing);
    void closing.finally(() => retiring.delete(closing));
    return closing;
  };
  const prepare = (
    next: BalancerConfig,
    nextCertificates: readonly TlsCertificate[] = certificates,
  ): PreparedChange => {
    // A new address, server mode or scheme needs a new listener; timeouts and the connection
    // limit apply in place (a second bind of the same port would fail without SO_REUSEPORT).
    // Port 0 in a reload keeps the port held (as with workers).
    const isPortChanged = next.port !== 0 && next.port !== listener.addr.port;
    const isListenerChanged = next.host !== current.host || isPortChanged ||
      next.websocket !== current.websocket ||
      (nextCertificates.length === 0) !== (certificates.length === 0);
    const nextListener = isListenerChanged ? bind(next, nextCertificates) : undefined;
    // Same listener, new certificates: a new TLS socket beside the serving one.
    const certificateChange = !isListenerChanged && nextCertificates.length > 0 &&
        !isSameCertificates(nextCertificates, certificates)
      ? listener.prepareCertificates(nextCertificates)
      : undefined;
    let isSettled = false;
    return {
      commit() {
        if (isSettled) return undefined;
        isSettled = true;
        certificateChange?.commit();
        return apply(next, nextListener, nextCertificates);
      },
      abort() {
        if (isSettled) return;
        isSettled = true;
        nextListener?.close();
        certificateChange?.abort();
      },
    };
  };

  return {
    get listener() {
      return listener;
    },
    prepare,
    configure: (next, nextCertificates) => prepare(next, nextCertificates).commit(),
    async shutdown() {
      await Promise.all([listener.shutdown(), ...retiring]);
      await accessLogs.close();
    },
    close() {
      // What a drain left open: WebSockets get 1001 Going Away, not a dropped connection.
      openWebSockets.closeAll(1001);
      listener.close();
      closeUpstreams();
      return accessLogs.close();
    },
  };
}

/**
 * The data plane's access log: the one `accessLog` configures (rebuilt when a reload changes
 * its path or format), reopened on SIGHUP or SIGUSR1. Every isolate listens for both itself, so
 * with `--workers N` each reopens its own file handle (signals reach every isolate of the
 * process).
 */
class AccessLogs {
  readonly #deps: DataPlaneDeps;
  readonly #metrics: Metrics;
  readonly #clock: Clock;
  #log: AccessLog | undefined;
  #sink: AccessLogSink = NO_ACCESS_LOG;
  #key = "";
  readonly #retired = new Set<Promise<void>>();
  #reopen: Disposable | undefined;

  constructor(deps: DataPlaneDeps, metrics: Metrics, clock: Clock) {
    this.#deps = deps;
    this.#metrics = metrics;
    this.#clock = clock;
  }

  /** The sink the handler writes to now. */
  get sink(): AccessLogSink {
    return this.#sink;
  }

  /** Builds the log `config` asks for, unless it is the one already open. */
  configure(config: BalancerConfig): void {
    if (this.#deps.accessLog !== undefined) {
      this.#sink = this.#deps.accessLog;
      return;
    }
    const { path, format } = config.accessLog;
    const key = `${format} ${path}`;
    if (key === this.#key) return;
    this.#key = key;
    this.#retire();
    if (path === "off") {
      this.#sink = NO_ACCESS_LOG;
      return;
    }
    const log = new AccessLog({
      format,
      target: accessLogTarget(path),
      logger: this.#deps.proxyLogger,
      onEvent: (event) => this.#metrics.recordEvent(event),
      clock: this.#clock,
    });
    this.#log = log;
    this.#sink = log;
    if (path !== "-") {
      this.#reopen = listenForReopen(
        () => log.reopen(),
        this.#deps.signals === undefined ? {} : { api: this.#deps.signals },
      );
    }
  }

  /** Writes what is buffered and closes every log. */
  async close(): Promise<void> {
    this.#retire();
    this.#sink = NO_ACCESS_LOG;
    await Promise.all(this.#retired);
  }

  /** Closes the current log in the background (a reload replaced it, or the plane stops). */
  #retire(): void {
    this.#reopen?.[Symbol.dispose]();
    this.#reopen = undefined;
    const old = this.#log;
    this.#log = undefined;
    if (old === undefined) return;
    const closing = old.close();
    this.#retired.add(closing);
    void closing.finally(() => this.#retired.delete(closing));
  }
}

/**
 * The listener's handler: the current request path, plus `Strict-Transport-Security` on every
 * HTTPS response when `--hsts` asks (RFC 6797 section 7.2: never over plain HTTP).
 */
function serveWith(
  current: () => RequestHandler,
  config: BalancerConfig,
  certificates: readonly TlsCertificate[],
): RequestHandler {
  const maxAge = config.tls.hstsMaxAgeSeconds;
  if (maxAge <= 0 || certificates.length === 0) return (request, info) => current()(request, info);
  const value = `max-age=${maxAge}`;
  const withHsts = (response: Response) => {
    try {
      response.headers.set("strict-transport-security", value);
    } catch {
      // Immutable headers (a WebSocket's 101): nothing to add to.
    }
    return response;
  };
  return async (request, info) => withHsts(await current()(request, info));
}

function createUpstreams(config: BalancerConfig, clock: Clock): Upstreams {
  return {
    client: createUpstreamClient({
      ...config.proxy,
      // Checked by the control plane before it got here (`control/certificates.ts`).
      ...(config.proxy.backendCaFile === undefined
        ? {}
        : { caCerts: [Deno.readTextFileSync(config.proxy.backendCaFile)] }),
    }),
    http1: config.proxy.upstream === "http1"
      ? createHttp1Client({ ...config.proxy, clock })
      : undefined,
  };
}

/** Sends requests for `http:` backends with the HTTP/1.1 client and the rest with `fetch`. */
function upstreamFetch(http1: Http1Client): typeof fetch {
  return (input, init) =>
    typeof input === "string" && input.startsWith("http:")
      ? http1.fetch(input, init)
      : fetch(input, init);
}

/**
 * Turns listener events into metrics and log records; floods (descriptor exhaustion, broken
 * client connections) are logged at most once a second with a count of the rest.
 */
function createListenerEventSink(
  logger: Logger,
  metrics: Metrics,
  clock: Clock,
): (event: ListenerEvent) => void {
  const throttle = new LogThrottle({ intervalMs: 1_000, clock });
  return (event) => {
    switch (event.kind) {
      case "accept-error": {
        metrics.recordEvent(event.isFdExhausted ? "accept-fd-exhausted" : "accept-error");
        const suppressed = throttle.take(event.isFdExhausted ? "fd" : "accept");
        if (suppressed === undefined) return;
        logger.warn(
          event.isFdExhausted
            ? "Out of file descriptors accepting connections; retrying"
            : "Accepting a connection failed; retrying",
          { error: messageOf(event.error), suppressed },
        );
        return;
      }
      case "timeout":
        metrics.recordEvent(`${event.timeout}-timeout`);
        return;
      case "handshake-failed": {
        // Scanners and old clients fail handshakes all day: counted, logged at debug level.
        metrics.recordEvent("handshake-failed");
        const suppressed = throttle.take("handshake");
        if (suppressed === undefined) return;
        logger.debug("TLS handshake failed", { error: messageOf(event.error), suppressed });
        return;
      }
      case "connection-error": {
        metrics.recordEvent("connection-error");
        const suppressed = throttle.take("connection");
        if (suppressed === undefined) return;
        // A client that resets or stops reading is routine (load generators do it at the end of
        // every run); malformed framing and the like are worth a line at the default level.
        const isRoutine = event.error instanceof Deno.errors.ConnectionReset ||
          event.error instanceof Deno.errors.BrokenPipe;
        const properties = { error: messageOf(event.error), suppressed };
        if (isRoutine) logger.debug("Client connection failed", properties);
        else logger.info("Client connection failed", properties);
        return;
      }
      case "websocket-unavailable":
        logger.warn("WebSocket upgrades will be answered 501", { detail: event.detail });
        return;
      case "degraded":
        logger.warn("Serving without connection timeouts", { detail: event.detail });
        return;
      case "connection-refused": {
        metrics.recordEvent("connection-refused");
        const suppressed = throttle.take("refused");
        if (suppressed === undefined) return;
        logger.warn("Connection limit reached; refusing connections with 503", {
          limit: event.limit,
          suppressed,
        });
        return;
      }
    }
  };
}

function messageOf(error: unknown): string {
  return errorText(error);
}
