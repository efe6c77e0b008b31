/**
 * The balancer's lifecycle and the one place that wires it: the control plane (pool, health
 * checker, admin API, metrics, reload, drain) in this isolate, and the data plane
 * (`data/data_plane.ts`: listener, request handler, upstream clients) either here too
 * (`--workers 1`) or in N worker isolates sharing the address (`control/workers.ts`).
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { Backend } from "../core/backend.ts";
import type { BalancerConfig } from "../config/config.ts";
import { createCookieSecret, withCookieSecret } from "./cookie_secret.ts";
import { type Serving, startServing } from "./serving.ts";
import { openEntrance } from "./entrance.ts";
import type { AcmeManager, CertificatePair } from "./acme.ts";
import { AutomaticHttps } from "./automatic_https.ts";
import { PassiveHealth } from "./passive_health.ts";
import { AdminEndpoint } from "./admin_endpoint.ts";
import { BackendSet } from "./backend_set.ts";
import { Discovery, type DnsResolver } from "./discovery.ts";
import { HealthChecker } from "./health.ts";
import { ProbeWiring } from "./probe_wiring.ts";
import { Reloader, type ReloadOutcome } from "./reloader.ts";
import { getModuleLogger } from "../process/log.ts";
import { Metrics } from "../core/metrics.ts";
import { Pool } from "../core/pool.ts";
import { SharedState } from "../core/shared_state.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import type { TlsCertificate } from "../shared/tls_certificate.ts";
import type { AcmeChallengeHook, RedirectListener } from "../data/data_plane.ts";

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
  /**
   * The module data-plane workers start from (the program's entry module). Default: none, so
   * the data plane runs in this isolate whatever `--workers` says.
   */
  readonly workerEntry?: URL;
  /** Looks up `--backend-dns` and `--backend-srv` names. Default: the system's (`node:dns`). */
  readonly dnsResolver?: DnsResolver;
  /** Wall-clock time, Unix epoch ms, that certificates' validity is compared with. Default: `Date.now`. */
  readonly now?: () => number;
  /**
   * Also told each certificate list ACME produces (with `--acme-domain`; the proxy port serves
   * each to new connections): the saved one at start, then each new or renewed one. Default:
   * none.
   */
  readonly onCertificates?: (certificates: readonly CertificatePair[]) => void;
  /**
   * Answers ACME HTTP-01 challenges on the `--redirect-http` listener. Default: the certificate
   * manager's answers with `--acme-domain`, else none.
   */
  readonly acmeChallenge?: AcmeChallengeHook;
  /**
   * Aborts a start still waiting for its first ACME certificate (SIGTERM meanwhile). Default:
   * none.
   */
  readonly signal?: AbortSignal;
}

/** A balancer that is serving. */
export interface RunningBalancer extends AsyncDisposable {
  /** Where it listens now: `http://host:port/` or `https://…` (a reload may move it). */
  readonly url: URL;
  /** The backends and their state. */
  readonly pool: Pool;
  /** Its counters and histograms. */
  readonly metrics: Metrics;
  /** Its active health checker (already started). */
  readonly health: HealthChecker;
  /** Its passive health (outlier detection, already started). */
  readonly passiveHealth: PassiveHealth;
  /** Its DNS discovery (already started; idle without names). */
  readonly discovery: Discovery;
  /** Client connections currently open. */
  readonly connectionCount: number;
  /** Where the admin API listens, `http://host:port/`; `undefined` with `--admin off`. */
  readonly adminUrl: URL | undefined;
  /** How many isolates serve requests (1 without workers). */
  readonly isolateCount: number;
  /** The ACME certificate manager, with `--acme-domain` (already started). */
  readonly acme: AcmeManager | undefined;
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
   * Serves these certificates to new TLS connections from now on (open ones keep theirs), in
   * every isolate or in none; queued with reloads. The certificate manager's entry point.
   *
   * @param certificates The certificates, the default first; not empty.
   * @throws {Error} When the listener serves plain HTTP, or the new socket cannot be bound.
   */
  replaceCertificates(certificates: readonly TlsCertificate[]): Promise<void>;
  /** Where `--redirect-http` listens, `http://host:port/`; `undefined` without it. */
  readonly redirectUrl: URL | undefined;
  /**
   * Stops accepting, fails the admin `/health`, lets in-flight requests finish within the
   * configured drain timeout, then stops health checks, closes upstream connections and the
   * admin listener. Idempotent.
   *
   * @returns Whether every in-flight request finished within the timeout.
   */
  drain(): Promise<boolean>;
}

