/**
 * HTTPS throughput of the balancer next to nginx, HAProxy and Caddy terminating TLS with the
 * same certificate (an ECDSA P-256 leaf made with `openssl` at run time) in front of the same
 * plain-HTTP backends, in one run: `h2load` for HTTP/2, `wrk` for HTTP/1.1 over TLS. A
 * benchmark, not a test: it needs `openssl`, `wrk`, `h2load` (nghttp2-client), `nginx`,
 * `haproxy` and `caddy` on PATH; a missing peer is skipped.
 *
 * ```sh
 * deno run -A load/bench/https_bench.ts                  # 5 s per target and tool
 * deno run -A load/bench/https_bench.ts --duration 10s --connections 50
 * ```
 *
 * Each peer runs one worker/process where it has the setting (nginx `worker_processes 1`, ours
 * `--workers 1`); HAProxy and Caddy use their defaults (one thread per core). On a 2-core machine
 * the load generator, the proxy and the backends share the cores: only the ratios of one run
 * mean anything, not the absolute rates. The `ws-off` row is ours with `--websocket off`: with
 * WebSocket on (the default) a TLS HTTP/1.1 connection reaches Deno's server through the
 * listener's local pipe, and the two rows show what that costs.
 *
 * @module
 */
import { parseDuration } from "../../lib/shared/duration.ts";
import { parseArgs } from "../../lib/shared/std.ts";
import {
  freePort,
  haproxyHead,
  nginxPass,
  nginxUpstream,
  runTool,
  startNginx,
  writeLine,
  writeStaticSite,
} from "./bench_support.ts";
import { startNginxBackends, startOurBalancer } from "./bench_processes.ts";
import { spawnCaddy, spawnWatched } from "./bench_processes.ts";

interface HttpsPeer {
  readonly name: string;
  readonly port: number;
  stop(): Promise<void>;
}

interface Tls {
  readonly cert: string;
  readonly key: string;
  /** Certificate and key in one file, as HAProxy takes them. */
  readonly combined: string;
}

async function makeCertificate(directory: string): Promise<Tls> {
  const cert = `${directory}/cert.pem`;
  const key = `${directory}/key.pem`;
  await runTool("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "2",
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ]);
  const combined = `${directory}/combined.pem`;
  await Deno.writeTextFile(
    combined,
    (await Deno.readTextFile(cert)) + (await Deno.readTextFile(key)),
  );
  return { cert, key, combined };
}

async function startOurs(
  backends: readonly number[],
  tls: Tls,
  name = "denolb",
  extra: readonly string[] = [],
): Promise<HttpsPeer> {
  const port = freePort();
  const process = await startOurBalancer(port, backends, [
    ...extra,
    "--workers",
    "1",
    "--access-log",
    "off",
    "--log-level",
    "warning",
    "--tls-cert",
    tls.cert,
    "--tls-key",
    tls.key,
  ]);
  return { name, port, stop: () => process.stop() };
}

async function startNginxTls(
  directory: string,
  backends: readonly number[],
  tls: Tls,
): Promise<HttpsPeer> {
  const port = freePort();
  const nginx = await startNginx(
    directory,
    `${nginxUpstream("pool", backends)}
  server {
    listen 127.0.0.1:${port} ssl http2;
    ssl_certificate ${tls.cert};
    ssl_certificate_key ${tls.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { ${nginxPass("http://pool")} proxy_set_header X-Forwarded-Proto https; }
  }`,
    [port],
  );
  return { name: "nginx", port, stop: () => nginx.stop() };
}

async function startHaproxyTls(
  directory: string,
  backends: readonly number[],
  tls: Tls,
): Promise<HttpsPeer> {
  const port = freePort();
  const config = `${directory}/haproxy.cfg`;
  await Deno.writeTextFile(
    config,
    `${haproxyHead({ global: ["ssl-default-bind-options ssl-min-ver TLSv1.2"] })}frontend fe
  bind 127.0.0.1:${port} ssl crt ${tls.combined} alpn h2,http/1.1
  http-request set-header X-Forwarded-Proto https
  default_backend be
backend be
  balance roundrobin
${backends.map((p, i) => `  server b${i} 127.0.0.1:${p}`).join("\n")}
`,
  );
  const process = spawnWatched("haproxy", ["-db", "-f", config]);
  await process.listening(port, "haproxy");
  return { name: "haproxy", port, stop: () => process.stop() };
}

async function startCaddyTls(
  directory: string,
  backends: readonly number[],
  tls: Tls,
): Promise<HttpsPeer> {
  const port = freePort();
  const home = `${directory}/caddy`;
  await Deno.mkdir(home, { recursive: true });
  await Deno.writeTextFile(
    `${home}/Caddyfile`,
    `{
\tadmin off
\tauto_https disable_redirects
}
https://127.0.0.1:${port}, https://localhost:${port} {
\ttls ${tls.cert} ${tls.key}
\treverse_proxy ${backends.map((p) => `127.0.0.1:${p}`).join(" ")} {
\t\tlb_policy round_robin
\t}
}
`,
  );
  const process = spawnCaddy(home);
  await process.listening(port, "caddy");
  return { name: "caddy", port, stop: () => process.stop() };
}

