/**
 * Automatic HTTPS as the balancer wires it (`balancer.ts`): the certificate manager
 * (`acme.ts`) with `--acme-domain`, and the `--acme-https` listener (`tls_front.ts`) it feeds.
 * The join with a data-plane TLS listener is `onCertificates`: each list goes there as well.
 *
 * @module
 */
import type { BalancerConfig } from "../config/settings.ts";
import { parseAdminAddress } from "../config/settings.ts";
import type { Metrics } from "../core/metrics.ts";
import { getModuleLogger } from "../process/log.ts";
import type { Clock } from "../shared/clock.ts";
import { AcmeManager, type CertificatePair } from "./acme.ts";
import { claimAddress } from "./serving.ts";
import { TlsFront } from "./tls_front.ts";

/** What {@linkcode openAcme} wires the certificate manager to. */
export interface AcmeWiring {
  /** Counts orders by outcome. */
  readonly metrics: Metrics;
  /** Runs the renewal loop's waits. */
  readonly clock: Clock;
  /** Wall-clock time, Unix epoch ms. Default: `Date.now`. */
  readonly now?: () => number;
  /** The proxy port, once serving (where `--acme-https` relays). */
  readonly target: () => Deno.NetAddr | undefined;
  /** Gives the isolates the HTTP-01 answers. */
  readonly publishChallenges: (challenges: Readonly<Record<string, string>>) => void;
  /** Also told each certificate list (beside `--acme-https`). Default: none. */
  readonly onCertificates?: (certificates: readonly CertificatePair[]) => void;
}

/**
 * With `--acme-domain`: checks that `--acme-https` is free (a taken address fails the start
 * rather than the first certificate), and opens the certificate manager, which serves the
 * certificate saved in the state directory at once.
 *
 * @param config The validated configuration.
 * @param wiring Metrics, clock, the proxy port and where challenges and certificates go.
 * @returns The manager (not yet ordering: `start()` it once serving) and the HTTPS front, or
 *   neither without `--acme-domain`.
 * @throws {Error} When the HTTPS address is taken, or the state directory or CA file unusable.
 */
export async function openAcme(
  config: BalancerConfig,
  wiring: AcmeWiring,
): Promise<{ acme: AcmeManager | undefined; tlsFront: TlsFront | undefined }> {
  if (config.acme.domains.length === 0) return { acme: undefined, tlsFront: undefined };
  const httpsAddress = config.acme.httpsListen === undefined
    ? undefined
    : parseAdminAddress(config.acme.httpsListen);
  const tlsFront = httpsAddress === undefined ? undefined : new TlsFront(
    {
      hostname: httpsAddress.hostname,
      port: claimAddress(httpsAddress.hostname, httpsAddress.port),
    },
    wiring.target,
    getModuleLogger("acme"),
  );
  const acme = await AcmeManager.open(config, {
    clock: wiring.clock,
    metrics: wiring.metrics,
    ...(wiring.now === undefined ? {} : { now: wiring.now }),
    onChallenges: wiring.publishChallenges,
    onCertificates: (certificates) => {
      tlsFront?.setCertificates(certificates);
      wiring.onCertificates?.(certificates);
    },
  }).catch(async (error) => {
    await tlsFront?.close();
    throw error;
  });
  return { acme, tlsFront };
}
