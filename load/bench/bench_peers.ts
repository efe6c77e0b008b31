/**
 * The balancers the benchmark table compares ours with, each started in front of the same
 * backends on a free port of 127.0.0.1: nginx, HAProxy, Caddy and a bare `Deno.serve` + `fetch`
 * proxy. Each is configured as an operator following the usual guide would (the settings are in
 * {@linkcode PEER_SETTINGS}, which the table prints). Benchmarks only; tests never import it.
 *
 * @module
 */
import { freePort, haproxyHead, nginxPass, nginxUpstream, startNginx } from "./bench_support.ts";
import { spawnCaddy, spawnWatched, startOurBalancer } from "./bench_processes.ts";

/** A balancer running for the benchmark. */
export interface RunningPeer {
  /** Where to send requests. */
  readonly url: string;
  /** The root process (its children count in its memory). */
  readonly pid: number;
  /** Why it misbehaved (exited, wrote on stderr), or `undefined`. */
  trouble(): string | undefined;
  /** Stops it and waits for its exit. */
  stop(): Promise<void>;
}

/** How each peer is configured, for the notes under the table. */
export const PEER_SETTINGS: Readonly<Record<string, string>> = {
  nginx: "worker_processes 1, upstream keepalive 64, proxy_http_version 1.1, access_log off",
  haproxy: "mode http, balance roundrobin, option forwardfor, no log, threads at its default " +
    "(one per core)",
  caddy: "reverse_proxy over the three (round_robin), admin off, auto_https off, no access log, " +
    "GOMAXPROCS at its default (one per core)",
  "deno-fetch": "6 lines: Deno.serve + fetch(backend + path), round-robin, no logging",
};

/** The bare proxy the issue measures: what `Deno.serve` + `fetch` reach with nothing else. */
const BARE_PROXY = `const [port, ...backends] = Deno.args;
let turn = 0;
Deno.serve({ hostname: "127.0.0.1", port: Number(port), onListen() {} }, (request) => {
  const { pathname, search } = new URL(request.url);
  const init = { method: request.method, headers: request.headers, body: request.body };
  return fetch(\`http://\${backends[turn++ % backends.length]}\${pathname}\${search}\`, init);
});
`;

/**
 * The first line a peer prints for its version flag.
 *
 * @param command The executable.
 * @param args The version flag(s).
 * @returns The line, or `undefined` when the command is not installed.
 */
export async function versionOf(
  command: string,
  args: readonly string[],
): Promise<string | undefined> {
  try {
    const output = await new Deno.Command(command, { args: [...args] }).output();
    const text = new TextDecoder().decode(output.stdout) +
      new TextDecoder().decode(output.stderr);
    return text.split("\n")[0]?.trim();
  } catch {
    return undefined;
  }
}

/**
 * nginx as the balancer: one worker, upstream keep-alive, round-robin.
 *
 * @param directory A private folder for its files.
 * @param backendPorts The backends' ports.
 * @returns The running peer.
 */
export async function startNginxPeer(
  directory: string,
  backendPorts: readonly number[],
): Promise<RunningPeer> {
  const port = freePort();
  const nginx = await startNginx(
    directory,
    `${nginxUpstream("pool", backendPorts)}
  server { listen 127.0.0.1:${port}; location / { ${nginxPass("http://pool")} } }`,
    [port],
  );
  return {
    url: `http://127.0.0.1:${port}/index.html`,
    pid: nginx.pid,
    trouble: () => undefined,
    stop: () => nginx.stop(),
  };
}

/**
 * HAProxy in HTTP mode, round-robin, `option forwardfor`, no logging.
 *
 * @param directory A private folder for its config.
 * @param backendPorts The backends' ports.
 * @returns The running peer.
 */
export async function startHaproxyPeer(
  directory: string,
  backendPorts: readonly number[],
): Promise<RunningPeer> {
  const port = freePort();
  const config = `${directory}/haproxy.cfg`;
  await Deno.writeTextFile(
    config,
    `${haproxyHead()}frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  balance roundrobin
${backendPorts.map((p, i) => `  server b${i} 127.0.0.1:${p}`).join("\n")}
`,
  );
  const process = spawnWatched("haproxy", ["-db", "-f", config]);
  await process.listening(port, "haproxy");
  return peerOf(process, port);
}

/**
 * Caddy's `reverse_proxy` from a Caddyfile: admin off, no TLS, no access log.
 *
 * @param directory A private folder for the Caddyfile and Caddy's data and config folders.
 * @param backendPorts The backends' ports.
 * @returns The running peer.
 */
export async function startCaddyPeer(
  directory: string,
  backendPorts: readonly number[],
): Promise<RunningPeer> {
  const port = freePort();
  const home = `${directory}/caddy`;
  await Deno.mkdir(home, { recursive: true });
  await Deno.writeTextFile(
    `${home}/Caddyfile`,
    `{
\tadmin off
\tauto_https off
}
http://127.0.0.1:${port} {
\treverse_proxy ${backendPorts.map((p) => `127.0.0.1:${p}`).join(" ")} {
\t\tlb_policy round_robin
\t}
}
`,
  );
  const process = spawnCaddy(home);
  await process.listening(port, "caddy");
  // Caddy logs its start-up at INFO on stderr; only what comes after counts as trouble.
  const startupLines = process.stderr().count;
  return peerOf(process, port, startupLines);
}

/**
 * The bare `Deno.serve` + `fetch` proxy, round-robin over the backends.
 *
 * @param directory A private folder for its source (run without our deno.json).
 * @param backendPorts The backends' ports.
 * @returns The running peer.
 */
export async function startBareDenoProxy(
  directory: string,
  backendPorts: readonly number[],
): Promise<RunningPeer> {
  const port = freePort();
  const source = `${directory}/bare_proxy.ts`;
  await Deno.writeTextFile(source, BARE_PROXY);
  const process = spawnWatched(
    Deno.execPath(),
    [
      "run",
      "--allow-net=127.0.0.1",
      source,
      String(port),
      ...backendPorts.map((p) => `127.0.0.1:${p}`),
    ],
    { cwd: directory },
  );
  await process.listening(port, "bare Deno proxy");
  return peerOf(process, port);
}

/**
 * Our balancer as a peer: `main.ts lb --workers 1` (before `flags`, which may override it) in
 * front of the backends, on a free port. Its trouble is an exit, or stderr lines beyond those it
 * wrote while starting.
 *
 * @param backendPorts The backends' ports.
 * @param flags More `lb` flags.
 * @returns The running peer.
 */
export async function startOursAsPeer(
  backendPorts: readonly number[],
  flags: readonly string[],
): Promise<RunningPeer> {
  const port = freePort();
  const process = await startOurBalancer(port, backendPorts, ["--workers", "1", ...flags]);
  return peerOf(process, port, process.stderr().count);
}

/** A watched process as a peer: trouble is an exit or stderr lines after `quietLines`. */
function peerOf(
  process: ReturnType<typeof spawnWatched>,
  port: number,
  quietLines = 0,
): RunningPeer {
  return {
    url: `http://127.0.0.1:${port}/index.html`,
    pid: process.pid,
    trouble(): string | undefined {
      const code = process.exitCode();
      const { count, last } = process.stderr();
      if (code !== undefined) return `exited with code ${code}: ${last.at(-1) ?? "no output"}`;
      if (count > quietLines) return `${count - quietLines} stderr lines, last: ${last.at(-1)}`;
      return undefined;
    },
    stop: () => process.stop(),
  };
}
