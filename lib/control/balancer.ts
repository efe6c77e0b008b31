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
import { planReload } from "./reload.ts";
import { claimAddress, startServing } from "./serving.ts";
import type { AcmeManager, CertificatePair } from "./acme.ts";
import { AutomaticHttps } from "./automatic_https.ts";
import { PassiveHealth } from "./passive_health.ts";
import { type BackendConfig, parseAdminAddress } from "../config/settings.ts";
import { type AdminDeps, createAdminHandler, statusReport } from "./admin.ts";
import { DASHBOARD_HTML, statusEventStream } from "./dashboard.ts";
import { Discovery, type DnsResolver } from "./discovery.ts";
import { HealthChecker } from "./health.ts";
import { getModuleLogger } from "../process/log.ts";
import { Metrics } from "../core/metrics.ts";
import { Pool } from "../core/pool.ts";
import { SharedState } from "../core/shared_state.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { errorText } from "../shared/error_text.ts";
import { isSameCertificates, type TlsCertificate } from "../shared/tls_certificate.ts";
import { loadBackendCa, loadCertificateFiles } from "./certificates.ts";
import {
  type AcmeChallengeHook,
  type RedirectListener,
  startRedirectListener,
} from "../data/data_plane.ts";

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

/** The outcome of a reload. */
export type ReloadOutcome =
  | {
    readonly ok: true;
    /** Each change applied, one line each. */
    readonly changes: readonly string[];
    /** Settings that changed but take effect at the next start (`log`, `workers`). */
    readonly needsRestart: readonly string[];
  }
  | { readonly ok: false; readonly problems: readonly string[] };

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

/** How often the dashboard gets a new snapshot, in milliseconds. */
const DASHBOARD_INTERVAL_MS = 1_000;

/** How often a removed backend is checked for its last in-flight request. */
const RETIRE_POLL_MS = 50;

/**
 * Starts the balancer and resolves once it listens.
 *
 * @param initial The validated configuration.
 * @param deps Clock, logger, listen callback, how to reload, and the workers' entry module.
 * @returns The running balancer; drain it (or `await using` it) to stop.
 * @throws {Error} When an address cannot be bound, or a data-plane worker fails to start.
 */
