/**
 * Debian's `pebble` (Let's Encrypt's ACME test server) on 127.0.0.1 for the ACME tests, with a
 * `dnsmasq` that maps the test domains to 127.0.0.1 for its HTTP-01 validation. Pebble's own TLS
 * certificate is made with `openssl` at test time; its HTTP-01 port is the one given (where the
 * balancer answers challenges). `PEBBLE_VA_NOSLEEP=1` removes its random validation delays and
 * `PEBBLE_WFE_NONCEREJECT=0` its random bad-nonce answers.
 *
 * @module
 */
import { unusedPort } from "./servers.ts";
import { waitUntil } from "./wait.ts";

/** A running pebble and its DNS server. */
export interface Pebble extends AsyncDisposable {
  /** The ACME directory URL: `https://127.0.0.1:PORT/dir`. */
  readonly directoryUrl: string;
  /** The file holding the CA certificate pebble's ACME endpoint is served with. */
  readonly tlsCaFile: string;
  /** The root that signs the certificates pebble issues (PEM), from its management API. */
  rootPem(): Promise<string>;
  /** Stops pebble (the DNS server stays): a failing CA. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startPebble}. */
export interface PebbleOptions {
  /** Where HTTP-01 validation connects (the balancer's plain HTTP port). */
  readonly httpPort: number;
  /** The names mapped to 127.0.0.1. */
  readonly domains: readonly string[];
  /** A scratch directory for pebble's files. */
  readonly dir: string;
}

/** Whether the programs the ACME tests need are installed. */
export function hasPebble(): boolean {
  return ["/usr/bin/pebble", "/usr/sbin/dnsmasq", "/usr/bin/openssl"].every((path) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  });
}

/**
 * Starts dnsmasq and pebble, and resolves once pebble's directory answers.
 *
 * @param options Its HTTP-01 port, the test domains and a scratch directory.
 * @returns The running pebble; dispose it to stop both programs.
 */
export async function startPebble(options: PebbleOptions): Promise<Pebble> {
  const { dir } = options;
  // A CA and a leaf for 127.0.0.1 (rustls refuses a self-signed CA certificate as a leaf).
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await run("openssl", [
    "req",
    "-x509",
    ...ec,
    "-days",
    "2",
    "-subj",
    "/CN=pebble test CA",
    "-keyout",
    `${dir}/ca.key`,
    "-out",
    `${dir}/ca.crt`,
  ]);
  await run("openssl", [
    "req",
    ...ec,
    "-subj",
    "/CN=127.0.0.1",
    "-keyout",
    `${dir}/pebble.key`,
    "-out",
    `${dir}/pebble.csr`,
  ]);
  await Deno.writeTextFile(
    `${dir}/leaf.ext`,
    "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
  );
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    `${dir}/pebble.csr`,
    "-CA",
    `${dir}/ca.crt`,
    "-CAkey",
    `${dir}/ca.key`,
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    `${dir}/leaf.ext`,
    "-out",
    `${dir}/pebble.crt`,
  ]);
  const dnsPort = unusedPort();
  const dns = new Deno.Command("/usr/sbin/dnsmasq", {
    args: [
      "--keep-in-foreground",
      "--no-resolv",
      "--no-hosts",
      "--no-poll",
      "--bind-interfaces",
      "--listen-address=127.0.0.1",
      `--port=${dnsPort}`,
      "--user=root",
      `--pid-file=${dir}/dnsmasq.pid`,
      ...options.domains.map((domain) => `--address=/${domain}/127.0.0.1`),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const acmePort = unusedPort();
  const managementPort = unusedPort();
  await Deno.writeTextFile(
    `${dir}/pebble.json`,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: `${dir}/pebble.crt`,
        privateKey: `${dir}/pebble.key`,
        httpPort: options.httpPort,
        tlsPort: unusedPort(),
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
      },
    }),
  );
  const pebble = new Deno.Command("/usr/bin/pebble", {
    args: ["-config", `${dir}/pebble.json`, "-dnsserver", `127.0.0.1:${dnsPort}`],
    env: { PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const pebbleOutput = collect(pebble);
  const dnsOutput = collect(dns);
  const caCerts = [await Deno.readTextFile(`${dir}/ca.crt`)];
  const client = Deno.createHttpClient({ caCerts });
  const directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
  let isStopped = false;
  const stopPebble = async () => {
    if (isStopped) return;
    isStopped = true;
    try {
      pebble.kill("SIGTERM");
    } catch { /* already gone */ }
    await pebble.status;
    await pebbleOutput;
  };
  const stopAll = async () => {
    await stopPebble();
    try {
      dns.kill("SIGTERM");
    } catch { /* already gone */ }
    await dns.status;
    await dnsOutput;
    client.close();
  };
  try {
    await waitUntil("pebble's directory", async () => {
      try {
        const response = await fetch(directoryUrl, { client });
        await response.body?.cancel();
        return response.ok;
      } catch {
        return false;
      }
    }, { timeoutMs: 15_000, intervalMs: 50 });
  } catch (error) {
    await stopAll();
    throw new Error(`pebble did not start: ${await pebbleOutput}`, { cause: error });
  }
  return {
    directoryUrl,
    tlsCaFile: `${dir}/ca.crt`,
    async rootPem() {
      const response = await fetch(`https://127.0.0.1:${managementPort}/roots/0`, { client });
      return await response.text();
    },
    stop: stopPebble,
    [Symbol.asyncDispose]: stopAll,
  };
}

/** GET https://NAME:PORT/ through curl, resolving NAME to 127.0.0.1 and trusting `rootFile`. */
export async function curlHttps(name: string, port: number, rootFile: string): Promise<string> {
  const output = await new Deno.Command("curl", {
    args: [
      "--silent",
      "--show-error",
      "--max-time",
      "10",
      "--resolve",
      `${name}:${port}:127.0.0.1`,
      "--cacert",
      rootFile,
      `https://${name}:${port}/`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (!output.success) throw new Error(`curl failed: ${decoder.decode(output.stderr)}`);
  return decoder.decode(output.stdout);
}

/** Reads a child's stdout and stderr to the end (so its pipes never fill), as one text. */
async function collect(child: Deno.ChildProcess): Promise<string> {
  const streams = [child.stdout, child.stderr].map(async (stream) => {
    try {
      return await new Response(stream).text();
    } catch {
      return "";
    }
  });
  return (await Promise.all(streams)).join("");
}

async function run(command: string, args: readonly string[]): Promise<void> {
  const output = await new Deno.Command(command, { args: [...args], stdin: "null" }).output();
  if (!output.success) {
    throw new Error(`${command} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
}