/** `h2load` over HTTP/2: requests per second and failures. */
async function measureH2load(url: string, connections: number, seconds: number) {
  const text = await runTool("h2load", [
    "-D",
    String(seconds),
    "-c",
    String(connections),
    "-m",
    "10",
    "-t",
    "1",
    url,
  ]);
  const rate = Number(/finished in [^,]+, ([\d.]+) req\/s/.exec(text)?.[1] ?? Number.NaN);
  const failed = Number(/requests: .*?(\d+) failed/.exec(text)?.[1] ?? Number.NaN);
  const protocol = /Application protocol: (\S+)/.exec(text)?.[1] ?? "?";
  return { rate, failed, protocol };
}

/** `wrk` over HTTP/1.1 + TLS: requests per second and errors. */
async function measureWrkTls(url: string, connections: number, seconds: number) {
  const text = await runTool("wrk", ["-t1", `-c${connections}`, `-d${seconds}s`, url]);
  const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? Number.NaN);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const errors = non2xx +
    (socket === null ? 0 : socket.slice(1).reduce((s, n) => s + Number(n), 0));
  return { rate, errors };
}

if (import.meta.main) {
  const args = parseArgs(Deno.args, {
    string: ["duration", "connections"],
    default: { duration: "5s", connections: "50" },
  });
  const seconds = Math.max(1, Math.round(parseDuration(String(args.duration)) / 1000));
  const connections = Number(args.connections);
  const directory = await Deno.makeTempDir({ prefix: "denolb-https-bench-" });
  await Deno.chmod(directory, 0o755);
  const www = await writeStaticSite(directory, 1024);
  const backends = await startNginxBackends(directory, www, 3);
  const tls = await makeCertificate(directory);
  await Deno.chmod(tls.key, 0o644); // nginx's worker reads it as another user
  const starters: Array<[string, () => Promise<HttpsPeer>]> = [
    ["denolb", () => startOurs(backends.ports, tls)],
    // WebSocket on (the default) sends TLS HTTP/1.1 through the listener's local pipe (wss).
    ["ws-off", () => startOurs(backends.ports, tls, "ws-off", ["--websocket", "off"])],
    ["nginx", () => startNginxTls(`${directory}/peer`, backends.ports, tls)],
    ["haproxy", () => startHaproxyTls(directory, backends.ports, tls)],
    ["caddy", () => startCaddyTls(directory, backends.ports, tls)],
  ];
  await Deno.mkdir(`${directory}/peer`, { recursive: true });
  const rows: Array<{ name: string; h2: number; h1: number; notes: string }> = [];
  try {
    for (const [name, start] of starters) {
      let peer: HttpsPeer;
      try {
        peer = await start();
      } catch (error) {
        writeLine(`${name}: skipped (${error instanceof Error ? error.message : error})`);
        continue;
      }
      try {
        const url = `https://127.0.0.1:${peer.port}/index.html`;
        // Warm-up (JIT, connection pools), not measured.
        await measureWrkTls(url, connections, 1);
        const h2 = await measureH2load(url, Math.min(connections, 10), seconds);
        const h1 = await measureWrkTls(url, connections, seconds);
        rows.push({
          name,
          h2: h2.rate,
          h1: h1.rate,
          notes: `h2load ${h2.protocol}, ${h2.failed} failed; wrk ${h1.errors} errors`,
        });
        writeLine(`${name}: h2 ${h2.rate.toFixed(0)} req/s, h1.1+TLS ${h1.rate.toFixed(0)} req/s`);
      } finally {
        await peer.stop();
      }
    }
  } finally {
    await backends.stop();
    await Deno.remove(directory, { recursive: true });
  }
  const ours = rows.find((r) => r.name === "denolb");
  writeLine("");
  writeLine(
    `HTTPS, ${seconds}s per tool; h2load -c${Math.min(connections, 10)} -m10 -t1; ` +
      `wrk -t1 -c${connections}; 1 KiB static file behind 3 nginx backends`,
  );
  writeLine("peer      h2 req/s   ours/peer   h1.1+TLS req/s   ours/peer   notes");
  for (const row of rows) {
    const ratio = (a: number | undefined, b: number) =>
      a === undefined ? "-" : (a / b).toFixed(2).padStart(9);
    writeLine(
      `${row.name.padEnd(8)} ${row.h2.toFixed(0).padStart(9)}   ${ratio(ours?.h2, row.h2)}   ` +
        `${row.h1.toFixed(0).padStart(14)}   ${ratio(ours?.h1, row.h1)}   ${row.notes}`,
    );
  }
}
