/**
 * Balancer throughput next to nginx as a reverse proxy, and next to no proxy at all, over the
 * same backends, in one run. A benchmark, not a test: it needs `nginx` and `wrk` on PATH.
 *
 * ```sh
 * deno run -A load/bench/lb_vs_nginx.ts                      # wrk -t1 -c50, 3 slices of 5 s each
 * deno run -A load/bench/lb_vs_nginx.ts --slices 5 --connections 100 --backends 3
 * ```
 *
 * Ours runs in five shapes side by side: `--workers 1`, `--workers 2` (two data-plane isolates
 * on one address), `--workers 1 --upstream http1`, and `--workers 1` with the access log off
 * and to a file (the others write it to stdout, which is /dev/null here).
 *
 * Backends: one nginx (one worker) serving a small static file on `--backends` ports. Proxies:
 * a second nginx (one worker, upstream keep-alive, round-robin) and `main.ts lb` (one isolate,
 * logging at warning), both in front of those ports. `wrk -t1 -cC` drives each target in turn
 * for a slice, order rotating; the report gives each target's median slice rate and the ratios.
 * On a 2-core machine the load generator, the proxy and the backends share the cores, so only
 * the ratios measured in one run mean anything, not the absolute rates.
 *
 * @module
 */
import { parseDuration } from "../../lib/shared/duration.ts";
import { parseArgs } from "../../lib/shared/std.ts";
import {
  freePort,
  freePorts,
  type Measurement,
  measureWrk,
  median,
  nginxPass,
  nginxUpstream,
  startNginx,
  waitForPort,
  writeLine,
  writeStaticSite,
} from "./bench_support.ts";

const MAIN = new URL("../../main.ts", import.meta.url);

interface Target {
  readonly name: string;
  readonly url: string;
}

/** Starts `main.ts lb` over the backends; resolves once it accepts connections. */
async function startBalancer(
  port: number,
  backendPorts: readonly number[],
  extra: readonly string[],
) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-write",
      "--allow-ffi",
      MAIN.pathname,
      "lb",
      "--port",
      String(port),
      "--admin",
      "off",
      "--log-level",
      "warning",
      "--backend",
      backendPorts.map((p) => `127.0.0.1:${p}`).join(","),
      "--health-path",
      "/index.html",
      ...extra,
    ],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  await waitForPort(port, "denolb");
  return {
    async stop(): Promise<void> {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

async function main(args: readonly string[]): Promise<void> {
  const flags = parseArgs(args, {
    string: ["slice", "slices", "connections", "backends", "file-bytes", "warmup"],
  });
  const sliceMs = parseDuration(String(flags.slice ?? "5s"));
  const slices = Number(flags.slices ?? 3);
  const connections = Number(flags.connections ?? 50);
  const backendCount = Number(flags.backends ?? 3);
  const fileBytes = Number(flags["file-bytes"] ?? 612);
  const warmupMs = parseDuration(String(flags.warmup ?? "3s"));

  const directory = await Deno.makeTempDir({ prefix: "denolb_lb_bench_" });
  const www = await writeStaticSite(directory, fileBytes);
  const backendPorts = freePorts(backendCount);
  const backends = await startNginx(
    directory,
    backendPorts.map((p) => `  server { listen 127.0.0.1:${p}; root ${www}; }`).join("\n"),
    backendPorts,
  );
  const nginxPort = freePort();
  const proxy = await startNginx(
    directory,
    `${nginxUpstream("pool", backendPorts)}
  server { listen 127.0.0.1:${nginxPort}; location / { ${nginxPass("http://pool")} } }`,
    [nginxPort],
  );
  const shapes = [
    { name: "denolb", extra: ["--workers", "1"] },
    { name: "denolb workers=2", extra: ["--workers", "2"] },
    { name: "denolb http1", extra: ["--workers", "1", "--upstream", "http1"] },
    // The access log's cost: the shapes above write it to stdout (/dev/null here).
    { name: "denolb access-log off", extra: ["--workers", "1", "--access-log", "off"] },
    {
      name: "denolb access-log file",
      extra: ["--workers", "1", "--access-log", `${directory}/access.log`],
    },
  ];
  const balancers = [];
  const ours: Target[] = [];
  for (const shape of shapes) {
    const port = freePort();
    balancers.push(await startBalancer(port, backendPorts, shape.extra));
    ours.push({ name: shape.name, url: `http://127.0.0.1:${port}/index.html` });
  }
  try {
    const targets: Target[] = [
      { name: "direct (no proxy)", url: `http://127.0.0.1:${backendPorts[0]}/index.html` },
      { name: "nginx proxy", url: `http://127.0.0.1:${nginxPort}/index.html` },
      ...ours,
    ];
    writeLine(
      `wrk -t1 -c${connections}, ${slices} slices of ${sliceMs / 1000} s per target (order ` +
        `rotates), ${backendCount} nginx backends (1 worker), ${fileBytes} B file, ` +
        `${navigator.hardwareConcurrency} CPUs, deno ${Deno.version.deno}`,
    );
    // Warm up both proxies (a fresh isolate is slower for its first ~30k requests).
    for (const target of targets.slice(1)) {
      await measureWrk(target.url, connections, warmupMs, 1);
    }
    const rates = new Map<string, number[]>(targets.map((t) => [t.name, []]));
    const errors = new Map<string, number>(targets.map((t) => [t.name, 0]));
    for (let slice = 0; slice < slices; slice++) {
      const order = targets.map((_, i) => targets[(i + slice) % targets.length])
        .filter((t): t is Target => t !== undefined);
      const line: string[] = [];
      for (const target of order) {
        const measured: Measurement = await measureWrk(target.url, connections, sliceMs, 1);
        rates.get(target.name)?.push(measured.requestsPerSecond);
        errors.set(target.name, (errors.get(target.name) ?? 0) + measured.errors);
        line.push(`${target.name} ${measured.requestsPerSecond.toFixed(0)}`);
      }
      writeLine(`  slice ${slice + 1}/${slices}: ${line.join(", ")}`);
    }
    const medians = new Map(targets.map((t) => [t.name, median(rates.get(t.name) ?? [])]));
    writeLine("median req/s per slice:");
    for (const target of targets) {
      writeLine(
        `  ${target.name.padEnd(18)} ${(medians.get(target.name) ?? 0).toFixed(0).padStart(8)}` +
          ` req/s   errors ${errors.get(target.name) ?? 0}`,
      );
    }
    const nginx = medians.get("nginx proxy") ?? 0;
    const direct = medians.get("direct (no proxy)") ?? 0;
    for (const target of ours) {
      const rate = medians.get(target.name) ?? 0;
      writeLine(
        `${target.name} / nginx = ${(rate / nginx).toFixed(2)}x, ` +
          `${target.name} / direct = ${(rate / direct).toFixed(2)}x`,
      );
    }
    writeLine(`nginx / direct = ${(nginx / direct).toFixed(2)}x`);
  } finally {
    for (const balancer of balancers) await balancer.stop();
    await proxy.stop();
    await backends.stop();
    await Deno.remove(directory, { recursive: true });
  }
}

if (import.meta.main) await main(Deno.args);
