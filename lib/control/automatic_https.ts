/**
 * Automatic HTTPS as the balancer wires it (`balancer.ts`), the way Caddy does it: with
 * `--acme-domain` the proxy listener (`--port`) itself serves TLS with the certificate the
 * manager (`acme.ts`) keeps, in every isolate; a renewal reaches the isolates through the same
 * path a reload's new certificate files take (`RunningBalancer.replaceCertificates`), so new
 * connections get it and open ones keep theirs. The HTTP-01 challenge is answered on the
 * `--redirect-http` listener, which redirects everything else to https.
 *
 * Before the first certificate: the start waits for it. A certificate saved in the state
 * directory is served at once; without one, the redirect listener (the challenge) opens first,
 * the manager orders, and the proxy port binds once the certificate is there. The wait is
 * bounded ({@linkcode FIRST_CERTIFICATE_TIMEOUT_MS}): a CA that cannot validate fails the start
 * with the order's last error, rather than a port that accepts TLS it cannot complete.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { BalancerConfig } from "../config/settings.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Clock } from "../shared/clock.ts";
import { formatDurationText } from "../shared/duration.ts";
import { AcmeManager, type CertificatePair } from "./acme.ts";

/**
 * How long a first start waits for its first certificate: the first order and, after a failure,
 * the retries one and two minutes later (`acme.ts`'s delays), with room to spare.
 */
export const FIRST_CERTIFICATE_TIMEOUT_MS = 5 * 60 * 1000;

/** What {@linkcode AutomaticHttps.open} wires the certificate manager to. */
export interface AcmeWiring {
  /** Counts orders by outcome. */
  readonly metrics: Metrics;
  /** Runs the renewal loop's waits and the first certificate's deadline. */
  readonly clock: Clock;
  /** Records a renewal the listener could not take. */
  readonly logger: Logger;
  /** Wall-clock time, Unix epoch ms. Default: `Date.now`. */
  readonly now?: () => number;
  /** Also told each certificate list (tests watch with it). Default: none. */
  readonly onCertificates?: (certificates: readonly CertificatePair[]) => void;
}

/** Each certificate list the manager gives: the latest, who waits for one, who serves it. */
class CertificateFeed {
  latest: readonly CertificatePair[] | undefined;
  apply: ((certificates: readonly CertificatePair[]) => Promise<void>) | undefined;
  readonly waiters = new Set<(certificates: readonly CertificatePair[]) => void>();
  readonly #config: BalancerConfig;
  readonly #wiring: AcmeWiring;

  constructor(config: BalancerConfig, wiring: AcmeWiring) {
    this.#config = config;
    this.#wiring = wiring;
  }

  receive(list: readonly CertificatePair[]): void {
    this.latest = list;
    this.#wiring.onCertificates?.(list);
    for (const resolve of this.waiters) resolve(list);
    this.waiters.clear();
    this.serve(list);
  }

  serve(list: readonly CertificatePair[]): void {
    this.apply?.(list).catch((error) => {
      this.#wiring.logger.error("Cannot serve the new certificate; the previous one is served", {
        names: this.#config.acme.domains,
        error: error instanceof Error ? error.message : String(error),
      });
    });
  }
}

/** The certificate manager and where its certificates go: the proxy listener. */
export class AutomaticHttps {
  /** The certificate manager. */
  readonly manager: AcmeManager;
  readonly #config: BalancerConfig;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #feed: CertificateFeed;
  /** The list {@linkcode AutomaticHttps.firstCertificates} gave the listener. */
  #served: readonly CertificatePair[] | undefined;

  private constructor(
    config: BalancerConfig,
    wiring: AcmeWiring,
    manager: AcmeManager,
    feed: CertificateFeed,
  ) {
    this.#config = config;
    this.#clock = wiring.clock;
    this.#logger = wiring.logger;
    this.manager = manager;
    this.#feed = feed;
  }

