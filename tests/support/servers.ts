/**
 * Real servers on port 0 for integration tests: a backend with any handler, the balancer's
 * handler in front of given backends, and a port nothing listens on.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { Backend, parseBackendUrl } from "../../lib/backend.ts";
import { createHandler, type HandlerDeps } from "../../lib/handler.ts";
import { Metrics } from "../../lib/metrics.ts";
import { createRoundRobin } from "../../lib/policies/round_robin.ts";
import { Pool } from "../../lib/pool.ts";
import { createUpstreamClient } from "../../lib/proxy.ts";
import type { Upstream } from "../../lib/settings.ts";
import { createHttp1Client } from "../../lib/upstream/http1.ts";

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
export interface TestBalancerOptions extends
  Partial<
    Pick<
      HandlerDeps,
      | "retries"
      | "timeoutMs"
      | "retryAfterSeconds"
      | "via"
      | "requestBufferBytes"
      | "bodyTimeoutMs"
    >
  > {
  /** Initial health per backend, by index. Default: all healthy. */
  readonly unhealthy?: readonly number[];
  /** How requests reach backends. Default: `"fetch"`. */
  readonly upstream?: Upstream;
}

/** The balancer's handler served on port 0, with its parts for assertions. */
export interface TestBalancer extends TestServer {
  /** The pool built from the backend URLs. */
  readonly pool: Pool;
  /** The metrics the handler records into. */
  readonly metrics: Metrics;
}

/**
 * Serves the balancer's handler on port 0 in front of `backends`, with round-robin, a real
 * upstream client and the `["denolb", "proxy"]` logger.
 *
 * @param backends The backends' base URLs.
 * @param options Retries (default 1), header timeout (default 5000 ms), upstream client
 *   (default `fetch`) and the rest.
 * @returns The running balancer; closing it also closes its upstream client.
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
  const metrics = new Metrics(pool.backends);
  const client = createUpstreamClient({ maxIdlePerHost: 8, idleTimeoutMs: 5_000 });
  const http1 = options.upstream === "http1" ? createHttp1Client() : undefined;
  const deps: HandlerDeps = {
    ...(http1 === undefined ? {} : { fetch: http1.fetch }),
    pool,
    policy: createRoundRobin(),
    client,
    logger: getLogger(["denolb", "proxy"]),
    metrics,
    timeoutMs: options.timeoutMs ?? 5_000,
    retries: options.retries ?? 1,
    ...(options.retryAfterSeconds === undefined
      ? {}
      : { retryAfterSeconds: options.retryAfterSeconds }),
    ...(options.via === undefined ? {} : { via: options.via }),
    ...(options.requestBufferBytes === undefined
      ? {}
      : { requestBufferBytes: options.requestBufferBytes }),
    ...(options.bodyTimeoutMs === undefined ? {} : { bodyTimeoutMs: options.bodyTimeoutMs }),
  };
  const server = startServer(createHandler(deps));
  let closed: Promise<void> | undefined;
  const close = () =>
    closed ??= server.close().finally(() => {
      client.close();
      http1?.close();
    });
  return { url: server.url, port: server.port, pool, metrics, close, [Symbol.asyncDispose]: close };
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
