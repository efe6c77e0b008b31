/**
 * One isolate's data plane: the request handler built from a configuration, the upstream
 * clients it sends with, and the listener it serves on. The control plane (`control/balancer.ts`) runs
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
import { createHandler, type Handler } from "./handler.ts";
import { inFlightLimitsOf } from "./admission.ts";
import type { AttemptResult } from "../core/outlier.ts";
import { SlowStart } from "../policies/slow_start.ts";
import type { AccessLogSink } from "./access_log.ts";
import { AccessLogs } from "./access_logs.ts";
import { createListenerEventSink } from "./listener_events.ts";
import type { Metrics } from "../core/metrics.ts";
import { createPolicy } from "../policies/registry.ts";
import type { Pool } from "../core/pool.ts";
import { SharedState } from "../core/shared_state.ts";
import { createUpstreamClient } from "./proxy.ts";
import type { BalancerConfig } from "../config/settings.ts";
import type { Clock } from "../shared/clock.ts";
import type { SignalApi } from "../process/signals.ts";
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
 * Starts a data plane: builds the handler and binds the listener; the same as
 * {@linkcode DataPlane.start}.
 *
 * @param config The validated configuration.
 * @param deps Pool, metrics, clock and loggers.
 * @returns The data plane, serving.
 * @throws {Error} When the address cannot be bound, naming it.
 */
export function startDataPlane(config: BalancerConfig, deps: DataPlaneDeps): DataPlane {
  return DataPlane.start(config, deps);
}

/**
 * A running data plane: the listener serving now, the request path it serves with (rebuilt by
 * each reload), and what outlives reloads (upstream clients still in use, open WebSockets, slow
 * start, the access log).
 */
export class DataPlane {
  readonly #deps: DataPlaneDeps;
  /** Outlives reloads: the rotation, the queue and the retry budget carry over. */
  readonly #shared: SharedState;
  readonly #accessLogs: AccessLogs;
  /**
   * Every set of clients ever made: one replaced by a reload still serves its requests in
   * flight, so all are closed at the end.
   */
  readonly #upstreamSets: Upstreams[] = [];
  /** The clients new requests use. */
  #upstreams: Upstreams;
  /** Outlives reloads: sockets opened under an old configuration stay open and listed. */
  readonly #openWebSockets = new OpenWebSockets();
  /** Handshakes the listener read itself, by the request it built (outlives reloads too). */
  readonly #rawUpgrades = new RawUpgrades();
  /** Outlives reloads too: a backend ramping up keeps ramping under a new policy. */
  readonly #slowStart: SlowStart;
  /** On with OTEL_DENO=true (Deno's exporter); read once per isolate. */
  readonly #tracing = createRequestTracing();
  /** Requests refused with their body unread: the listener closes their connections. */
  readonly #closeAfterResponse = new WeakSet<Request>();
  /** Requests answered while their upload went on: the listener closes them after a linger. */
  readonly #lingerAfterResponse = new WeakSet<Request>();
  /** Requests that came over HTTP/2, for the access log. */
  readonly #http2Requests = new WeakSet<Request>();
  readonly #onEvent: (event: ListenerEvent) => void;
  /** Listeners a reload replaced, finishing their connections. */
  readonly #retiring = new Set<Promise<void>>();
  #current: BalancerConfig;
  #certificates: readonly TlsCertificate[];
  #handler: Handler;
  /** One indirection, so a reload swaps the request path under an unchanged listener. */
  #serve: RequestHandler;
  #listener: Listener;

  private constructor(config: BalancerConfig, deps: DataPlaneDeps) {
    this.#deps = deps;
    this.#shared = deps.shared ?? SharedState.create();
    this.#accessLogs = new AccessLogs(deps, deps.metrics, deps.clock);
    this.#accessLogs.configure(config);
    this.#upstreams = this.#addUpstreams(config);
    this.#slowStart = new SlowStart(deps.clock, this.#shared.timeDeltaMs);
    this.#current = config;
    this.#certificates = deps.certificates ?? [];
    this.#handler = this.#buildHandler(config);
    this.#serve = serveWith(() => this.#handler, config, this.#certificates);
    this.#onEvent = createListenerEventSink(deps.logger, deps.metrics, deps.clock);
    try {
      this.#listener = this.#bind(config, this.#certificates);
    } catch (error) {
      this.#closeUpstreams();
      void this.#accessLogs.close();
      throw error;
    }
  }

