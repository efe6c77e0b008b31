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
import { planReload } from "./control/reload.ts";
import { type BackendConfig, parseAdminAddress } from "./settings.ts";
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
  /**
   * Reads the configuration anew for a reload (SIGHUP, `POST /reload`); throws a
   * `UsageError` naming the problem when the new configuration is invalid. Default: reloads
   * are refused.
   */
  readonly loadConfig?: () => Promise<BalancerConfig>;
}

/** The outcome of a reload. */
export type ReloadOutcome =
  | { readonly ok: true; readonly changes: readonly string[] }
  | { readonly ok: false; readonly problems: readonly string[] };

/** A balancer that is serving. */
export interface RunningBalancer extends AsyncDisposable {
  /** Where it listens now: `http://host:port/` (a reload may move it). */
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
   * Reads the configuration again and applies it to new requests without dropping in-flight
   * ones or open connections: backends that stay keep their state and counters, removed ones
   * drain first, a new listener address is bound before the old one closes. An invalid
   * configuration changes nothing. Reloads run one at a time.
   *
   * @returns What changed, or every problem found.
   */
  reload(): Promise<ReloadOutcome>;
  /**
   * Stops accepting, fails the admin `/health`, lets in-flight requests finish within the
   * configured drain timeout, then stops health checks, closes upstream connections and the
   * admin listener. Idempotent.
   *
   * @returns Whether every in-flight request finished within the timeout.
   */
  drain(): Promise<boolean>;
}

/** The upstream clients of one configuration. */
interface Upstreams {
  readonly client: Deno.HttpClient;
  readonly http1: Http1Client | undefined;
}

/** How often a removed backend is checked for its last in-flight request. */
const RETIRE_POLL_MS = 50;

/**
 * Starts the balancer and returns once it listens.
 *
 * @param initial The validated configuration.
 * @param deps Clock, logger, listen callback and how to reload the configuration.
 * @returns The running balancer; drain it (or `await using` it) to stop.
 * @throws {Error} When the address cannot be bound, naming it.
 */
