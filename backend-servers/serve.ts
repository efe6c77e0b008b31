/**
 * A demo backend: serves one folder of static files, answers `/health`, and has knobs that make
 * it slow, flaky or unhealthy on purpose, so the balancer's behaviour can be shown and tested.
 *
 * Routes:
 * - `GET|HEAD /health`: the folder's `health` file (or `OK`), 503 while marked unhealthy.
 * - `GET|HEAD /echo`: the request as JSON (method, path, headers) to see what a proxy forwarded.
 * - `POST|PUT|PATCH /echo`: streams the request body straight back.
 * - `GET /_backend`: the knobs as JSON. `POST /_backend/health?state=up|down`,
 *   `POST /_backend/delay?ms=250` (milliseconds, as the parameter's name says, or a duration
 *   with a unit such as `1.5s`) and
 *   `POST /_backend/failure-rate?rate=0.2` change them at runtime.
 * - Anything else: a file under the folder (GET/HEAD only), `index.html` for directories.
 *
 * The delay and the failure rate apply to files and `/echo`, never to `/health` or
 * `/_backend`: health is its own knob, and a flaky probe would only blur a demo. Every response
 * carries `X-Backend: <name>`, so balancing is visible with `curl -i`.
 *
 * @module
 */
import type { Clock } from "../lib/shared/clock.ts";
import { systemClock } from "../lib/shared/clock.ts";
import { parseDuration } from "../lib/shared/duration.ts";
import { StaticFiles } from "./static_files.ts";
import { errorText } from "../lib/shared/error_text.ts";

/** Path prefix of the runtime knobs. */
export const ADMIN_PREFIX = "/_backend";

/** One of the three demo backends (the original Python balancer's). */
export interface DemoBackend {
  /** The folder's name, such as `server8080`. */
  readonly name: string;
  /** The port the original Python balancer's demo served it on. */
  readonly port: number;
  /** The folder, resolved next to this module (works from a bundle or a compiled binary). */
  readonly root: URL;
}

/** The demo backends: `server8080/`, `server8081/` and `server8082/` on their ports. */
export const DEMO_BACKENDS: readonly DemoBackend[] = [
  { name: "server8080", port: 8080, root: new URL("./server8080/", import.meta.url) },
  { name: "server8081", port: 8081, root: new URL("./server8081/", import.meta.url) },
  { name: "server8082", port: 8082, root: new URL("./server8082/", import.meta.url) },
];

/** Where a backend listens, as given to `onListen`. */
export interface BackendAddress {
  /** The name in `X-Backend`. */
  readonly name: string;
  /** Base URL without a trailing slash, such as `http://127.0.0.1:8080`. */
  readonly url: string;
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
}

/** Options for {@linkcode serveBackend}. */
export interface ServeBackendOptions {
  /** The folder to serve: a path (relative to the working directory) or a `file:` URL. */
  readonly root: string | URL;
  /** Address to bind. Default: `127.0.0.1`. */
  readonly hostname?: string;
  /** Port to bind; 0 picks a free one. */
  readonly port: number;
  /** Name sent in `X-Backend`. Default: the bound port. */
  readonly name?: string;
  /** Delay before answering files and `/echo`, in milliseconds. Default: 0. */
  readonly delayMs?: number;
  /** Share of file and `/echo` requests answered with 500, from 0 to 1. Default: 0. */
  readonly failureRate?: number;
  /**
   * Random numbers in [0, 1): a request fails when a draw is below `failureRate` (one draw per
   * request, only while the rate is above 0). Default: `Math.random`.
   */
  readonly random?: () => number;
  /** Whether `/health` answers 200 at start. Default: true. */
  readonly isHealthy?: boolean;
  /** Clock whose `sleep` applies the delay. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /** Closes the backend when aborted. Default: none. */
  readonly signal?: AbortSignal;
  /** Called once listening. Default: none (and nothing is printed). */
  readonly onListen?: (address: BackendAddress) => void;
}

/** A listening demo backend. */
export interface RunningBackend extends AsyncDisposable, BackendAddress {
  /** Whether `/health` answers 200 (else 503). */
  readonly isHealthy: boolean;
  /** The current added delay in milliseconds. */
  readonly delayMs: number;
  /** The current failure rate, from 0 to 1. */
  readonly failureRate: number;
  /** Marks the backend healthy or unhealthy. */
  setHealthy(isHealthy: boolean): void;
  /**
   * Sets the added delay.
   * @throws {RangeError} When `ms` is negative or not finite.
   */
  setDelay(ms: number): void;
  /**
   * Sets the failure rate.
   * @throws {RangeError} When `rate` is outside 0 to 1.
   */
  setFailureRate(rate: number): void;
  /** Stops listening and waits for in-flight requests; idempotent. */
  close(): Promise<void>;
}

