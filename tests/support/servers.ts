/**
 * Real servers on port 0 for integration tests: a backend with any handler, the balancer's data
 * plane in front of given backends, and a port nothing listens on.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { type BalancerConfig, DEFAULT_BALANCER_CONFIG } from "../../lib/config/config.ts";
import { startDataPlane } from "../../lib/data/data_plane.ts";
import type { AccessLogSink, AccessRecord } from "../../lib/data/access_log.ts";
import { Metrics } from "../../lib/core/metrics.ts";
import type { AttemptResult } from "../../lib/core/outlier.ts";
import { Pool } from "../../lib/core/pool.ts";
import type { Upstream } from "../../lib/config/settings.ts";
import { systemClock } from "../../lib/shared/clock.ts";

/** A server listening on 127.0.0.1 and a port the OS chose. */
export interface TestServer extends AsyncDisposable {
  /** `http://127.0.0.1:<port>/`. */
  readonly url: URL;
  /** The port. */
  readonly port: number;
  /** Stops the server gracefully (waits for in-flight requests). Idempotent. */
  close(): Promise<void>;
}

/**
 * Serves `handler` on 127.0.0.1, port 0.
 *
 * @param handler The request handler.
 * @returns The running server.
 */
export function startServer(handler: Deno.ServeHandler<Deno.NetAddr>): TestServer {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
  const url = new URL(`http://127.0.0.1:${server.addr.port}/`);
  let closed: Promise<void> | undefined;
  const close = () => closed ??= server.shutdown();
  return { url, port: server.addr.port, close, [Symbol.asyncDispose]: close };
}

/** Options for {@linkcode startBalancer}; each defaults as noted. */
export interface TestBalancerOptions {
  /** Retries on another backend. Default: 1. */
  readonly retries?: number;
  /** Response-header timeout in milliseconds. Default: 5000. */
  readonly timeoutMs?: number;
  /** Connect timeout (http1 upstream) in milliseconds. Default: the balancer's. */
  readonly connectTimeoutMs?: number;
  /** Idle-body timeout in milliseconds; 0 is off. Default: the balancer's (off). */
  readonly idleBodyTimeoutMs?: number;
  /** The retry budget's percentage. Default: the balancer's. */
  readonly retryBudgetPercent?: number;
  /** The retry budget's floor, retries per second. Default: the balancer's. */
  readonly retryBudgetMinPerSecond?: number;
  /** Seconds in the 503's `Retry-After` (the health interval's). Default: 1. */
  readonly retryAfterSeconds?: number;
  /** Request bodies up to this size are read before forwarding. Default: the balancer's. */
  readonly requestBufferBytes?: number;
  /** Longest pause between two body reads, in milliseconds. Default: the balancer's. */
  readonly bodyTimeoutMs?: number;
  /** Initial health per backend, by index. Default: all healthy. */
  readonly unhealthy?: readonly number[];
  /** How requests reach backends. Default: the balancer's (`settings.ts`). */
  readonly upstream?: Upstream;
  /** Receives the access records (such as a {@linkcode captureAccessLog} sink). Default: none. */
  readonly accessLog?: AccessLogSink;
  /**
   * Adjusts the configuration last (policy, affinity cookie, trusted proxies...).
   * Default: none.
   */
  readonly config?: (config: BalancerConfig) => BalancerConfig;
  /** Limits replacing the defaults' (`--max-connections`, ...). Default: the balancer's. */
  readonly limits?: Partial<BalancerConfig["limits"]>;
  /** Each backend's own `maxInFlight`, by index. Default: none. */
  readonly maxInFlight?: readonly (number | undefined)[];
  /** Told each attempt's outcome, as passive health is. Default: none. */
  readonly onAttempt?: (backend: Backend, result: AttemptResult) => void;
}

/** The balancer's data plane served on port 0, with its parts for assertions. */
export interface TestBalancer extends TestServer {
  /** The pool built from the backend URLs. */
  readonly pool: Pool;
  /** The metrics the handler records into. */
  readonly metrics: Metrics;
}

/**
 * Serves the balancer's data plane on port 0 in front of `backends`: the same listener,
 * handler and upstream clients `lb` runs (`startDataPlane`), round-robin, without a health
 * checker, so each backend keeps the health the test gives it.
 *
 * @param backends The backends' base URLs.
 * @param options Retries (default 1), header timeout (default 5000 ms), upstream client
 *   (default `fetch`) and the rest.
 * @returns The running balancer; closing it drains it and closes its upstream clients.
 */