export function startBalancer(initial: BalancerConfig, deps: BalancerDeps = {}): RunningBalancer {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? getModuleLogger("server");
  let config = initial;
  const pool = new Pool(config.backends.map((b) => new Backend(b.url, { weight: b.weight })));
  const metrics = new Metrics(pool);
  const createUpstreams = (c: BalancerConfig): Upstreams => ({
    client: createUpstreamClient({ maxIdlePerHost: c.proxy.maxIdlePerHost }),
    http1: c.proxy.upstream === "http1"
      ? createHttp1Client({ maxIdlePerOrigin: c.proxy.maxIdlePerHost, clock })
      : undefined,
  });
  // Every set of clients ever made: one replaced by a reload still serves its requests in
  // flight, so all are closed at the end.
  const upstreamSets: Upstreams[] = [createUpstreams(config)];
  const closeUpstreams = () => {
    for (const { client, http1 } of upstreamSets) {
      client.close();
      http1?.close();
    }
  };
  const health = new HealthChecker(pool, {
    ...config.health,
    clock,
    onChange: (backend, state) => metrics.recordHealthFlip(backend, state),
  });
  let isDraining = false;
  const buildHandler = (c: BalancerConfig, upstreams: Upstreams) =>
    createHandler({
      pool,
      policy: createPolicy(c.policy),
      client: upstreams.client,
      ...(upstreams.http1 === undefined ? {} : { fetch: upstreamFetch(upstreams.http1) }),
      logger: getModuleLogger("proxy"),
      metrics,
      timeoutMs: c.proxy.timeoutMs,
      retries: c.proxy.retries,
      requestBufferBytes: c.proxy.requestBufferBytes,
      bodyTimeoutMs: c.client.bodyTimeoutMs,
      onBodyTimeout: () => metrics.recordEvent("body-timeout"),
      retryAfterSeconds: Math.max(1, Math.ceil(c.health.intervalMs / 1000)),
      clock,
    });
  let handler = buildHandler(config, upstreamSets[0] as Upstreams);
  // One indirection, so a reload swaps the request path under an unchanged listener.
  const serve = (request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>) =>
    handler(request, info);

  const onEvent = createListenerEventSink(logger, metrics, clock);
  const bindListener = (c: BalancerConfig): Listener => {
    try {
      return listen({
        hostname: c.host,
        port: c.port,
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
    listener = bindListener(config);
  } catch (error) {
    closeUpstreams();
    throw error;
  }
  // Listeners replaced by a reload, still finishing their connections.
  const retiring = new Set<Promise<void>>();
  const own = (task: Promise<void>) => {
    retiring.add(task);
    void task.finally(() => retiring.delete(task));
  };
  health.start();

  // Backends being drained for removal; taking one out of here cancels its removal.
  const leaving = new Set<Backend>();
  const addBackend = (backendConfig: BackendConfig): Backend => {
    const returning = pool.find(backendConfig.url.href);
    if (returning !== undefined && leaving.delete(returning)) {
      // Removed by an earlier reload and still draining: it simply stays.
      returning.setDraining(false);
      returning.setWeight(backendConfig.weight);
      logger.info("Backend kept", { backend: returning.name, weight: returning.weight });
      return returning;
    }
    const backend = new Backend(backendConfig.url, { weight: backendConfig.weight });
    pool.add(backend);
    health.track(backend);
    logger.info("Backend added", { backend: backend.name, weight: backend.weight });
    return backend;
  };
  /** Drains a backend, then takes it out of the pool and stops probing it. */
  const removeBackend = async (backend: Backend): Promise<void> => {
    if (leaving.has(backend)) return;
    leaving.add(backend);
    backend.setDraining(true);
    const deadline = clock.now() + config.drainTimeoutMs;
    while (backend.inFlight > 0 && clock.now() < deadline && leaving.has(backend)) {
      await clock.sleep(RETIRE_POLL_MS);
    }
    if (!leaving.delete(backend)) return; // added back meanwhile
    pool.remove(backend);
    health.untrack(backend);
    logger.info("Backend removed", { backend: backend.name, inFlight: backend.inFlight });
  };
  const adminDeps = (c: BalancerConfig): AdminDeps => ({
    pool,
    metrics,
    isDraining: () => isDraining,
    token: c.admin.token,
    onDrainChange: (backend, isDrainingBackend) =>
      logger.info(isDrainingBackend ? "Backend draining" : "Backend undrained", {
        backend: backend.name,
        inFlight: backend.inFlight,
      }),
    control: {
      reload: () => reload(),
      addBackend: (backendConfig) => addBackend(backendConfig),
      removeBackend: (backend) => own(removeBackend(backend)),
    },
  });
  let admin: Deno.HttpServer<Deno.NetAddr> | undefined;
  try {
    admin = startAdmin(config, adminDeps(config));
  } catch (error) {
    listener.close();
    closeUpstreams();
    throw error;
  }
  const adminUrl = admin === undefined ? undefined : httpUrl(admin.addr);
  logger.info("Balancer listening", {
    url: httpUrl(listener.addr).href,
    admin: adminUrl?.href ?? "off",
    backends: pool.backends.map((b) => b.name),
    policy: config.policy,
    healthIntervalMs: config.health.intervalMs,
  });
  deps.onListen?.(listener.addr);

  const applyReload = async (): Promise<ReloadOutcome> => {
    if (deps.loadConfig === undefined) {
      return { ok: false, problems: ["this balancer was started without a way to reload"] };
    }
    let next: BalancerConfig;
    try {
      next = await deps.loadConfig();
    } catch (error) {
      const problems = [error instanceof Error ? error.message : String(error)];
      logger.warn("Reload rejected; the running configuration is unchanged", { problems });
      return { ok: false, problems };
    }
    const plan = planReload(config, next);
    // What can fail comes first, so a failure leaves everything as it was.
    let nextListener: Listener | undefined;
    let nextAdmin: Deno.HttpServer<Deno.NetAddr> | undefined;
    try {
      if (plan.isListenerChanged) nextListener = bindListener(next);
      if (plan.isAdminChanged && next.admin.listen !== config.admin.listen) {
        // A new address: the old one closes only once the new one is bound.
        nextAdmin = startAdmin(next, adminDeps(next));
      }
    } catch (error) {
      nextListener?.close();
      const problems = [error instanceof Error ? error.message : String(error)];
      logger.warn("Reload rejected; the running configuration is unchanged", { problems });
      return { ok: false, problems };
    }
    if (plan.isAdminChanged) {
      const old = admin;
      // Same address, new token: the old listener must close before the new one binds.
      if (nextAdmin === undefined) await old?.shutdown();
      admin = nextAdmin ?? startAdmin(next, adminDeps(next));
      if (nextAdmin !== undefined) own(old?.shutdown() ?? Promise.resolve());
    }
    if (nextListener !== undefined) {
      const old = listener;
      listener = nextListener;
      own(old.shutdown());
    }
    for (const backendConfig of plan.added) addBackend(backendConfig);
    for (const href of plan.removed) {
      const backend = pool.find(href);
      if (backend !== undefined) own(removeBackend(backend));
    }
    for (const backendConfig of plan.reweighted) {
      pool.find(backendConfig.url.href)?.setWeight(backendConfig.weight);
    }
    if (plan.isHealthChanged) health.reconfigure(next.health);
    if (plan.isHandlerChanged) {
      const isClientChanged = next.proxy.maxIdlePerHost !== config.proxy.maxIdlePerHost ||
        next.proxy.upstream !== config.proxy.upstream;
      if (isClientChanged) upstreamSets.push(createUpstreams(next));
      handler = buildHandler(next, upstreamSets[upstreamSets.length - 1] as Upstreams);
    }
    config = next;
    logger.info("Configuration reloaded", {
      changes: plan.summary,
      ...(plan.needsRestart.length === 0 ? {} : { needsRestart: plan.needsRestart }),
    });
    return { ok: true, changes: plan.summary };
  };
  let reloading: Promise<ReloadOutcome> = Promise.resolve({ ok: true, changes: [] });
  const reload = (): Promise<ReloadOutcome> => {
    if (isDraining) return Promise.resolve({ ok: false, problems: ["the balancer is draining"] });
    const safely = () =>
      applyReload().catch((error): ReloadOutcome => {
        const problems = [error instanceof Error ? error.message : String(error)];
        logger.error("Reload failed", { problems });
        return { ok: false, problems };
      });
    reloading = reloading.then(safely, safely);
    return reloading;
  };

  let drained: Promise<boolean> | undefined;
  const drain = (): Promise<boolean> => {
    drained ??= (async () => {
      isDraining = true;
      logger.info("Draining", { inFlight: pool.inFlight, timeoutMs: config.drainTimeoutMs });
      const deadline = new AbortController();
      const isClean = await Promise.race([
        Promise.all([listener.shutdown(), ...retiring]).then(() => true),
        clock.sleep(config.drainTimeoutMs, deadline.signal).then(() => false, () => true),
      ]);
      deadline.abort();
      if (!isClean) {
        logger.warn("Drain timed out; closing remaining requests", { inFlight: pool.inFlight });
        listener.close();
      }
      await health.stop();
      closeUpstreams();
      await admin?.shutdown();
      logger.info("Balancer stopped", { isClean });
      return isClean;
    })();
    return drained;
  };

  return {
    get url() {
      return httpUrl(listener.addr);
    },
    pool,
    metrics,
    health,
    get connectionCount() {
      return listener.connectionCount;
    },
    get adminUrl() {
      return admin === undefined ? undefined : httpUrl(admin.addr);
    },
    reload,
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
 * Runs the balancer until `signal` aborts, then drains it. SIGHUP-style reloads go through
 * `onStarted`'s balancer (`reload()`).
 *
 * @param config The validated configuration.
 * @param signal Aborted on SIGINT or SIGTERM.
 * @param deps Clock, logger, listen callback, how to reload, and a callback with the running
 *   balancer.
 * @returns Whether the drain finished within its timeout.
 */
export async function runBalancer(
  config: BalancerConfig,
  signal: AbortSignal,
  deps: BalancerDeps & { readonly onStarted?: (balancer: RunningBalancer) => void } = {},
): Promise<boolean> {
  const balancer = startBalancer(config, deps);
  deps.onStarted?.(balancer);
  if (!signal.aborted) {
    await new Promise<void>((resolve) =>
      signal.addEventListener("abort", () => resolve(), { once: true })
    );
  }
  return await balancer.drain();
}