/**
 * Starts a demo backend serving one folder.
 *
 * @param options The folder, address and knobs.
 * @returns The running backend, already listening.
 * @throws {RangeError} When the port, delay or failure rate is out of range.
 * @throws {TypeError} When the root is not a directory.
 * @throws {Error} When the root cannot be read or the address cannot be bound (cause attached).
 *
 * @example
 * ```ts ignore
 * await using backend = await serveBackend({ root: DEMO_BACKENDS[0].root, port: 0 });
 * const response = await fetch(`${backend.url}/`);
 * ```
 */
export async function serveBackend(options: ServeBackendOptions): Promise<RunningBackend> {
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
    throw new RangeError(`Invalid port ${options.port}: must be an integer from 0 to 65535`);
  }
  const knobs = new Knobs(options);
  const files = await StaticFiles.open(options.root);
  return new BackendServer(options, knobs, files);
}

class Knobs {
  isHealthy: boolean;
  #delayMs = 0;
  #failureRate = 0;

  constructor(options: ServeBackendOptions) {
    this.isHealthy = options.isHealthy ?? true;
    this.delayMs = options.delayMs ?? 0;
    this.failureRate = options.failureRate ?? 0;
  }

  get delayMs(): number {
    return this.#delayMs;
  }

  set delayMs(ms: number) {
    if (!Number.isFinite(ms) || ms < 0) {
      throw new RangeError(`Invalid delay ${ms}: must be 0 or more milliseconds`);
    }
    this.#delayMs = ms;
  }

  get failureRate(): number {
    return this.#failureRate;
  }

  set failureRate(rate: number) {
    if (!(rate >= 0 && rate <= 1)) {
      throw new RangeError(`Invalid failure rate ${rate}: must be from 0 to 1`);
    }
    this.#failureRate = rate;
  }
}

class BackendServer implements RunningBackend {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  readonly #knobs: Knobs;
  readonly #files: StaticFiles;
  readonly #random: () => number;
  readonly #clock: Clock;
  readonly #closing = new AbortController();
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  #closed: Promise<void> | undefined;