export async function startBalancer(
  initial: BalancerConfig,
  deps: BalancerDeps = {},
): Promise<RunningBalancer> {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? getModuleLogger("server");
  // One affinity cookie key per process unless configured: every isolate and reload shares it.
  const cookieSecret = createCookieSecret();
  let config = withCookieSecret(initial, cookieSecret);
  // What every isolate decides on: each backend's slot, the rotation, the queue, the counters.
  const shared = SharedState.create();
  const pool = new Pool(
    config.backends.map((b) => new Backend(b.url, { weight: b.weight, shared: shared.allocate() })),
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
  const acmeChallenge = deps.acmeChallenge ??
    (automatic === undefined ? undefined : (token: string) => automatic.challengeResponse(token));
  // The redirect listener opens before the proxy port: with ACME it answers the challenge that
  // gets the proxy port its first certificate. Port 0 is resolved first, for its redirects.
  let redirect: RedirectListener | undefined;
  let certificates: readonly TlsCertificate[];
  let proxyPort = config.port;
  try {
    if (config.port === 0 && config.tls.redirectHttp !== undefined) {
      proxyPort = claimAddress(config.host, 0);
    }
    redirect = startRedirectListener(config, proxyPort, acmeChallenge);
    certificates = automatic === undefined
      ? await loadCertificateFiles(config.tls.certFiles, config.tls.keyFiles)
      : await automatic.firstCertificates(deps.signal);
  } catch (error) {
    await redirect?.shutdown();
    await acme?.stop();
    throw error;
  }
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
  // Each backend's pool's own probe path, under the configuration being applied.
  let healthPaths = healthPathsOf(config);
  // Probes verify https: backends as the data plane does (`--backend-ca`); a reload swaps it.
  let probeClient = await createProbeClient(config);
  const health = new HealthChecker(pool, {
    ...config.health,
    pathOf: (backend) => healthPaths.get(backend.url.href),
    fetch: (url, init) =>
      probeClient === undefined ? fetch(url, init) : fetch(url, { ...init, client: probeClient }),
    clock,
    onChange: (backend, state) => {
      metrics.recordHealthFlip(backend, state);
    },
  });
  let isDraining = false;
  const stopping = new AbortController();
  const retiring = new Set<Promise<void>>();
  const own = (task: Promise<void>) => {
    retiring.add(task);
    void task.finally(() => retiring.delete(task));
  };
  health.start();

  // Backends being drained for removal; taking one out of here cancels its removal.
  const leaving = new Set<Backend>();
  const addBackend = (backendConfig: BackendConfig, isDiscovered = false): Backend => {
    const returning = pool.find(backendConfig.url.href);
    if (returning !== undefined && leaving.delete(returning)) {
      // Removed by an earlier reload and still draining: it simply stays.
      returning.setDraining(false);
      returning.setWeight(backendConfig.weight);
      serving.publish();
      logger.info("Backend kept", { backend: returning.name, weight: returning.weight });
      return returning;
    }
    if (returning !== undefined && isDiscovered) return returning;
    // A backend joining a serving pool is slow-started (returnCount above 0). One found in DNS
    // takes no traffic until its first probe passes.
    const backend = new Backend(backendConfig.url, {
      weight: backendConfig.weight,
      shared: shared.allocate(isDiscovered ? "unhealthy" : "healthy", 1),
    });
    pool.add(backend);
    health.track(backend, { isFirstProbeDecisive: isDiscovered });
    serving.publish();
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
    passive.forget(backend);
    serving.publish();
    shared.free(backend.shared);
    logger.info("Backend removed", { backend: backend.name, inFlight: backend.inFlight });
  };
  // The named pool of each backend under the configuration in force (none without routes).
  const poolOf = (href: string): string | undefined => {
    for (const [name, poolConfig] of Object.entries(config.pools)) {
      if (poolConfig.backends.some((b) => b.url.href === href)) return name;
    }
    return undefined;
  };
  // Backends DNS gives now, by URL. Membership is decided here: a backend also listed in the
  // configuration stays when DNS drops it, and DNS keeps one a reload unlists.
  let discovered = new Map<string, BackendConfig>();
  const isListed = (href: string) => config.backends.some((b) => b.url.href === href);
  const syncDiscovered = (next: readonly BackendConfig[]): void => {
    const nextByHref = new Map(next.map((b) => [b.url.href, b]));
    let isReweighted = false;
    for (const backendConfig of next) {
      const href = backendConfig.url.href;
      if (isListed(href)) continue;
      const before = discovered.get(href);
      const backend = pool.find(href);
      if (before === undefined || backend === undefined || leaving.has(backend)) {
        try {
          addBackend(backendConfig, true);
        } catch (error) {
          logger.error("Cannot add a backend found in DNS", {
            backend: backendConfig.url.host,
            error: errorText(error),
          });
          continue;
        }
      } else if (before.weight !== backendConfig.weight) {
        backend.setWeight(backendConfig.weight);
        isReweighted = true;
      }
    }
    if (isReweighted) serving.publish();
    for (const href of discovered.keys()) {
      if (nextByHref.has(href) || isListed(href)) continue;
      const backend = pool.find(href);
      if (backend !== undefined) own(removeBackend(backend));
    }
    discovered = nextByHref;
  };
  const discovery = new Discovery(config.discovery, {
    onChange: syncDiscovered,
    clock,
    logger: getModuleLogger("discovery"),
    ...(deps.dnsResolver === undefined ? {} : { resolver: deps.dnsResolver }),
  });
  // The first answers come before the balancer says it listens (each lookup is bounded).
  await discovery.start();
  const discoveryStatus = () => discovery.isActive ? { discovery: discovery.status() } : {};
  const report = () => ({
    ...statusReport(pool, metrics, isDraining, poolOf),
    ...discoveryStatus(),
  });
  const adminDeps = (c: BalancerConfig): AdminDeps => ({
    pool,
    metrics,
    poolOf,
    isDraining: () => isDraining,
    token: c.admin.token,
    hostname: parseAdminAddress(c.admin.listen)?.hostname,
    onDrainChange: (backend, isDrainingBackend) => {
      logger.info(isDrainingBackend ? "Backend draining" : "Backend undrained", {
        backend: backend.name,
        inFlight: backend.inFlight,
      });
    },
    isolates: () => serving.isolates(),
    discovery,
    dashboard: {
      html: DASHBOARD_HTML,
      // Streams end with their client, or when the balancer stops (a shutdown waits for them).
      events: (signal) =>
        statusEventStream(report, {
          intervalMs: DASHBOARD_INTERVAL_MS,
          signal: AbortSignal.any([signal, stopping.signal]),
        }),
    },
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
    redirect?.close();
    await serving.drain(0);
    await discovery.stop();
    await health.stop();
    await passive.stop();
    await acme?.stop();
    throw error;
  }
  const scheme = () => certificates.length > 0 ? "https" : "http";
  logger.info("Balancer listening", {
    url: httpUrl(serving.addr, scheme()).href,
    ...(redirect === undefined ? {} : { redirect: httpUrl(redirect.addr).href }),
    admin: admin === undefined ? "off" : httpUrl(admin.addr).href,
    backends: pool.backends.map((b) => b.name),
    policy: config.policy,
    workers: serving.isolateCount,
    healthIntervalMs: config.health.intervalMs,
  });
  deps.onListen?.(serving.addr);

  const applyReload = async (): Promise<ReloadOutcome> => {
    if (deps.loadConfig === undefined) {
      return { ok: false, problems: ["this balancer was started without a way to reload"] };
    }
    let next: BalancerConfig;
    try {
      next = withCookieSecret(await deps.loadConfig(), cookieSecret);
    } catch (error) {
      const problems = [errorText(error)];
      logger.warn("Reload rejected; the running configuration is unchanged", { problems });
      return { ok: false, problems };
    }
    const plan = planReload(config, next);
    // What can fail comes first, so a failure leaves everything as it was.
    let nextAdmin: Deno.HttpServer<Deno.NetAddr> | undefined;
    let isCertificatesChanged = false;
    try {
      if (plan.isAdminChanged && next.admin.listen !== config.admin.listen) {
        // A new address: the old one closes only once the new one is bound.
        nextAdmin = startAdmin(next, adminDeps(next));
      }
      // Certificate files are read again on every reload: a renewed certificate on disk under
      // the same name is a change too (the data plane compares the PEM texts). The ACME
      // certificate stays until a restart (a change of ACME settings needs one).
      const nextCertificates = automatic === undefined
        ? await loadCertificateFiles(next.tls.certFiles, next.tls.keyFiles)
        : certificates;
      const isTls = nextCertificates.length > 0 || certificates.length > 0;
      const nextProbeClient = next.proxy.backendCaFile === config.proxy.backendCaFile
        ? probeClient
        : await createProbeClient(next);
      // Every isolate binds what it needs before any switches: all of them apply it, or none.
      if (plan.isDataPlaneChanged || isTls) {
        await serving.configure(next, nextCertificates);
      }
      if (nextProbeClient !== probeClient) {
        probeClient?.close();
        probeClient = nextProbeClient;
      }
      isCertificatesChanged = !isSameCertificates(nextCertificates, certificates);
      certificates = nextCertificates;
    } catch (error) {
      await nextAdmin?.shutdown();
      const problems = [errorText(error)];
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
    healthPaths = healthPathsOf(next);
    for (const backendConfig of plan.added) {
      // Found in DNS already: now listed as well, it is in the pool.
      if (!discovered.has(backendConfig.url.href)) addBackend(backendConfig);
    }
    for (const href of plan.removed) {
      // Still found in DNS: it stays, as a discovered backend.
      if (discovered.has(href)) continue;
      const backend = pool.find(href);
      if (backend !== undefined) own(removeBackend(backend));
    }
    for (const backendConfig of plan.reweighted) {
      pool.find(backendConfig.url.href)?.setWeight(backendConfig.weight);
    }
    if (plan.reweighted.length > 0) serving.publish();
    if (plan.isHealthChanged) health.reconfigure(next.health);
    passive.reconfigure(next.outlier);
    config = next;
    // Every name is looked up again; names no longer listed take their backends with them.
    await discovery.reconfigure(next.discovery);
    const changes = isCertificatesChanged ? [...plan.summary, "certificates"] : plan.summary;
    logger.info("Configuration reloaded", {
      changes,
      ...(plan.needsRestart.length === 0 ? {} : { needsRestart: plan.needsRestart }),
    });
    return { ok: true, changes, needsRestart: plan.needsRestart };
  };
  let reloading: Promise<ReloadOutcome> = Promise.resolve({
    ok: true,
    changes: [],
    needsRestart: [],
  });
  const reload = (): Promise<ReloadOutcome> => {
    if (isDraining) return Promise.resolve({ ok: false, problems: ["the balancer is draining"] });
    const safely = () =>
      applyReload().catch((error): ReloadOutcome => {
        const problems = [errorText(error)];
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
      const isClean = await serving.drain(config.drainTimeoutMs);
      if (!isClean) {
        logger.warn("Drain timed out; closed the remaining requests", { inFlight: pool.inFlight });
      }
      await discovery.stop();
      await Promise.all(retiring);
      await health.stop();
      await passive.stop();
      await acme?.stop();
      stopping.abort();
      await Promise.all([admin?.shutdown(), redirect?.shutdown()]);
      probeClient?.close();
      logger.info("Balancer stopped", { isClean });
      return isClean;
    })();
    return drained;
  };

  const running: RunningBalancer = {
    get url() {
      return httpUrl(serving.addr, scheme());
    },
    get redirectUrl() {
      return redirect === undefined ? undefined : httpUrl(redirect.addr);
    },
    replaceCertificates(next) {
      if (next.length === 0) return Promise.reject(new Error("No certificate to serve"));
      if (certificates.length === 0) {
        return Promise.reject(new Error("Cannot replace certificates: serving plain HTTP"));
      }
      const replace = async () => {
        await serving.configure(config, next);
        certificates = next;
        logger.info("TLS certificates replaced", { count: next.length });
      };
      const queued = reloading.then(replace, replace);
      reloading = queued.then(
        (): ReloadOutcome => ({ ok: true, changes: ["certificates"], needsRestart: [] }),
        (error): ReloadOutcome => ({ ok: false, problems: [String(error)] }),
      );
      return queued;
    },
    pool,
    metrics,
    health,
    passiveHealth: passive,
    discovery,
    get connectionCount() {
      return serving.connectionCount;
    },
    get adminUrl() {
      return admin === undefined ? undefined : httpUrl(admin.addr);
    },
    isolateCount: serving.isolateCount,
    acme,
    reload,
    drain,
    async [Symbol.asyncDispose]() {
      await drain();
    },
  };
  // Renewals (and certificates other processes sharing the state directory saved) reach every
  // isolate the way a reload's certificate files do: new connections get them, open ones not.
  automatic?.serveWith((next) => running.replaceCertificates(next));
  return running;
}

/** The probe path of each backend whose pool sets its own (by base URL). */
function healthPathsOf(config: BalancerConfig): ReadonlyMap<string, string> {
  const paths = new Map<string, string>();
  for (const pool of Object.values(config.pools)) {
    const path = pool.health?.path;
    if (path === undefined) continue;
    for (const backend of pool.backends) paths.set(backend.url.href, path);
  }
  return paths;
}

/** `http://host:port/` (or `https:`) for a bound address, with an IPv6 host in brackets. */
function httpUrl(addr: Deno.NetAddr, scheme: "http" | "https" = "http"): URL {
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return new URL(`${scheme}://${host}:${addr.port}/`);
}

/**
 * The health probes' client when `--backend-ca` is set (checked here first, so a bad file is a
 * clear error at start or a rejected reload); `undefined` uses the system's authorities.
 */
async function createProbeClient(config: BalancerConfig): Promise<Deno.HttpClient | undefined> {
  const path = config.proxy.backendCaFile;
  if (path === undefined) return undefined;
  return Deno.createHttpClient({ caCerts: [await loadBackendCa(path)] });
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
    const detail = errorText(cause);
    throw new Error(`Cannot listen on admin address ${config.admin.listen}: ${detail}`, {
      cause,
    });
  }
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
