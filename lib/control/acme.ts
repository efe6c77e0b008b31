/**
 * Automatic HTTPS: the control plane's certificate manager. It loads the certificate kept in the
 * state directory (so a restart serves at once), orders one over ACME when there is none, and
 * renews it a third of its lifetime before it expires, in a timer loop on the injected clock.
 * A failed renewal keeps the previous certificate in service, is logged and counted
 * (`denolb_acme_orders_total{outcome="failed"}`), and is retried with a growing delay.
 *
 * Several processes sharing one state directory share one certificate: ordering happens under
 * the store's lock, a process that finds it taken waits for the certificate the holder saves,
 * and every check first adopts a newer certificate another process saved.
 *
 * The manager's output is `onCertificates` (the list the TLS listener serves, replaced for new
 * connections); the HTTP-01 answers the plain-HTTP listener gives for
 * `/.well-known/acme-challenge/TOKEN` are read from {@linkcode AcmeManager.challengeResponse}.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { BalancerConfig } from "../config/settings.ts";
import type { Metrics } from "../core/metrics.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { getModuleLogger } from "../process/log.ts";
import { type AcmeOrderOptions, createAccountKey, orderCertificate } from "./acme_order.ts";
import {
  type CertificatePair,
  CertificateStore,
  describeCertificate,
  type StoredCertificate,
} from "./certificate_store.ts";

export type { CertificatePair } from "./certificate_store.ts";

/** How often the loop looks at the certificate (and the state directory) when all is well. */
export const CHECK_INTERVAL_MS = 60 * 60 * 1000;

/** How long a process waits before looking again when another holds the order lock. */
export const LOCK_RETRY_MS = 5_000;

/** The first retry after a failed order; each further failure doubles it. */
export const FIRST_RETRY_MS = 60 * 1000;

/** The longest wait between retries of a failing order. */
export const LONGEST_RETRY_MS = 60 * 60 * 1000;

/** What the manager reads from the configuration. */
export type AcmeConfig = Pick<BalancerConfig, "acme" | "stateDir">;

/** Where the manager stands. */
export interface AcmeStatus {
  /** The names it keeps a certificate for. */
  readonly names: readonly string[];
  /** The certificate served, if any: its end of validity (Unix epoch ms). */
  readonly notAfterMs: number | undefined;
  /** When it will be renewed (Unix epoch ms), if there is one. */
  readonly renewAtMs: number | undefined;
  /** Orders that failed in a row (0 after a success). */
  readonly failures: number;
  /** The last failure's message, until an order succeeds. */
  readonly lastError: string | undefined;
}

/** What the manager works with, each with a production default where it has one. */
export interface AcmeDeps {
  /** Told each new certificate list (for new TLS connections). */
  readonly onCertificates: (certificates: readonly CertificatePair[]) => void;
  /** Told the HTTP-01 answers, token to key authorization, whenever they change. Default: none. */
  readonly onChallenges?: (challenges: Readonly<Record<string, string>>) => void;
  /** Runs the loop's waits. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /** Wall-clock time, Unix epoch ms, that validity is compared with. Default: `Date.now`. */
  readonly now?: () => number;
  /** Records and failures. Default: the `["denolb", "acme"]` logger. */
  readonly logger?: Logger;
  /** Counts orders by outcome. Default: none. */
  readonly metrics?: Metrics;
  /** Places one order. Default: {@linkcode orderCertificate} (npm:acme-client). */
  readonly order?: (options: AcmeOrderOptions) => Promise<CertificatePair>;
}

/**
 * When a certificate is renewed: a third of its lifetime before it ends (Let's Encrypt's advice,
 * and Caddy's default), so a 90-day certificate is renewed 30 days ahead.
 *
 * @param certificate Its validity, Unix epoch ms.
 * @returns The renewal time, Unix epoch ms.
 *
 * @example
 * ```ts
 * import { renewAtMs } from "./acme.ts";
 * if (renewAtMs({ notBeforeMs: 0, notAfterMs: 90 }) !== 60) throw new Error();
 * ```
 */
export function renewAtMs(
  certificate: { readonly notBeforeMs: number; readonly notAfterMs: number },
): number {
  return certificate.notAfterMs - (certificate.notAfterMs - certificate.notBeforeMs) / 3;
}

/**
 * The wait before retrying after `failures` failed orders in a row: one minute, doubling, at
 * most an hour (the CA's rate limits count failed validations).
 *
 * @param failures Failed orders in a row, 1 or more.
 * @returns The wait, in milliseconds.
 *
 * @example
 * ```ts
 * import { retryDelayMs } from "./acme.ts";
 * if (retryDelayMs(1) !== 60_000 || retryDelayMs(2) !== 120_000) throw new Error();
 * if (retryDelayMs(50) !== 3_600_000) throw new Error();
 * ```
 */
