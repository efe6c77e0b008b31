/**
 * How a reload is applied to a running balancer, and the configuration and certificates in
 * force. The reload plan (`reload.ts`) decides what changed; this applies it: what can fail
 * first (a new admin or proxy address bound, certificate and CA files read, every isolate
 * prepared), so a failure leaves everything as it was, then the membership, weights, health
 * and discovery changes. Reloads and certificate replacements run one at a time.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { BalancerConfig } from "../config/config.ts";
import type { Pool } from "../core/pool.ts";
import { errorText } from "../shared/error_text.ts";
import { isSameCertificates, type TlsCertificate } from "../shared/tls_certificate.ts";
import type { AdminEndpoint, PreparedAdmin } from "./admin_endpoint.ts";
import type { BackendSet } from "./backend_set.ts";
import { loadCertificateFiles } from "./certificates.ts";
import { withCookieSecret } from "./cookie_secret.ts";
import type { Discovery } from "./discovery.ts";
import type { HealthChecker } from "./health.ts";
import type { PassiveHealth } from "./passive_health.ts";
import type { PreparedProbes, ProbeWiring } from "./probe_wiring.ts";
import { planReload } from "./reload.ts";
import type { Serving } from "./serving.ts";

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

/** What a {@linkcode Reloader} changes, and where the new configuration comes from. */
export interface ReloaderDeps {
  /** The backends. */
  readonly pool: Pool;
  /** The data plane. */
  readonly serving: Serving;
  /** Membership. */
  readonly backends: BackendSet;
  /** Active health. */
  readonly health: HealthChecker;
  /** Passive health. */
  readonly passive: PassiveHealth;
  /** DNS discovery. */
  readonly discovery: Discovery;
  /** The admin listener. */
  readonly admin: AdminEndpoint;
  /** The probes' paths and client. */
  readonly probes: ProbeWiring;
  /** Whether ACME provides the certificates (they stay until a restart, not re-read). */
  readonly isAutomatic: boolean;
  /** The process's affinity cookie key, kept across reloads. */
  readonly cookieSecret: string;
  /** Reads the configuration anew; `undefined` refuses reloads. */
  readonly loadConfig: (() => Promise<BalancerConfig>) | undefined;
  /** Receives a record per reload. */
  readonly logger: Logger;
}

/** The configuration and certificates in force, and the one queue that changes them. */
export class Reloader {
  readonly #deps: ReloaderDeps;
  #config: BalancerConfig;
  #certificates: readonly TlsCertificate[];
  /** The last reload or certificate replacement queued; the next one runs after it. */
  #queue: Promise<ReloadOutcome> = Promise.resolve({ ok: true, changes: [], needsRestart: [] });

  /**
   * @param config The configuration in force at start.
   * @param certificates The certificates served at start (none for plain HTTP).
   * @param deps What a reload changes.
   */
  constructor(
    config: BalancerConfig,
    certificates: readonly TlsCertificate[],
    deps: ReloaderDeps,
  ) {
    this.#config = config;
    this.#certificates = certificates;
    this.#deps = deps;
  }

  /** The configuration in force. */
  get config(): BalancerConfig {
    return this.#config;
  }

  /** The certificates new TLS connections get; empty when serving plain HTTP. */
  get certificates(): readonly TlsCertificate[] {
    return this.#certificates;
  }