  constructor(options: ServeBackendOptions, knobs: Knobs, files: StaticFiles) {
    this.#knobs = knobs;
    this.#files = files;
    this.#random = options.random ?? Math.random;
    this.#clock = options.clock ?? systemClock;
    const hostname = options.hostname ?? "127.0.0.1";
    try {
      this.#server = Deno.serve({
        hostname,
        port: options.port,
        onListen: () => {},
        onError: () => text(500, "Internal backend error"),
      }, (request) => this.#handle(request));
    } catch (error) {
      const reason = errorText(error);
      throw new Error(`Cannot listen on ${hostname}:${options.port}: ${reason}`, { cause: error });
    }
    this.port = this.#server.addr.port;
    this.name = options.name ?? String(this.port);
    this.url = `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${this.port}`;
    const signal = options.signal;
    if (signal?.aborted) void this.close();
    else signal?.addEventListener("abort", () => void this.close(), { once: true });
    options.onListen?.({ name: this.name, url: this.url, port: this.port });
  }

  get isHealthy(): boolean {
    return this.#knobs.isHealthy;
  }

  get delayMs(): number {
    return this.#knobs.delayMs;
  }

  get failureRate(): number {
    return this.#knobs.failureRate;
  }

  setHealthy(isHealthy: boolean): void {
    this.#knobs.isHealthy = isHealthy;
  }

  setDelay(ms: number): void {
    this.#knobs.delayMs = ms;
  }

  setFailureRate(rate: number): void {
    this.#knobs.failureRate = rate;
  }

  close(): Promise<void> {
    if (this.#closed === undefined) {
      // Wake delayed requests first so shutdown does not wait out their sleep.
      this.#closing.abort();
      this.#closed = this.#server.shutdown();
    }
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #handle(request: Request): Promise<Response> {
    let response: Response;
    try {
      response = await this.#route(request);
    } catch {
      response = text(500, "Internal backend error");
    }
    response.headers.set("x-backend", this.name);
    return response;
  }

  async #route(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname;
    if (path === ADMIN_PREFIX || path.startsWith(`${ADMIN_PREFIX}/`)) {
      return this.#admin(request, url);
    }
    if (path === "/health") return await this.#health(request);

    const knobs = this.#knobs;
    if (knobs.delayMs > 0) {
      // Only close() cuts the delay short: touching request.signal makes Deno 2.9 print a
      // legacy-abort warning on every request, and a client that left loses nothing by waiting.
      try {
        await this.#clock.sleep(knobs.delayMs, this.#closing.signal);
      } catch {
        return text(503, "Backend is shutting down");
      }
    }
    if (knobs.failureRate > 0 && this.#random() < knobs.failureRate) {
      return text(500, `Injected failure from backend ${this.name}`);
    }
    if (path === "/echo") return echo(request, url);
    if (request.method !== "GET" && request.method !== "HEAD") return notAllowed("GET, HEAD");

    const found = await this.#files.lookup(path);
    switch (found.kind) {
      case "file":
        return await this.#files.respond(request.method, found, new Headers());
      case "redirect":
        return new Response(null, {
          status: 301,
          headers: { location: found.location + url.search },
        });
      case "bad-path":
        return text(400, "Bad request path");
      case "forbidden":
        return text(403, "Forbidden");
      case "not-found":
        return text(404, "Not found");
    }
  }

  async #health(request: Request): Promise<Response> {
    if (request.method !== "GET" && request.method !== "HEAD") return notAllowed("GET, HEAD");
    if (!this.#knobs.isHealthy) return text(503, "Unhealthy");
    const found = await this.#files.lookup("/health");
    if (found.kind === "file") {
      return await this.#files.respond(request.method, found, new Headers());
    }
    return text(200, "OK");
  }

  #admin(request: Request, url: URL): Response {
    const action = url.pathname.slice(ADMIN_PREFIX.length);
    if (action === "" || action === "/") {
      return request.method === "GET" || request.method === "HEAD"
        ? this.#state()
        : notAllowed("GET, HEAD");
    }
    const setters: Record<string, (() => void) | undefined> = {
      "/health": () => {
        const state = url.searchParams.get("state");
        if (state !== "up" && state !== "down") {
          throw new RangeError(`Invalid state "${state ?? ""}": must be up or down`);
        }
        this.setHealthy(state === "up");
      },
      "/delay": () => {
        // The parameter is named for its unit (as `intervalMs` in a config file), so a bare
        // number is milliseconds here; a value with a unit goes through the one duration rule.
        const ms = (url.searchParams.get("ms") ?? "").trim();
        this.setDelay(/^\d+(\.\d+)?$/.test(ms) ? Number(ms) : parseDuration(ms));
      },
      "/failure-rate": () => {
        const rate = url.searchParams.get("rate") ?? "";
        this.setFailureRate(rate.trim() === "" ? Number.NaN : Number(rate));
      },
    };
    const setter = setters[action];
    if (setter === undefined) return text(404, "Not found");
    if (request.method !== "POST") return notAllowed("POST");
    try {
      setter();
    } catch (error) {
      return text(400, errorText(error));
    }
    return this.#state();
  }

  #state(): Response {
    return Response.json({
      name: this.name,
      port: this.port,
      isHealthy: this.isHealthy,
      delayMs: this.delayMs,
      failureRate: this.failureRate,
    }, { headers: { "cache-control": "no-store" } });
  }
}

function echo(request: Request, url: URL): Response {
  switch (request.method) {
    case "GET":
    case "HEAD":
      return Response.json({
        method: request.method,
        path: url.pathname + url.search,
        headers: Object.fromEntries(request.headers),
      }, { headers: { "cache-control": "no-store" } });
    case "POST":
    case "PUT":
    case "PATCH":
      return new Response(request.body, {
        headers: {
          "content-type": request.headers.get("content-type") ?? "application/octet-stream",
        },
      });
    default:
      return notAllowed("GET, HEAD, POST, PUT, PATCH");
  }
}

function text(status: number, body: string): Response {
  return new Response(`${body}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=UTF-8", "cache-control": "no-store" },
  });
}

function notAllowed(allow: string): Response {
  const response = text(405, "Method not allowed");
  response.headers.set("allow", allow);
  return response;
}
