/**
 * One ACME order with the HTTP-01 challenge, through `npm:acme-client` (RFC 8555): account (found
 * or created), order, each name's challenge answered by the proxy port, finalize with a new key's
 * CSR, download the chain. The effectful edge of `acme.ts`, which decides when to order.
 *
 * @module
 */
import { Agent } from "node:https";
import type { CertificatePair } from "./certificate_store.ts";

/** How long one request to the CA may take before the order fails. */
const REQUEST_TIMEOUT_MS = 30_000;

/** What one order needs. */
export interface AcmeOrderOptions {
  /** The CA's directory URL. */
  readonly directoryUrl: string;
  /** The names the certificate is for. */
  readonly names: readonly string[];
  /** The account key (PEM). */
  readonly accountKeyPem: string;
  /** Contact address for the account. Default: none. */
  readonly email?: string;
  /** The root the CA's HTTPS endpoint is verified against (PEM). Default: the system's. */
  readonly caCertPem?: string;
  /** Publishes a challenge's answer where the proxy port serves it. */
  readonly setChallenge: (token: string, keyAuthorization: string) => void;
  /** Withdraws a challenge's answer. */
  readonly clearChallenge: (token: string) => void;
}

/**
 * Makes a new ACME account key (ECDSA P-256).
 *
 * @returns The key (PEM).
 */
export async function createAccountKey(): Promise<string> {
  const acme = await loadAcmeClient();
  return (await acme.crypto.createPrivateEcdsaKey()).toString();
}

/**
 * Orders a certificate for `options.names` with a new key.
 *
 * `acme-client` sends through one module-wide `axios` instance, so the private CA's root and the
 * request timeout are set on it for the order; a balancer talks to one CA, so nothing else
 * shares it.
 *
 * @param options The CA, the names, the account and where challenges are answered.
 * @returns The chain (leaf first) and its key.
 * @throws {Error} When the CA refuses or cannot be reached, or a challenge fails, with
 *   `acme-client`'s error as the cause.
 */
export async function orderCertificate(options: AcmeOrderOptions): Promise<CertificatePair> {
  const acme = await loadAcmeClient();
  acme.axios.defaults.timeout = REQUEST_TIMEOUT_MS;
  // acme-client retries a refused or failed request 5 times, 5 to 25 s apart (75 s in all, on
  // real time); the manager retries whole orders with its own growing delay, so one quick retry
  // here is enough for a blip, and a CA that is down fails the order in about a second.
  // The setting is acme-client's own addition to axios's defaults, absent from axios's types.
  const defaults = acme.axios.defaults as { acmeSettings?: Record<string, unknown> };
  defaults.acmeSettings = { ...defaults.acmeSettings, retryMaxAttempts: 1, retryDefaultDelay: 1 };
  acme.axios.defaults.httpsAgent = options.caCertPem === undefined
    ? undefined
    : new Agent({ ca: options.caCertPem });
  await checkReachable(options.directoryUrl, options.caCertPem);
  const client = new acme.Client({
    directoryUrl: options.directoryUrl,
    accountKey: options.accountKeyPem,
  });
  const keyPem = (await acme.crypto.createPrivateEcdsaKey()).toString();
  const [, csr] = await acme.crypto.createCsr(
    { commonName: options.names[0] ?? "", altNames: [...options.names] },
    keyPem,
  );
  const certPem = await client.auto({
    csr,
    ...(options.email === undefined ? {} : { email: options.email }),
    termsOfServiceAgreed: true,
    challengePriority: ["http-01"],
    // acme-client would first fetch the challenge itself over DNS and port 80, which fails
    // behind NAT or split DNS although the CA can reach us; the CA's own check is the one that
    // counts.
    skipChallengeVerification: true,
    challengeCreateFn: (_authz, challenge, keyAuthorization) => {
      options.setChallenge(challenge.token, keyAuthorization);
      return Promise.resolve();
    },
    challengeRemoveFn: (_authz, challenge) => {
      options.clearChallenge(challenge.token);
      return Promise.resolve();
    },
  });
  return { certPem, keyPem, names: options.names };
}

/**
 * Fetches the CA's directory with Deno's own client first: when the CA is down or its HTTPS
 * certificate is not trusted, the error names the reason (acme-client, once its retries are
 * spent on a failed connection, reports only "Cannot read properties of undefined").
 *
 * @throws {Error} `Cannot reach the ACME CA at URL: reason`.
 */
async function checkReachable(directoryUrl: string, caCertPem: string | undefined): Promise<void> {
  const client = Deno.createHttpClient(caCertPem === undefined ? {} : { caCerts: [caCertPem] });
  try {
    const response = await fetch(directoryUrl, {
      client,
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    await response.body?.cancel();
    if (!response.ok) throw new Error(`the directory answered ${response.status}`);
  } catch (cause) {
    throw new Error(`Cannot reach the ACME CA at ${directoryUrl}: ${causeChain(cause)}`, {
      cause,
    });
  } finally {
    client.close();
  }
}

/**
 * Loads `acme-client` on first use: it reads the environment as it loads (its `debug`
 * dependency), and only a balancer with `--acme-domain` needs it.
 */
function loadAcmeClient(): Promise<typeof import("acme-client")> {
  return import("acme-client");
}

/** An error's message and its causes' (fetch says only "fetch failed"; its cause says why). */
function causeChain(error: unknown): string {
  const messages: string[] = [];
  for (let current = error; current !== undefined && messages.length < 4;) {
    messages.push(current instanceof Error ? current.message : String(current));
    current = current instanceof Error ? current.cause : undefined;
  }
  return messages.join(": ");
}