export function retryDelayMs(failures: number): number {
  const exponent = Math.min(Math.max(failures - 1, 0), 16);
  return Math.min(FIRST_RETRY_MS * 2 ** exponent, LONGEST_RETRY_MS);
}

/** Keeps one ACME certificate for the configured names, ordered, saved, shared and renewed. */
export class AcmeManager implements AsyncDisposable {
  readonly #config: AcmeConfig;
  readonly #store: CertificateStore;
  readonly #caCertPem: string | undefined;
  readonly #deps: AcmeDeps;
  readonly #clock: Clock;
  readonly #now: () => number;
  readonly #logger: Logger;
  readonly #challenges = new Map<string, string>();
  readonly #stopping = new AbortController();
  #current: StoredCertificate | undefined;
  #failures = 0;
  #lastError: string | undefined;
  #loop: Promise<void> | undefined;
  #isOrdering = false;
  /** Looks in a row that found the order lock taken. */
  #lockWaits = 0;

  private constructor(
    config: AcmeConfig,
    store: CertificateStore,
    caCertPem: string | undefined,
    deps: AcmeDeps,
  ) {
    this.#config = config;
    this.#store = store;
    this.#caCertPem = caCertPem;
    this.#deps = deps;
    this.#clock = deps.clock ?? systemClock;
    this.#now = deps.now ?? Date.now;
    this.#logger = deps.logger ?? getModuleLogger("acme");
  }

  /**
   * Opens the state directory, reads `--acme-ca-cert`, and serves the saved certificate if
   * there is one (`onCertificates` is called before this resolves). Ordering starts with
   * {@linkcode AcmeManager.start}.
   *
   * @param config `acme` and `stateDir` of the configuration (`acme.domains` not empty).
   * @param deps Callbacks, clock, logger, metrics.
   * @returns The manager, not yet ordering.
   * @throws {Error} When the state directory cannot be used or the CA file read, naming it.
   */
  static async open(config: AcmeConfig, deps: AcmeDeps): Promise<AcmeManager> {
    if (config.stateDir === undefined) throw new TypeError("ACME needs a state directory");
    const store = await CertificateStore.open(config.stateDir);
    let caCertPem: string | undefined;
    if (config.acme.caCert !== undefined) {
      try {
        caCertPem = await Deno.readTextFile(config.acme.caCert);
      } catch (cause) {
        const detail = cause instanceof Error ? cause.message : String(cause);
        throw new Error(`Cannot read --acme-ca-cert "${config.acme.caCert}": ${detail}`, {
          cause,
        });
      }
    }
    const manager = new AcmeManager(config, store, caCertPem, deps);
    const stored = await store.load(config.acme.domains);
    if (stored !== undefined) manager.#adopt(stored, "Certificate loaded from the state directory");
    return manager;
  }

  /** The certificate list served now (empty until there is one). */
  get certificates(): readonly CertificatePair[] {
    const current = this.#current;
    return current === undefined ? [] : [pairOf(current)];
  }

  /** Where the manager stands. */
  get status(): AcmeStatus {
    const current = this.#current;
    return {
      names: this.#config.acme.domains,
      notAfterMs: current?.notAfterMs,
      renewAtMs: current === undefined ? undefined : renewAtMs(current),
      failures: this.#failures,
      lastError: this.#lastError,
    };
  }

  /**
   * The HTTP-01 answer for a token.
   *
   * @param token The last segment of `/.well-known/acme-challenge/TOKEN`.
   * @returns The key authorization to answer with, or `undefined` for a token not asked for.
   */
  challengeResponse(token: string): string | undefined {
    return this.#challenges.get(token);
  }

  /** Starts the loop: a first check at once (an order if there is no certificate). */
  start(): void {
    this.#loop ??= this.#run();
  }

