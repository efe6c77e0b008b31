/**
 * The state directory's certificates: what ACME obtained, kept so a restart (or another balancer
 * sharing the directory) serves it without ordering again. Everything in it is private to the
 * balancer's user: directories 0700, files 0600, each file written whole to a temporary name
 * and renamed, so a reader never sees half a key.
 *
 * Layout under `--state-dir`:
 * - `acme/accounts/HOST.key`: the ACME account key for the CA at HOST (PEM);
 * - `acme/certificates/NAME/cert.pem` and `key.pem`: the certificate (chain included) and key
 *   for the domain list whose first name is NAME;
 * - `acme/order.lock`: held (`flock`) by the process ordering, so two processes sharing the
 *   directory never both order; the kernel releases it when that process ends, however it ends.
 *
 * @module
 */

/** A certificate and its key, as a TLS listener takes them. */
export interface CertificatePair {
  /** The certificate chain, leaf first (PEM). */
  readonly certPem: string;
  /** Its private key (PEM). */
  readonly keyPem: string;
  /** The DNS names it is for (SNI); absent means any. */
  readonly names?: readonly string[];
}

/** A certificate with the facts renewal decides on. */
export interface StoredCertificate extends CertificatePair {
  /** The names it is for. */
  readonly names: readonly string[];
  /** Start of validity, Unix epoch milliseconds. */
  readonly notBeforeMs: number;
  /** End of validity, Unix epoch milliseconds. */
  readonly notAfterMs: number;
}

/** The lock an order is placed under; release it when done. */
export interface OrderLock {
  /** Releases the lock. Idempotent. */
  release(): void;
}

/**
 * Reads a certificate's validity and names.
 *
 * @param certPem The chain, leaf first (PEM).
 * @param keyPem Its private key (PEM).
 * @returns The certificate with its validity and the names of its leaf.
 * @throws {SyntaxError} When the certificate cannot be parsed.
 */
export async function describeCertificate(
  certPem: string,
  keyPem: string,
): Promise<StoredCertificate> {
  // Loaded on first use: acme-client reads the environment as it loads (its `debug`
  // dependency), and only a balancer with --acme-domain needs it.
  const { crypto: acmeCrypto } = await import("acme-client");
  let info: ReturnType<typeof acmeCrypto.readCertificateInfo>;
  try {
    info = acmeCrypto.readCertificateInfo(certPem);
  } catch (cause) {
    throw new SyntaxError("Cannot parse certificate: not a PEM X.509 certificate", { cause });
  }
  const names = [...new Set([info.domains.commonName, ...info.domains.altNames])]
    .filter((name): name is string => typeof name === "string" && name !== "")
    .map((name) => name.toLowerCase());
  return {
    certPem,
    keyPem,
    names,
    notBeforeMs: info.notBefore.getTime(),
    notAfterMs: info.notAfter.getTime(),
  };
}

/** The certificates and ACME account keys of one state directory. */
export class CertificateStore {
  readonly #root: string;

  private constructor(root: string) {
    this.#root = root;
  }

  /**
   * Opens (creating) the state directory's ACME part and makes it private: a state directory
   * created here is 0700; an existing one keeps its mode (it may be shared, such as
   * `/var/lib`), and the `acme` folder in it, which holds every key, is made 0700 either way.
   *
   * @param stateDir `--state-dir`.
   * @returns The store.
   * @throws {Error} When the directory cannot be created or made private, naming it.
   */
  static async open(stateDir: string): Promise<CertificateStore> {
    const root = `${stateDir}/acme`;
    try {
      await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
      for (const dir of [root, `${root}/accounts`, `${root}/certificates`]) {
        await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
        // mkdir leaves an existing directory's mode as it was, and applies the umask.
        await Deno.chmod(dir, 0o700);
      }
    } catch (cause) {
      const detail = cause instanceof Error ? cause.message : String(cause);
      throw new Error(`Cannot use --state-dir "${stateDir}": ${detail}`, { cause });
    }
    return new CertificateStore(root);
  }

  /**
   * The account key for an ACME CA, if one was saved.
   *
   * @param directoryUrl The CA's directory URL.
   * @returns The key (PEM), or `undefined`.
   */
  async readAccountKey(directoryUrl: string): Promise<string | undefined> {
    return await readIfExists(this.#accountPath(directoryUrl));
  }

  /**
   * Saves the account key for an ACME CA.
   *
   * @param directoryUrl The CA's directory URL.
   * @param keyPem The key (PEM).
   */
  async writeAccountKey(directoryUrl: string, keyPem: string): Promise<void> {
    await writePrivate(this.#accountPath(directoryUrl), keyPem);
  }

  /**
   * The saved certificate for a domain list, if there is one that names every domain.
   *
   * @param names The domains, first one naming the folder.
   * @returns The certificate, or `undefined` when none is saved, it does not parse, or it
   *   lacks one of the names.
   */
  async load(names: readonly string[]): Promise<StoredCertificate | undefined> {
    const dir = this.#certificateDir(names);
    const certPem = await readIfExists(`${dir}/cert.pem`);
    const keyPem = await readIfExists(`${dir}/key.pem`);
    if (certPem === undefined || keyPem === undefined) return undefined;
    let stored: StoredCertificate;
    try {
      stored = await describeCertificate(certPem, keyPem);
    } catch {
      return undefined;
    }
    return names.every((name) => stored.names.includes(name)) ? stored : undefined;
  }

  /**
   * Saves a certificate for a domain list: the key first, so a reader that sees the new
   * certificate sees its key too (readers also check that they match the names).
   *
   * @param names The domains, first one naming the folder.
   * @param pair The certificate and key.
   */
  async save(names: readonly string[], pair: CertificatePair): Promise<void> {
    const dir = this.#certificateDir(names);
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    await writePrivate(`${dir}/key.pem`, pair.keyPem);
    await writePrivate(`${dir}/cert.pem`, pair.certPem);
  }

  /**
   * Takes the order lock if no other process (or store) holds it.
   *
   * @returns The lock, or `undefined` when another holds it.
   */
  async tryLock(): Promise<OrderLock | undefined> {
    const file = await Deno.open(`${this.#root}/order.lock`, {
      create: true,
      write: true,
      mode: 0o600,
    });
    let isLocked = false;
    try {
      isLocked = await file.tryLock(true);
    } finally {
      if (!isLocked) file.close();
    }
    if (!isLocked) return undefined;
    let isReleased = false;
    return {
      release() {
        if (isReleased) return;
        isReleased = true;
        // Closing the descriptor releases the flock.
        file.close();
      },
    };
  }

  #accountPath(directoryUrl: string): string {
    const url = new URL(directoryUrl);
    return `${this.#root}/accounts/${safeName(url.host)}.key`;
  }

  #certificateDir(names: readonly string[]): string {
    return `${this.#root}/certificates/${safeName(names[0] ?? "default")}`;
  }
}

/** A host or domain as a file name: anything but letters, digits, dots and hyphens is `_`. */
function safeName(text: string): string {
  return text.replace(/[^A-Za-z0-9.-]/g, "_").replace(/^\.+/, "_");
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** Writes a file with mode 0600 whole: to a temporary name first, then renamed over it. */
async function writePrivate(path: string, text: string): Promise<void> {
  const temporary = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeTextFile(temporary, text, { mode: 0o600, createNew: true });
    await Deno.chmod(temporary, 0o600);
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}
