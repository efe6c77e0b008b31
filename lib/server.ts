/**
 * The balancer's lifecycle: builds the pool, policy, upstream client, metrics and health checker
 * from a {@linkcode BalancerConfig}, serves on its own listener (`data/listener.ts`: accept
 * loop, connection timeouts, surviving descriptor exhaustion), and drains on shutdown.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { Backend } from "./backend.ts";
import type { BalancerConfig } from "./config.ts";
import { parseAdminAddress } from "./settings.ts";
import { type AdminDeps, createAdminHandler } from "./admin.ts";
import { listen, type Listener, type ListenerEvent } from "./data/listener.ts";
import { createHandler } from "./handler.ts";
import { HealthChecker } from "./health.ts";
import { getModuleLogger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { createPolicy } from "./policy.ts";
import { Pool } from "./pool.ts";
import { createUpstreamClient } from "./proxy.ts";
import { type Clock, systemClock } from "./shared/clock.ts";
import { LogThrottle } from "./shared/log_throttle.ts";
import { createHttp1Client, type Http1Client } from "./upstream/http1.ts";

/** Dependencies of the balancer, each with a production default. */
export interface BalancerDeps {
  /** Drives health probes and the drain deadline. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /** Receives lifecycle records. Default: the `["denolb", "server"]` logger. */
  readonly logger?: Logger;
  /** Called once the listener is bound, with its address. Default: none. */
  readonly onListen?: (addr: Deno.NetAddr) => void;
}

/** A balancer that is serving. */
export interface RunningBalancer extends AsyncDisposable {
  /** Where it listens: `http://host:port/`. */
  readonly url: URL;
  /** The backends and their state. */
  readonly pool: Pool;
  /** Its counters and histograms. */
  readonly metrics: Metrics;
  /** Its active health checker (already started). */
  readonly health: HealthChecker;
  /** Client connections currently open. */
  readonly connectionCount: number;
  /** Where the admin API listens, `http://host:port/`; `undefined` with `--admin off`. */
  readonly adminUrl: URL | undefined;
  /**
   * Stops accepting, fails the admin `/health`, lets in-flight requests finish within the
   * configured drain timeout, then stops health checks, closes upstream connections and the
   * admin listener. Idempotent.
   *
   * @returns Whether every in-flight request finished within the timeout.
   */
  drain(): Promise<boolean>;
}

/**
 * Starts the balancer and returns once it listens.
 *
 * @param config The validated configuration.
 * @param deps Clock, logger and listen callback.
 * @returns The running balancer; drain it (or `await using` it) to stop.
 * @throws {Error} When the address cannot be bound, naming it.
 */