  /**
   * Stops the loop. An order in progress is not waited for (a CA that stalls would hold the
   * shutdown): it finishes in the background, saves what it gets for the next start, and
   * serves nothing more.
   */
  async stop(): Promise<void> {
    this.#stopping.abort();
    if (!this.#isOrdering) await this.#loop;
  }

  /** Stops the loop. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #run(): Promise<void> {
    const signal = this.#stopping.signal;
    while (!signal.aborted) {
      let delayMs: number;
      try {
        delayMs = await this.#check();
      } catch (error) {
        // The state directory failed us (a full disk, a permission): retried like a failed order.
        delayMs = this.#fail(error);
      }
      try {
        await this.#clock.sleep(delayMs, signal);
      } catch {
        return;
      }
    }
  }

  /**
   * One look at the certificate: adopt a newer one from the state directory, order when there
   * is none or renewal is due.
   *
   * @returns How long to wait before the next look.
   */
  async #check(): Promise<number> {
    const names = this.#config.acme.domains;
    await this.#adoptNewer();
    const dueInMs = this.#dueInMs();
    if (dueInMs > 0) return Math.min(CHECK_INTERVAL_MS, dueInMs);
    const lock = await this.#store.tryLock();
    if (lock === undefined) {
      // Said once per wait at info; a holder that takes long should not fill the log.
      const level = this.#lockWaits++ === 0 ? "info" : "debug";
      this.#logger[level]("Another process is ordering the certificate; waiting for it", {
        names,
        looks: this.#lockWaits,
      });
      return LOCK_RETRY_MS;
    }
    this.#lockWaits = 0;
    try {
      // The holder we waited for may have saved one just before we took the lock.
      await this.#adoptNewer();
      if (this.#dueInMs() > 0) return 0;
      if (this.#stopping.signal.aborted) return 0;
      this.#isOrdering = true;
      try {
        return await this.#order();
      } finally {
        this.#isOrdering = false;
      }
    } finally {
      lock.release();
    }
  }

  /** Milliseconds until renewal is due; 0 or less when due now or there is no certificate. */
  #dueInMs(): number {
    const current = this.#current;
    return current === undefined ? 0 : renewAtMs(current) - this.#now();
  }

  async #adoptNewer(): Promise<void> {
    const stored = await this.#store.load(this.#config.acme.domains);
    const current = this.#current;
    if (stored === undefined) return;
    if (current !== undefined && stored.notAfterMs <= current.notAfterMs) return;
    this.#adopt(stored, "Certificate loaded from the state directory");
  }

  async #order(): Promise<number> {
    const { domains: names, directory, email } = this.#config.acme;
    const isRenewal = this.#current !== undefined;
    this.#logger.info(isRenewal ? "Renewing certificate" : "Ordering certificate", {
      names,
      directory,
    });
    let pair: CertificatePair;
    try {
      let accountKeyPem = await this.#store.readAccountKey(directory);
      if (accountKeyPem === undefined) {
        accountKeyPem = await createAccountKey();
        await this.#store.writeAccountKey(directory, accountKeyPem);
      }
      pair = await (this.#deps.order ?? orderCertificate)({
        directoryUrl: directory,
        names,
        accountKeyPem,
        ...(email === undefined ? {} : { email }),
        ...(this.#caCertPem === undefined ? {} : { caCertPem: this.#caCertPem }),
        setChallenge: (token, keyAuthorization) => {
          this.#challenges.set(token, keyAuthorization);
          this.#deps.onChallenges?.(Object.fromEntries(this.#challenges));
        },
        clearChallenge: (token) => {
          if (this.#challenges.delete(token)) {
            this.#deps.onChallenges?.(Object.fromEntries(this.#challenges));
          }
        },
      });
    } catch (error) {
      return this.#fail(error);
    } finally {
      if (this.#challenges.size > 0) {
        this.#challenges.clear();
        this.#deps.onChallenges?.({});
      }
    }
    const obtained = await describeCertificate(pair.certPem, pair.keyPem);
    await this.#store.save(names, obtained);
    this.#failures = 0;
    this.#lastError = undefined;
    this.#deps.metrics?.recordEvent("acme-order-succeeded");
    this.#adopt(obtained, isRenewal ? "Certificate renewed" : "Certificate obtained");
    return Math.min(CHECK_INTERVAL_MS, Math.max(0, this.#dueInMs()));
  }

  /** Counts and logs a failure; returns the wait before the retry. */
  #fail(error: unknown): number {
    this.#failures++;
    const message = error instanceof Error ? error.message : String(error);
    this.#lastError = message;
    this.#deps.metrics?.recordEvent("acme-order-failed");
    const retryInMs = retryDelayMs(this.#failures);
    const current = this.#current;
    const fields = {
      names: this.#config.acme.domains,
      error: message,
      failures: this.#failures,
      retryInMs,
      ...(current === undefined ? {} : { notAfter: new Date(current.notAfterMs).toISOString() }),
    };
    if (current === undefined) {
      this.#logger.error("Certificate order failed; there is no certificate to serve yet", fields);
    } else {
      this.#logger.error("Certificate renewal failed; the previous certificate is served", fields);
    }
    return retryInMs;
  }

  #adopt(certificate: StoredCertificate, message: string): void {
    if (this.#stopping.signal.aborted) return;
    this.#current = certificate;
    this.#logger.info(message, {
      names: certificate.names,
      notAfter: new Date(certificate.notAfterMs).toISOString(),
      renewAt: new Date(renewAtMs(certificate)).toISOString(),
    });
    this.#deps.onCertificates([pairOf(certificate)]);
  }
}

function pairOf(certificate: StoredCertificate): CertificatePair {
  return { certPem: certificate.certPem, keyPem: certificate.keyPem, names: certificate.names };
}
