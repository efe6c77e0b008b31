/**
 * The certificates the TLS listener serves, as the control plane hands them over (read from
 * `--tls-cert`/`--tls-key` files, or obtained by ACME), and the choice among them by the name a
 * client asks for (SNI).
 *
 * @module
 */

/** One certificate chain and its private key, in PEM. */
export interface TlsCertificate {
  /** The certificate chain, leaf first, in PEM. */
  readonly certPem: string;
  /** The leaf's private key, in PEM. */
  readonly keyPem: string;
  /**
   * The DNS names it serves (`*.example.com` for a wildcard), matched against the client's SNI.
   * Default: none, so it is only served as the default (first) certificate.
   */
  readonly names?: readonly string[];
}

/**
 * Picks the certificate for a client's SNI: one naming it exactly, else one whose wildcard
 * covers it (one label, RFC 6125 section 6.4.3), else the first (the default, also for a client
 * that sends no SNI).
 *
 * @param certificates The certificates, the default first; not empty.
 * @param serverName The SNI the client sent, `""` when none.
 * @returns The certificate to serve, or `undefined` when the list is empty.
 *
 * @example
 * ```ts
 * import { pickCertificate } from "./tls_certificate.ts";
 * const a = { certPem: "A", keyPem: "a", names: ["a.example"] };
 * const w = { certPem: "W", keyPem: "w", names: ["*.example.org"] };
 * if (pickCertificate([a, w], "x.example.org") !== w) throw new Error();
 * if (pickCertificate([a, w], "y.x.example.org") !== a) throw new Error();
 * if (pickCertificate([a, w], "") !== a) throw new Error();
 * ```
 */
export function pickCertificate(
  certificates: readonly TlsCertificate[],
  serverName: string,
): TlsCertificate | undefined {
  const name = serverName.toLowerCase().replace(/\.$/, "");
  if (name !== "") {
    const dot = name.indexOf(".");
    const wildcard = dot > 0 ? `*${name.slice(dot)}` : undefined;
    let covering: TlsCertificate | undefined;
    for (const certificate of certificates) {
      for (const candidate of certificate.names ?? []) {
        const lower = candidate.toLowerCase();
        if (lower === name) return certificate;
        if (covering === undefined && lower === wildcard) covering = certificate;
      }
    }
    if (covering !== undefined) return covering;
  }
  return certificates[0];
}

/**
 * Whether two certificate lists serve the same thing (same PEM texts and names, in order), so a
 * reload that changed none of them leaves the listener alone.
 *
 * @param a One list.
 * @param b The other.
 * @returns Whether they are the same.
 *
 * @example
 * ```ts
 * import { isSameCertificates } from "./tls_certificate.ts";
 * const c = { certPem: "C", keyPem: "k", names: ["a.example"] };
 * if (!isSameCertificates([c], [{ ...c }]) || isSameCertificates([c], [])) throw new Error();
 * ```
 */
export function isSameCertificates(
  a: readonly TlsCertificate[],
  b: readonly TlsCertificate[],
): boolean {
  if (a.length !== b.length) return false;
  return a.every((x, i) => {
    const y = b[i];
    return y !== undefined && x.certPem === y.certPem && x.keyPem === y.keyPem &&
      (x.names ?? []).join(",") === (y.names ?? []).join(",");
  });
}