export function startBalancer(config: BalancerConfig, deps: BalancerDeps = {}): RunningBalancer {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? getModuleLogger("server");
  const pool = new Pool(config.backends.map((b) => new Backend(b.url, { weight: b.weight })));
  const metrics = new Metrics(pool.backends);
  const client = createUpstreamClient({ maxIdlePerHost: config.proxy.maxIdlePerHost });
  const http1 = config.proxy.upstream === "http1"
    ? createHttp1Client({ maxIdlePerOrigin: config.proxy.maxIdlePerHost, clock })
    : undefined;
  const health = new HealthChecker(pool, {
    ...config.health,
    clock,
    onChange: (backend, state) => metrics.recordHealthFlip(backend, state),
  });
  let isDraining = false;
  const handler = createHandler({
    pool,
    policy: createPolicy(config.policy),
    client,
    ...(http1 === undefined ? {} : { fetch: upstreamFetch(http1) }),
    logger: getModuleLogger("proxy"),
    metrics,
    timeoutMs: config.proxy.timeoutMs,
    retries: config.proxy.retries,
    requestBufferBytes: config.proxy.requestBufferBytes,
    bodyTimeoutMs: config.client.bodyTimeoutMs,
    onBodyTimeout: () => metrics.recordEvent("body-timeout"),
    retryAfterSeconds: Math.max(1, Math.ceil(config.health.intervalMs / 1000)),
    clock,
  });

  const onEvent = createListenerEventSink(logger, metrics, clock);
  let listener: Listener;
  try {
    listener = listen({
      hostname: config.host,
      port: config.port,
      headerTimeoutMs: config.client.headerTimeoutMs,
      keepAliveTimeoutMs: config.client.keepAliveTimeoutMs,
      clock,
      onEvent,
      // The handler answers every failure itself; this only catches what escapes it.
      onError: (error) => {
        logger.error("Unhandled error in request handler", { error });
        return new Response("Internal error\n", { status: 500 });
      },
    }, handler);
  } catch (cause) {
    client.close();
    http1?.close();
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new Error(`Cannot listen on ${config.host}:${config.port}: ${detail}`, { cause });
  }
  health.start();
  const addr = listener.addr;
  const url = httpUrl(addr);
  let admin: Deno.HttpServer<Deno.NetAddr> | undefined;
  try {
    admin = startAdmin(config, {
      pool,
      metrics,
      isDraining: () => isDraining,
      token: config.admin.token,
      onDrainChange: (backend, isDrainingBackend) =>
        logger.info(isDrainingBackend ? "Backend draining" : "Backend undrained", {
          backend: backend.name,
          inFlight: backend.inFlight,
        }),
    });
  } catch (error) {
    listener.close();
    client.close();
    http1?.close();
    throw error;
  }
  const adminUrl = admin === undefined ? undefined : httpUrl(admin.addr);
  logger.info("Balancer listening", {
    url: url.href,
    admin: adminUrl?.href ?? "off",
    backends: pool.backends.map((b) => b.name),
    policy: config.policy,
    healthIntervalMs: config.health.intervalMs,
  });
  deps.onListen?.(addr);

  let drained: Promise<boolean> | undefined;
  const drain = (): Promise<boolean> => {
    drained ??= (async () => {
      isDraining = true;
      logger.info("Draining", { inFlight: pool.inFlight, timeoutMs: config.drainTimeoutMs });
      const deadline = new AbortController();
      const isClean = await Promise.race([
        listener.shutdown().then(() => true),
        clock.sleep(config.drainTimeoutMs, deadline.signal).then(() => false, () => true),
      ]);
      deadline.abort();
      if (!isClean) {
        logger.warn("Drain timed out; closing remaining requests", { inFlight: pool.inFlight });
        listener.close();
      }
      await health.stop();
      client.close();
      http1?.close();
      await admin?.shutdown();
      logger.info("Balancer stopped", { isClean });
      return isClean;
    })();
    return drained;
  };

  return {
    url,
    pool,
    metrics,
    health,
    get connectionCount() {
      return listener.connectionCount;
    },
    adminUrl,
    drain,
    async [Symbol.asyncDispose]() {
      await drain();
    },
  };
}

/** `http://host:port/` for a bound address, with an IPv6 host in brackets. */
function httpUrl(addr: Deno.NetAddr): URL {
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return new URL(`http://${host}:${addr.port}/`);
}

/**
 * Starts the admin listener, unless `--admin off`.
 *
 * @throws {Error} When its address cannot be bound, naming it.
 */
function startAdmin(
  config: BalancerConfig,
  deps: AdminDeps,
): Deno.HttpServer<Deno.NetAddr> | undefined {
  if (config.admin.listen === "off") return undefined;
  const address = parseAdminAddress(config.admin.listen);
  if (address === undefined) throw new Error(`Invalid admin address "${config.admin.listen}"`);
  try {
    return Deno.serve(
      { hostname: address.hostname, port: address.port, onListen: () => {} },
      createAdminHandler(deps),
    );
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new Error(`Cannot listen on admin address ${config.admin.listen}: ${detail}`, {
      cause,
    });
  }
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

/**
 * Runs the balancer until `signal` aborts, then drains it.
 *
 * @param config The validated configuration.
 * @param signal Aborted on SIGINT or SIGTERM.
 * @param deps Clock, logger and listen callback.
 * @returns Whether the drain finished within its timeout.
 */
export async function runBalancer(
  config: BalancerConfig,
  signal: AbortSignal,
  deps: BalancerDeps = {},
): Promise<boolean> {
  const balancer = startBalancer(config, deps);
  if (!signal.aborted) {
    await new Promise<void>((resolve) =>
      signal.addEventListener("abort", () => resolve(), { once: true })
    );
  }
  return await balancer.drain();
}