/** The parts {@linkcode Balancer.start} builds a balancer from. */
interface BalancerParts {
  readonly config: BalancerConfig;
  readonly certificates: readonly TlsCertificate[];
  readonly cookieSecret: string;
  readonly pool: Pool;
  readonly metrics: Metrics;
  readonly health: HealthChecker;
  readonly passive: PassiveHealth;
  readonly discovery: Discovery;
  readonly backends: BackendSet;
  readonly probes: ProbeWiring;
  readonly serving: Serving;
  readonly redirect: RedirectListener | undefined;
  readonly automatic: AutomaticHttps | undefined;
  readonly logger: Logger;
  readonly loadConfig: (() => Promise<BalancerConfig>) | undefined;
}

/**
 * A serving balancer: the control plane's long-lived parts, and the steps that reload, replace
 * certificates and drain it. Built by {@linkcode Balancer.start}.
 */
export class Balancer implements RunningBalancer {
  /** The backends and their state. */
  readonly pool: Pool;
  /** Its counters and histograms. */
  readonly metrics: Metrics;
  /** Its active health checker (already started). */
  readonly health: HealthChecker;
  /** Its passive health (outlier detection, already started). */
  readonly passiveHealth: PassiveHealth;
  /** Its DNS discovery (already started; idle without names). */
  readonly discovery: Discovery;
  /** The ACME certificate manager, with `--acme-domain` (already started). */
  readonly acme: AcmeManager | undefined;
  /** How many isolates serve requests (1 without workers). */
  readonly isolateCount: number;
  readonly #serving: Serving;
  readonly #redirect: RedirectListener | undefined;
  readonly #backends: BackendSet;
  readonly #probes: ProbeWiring;
  readonly #admin: AdminEndpoint;
  readonly #reloader: Reloader;
  readonly #logger: Logger;
  /** Aborted once the balancer stops: open dashboard streams end then. */
  readonly #stopping = new AbortController();
  #isDraining = false;
  #drained: Promise<boolean> | undefined;