  /**
   * With `--acme-domain`: opens the certificate manager, which loads the certificate saved in
   * the state directory (it is {@linkcode AutomaticHttps.certificates} at once).
   *
   * @param config The validated configuration.
   * @param wiring Metrics, clock, logger, and who else hears of each certificate list.
   * @returns The automatic HTTPS, not yet ordering; `undefined` without `--acme-domain`.
   * @throws {Error} When the state directory or the CA file is unusable.
   */
  static async open(
    config: BalancerConfig,
    wiring: AcmeWiring,
  ): Promise<AutomaticHttps | undefined> {
    if (config.acme.domains.length === 0) return undefined;
    const feed = new CertificateFeed(config, wiring);
    const manager = await AcmeManager.open(config, {
      clock: wiring.clock,
      metrics: wiring.metrics,
      ...(wiring.now === undefined ? {} : { now: wiring.now }),
      onCertificates: (list) => feed.receive(list),
    });
    return new AutomaticHttps(config, wiring, manager, feed);
  }

  /** The certificate list served now; empty until there is one. */
  get certificates(): readonly CertificatePair[] {
    return this.#feed.latest ?? [];
  }

  /**
   * The first certificate list: the saved one at once, else the manager starts ordering and
   * this waits for its certificate, at most {@linkcode FIRST_CERTIFICATE_TIMEOUT_MS}.
   *
   * @param signal Aborts the wait (the balancer is stopped meanwhile).
   * @returns The certificates to serve.
   * @throws {Error} When none came in time (naming the CA and its last error), or on abort.
   */
  async firstCertificates(signal?: AbortSignal): Promise<readonly CertificatePair[]> {
    const latest = this.#feed.latest;
    if (latest !== undefined) return this.#served = latest;
    const { domains, directory } = this.#config.acme;
    this.#logger.info("Waiting for the first certificate before serving HTTPS", {
      names: domains,
      directory,
      redirect: this.#config.tls.redirectHttp,
    });
    this.manager.start();
    const stop = new AbortController();
    let onCertificates: ((list: readonly CertificatePair[]) => void) | undefined;
    const arrived = new Promise<readonly CertificatePair[]>((resolve) => {
      onCertificates = resolve;
      this.#feed.waiters.add(resolve);
    });
    const timedOut = this.#clock.sleep(
      FIRST_CERTIFICATE_TIMEOUT_MS,
      signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal]),
    ).then(
      () => "timeout" as const,
      () => "aborted" as const,
    );
    try {
      const outcome = await Promise.race([arrived, timedOut]);
      if (typeof outcome !== "string") return this.#served = outcome;
      if (outcome === "aborted") {
        throw new Error("Stopped while waiting for the first ACME certificate");
      }
      const lastError = this.manager.status.lastError ?? "the order has not finished";
      throw new Error(
        `No ACME certificate for ${domains.join(", ")} from ${directory} within ` +
          `${formatDurationText(FIRST_CERTIFICATE_TIMEOUT_MS)}: ${lastError} (the CA validates ` +
          `over HTTP-01 on --redirect-http ${this.#config.tls.redirectHttp}, which it must ` +
          "reach on port 80)",
      );
    } finally {
      stop.abort();
      if (onCertificates !== undefined) this.#feed.waiters.delete(onCertificates);
    }
  }

  /**
   * From now on each new certificate list (a renewal, or one another process saved) is served
   * through `apply`, starting with one that came after the first while the balancer started; a
   * failure to apply it is logged and the previous one stays.
   *
   * @param apply Serves a list to new connections in every isolate.
   */
  serveWith(apply: (certificates: readonly CertificatePair[]) => Promise<void>): void {
    this.#feed.apply = apply;
    const latest = this.#feed.latest;
    if (latest !== undefined && latest !== this.#served) this.#feed.serve(latest);
  }

  /**
   * The HTTP-01 answer for a token (the redirect listener's hook).
   *
   * @param token The last segment of `/.well-known/acme-challenge/TOKEN`.
   * @returns The key authorization, or `undefined` for a token not asked for.
   */
  challengeResponse(token: string): string | undefined {
    return this.manager.challengeResponse(token);
  }
}