export function startBalancer(
  backends: readonly (string | URL)[],
  options: TestBalancerOptions = {},
): TestBalancer {
  const pool = new Pool(
    backends.map((url, index) =>
      new Backend(parseBackendUrl(String(url)), {
        initialHealth: options.unhealthy?.includes(index) ? "unhealthy" : "healthy",
      })
    ),
  );
  const metrics = new Metrics(pool);
  const D = DEFAULT_BALANCER_CONFIG;
  const intervalMs = (options.retryAfterSeconds ?? 1) * 1000;
  const config: BalancerConfig = {
    ...D,
    host: "127.0.0.1",
    port: 0,
    workers: "1",
    backends: pool.backends.map((b, i) => {
      const maxInFlight = options.maxInFlight?.[i];
      const backend = { url: b.url, weight: b.weight };
      return maxInFlight === undefined ? backend : { ...backend, maxInFlight };
    }),
    limits: { ...D.limits, ...options.limits },
    health: { ...D.health, intervalMs, timeoutMs: Math.min(D.health.timeoutMs, intervalMs) },
    client: { ...D.client, bodyTimeoutMs: options.bodyTimeoutMs ?? D.client.bodyTimeoutMs },
    proxy: {
      ...D.proxy,
      timeoutMs: options.timeoutMs ?? 5_000,
      connectTimeoutMs: options.connectTimeoutMs ?? D.proxy.connectTimeoutMs,
      idleBodyTimeoutMs: options.idleBodyTimeoutMs ?? D.proxy.idleBodyTimeoutMs,
      retryBudgetPercent: options.retryBudgetPercent ?? D.proxy.retryBudgetPercent,
      retryBudgetMinPerSecond: options.retryBudgetMinPerSecond ??
        D.proxy.retryBudgetMinPerSecond,
      retries: options.retries ?? 1,
      requestBufferBytes: options.requestBufferBytes ?? D.proxy.requestBufferBytes,
      upstream: options.upstream ?? D.proxy.upstream,
      maxIdlePerHost: 8,
    },
    admin: { listen: "off", insecure: "off" },
    accessLog: { ...D.accessLog, path: "off" },
  };
  const plane = startDataPlane(options.config?.(config) ?? config, {
    pool,
    metrics,
    clock: systemClock,
    logger: getLogger(["denolb", "server"]),
    proxyLogger: getLogger(["denolb", "proxy"]),
    ...(options.accessLog === undefined ? {} : { accessLog: options.accessLog }),
    ...(options.onAttempt === undefined ? {} : { onAttempt: options.onAttempt }),
  });
  const port = plane.listener.addr.port;
  let closed: Promise<void> | undefined;
  const close = () => closed ??= plane.shutdown().finally(() => plane.close());
  return {
    url: new URL(`http://127.0.0.1:${port}/`),
    port,
    pool,
    metrics,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * A port on 127.0.0.1 that nothing listens on (it was free a moment ago): a dead backend.
 *
 * @returns The port number.
 */
export function unusedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

/** A promise with its resolve function, for awaiting an explicit signal in tests. */
export interface Signal<T = void> {
  /** Settles when {@linkcode Signal.resolve} is called. */
  readonly promise: Promise<T>;
  /** Resolves the promise. */
  readonly resolve: (value: T) => void;
}

/**
 * Creates a {@linkcode Signal}.
 *
 * @returns A pending promise and its resolver.
 */
export function signal<T = void>(): Signal<T> {
  const { promise, resolve } = Promise.withResolvers<T>();
  return { promise, resolve };
}

/** An access log kept in memory, for assertions. */
export interface AccessLogCapture {
  /** The sink to give the handler or balancer. */
  readonly sink: AccessLogSink;
  /** The records written, oldest first. */
  readonly records: readonly AccessRecord[];
  /** The records whose outcome is `outcome` (`forwarded`, `failed`, `refused`, ...). */
  find(outcome: string): AccessRecord[];
  /** Forgets the records. */
  clear(): void;
}

/**
 * Captures access records in memory.
 *
 * @returns The capture, whose `sink` goes to `createHandler` or {@linkcode startBalancer}.
 */
export function captureAccessLog(): AccessLogCapture {
  let records: AccessRecord[] = [];
  return {
    sink: { isEnabled: true, write: (record) => void records.push(record) },
    get records() {
      return records;
    },
    find: (outcome) => records.filter((record) => record.outcome === outcome),
    clear: () => records = [],
  };
}
