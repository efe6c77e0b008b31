/**
 * Certificates made at test time with `openssl` (never checked in): a private CA and leaf
 * certificates it signs for given names, written to a temporary directory; and small wrappers
 * around `curl` and `openssl s_client` for talking TLS to what a test started.
 *
 * @module
 */

/** A leaf certificate and its key, as PEM text and as files. */
export interface TestCertificate {
  readonly certPem: string;
  readonly keyPem: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** The DNS names it was made for. */
  readonly names: readonly string[];
}

/** A private CA that signs leaf certificates, in a temporary directory removed on dispose. */
export interface TestCa extends AsyncDisposable {
  /** The CA certificate, PEM. */
  readonly certPem: string;
  /** Its file. */
  readonly certFile: string;
  /** The directory everything is written to. */
  readonly dir: string;
  /**
   * Makes a leaf certificate signed by this CA for `names` (and 127.0.0.1).
   *
   * @param names DNS names; the first is also the CN.
   * @param options `file`: the base name of its files (so a later call can overwrite them).
   */
  issue(names: readonly string[], options?: { readonly file?: string }): Promise<TestCertificate>;
}

/**
 * Runs a command and returns its stdout.
 *
 * @throws {Error} When it exits non-zero, with its stderr.
 */
export async function run(command: string, args: readonly string[], stdin?: string): Promise<{
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}> {
  const child = new Deno.Command(command, {
    args: [...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const output = await child.output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

async function openssl(args: readonly string[]): Promise<void> {
  const result = await run("openssl", args);
  if (result.code !== 0) throw new Error(`openssl ${args[0]} failed: ${result.stderr}`);
}

/**
 * Makes a private CA in a new temporary directory.
 *
 * @returns The CA; `await using` removes its directory.
 */
export async function makeTestCa(): Promise<TestCa> {
  const dir = await Deno.makeTempDir({ prefix: "denolb-tls-" });
  const caKey = `${dir}/ca.key`;
  const certFile = `${dir}/ca.pem`;
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    caKey,
    "-out",
    certFile,
    "-days",
    "2",
    "-subj",
    "/CN=denolb test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  const certPem = await Deno.readTextFile(certFile);
  let serial = 0;
  return {
    certPem,
    certFile,
    dir,
    async issue(names, options = {}) {
      const base = `${dir}/${options.file ?? `leaf${++serial}`}`;
      const keyFile = `${base}.key`;
      const leafCert = `${base}.pem`;
      const csr = `${base}.csr`;
      const ext = `${base}.ext`;
      const san = [...names.map((n) => `DNS:${n}`), "IP:127.0.0.1"].join(",");
      await Deno.writeTextFile(
        ext,
        `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`,
      );
      await openssl([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        keyFile,
        "-out",
        csr,
        "-subj",
        `/CN=${names[0] ?? "localhost"}`,
      ]);
      await openssl([
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        certFile,
        "-CAkey",
        caKey,
        "-CAcreateserial",
        "-out",
        leafCert,
        "-days",
        "2",
        "-extfile",
        ext,
      ]);
      return {
        certPem: await Deno.readTextFile(leafCert),
        keyPem: await Deno.readTextFile(keyFile),
        certFile: leafCert,
        keyFile,
        names,
      };
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * The subject CN of the certificate a TLS server presents for `serverName`.
 *
 * @param port The server's port on 127.0.0.1.
 * @param serverName The SNI to send; `""` sends none.
 * @returns The CN, or `""` when the handshake failed.
 */
export async function presentedCn(port: number, serverName: string): Promise<string> {
  const sni = serverName === "" ? ["-noservername"] : ["-servername", serverName];
  const result = await run("openssl", [
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    ...sni,
    "-showcerts",
  ], "");
  return /subject=.*?CN\s*=\s*([^\s,/]+)/.exec(result.stdout)?.[1] ?? "";
}

/**
 * Whether a TLS handshake with this protocol version succeeds.
 *
 * @param port The server's port on 127.0.0.1.
 * @param version `tls1`, `tls1_1`, `tls1_2` or `tls1_3`.
 * @returns The protocol `openssl s_client` reports, or `undefined` when the handshake failed.
 */
export async function negotiatedProtocol(
  port: number,
  version: "tls1" | "tls1_1" | "tls1_2" | "tls1_3",
): Promise<string | undefined> {
  const result = await run("openssl", [
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    `-${version}`,
  ], "");
  const cipher = /Cipher is (\S+)/.exec(result.stdout)?.[1];
  if (cipher === undefined || cipher === "(NONE)") return undefined;
  return /New, (TLSv[\d.]+)/.exec(result.stdout)?.[1];
}

/**
 * Sends one request with curl.
 *
 * @param url The URL.
 * @param options `http`: `--http2` or `--http1.1`; `cacert`: the CA file; `headers`: extra
 *   request headers.
 * @returns Status, HTTP version, response headers (lower-case names) and body.
 */
export async function curl(
  url: string,
  options: {
    readonly http?: "2" | "1.1";
    readonly cacert?: string;
    readonly headers?: readonly string[];
    readonly resolve?: string;
  } = {},
): Promise<{ status: number; version: string; headers: Map<string, string>; body: string }> {
  const marker = "\n--denolb-curl--";
  const result = await run("curl", [
    "-sS",
    "-D",
    "-",
    ...(options.http === "2" ? ["--http2"] : options.http === "1.1" ? ["--http1.1"] : []),
    ...(options.cacert === undefined ? [] : ["--cacert", options.cacert]),
    ...(options.resolve === undefined ? [] : ["--resolve", options.resolve]),
    ...(options.headers ?? []).flatMap((h) => ["-H", h]),
    "-w",
    `${marker}%{http_version}`,
    url,
  ]);
  if (result.code !== 0) throw new Error(`curl ${url} failed: ${result.stderr}`);
  const [response = "", version = ""] = result.stdout.split(marker);
  const split = response.indexOf("\r\n\r\n");
  const head = response.slice(0, split).split("\r\n");
  const headers = new Map<string, string>();
  for (const line of head.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(head[0] ?? "")?.[1] ?? 0);
  return { status, version, headers, body: response.slice(split + 4) };
}