  /**
   * Queues a reload after the ones before it.
   *
   * @returns What changed, or every problem found; never rejects.
   */
  reload(): Promise<ReloadOutcome> {
    const safely = () =>
      this.#apply().catch((error): ReloadOutcome => {
        const problems = [errorText(error)];
        this.#deps.logger.error("Reload failed", { problems });
        return { ok: false, problems };
      });
    this.#queue = this.#queue.then(safely, safely);
    return this.#queue;
  }

  /**
   * Queues serving these certificates to new TLS connections, in every isolate or in none.
   *
   * @param next The certificates, the default first; not empty.
   * @throws {Error} When the listener serves plain HTTP, or the new socket cannot be bound.
   */
  replaceCertificates(next: readonly TlsCertificate[]): Promise<void> {
    if (next.length === 0) return Promise.reject(new Error("No certificate to serve"));
    if (this.#certificates.length === 0) {
      return Promise.reject(new Error("Cannot replace certificates: serving plain HTTP"));
    }
    const replace = async () => {
      await this.#deps.serving.configure(this.#config, next);
      this.#certificates = next;
      this.#deps.logger.info("TLS certificates replaced", { count: next.length });
    };
    const queued = this.#queue.then(replace, replace);
    this.#queue = queued.then(
      (): ReloadOutcome => ({ ok: true, changes: ["certificates"], needsRestart: [] }),
      (error): ReloadOutcome => ({ ok: false, problems: [String(error)] }),
    );
    return queued;
  }

  /** Reads the configuration again and applies it. */
  async #apply(): Promise<ReloadOutcome> {
    const { pool, serving, backends, health, passive, discovery, admin, probes, logger } =
      this.#deps;
    if (this.#deps.loadConfig === undefined) {
      return { ok: false, problems: ["this balancer was started without a way to reload"] };
    }
    let next: BalancerConfig;
    try {
      next = withCookieSecret(await this.#deps.loadConfig(), this.#deps.cookieSecret);
    } catch (error) {
      return this.#rejected(error);
    }
    const current = this.#config;
    const plan = planReload(current, next);
    // What can fail comes first, so a failure leaves everything as it was.
    let preparedAdmin: PreparedAdmin | undefined;
    let preparedProbes: PreparedProbes | undefined;
    let isCertificatesChanged = false;
    try {
      preparedAdmin = admin.prepare(current, next, plan.isAdminChanged);
      // Certificate files are read again on every reload: a renewed certificate on disk under
      // the same name is a change too (the data plane compares the PEM texts). The ACME
      // certificate stays until a restart (a change of ACME settings needs one).
      const nextCertificates = this.#deps.isAutomatic
        ? this.#certificates
        : await loadCertificateFiles(next.tls.certFiles, next.tls.keyFiles);
      const isTls = nextCertificates.length > 0 || this.#certificates.length > 0;
      preparedProbes = await probes.prepare(current, next);
      // Every isolate binds what it needs before any switches: all of them apply it, or none.
      if (plan.isDataPlaneChanged || isTls) {
        await serving.configure(next, nextCertificates);
      }
      preparedProbes.commit();
      isCertificatesChanged = !isSameCertificates(nextCertificates, this.#certificates);
      this.#certificates = nextCertificates;
    } catch (error) {
      preparedProbes?.abort();
      await preparedAdmin?.abort();
      return this.#rejected(error);
    }
    await preparedAdmin.commit();
    for (const backendConfig of plan.added) {
      // Found in DNS already: now listed as well, it is in the pool.
      if (!backends.isDiscovered(backendConfig.url.href)) backends.add(backendConfig);
    }
    for (const href of plan.removed) {
      // Still found in DNS: it stays, as a discovered backend.
      if (backends.isDiscovered(href)) continue;
      const backend = pool.find(href);
      if (backend !== undefined) backends.remove(backend);
    }
    for (const backendConfig of plan.reweighted) {
      pool.find(backendConfig.url.href)?.setWeight(backendConfig.weight);
    }
    if (plan.reweighted.length > 0) serving.publish();
    if (plan.isHealthChanged) health.reconfigure(next.health);
    passive.reconfigure(next.outlier);
    this.#config = next;
    backends.reconfigure(next);
    // Every name is looked up again; names no longer listed take their backends with them.
    await discovery.reconfigure(next.discovery);
    const changes = isCertificatesChanged ? [...plan.summary, "certificates"] : plan.summary;
    logger.info("Configuration reloaded", {
      changes,
      ...(plan.needsRestart.length === 0 ? {} : { needsRestart: plan.needsRestart }),
    });
    return { ok: true, changes, needsRestart: plan.needsRestart };
  }

  /** A reload refused: the running configuration is unchanged. */
  #rejected(error: unknown): ReloadOutcome {
    const problems = [errorText(error)];
    this.#deps.logger.warn("Reload rejected; the running configuration is unchanged", {
      problems,
    });
    return { ok: false, problems };
  }
}
