/**
 * What opens before the balancer's proxy port: the `--redirect-http` listener and the
 * certificates the proxy port serves (files, or ACME's first certificate, which the redirect
 * listener's challenge answers get).
 *
 * @module
 */
import type { BalancerConfig } from "../config/config.ts";
import type { TlsCertificate } from "../shared/tls_certificate.ts";
import type { AutomaticHttps } from "./automatic_https.ts";
import { loadCertificateFiles } from "./certificates.ts";
import { claimAddress } from "./serving.ts";
import {
  type AcmeChallengeHook,
  type RedirectListener,
  startRedirectListener,
} from "../data/data_plane.ts";

/** What {@linkcode openEntrance} opened. */
export interface Entrance {
  /** The `--redirect-http` listener; `undefined` without it. */
  readonly redirect: RedirectListener | undefined;
  /** The certificates the proxy port serves; none for plain HTTP. */
  readonly certificates: readonly TlsCertificate[];
  /** The port to bind the proxy on (port 0 already resolved when redirects need it). */
  readonly proxyPort: number;
}

/**
 * Opens what must be open before the proxy port: the redirect listener (with ACME it answers
 * the challenge that gets the proxy port its first certificate; port 0 is resolved first, for
 * its redirects), then the certificates. On failure it closes what it opened, ACME included.
 *
 * @param config The validated configuration.
 * @param automatic The ACME wiring, with `--acme-domain`.
 * @param deps The challenge hook and the signal that aborts waiting for a first certificate.
 * @returns The redirect listener, the certificates to serve and the proxy port to bind.
 * @throws {Error} When the redirect address cannot be bound or the certificates read.
 */
export async function openEntrance(
  config: BalancerConfig,
  automatic: AutomaticHttps | undefined,
  deps: { readonly acmeChallenge?: AcmeChallengeHook; readonly signal?: AbortSignal },
): Promise<Entrance> {
  const acmeChallenge: AcmeChallengeHook | undefined = deps.acmeChallenge ??
    (automatic === undefined ? undefined : (token: string) => automatic.challengeResponse(token));
  let redirect: RedirectListener | undefined;
  let proxyPort = config.port;
  try {
    if (config.port === 0 && config.tls.redirectHttp !== undefined) {
      proxyPort = claimAddress(config.host, 0);
    }
    redirect = startRedirectListener(config, proxyPort, acmeChallenge);
    const certificates = automatic === undefined
      ? await loadCertificateFiles(config.tls.certFiles, config.tls.keyFiles)
      : await automatic.firstCertificates(deps.signal);
    return { redirect, certificates, proxyPort };
  } catch (error) {
    await redirect?.shutdown();
    await automatic?.manager.stop();
    throw error;
  }
}