  private constructor(parts: BalancerParts) {
    this.pool = parts.pool;
    this.metrics = parts.metrics;
    this.health = parts.health;
    this.passiveHealth = parts.passive;
    this.discovery = parts.discovery;
    this.acme = parts.automatic?.manager;
    this.isolateCount = parts.serving.isolateCount;
    this.#serving = parts.serving;
    this.#redirect = parts.redirect;
    this.#backends = parts.backends;
    this.#probes = parts.probes;
    this.#logger = parts.logger;
    this.#admin = new AdminEndpoint({
      pool: parts.pool,
      metrics: parts.metrics,
      backends: parts.backends,
      discovery: parts.discovery,
      serving: parts.serving,
      isDraining: () => this.#isDraining,
      reload: () => this.reload(),
      stopping: this.#stopping.signal,
      logger: parts.logger,
    });
    this.#reloader = new Reloader(parts.config, parts.certificates, {
      pool: parts.pool,
      serving: parts.serving,
      backends: parts.backends,
      health: parts.health,
      passive: parts.passive,
      discovery: parts.discovery,
      admin: this.#admin,
      probes: parts.probes,
      isAutomatic: parts.automatic !== undefined,
      cookieSecret: parts.cookieSecret,
      loadConfig: parts.loadConfig,
      logger: parts.logger,
    });
  }

  /**
   * Starts the balancer and resolves once it listens.
   *
   * @param initial The validated configuration.
   * @param deps Clock, logger, listen callback, how to reload, and the workers' entry module.
   * @returns The running balancer; drain it (or `await using` it) to stop.
   * @throws {Error} When an address cannot be bound, or a data-plane worker fails to start.
   */
  static async start(initial: BalancerConfig, deps: BalancerDeps = {}): Promise<Balancer> {
    const clock = deps.clock ?? systemClock;
    const logger = deps.logger ?? getModuleLogger("server");
    // One affinity cookie key per process unless configured: every isolate and reload shares it.
    const cookieSecret = createCookieSecret();
    const config = withCookieSecret(initial, cookieSecret);
    // What every isolate decides on: each backend's slot, the rotation, the queue, the counters.
    const shared = SharedState.create();
    const pool = new Pool(
      config.backends.map((b) =>
        new Backend(b.url, { weight: b.weight, shared: shared.allocate() })
      ),
    );
    const metrics = new Metrics(pool);
    // ACME opens its state directory (and loads the certificate saved there) before anything
    // binds, so a directory it cannot use fails the start cleanly.
    const automatic = await AutomaticHttps.open(config, {
      metrics,
      clock,
      logger: getModuleLogger("acme"),
      ...(deps.now === undefined ? {} : { now: deps.now }),
      ...(deps.onCertificates === undefined ? {} : { onCertificates: deps.onCertificates }),
    });
    const acme = automatic?.manager;
    const { redirect, certificates, proxyPort } = await openEntrance(config, automatic, deps);
    // Ejections are written to the shared state: every isolate sees them without a message.
    const passive = new PassiveHealth(pool, config.outlier, { clock, metrics });
    const serving = await startServing({ ...config, port: proxyPort }, {
      certificates,
      pool,
      shared,
      metrics,
      clock,
      logger,
      onAttempt: passive.observe,
      onStreak: passive.observeStreak,
      ...(deps.workerEntry === undefined ? {} : { workerEntry: deps.workerEntry }),
    }).catch(async (error) => {
      await redirect?.shutdown();
      await acme?.stop();
      throw error;
    });
    acme?.start();
    passive.start();
    // Probes verify https: backends as the data plane does (`--backend-ca`); a reload swaps it.
    const probes = await ProbeWiring.open(config);
    const health = new HealthChecker(pool, {
      ...config.health,
      pathOf: (backend) => probes.pathOf(backend),
      fetch: (url, init) => probes.fetch(url, init),
      clock,
      onChange: (backend, state) => {
        metrics.recordHealthFlip(backend, state);
      },
    });
    health.start();
    const backends = new BackendSet(config, {
      pool,
      shared,
      health,
      passive,
      serving,
      logger,
      clock,
    });
    const discovery = new Discovery(config.discovery, {
      onChange: (next) => backends.syncDiscovered(next),
      clock,
      logger: getModuleLogger("discovery"),
      ...(deps.dnsResolver === undefined ? {} : { resolver: deps.dnsResolver }),
    });
    // The first answers come before the balancer says it listens (each lookup is bounded).
    await discovery.start();
    const balancer = new Balancer({
      config,
      certificates,
      cookieSecret,
      pool,
      metrics,
      health,
      passive,
      discovery,
      backends,
      probes,
      serving,
      redirect,
      automatic,
      logger,
      loadConfig: deps.loadConfig,
    });
    try {
      balancer.#admin.open(config);
    } catch (error) {
      redirect?.close();
      await serving.drain(0);
      await discovery.stop();
      await health.stop();
      await passive.stop();
      await acme?.stop();
      throw error;
    }
    logger.info("Balancer listening", {
      url: balancer.url.href,
      ...(redirect === undefined ? {} : { redirect: httpUrl(redirect.addr).href }),
      admin: balancer.adminUrl?.href ?? "off",
      backends: pool.backends.map((b) => b.name),
      policy: config.policy,
      workers: serving.isolateCount,
      healthIntervalMs: config.health.intervalMs,
    });
    deps.onListen?.(serving.addr);
    // Renewals (and certificates other processes sharing the state directory saved) reach every
    // isolate the way a reload's certificate files do: new connections get them, open ones not.
    automatic?.serveWith((next) => balancer.replaceCertificates(next));
    return balancer;
  }

  /** Where it listens now: `http://host:port/` or `https://…` (a reload may move it). */
  get url(): URL {
    const scheme = this.#reloader.certificates.length > 0 ? "https" : "http";
    return httpUrl(this.#serving.addr, scheme);
  }

  /** Where `--redirect-http` listens, `http://host:port/`; `undefined` without it. */
  get redirectUrl(): URL | undefined {
    return this.#redirect === undefined ? undefined : httpUrl(this.#redirect.addr);
  }

  /** Client connections currently open. */
  get connectionCount(): number {
    return this.#serving.connectionCount;
  }

  /** Where the admin API listens, `http://host:port/`; `undefined` with `--admin off`. */
  get adminUrl(): URL | undefined {
    const addr = this.#admin.addr;
    return addr === undefined ? undefined : httpUrl(addr);
  }

  /**
   * Reads the configuration again and applies it to new requests (see
   * {@linkcode RunningBalancer.reload}); refused while draining.
   *
   * @returns What changed, or every problem found.
   */
  reload(): Promise<ReloadOutcome> {
    if (this.#isDraining) {
      return Promise.resolve({ ok: false, problems: ["the balancer is draining"] });
    }
    return this.#reloader.reload();
  }

  /**
   * Serves these certificates to new TLS connections from now on; queued with reloads.
   *
   * @param certificates The certificates, the default first; not empty.
   * @throws {Error} When the listener serves plain HTTP, or the new socket cannot be bound.
   */
  replaceCertificates(certificates: readonly TlsCertificate[]): Promise<void> {
    return this.#reloader.replaceCertificates(certificates);
  }

  /**
   * Stops accepting, lets in-flight requests finish within the drain timeout, then stops
   * everything else. Idempotent.
   *
   * @returns Whether every in-flight request finished within the timeout.
   */
  drain(): Promise<boolean> {
    this.#drained ??= this.#stop();
    return this.#drained;
  }

  /** Drains the balancer. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.drain();
  }

  /** The drain, run once. */
  async #stop(): Promise<boolean> {
    this.#isDraining = true;
    const { drainTimeoutMs } = this.#reloader.config;
    this.#logger.info("Draining", { inFlight: this.pool.inFlight, timeoutMs: drainTimeoutMs });
    const isClean = await this.#serving.drain(drainTimeoutMs);
    if (!isClean) {
      this.#logger.warn("Drain timed out; closed the remaining requests", {
        inFlight: this.pool.inFlight,
      });
    }
    await this.discovery.stop();
    await this.#backends.settle();
    await this.health.stop();
    await this.passiveHealth.stop();
    await this.acme?.stop();
    this.#stopping.abort();
    await Promise.all([this.#admin.shutdown(), this.#redirect?.shutdown()]);
    this.#probes.close();
    this.#logger.info("Balancer stopped", { isClean });
    return isClean;
  }
}

