/**
 * The TLS listener's certificates from `--tls-cert`/`--tls-key` files: read, checked (a PEM
 * certificate, a PEM key, and the key belonging to the certificate) and named (the DNS names of
 * its subjectAltName, else its CN, for SNI). Read at start and again on every reload, so a
 * renewed certificate on disk is served to new connections after SIGHUP or `POST /reload`.
 *
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { TlsCertificate } from "../shared/tls_certificate.ts";

/**
 * Reads and checks certificate/key file pairs.
 *
 * @param certFiles PEM certificate chains, leaf first.
 * @param keyFiles The PEM private key of the chain at the same position.
 * @param readText Reads a file. Default: `Deno.readTextFile`.
 * @returns One certificate per pair, in order (the first is the default).
 * @throws {Error} Naming the file and what is wrong with it (unreadable, not PEM, key not the
 *   certificate's).
 */
export async function loadCertificateFiles(
  certFiles: readonly string[],
  keyFiles: readonly string[],
  readText: (path: string) => Promise<string> = Deno.readTextFile,
): Promise<TlsCertificate[]> {
  const read = async (path: string, what: string) => {
    try {
      return await readText(path);
    } catch (cause) {
      throw new Error(`Cannot read ${what} "${path}": ${messageOf(cause)}`, { cause });
    }
  };
  const certificates: TlsCertificate[] = [];
  for (const [i, certFile] of certFiles.entries()) {
    const keyFile = keyFiles[i];
    if (keyFile === undefined) throw new Error(`Certificate "${certFile}" has no --tls-key`);
    const certPem = await read(certFile, "--tls-cert");
    const keyPem = await read(keyFile, "--tls-key");
    certificates.push({ certPem, keyPem, names: checkPair(certPem, keyPem, certFile, keyFile) });
  }
  return certificates;
}

/** Checks a pair and returns the leaf's DNS names. */
function checkPair(certPem: string, keyPem: string, certFile: string, keyFile: string): string[] {
  if (!certPem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new Error(`Invalid --tls-cert "${certFile}": no PEM certificate in it`);
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certPem);
  } catch (cause) {
    throw new Error(`Invalid --tls-cert "${certFile}": ${messageOf(cause)}`, { cause });
  }
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(keyPem);
  } catch (cause) {
    throw new Error(`Invalid --tls-key "${keyFile}": not a PEM private key`, { cause });
  }
  if (!leaf.checkPrivateKey(key)) {
    throw new Error(`Invalid --tls-key "${keyFile}": it is not the key of "${certFile}"`);
  }
  return namesOf(leaf);
}

/** The DNS names of a certificate: its subjectAltName's, else its subject's CN. */
function namesOf(leaf: X509Certificate): string[] {
  const names = (leaf.subjectAltName ?? "").split(/,\s*/)
    .filter((entry) => entry.startsWith("DNS:"))
    .map((entry) => entry.slice(4).toLowerCase());
  if (names.length > 0) return names;
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(leaf.subject)?.[1];
  return cn === undefined ? [] : [cn.toLowerCase()];
}

/**
 * Reads and checks `--backend-ca`: PEM certificates of the authorities `https:` backends are
 * verified against.
 *
 * @param path The file.
 * @param readText Reads a file. Default: `Deno.readTextFile`.
 * @returns Its text.
 * @throws {Error} Naming the file, when it cannot be read or holds no PEM certificate.
 */
export async function loadBackendCa(
  path: string,
  readText: (path: string) => Promise<string> = Deno.readTextFile,
): Promise<string> {
  let pem: string;
  try {
    pem = await readText(path);
  } catch (cause) {
    throw new Error(`Cannot read --backend-ca "${path}": ${messageOf(cause)}`, { cause });
  }
  try {
    new X509Certificate(pem);
  } catch (cause) {
    throw new Error(`Invalid --backend-ca "${path}": no PEM certificate in it`, { cause });
  }
  return pem;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
