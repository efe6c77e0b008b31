/**
 * One isolate's data plane: the request handler built from a configuration, the upstream
 * clients it sends with, and the listener it serves on. The control plane (`server.ts`) runs
 * one in its own isolate with `--workers 1`, and each data-plane worker runs one with more.
 * A reload calls {@linkcode DataPlane.configure}: the handler is swapped under the listener,
 * and a listener whose address or connection timeouts changed is bound anew before the old
 * one closes.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { createHandler } from "../handler.ts";
import type { Metrics } from "../metrics.ts";
import { createPolicy } from "../policy.ts";
import type { Pool } from "../pool.ts";
import { createUpstreamClient } from "../proxy.ts";
import type { BalancerConfig } from "../settings.ts";
import type { Clock } from "../shared/clock.ts";
import { LogThrottle } from "../shared/log_throttle.ts";
import { createHttp1Client, type Http1Client } from "../upstream/http1.ts";
import { listen, type Listener, type ListenerEvent, type RequestHandler } from "./listener.ts";

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
  /** The request path's access log and errors. */
  readonly proxyLogger: Logger;
  /** Bind with SO_REUSEPORT, so several isolates share the address. Default: false. */
  readonly reusePort?: boolean;
}

/** A running data plane. */
export interface DataPlane {
  /** The listener serving now. */
  readonly listener: Listener;
  /**
   * Applies a new configuration to new requests. Binds a new listener first when its
   * address or timeouts changed; the old one then finishes its connections in the background.
   *
   * @param config The new configuration.
   * @returns The old listener's shutdown, when it was replaced.
   * @throws {Error} When the new address cannot be bound; nothing changed then.
   */
  configure(config: BalancerConfig): Promise<void> | undefined;
  /** Stops accepting and lets open requests finish; resolves when they have. */
  shutdown(): Promise<void>;
  /** Closes every connection and upstream client at once. */
  close(): void;
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
  // Every set of clients ever made: one replaced by a reload still serves its requests in
  // flight, so all are closed at the end.
  const upstreamSets: Upstreams[] = [createUpstreams(config, clock)];
  const closeUpstreams = () => {
    for (const { client, http1 } of upstreamSets) {
      client.close();
      http1?.close();
    }
  };
  const buildHandler = (c: BalancerConfig, upstreams: Upstreams) =>
    createHandler({
      pool,
      policy: createPolicy(c.policy),
      client: upstreams.client,
      ...(upstreams.http1 === undefined ? {} : { fetch: upstreamFetch(upstreams.http1) }),
      logger: deps.proxyLogger,
      metrics,
      timeoutMs: c.proxy.timeoutMs,
      retries: c.proxy.retries,
      requestBufferBytes: c.proxy.requestBufferBytes,
      bodyTimeoutMs: c.client.bodyTimeoutMs,
      onBodyTimeout: () => metrics.recordEvent("body-timeout"),
      retryAfterSeconds: Math.max(1, Math.ceil(c.health.intervalMs / 1000)),
      clock,
    });
  let current = config;
  let handler = buildHandler(config, upstreamSets[0] as Upstreams);
  // One indirection, so a reload swaps the request path under an unchanged listener.
  const serve: RequestHandler = (request, info) => handler(request, info);
  const onEvent = createListenerEventSink(logger, metrics, clock);
  const bind = (c: BalancerConfig): Listener => {
    try {
      return listen({
        hostname: c.host,
        port: c.port,
        reusePort: deps.reusePort ?? false,
        headerTimeoutMs: c.client.headerTimeoutMs,
        keepAliveTimeoutMs: c.client.keepAliveTimeoutMs,
        clock,
        onEvent,
        // The handler answers every failure itself; this only catches what escapes it.
        onError: (error) => {
          logger.error("Unhandled error in request handler", { error });
          return new Response("Internal error\n", { status: 500 });
        },
      }, serve);
    } catch (cause) {
      const detail = cause instanceof Error ? cause.message : String(cause);
      throw new Error(`Cannot listen on ${c.host}:${c.port}: ${detail}`, { cause });
    }
  };
  let listener: Listener;
  try {
    listener = bind(config);
  } catch (error) {
    closeUpstreams();
    throw error;
  }
  const retiring = new Set<Promise<void>>();

  return {
    get listener() {
      return listener;
    },
    configure(next) {
      const isListenerChanged = next.host !== current.host || next.port !== current.port ||
        next.client.headerTimeoutMs !== current.client.headerTimeoutMs ||
        next.client.keepAliveTimeoutMs !== current.client.keepAliveTimeoutMs;
      const nextListener = isListenerChanged ? bind(next) : undefined;
      const isClientChanged = next.proxy.maxIdlePerHost !== current.proxy.maxIdlePerHost ||
        next.proxy.upstream !== current.proxy.upstream;
      if (isClientChanged) upstreamSets.push(createUpstreams(next, clock));
      handler = buildHandler(next, upstreamSets[upstreamSets.length - 1] as Upstreams);
      current = next;
      if (nextListener === undefined) return undefined;
      const old = listener;
      listener = nextListener;
      const closing = old.shutdown();
      retiring.add(closing);
      void closing.finally(() => retiring.delete(closing));
      return closing;
    },
    async shutdown() {
      await Promise.all([listener.shutdown(), ...retiring]);
    },
    close() {
      listener.close();
      closeUpstreams();
    },
  };
}

function createUpstreams(config: BalancerConfig, clock: Clock): Upstreams {
  return {
    client: createUpstreamClient({ maxIdlePerHost: config.proxy.maxIdlePerHost }),
    http1: config.proxy.upstream === "http1"
      ? createHttp1Client({ maxIdlePerOrigin: config.proxy.maxIdlePerHost, clock })
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
        metrics.recordEvent(event.timeout === "header" ? "header-timeout" : "keepalive-timeout");
        return;
      case "connection-error": {
        metrics.recordEvent("connection-error");
        const suppressed = throttle.take("connection");
        if (suppressed === undefined) return;
        logger.info("Client connection failed", { error: messageOf(event.error), suppressed });
        return;
      }
      case "degraded":
        logger.warn("Serving without connection timeouts", { detail: event.detail });
        return;
    }
  };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
