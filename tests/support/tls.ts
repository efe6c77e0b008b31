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
 *   request headers; `resolve`: curl's `--resolve`; `sourceAddress`: the local address to
 *   connect from (any of 127.0.0.0/8 works on loopback).
 * @returns Status, HTTP version, response headers (lower-case names) and body.
 */
export async function curl(
  url: string,
  options: {
    readonly http?: "2" | "1.1";
    readonly cacert?: string;
    readonly headers?: readonly string[];
    readonly resolve?: string;
    readonly sourceAddress?: string;
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
    ...(options.sourceAddress === undefined ? [] : ["--interface", options.sourceAddress]),
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

/** An HTTP/1.1 response read off a raw connection. */
export interface RawResponse {
  readonly status: number;
  /** Lower-case names. */
  readonly headers: Map<string, string>;
  readonly body: string;
}

/** One TLS connection to 127.0.0.1 speaking HTTP/1.1 by hand, kept alive between requests. */
export interface RawTlsClient extends Disposable {
  /**
   * Sends `GET path` with `Host: serverName` and reads the response (Content-Length framing).
   *
   * @throws {Error} When the connection ends before a whole response.
   */
  get(path: string): Promise<RawResponse>;
}

/**
 * Opens a TCP connection to `127.0.0.1:port` and starts TLS on it with `serverName` as the SNI
 * and the name verified (so no DNS entry for the name is needed), trusting only `caCerts`.
 *
 * @param port The server's port on 127.0.0.1.
 * @param serverName The SNI, the verified name and the Host header.
 * @param caCerts The roots to trust (PEM).
 * @returns The client; dispose it to close the connection.
 */
export async function openRawTlsClient(
  port: number,
  serverName: string,
  caCerts: readonly string[],
): Promise<RawTlsClient> {
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  const conn = await Deno.startTls(tcp, {
    hostname: serverName,
    caCerts: [...caCerts],
    alpnProtocols: ["http/1.1"],
  });
  await conn.handshake();
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  let buffered = new Uint8Array(0);
  const fill = async (): Promise<void> => {
    const chunk = new Uint8Array(16 * 1024);
    const n = await conn.read(chunk);
    if (n === null) throw new Error("The connection ended before a whole response");
    const next = new Uint8Array(buffered.length + n);
    next.set(buffered);
    next.set(chunk.subarray(0, n), buffered.length);
    buffered = next;
  };
  return {
    async get(path) {
      await conn.write(
        encoder.encode(`GET ${path} HTTP/1.1\r\nHost: ${serverName}\r\n\r\n`),
      );
      let end = -1;
      while ((end = decoder.decode(buffered).indexOf("\r\n\r\n")) < 0) await fill();
      const head = decoder.decode(buffered.subarray(0, end)).split("\r\n");
      const headers = new Map<string, string>();
      for (const line of head.slice(1)) {
        const colon = line.indexOf(":");
        if (colon > 0) {
          headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
        }
      }
      const length = Number(headers.get("content-length") ?? "0");
      while (buffered.length < end + 4 + length) await fill();
      const body = decoder.decode(buffered.subarray(end + 4, end + 4 + length));
      buffered = buffered.slice(end + 4 + length);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head[0] ?? "")?.[1] ?? 0);
      return { status, headers, body };
    },
    [Symbol.dispose]() {
      try {
        conn.close();
      } catch {
        // Already closed by the server.
      }
    },
  };
}