/**
 * Starts the balancer; the same as {@linkcode Balancer.start}.
 *
 * @param initial The validated configuration.
 * @param deps Clock, logger, listen callback, how to reload, and the workers' entry module.
 * @returns The running balancer; drain it (or `await using` it) to stop.
 * @throws {Error} When an address cannot be bound, or a data-plane worker fails to start.
 */
export function startBalancer(
  initial: BalancerConfig,
  deps: BalancerDeps = {},
): Promise<RunningBalancer> {
  return Balancer.start(initial, deps);
}

/** `http://host:port/` (or `https:`) for a bound address, with an IPv6 host in brackets. */
function httpUrl(addr: Deno.NetAddr, scheme: "http" | "https" = "http"): URL {
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return new URL(`${scheme}://${host}:${addr.port}/`);
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
  let balancer: RunningBalancer;
  try {
    balancer = await startBalancer(config, { ...deps, signal });
  } catch (error) {
    // Stopped while the start waited for its first certificate: an orderly stop.
    if (signal.aborted) return true;
    throw error;
  }
  deps.onStarted?.(balancer);
  if (!signal.aborted) {
    await new Promise<void>((resolve) =>
      signal.addEventListener("abort", () => resolve(), { once: true })
    );
  }
  return await balancer.drain();
}