  /**
   * Starts a data plane: builds the handler and binds the listener.
   *
   * @param config The validated configuration.
   * @param deps Pool, metrics, clock and loggers.
   * @returns The data plane, serving.
   * @throws {Error} When the address cannot be bound, naming it.
   */
  static start(config: BalancerConfig, deps: DataPlaneDeps): DataPlane {
    return new DataPlane(config, deps);
  }

  /** The listener serving now. */
  get listener(): Listener {
    return this.#listener;
  }

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
  ): Promise<void> | undefined {
    return this.prepare(config, certificates).commit();
  }

  /**
   * The first half of a reload, the half that can fail: binds a new listener when the address
   * or server mode changed, and changes nothing else. Several isolates all prepare before any
   * commits, so a reload is applied everywhere or nowhere.
   *
   * New certificates bind a TLS socket beside the serving one (`listener.ts`); connections
   * open on the old one carry on.
   *
   * @param next The new configuration.
   * @param nextCertificates The TLS certificates from now on (an empty list serves plain
   *   HTTP). Default: the ones in use.
   * @returns The change, ready to commit (swap the listener and the request path) or abort
   *   (close the new listener).
   * @throws {Error} When the new address cannot be bound, naming it; nothing changed then.
   */
  prepare(
    next: BalancerConfig,
    nextCertificates: readonly TlsCertificate[] = this.#certificates,
  ): PreparedChange {
    const current = this.#current;
    // A new address, server mode or scheme needs a new listener; timeouts and the connection
    // limit apply in place (a second bind of the same port would fail without SO_REUSEPORT).
    // Port 0 in a reload keeps the port held (as with workers).
    const isPortChanged = next.port !== 0 && next.port !== this.#listener.addr.port;
    const isListenerChanged = next.host !== current.host || isPortChanged ||
      next.websocket !== current.websocket ||
      (nextCertificates.length === 0) !== (this.#certificates.length === 0);
    const nextListener = isListenerChanged ? this.#bind(next, nextCertificates) : undefined;
    // Same listener, new certificates: a new TLS socket beside the serving one.
    const certificateChange = !isListenerChanged && nextCertificates.length > 0 &&
        !isSameCertificates(nextCertificates, this.#certificates)
      ? this.#listener.prepareCertificates(nextCertificates)
      : undefined;
    let isSettled = false;
    return {
      commit: () => {
        if (isSettled) return undefined;
        isSettled = true;
        certificateChange?.commit();
        return this.#apply(next, nextListener, nextCertificates);
      },
      abort: () => {
        if (isSettled) return;
        isSettled = true;
        nextListener?.close();
        certificateChange?.abort();
      },
    };
  }

  /** Stops accepting and lets open requests finish; resolves when they have. */
  async shutdown(): Promise<void> {
    await Promise.all([this.#listener.shutdown(), ...this.#retiring]);
    await this.#accessLogs.close();
  }

  /** Closes every connection and upstream client at once; resolves when the access log is. */
  close(): Promise<void> {
    // What a drain left open: WebSockets get 1001 Going Away, not a dropped connection.
    this.#openWebSockets.closeAll(1001);
    this.#listener.close();
    this.#closeUpstreams();
    return this.#accessLogs.close();
  }

  /** Swaps in a prepared configuration (and its listener, when one was bound). */
  #apply(
    next: BalancerConfig,
    nextListener: Listener | undefined,
    nextCertificates: readonly TlsCertificate[],
  ): Promise<void> | undefined {
    const current = this.#current;
    if (nextListener === undefined) {
      this.#listener.reconfigure(next);
    }
    this.#certificates = nextCertificates;
    const isClientChanged = next.proxy.maxIdlePerHost !== current.proxy.maxIdlePerHost ||
      next.proxy.keepAliveTimeoutMs !== current.proxy.keepAliveTimeoutMs ||
      next.proxy.upstream !== current.proxy.upstream ||
      next.proxy.connectTimeoutMs !== current.proxy.connectTimeoutMs;
    if (isClientChanged) this.#upstreams = this.#addUpstreams(next);
    this.#accessLogs.configure(next);
    this.#handler = this.#buildHandler(next);
    this.#serve = serveWith(() => this.#handler, next, nextCertificates);
    this.#current = next;
    if (nextListener === undefined) return undefined;
    const old = this.#listener;
    this.#listener = nextListener;
    const closing = old.shutdown();
    this.#retiring.add(closing);
    void closing.finally(() => this.#retiring.delete(closing));
    return closing;
  }

  /** Makes the upstream clients of a configuration, closed with the data plane. */
  #addUpstreams(config: BalancerConfig): Upstreams {
    const upstreams = createUpstreams(config, this.#deps.clock);
    this.#upstreamSets.push(upstreams);
    return upstreams;
  }

  #closeUpstreams(): void {
    for (const { client, http1 } of this.#upstreamSets) {
      client.close();
      http1?.close();
    }
  }

  /**
   * Every attempt's outcome: a backend's own answer is counted (its 5xx for /status and the
   * dashboard), then passive health hears it.
   */
  readonly #onAttempt = (backend: Backend, result: AttemptResult): void => {
    if (typeof result === "number") backend.recordResponse(result);
    this.#deps.onAttempt?.(backend, result);
  };

  /** What every request path of this data plane shares, one pool or a route's pool alike. */
  #handlerDeps(c: BalancerConfig) {
    const upstreams = this.#upstreams;
    const { metrics, clock } = this.#deps;
    return {
      shared: this.#shared,
      onAttempt: this.#onAttempt,
      client: upstreams.client,
      ...(upstreams.http1 === undefined ? {} : { fetch: upstreamFetch(upstreams.http1) }),
      logger: this.#deps.proxyLogger,
      tracing: this.#tracing,
      metrics,
      onBodyTimeout: () => metrics.recordEvent("body-timeout"),
      webSockets: {
        isEnabled: c.websocket === "on",
        open: this.#openWebSockets,
        raw: this.#rawUpgrades,
      },
      closeAfterResponse: this.#closeAfterResponse,
      lingerAfterResponse: this.#lingerAfterResponse,
      http2Requests: this.#http2Requests,
      isTls: this.#certificates.length > 0,
      clock,
    };
  }

  /**
   * The request path of a configuration. With a route table each route gets its pool's
   * handler, built as the one-pool handler is with the pool's own settings over a view of the
   * balancer's pool (`routed_handlers.ts`).
   */
  #buildHandler(c: BalancerConfig): Handler {
    const { pool, metrics, clock } = this.#deps;
    const slowStart = this.#slowStart;
    if (c.routes.length === 0) {
      return createHandler({
        ...this.#handlerDeps(c),
        settings: c,
        pool,
        policy: createPolicy(c.policy, c, {
          random: Math.random,
          weightOf: slowStart.weigher(c.slowStartMs),
          rotation: this.#shared.rotation,
        }),
        accessLog: this.#accessLogs.sink,
        inFlightLimits: inFlightLimitsOf(c),
      });
    }
    return buildRouter(c, {
      pool,
      shared: this.#shared,
      metrics,
      clock,
      accessLog: this.#accessLogs.sink,
      closeAfterResponse: this.#closeAfterResponse,
      build: (poolConfig, view, rotation, accessLog, rewriteTarget) =>
        createHandler({
          ...this.#handlerDeps(c),
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
  }

  /**
   * Binds a listener for a configuration, serving whatever request path is current.
   *
   * @throws {Error} When the address cannot be bound, naming it.
   */
  #bind(c: BalancerConfig, certificates: readonly TlsCertificate[]): Listener {
    const { logger, clock } = this.#deps;
    try {
      return listen({
        hostname: c.host,
        port: c.port,
        reusePort: this.#deps.reusePort ?? false,
        settings: c,
        ...(c.websocket === "on" ? { rawUpgrades: this.#rawUpgrades } : {}),
        openConnections: this.#shared.connections,
        closeAfterResponse: this.#closeAfterResponse,
        lingerAfterResponse: this.#lingerAfterResponse,
        http2Requests: this.#http2Requests,
        ...(certificates.length === 0 ? {} : { tls: { certificates } }),
        clock,
        onEvent: this.#onEvent,
        // The handler answers every failure itself; this only catches what escapes it.
        onError: (error) => {
          // A response body cut because its backend failed mid-way: logged and counted by
          // the handler already (Deno reports a body stream's error here too).
          if (error instanceof ResponseBodyCut) return new Response(null, { status: 502 });
          logger.error("Unhandled error in request handler", { error });
          return new Response("Internal error\n", { status: 500 });
        },
      }, (request, info) => this.#serve(request, info));
    } catch (cause) {
      const detail = errorText(cause);
      throw new Error(`Cannot listen on ${c.host}:${c.port}: ${detail}`, { cause });
    }
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
