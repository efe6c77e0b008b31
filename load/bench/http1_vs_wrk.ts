/**
 * Generator ceiling: how many requests per second the lean HTTP/1.1 client sends, next to wrk
 * and hey, against the same nginx serving a small static file on 127.0.0.1. A benchmark, not a
 * test: it needs `nginx`, `wrk` and `hey` on PATH and prints figures and ratios.
 *
 * ```sh
 * deno run -A load/bench/http1_vs_wrk.ts                 # 20 s per tool, 50 connections
 * deno run -A load/bench/http1_vs_wrk.ts --duration 10s --slices 5 --connections 100
 * deno run -A load/bench/http1_vs_wrk.ts --cli --fetch   # also `main.ts loadtest`, fetch
 * ```
 *
 * Every tool shares two cores with nginx, and a busy machine swings a run by 2x, so each tool's
 * time is cut into slices run in rotating order, and the ratios compare median slice rates.
 *
 * Flags: `--duration` per tool (default 20s), `--slices` (default 10, each at least 1 s),
 * `--connections` (default 50), `--file-bytes` of the static file (default 612, nginx's welcome page), `--wrk-threads`
 * (default 1, like the in-process client's one thread), `--cli` to also time `deno run -A
 * main.ts loadtest` (with its default workers, or `--cli-workers N`), `--fetch` to also time
 * the fetch transport in-process.
 * The in-process client warms up for 2 s first (a fresh isolate is slower for its first ~30k
 * requests).
 *
 * @module
 */
import { parseDuration } from "../../lib/shared/duration.ts";
import { parseArgs } from "../../lib/shared/std.ts";
import { createFetchTransport } from "../fetch_transport.ts";
import { createHttp1Transport } from "../http1_transport.ts";
import type { RequestSpec, TransportFactory } from "../transport.ts";
import {
  freePort,
  type Measurement,
  measureWrk,
  median,
  requestsPerSecond,
  runTool,
  startNginx,
  writeLine,
  writeStaticSite,
} from "./bench_support.ts";

const WARMUP_MS = 2_000;

/** A closed loop: `connections` transports each sending back to back until the deadline. */
async function runClosedLoop(
  factory: TransportFactory,
  spec: RequestSpec,
  connections: number,
  durationMs: number,
): Promise<{ requests: number; errors: number; elapsedMs: number }> {
  let requests = 0;
  let errors = 0;
  const startedAt = performance.now();
  const deadline = startedAt + durationMs;
  const loop = async (): Promise<void> => {
    const transport = factory(spec);
    try {
      while (performance.now() < deadline) {
        const outcome = await transport.send();
        if (outcome.ok && outcome.status === 200) requests++;
        else errors++;
      }
    } finally {
      await transport.close();
    }
  };
  await Promise.all(Array.from({ length: connections }, loop));
  return { requests, errors, elapsedMs: performance.now() - startedAt };
}

async function measureInProcess(
  tool: string,
  factory: TransportFactory,
  spec: RequestSpec,
  connections: number,
  durationMs: number,
): Promise<Measurement> {
  const { requests, errors, elapsedMs } = await runClosedLoop(
    factory,
    spec,
    connections,
    durationMs,
  );
  return { tool, requestsPerSecond: requests / (elapsedMs / 1000), errors };
}

/** hey's status-code distribution minus the 200s, plus its error lines. */
function heyErrors(text: string): number {
  let errors = 0;
  for (const match of text.matchAll(/\[(\d{3})\]\s+(\d+) responses/g)) {
    if (match[1] !== "200") errors += Number(match[2]);
  }
  const errorBlock = text.split("Error distribution:")[1] ?? "";
  for (const match of errorBlock.matchAll(/\[(\d+)\]/g)) errors += Number(match[1]);
  return errors;
}

async function measureHey(url: string, connections: number, durationMs: number) {
  const text = await runTool("hey", [
    "-c",
    String(connections),
    "-z",
    `${Math.round(durationMs / 1000)}s`,
    url,
  ]);
  return {
    tool: "hey",
    requestsPerSecond: requestsPerSecond("hey", text),
    errors: heyErrors(text),
  };
}

/** Runs `main.ts loadtest` in a closed loop and reads its req/s from the JSON report. */
async function measureCli(
  url: string,
  connections: number,
  durationMs: number,
  workers: string | undefined,
  directory: string,
): Promise<Measurement> {
  const jsonPath = `${directory}/cli.json`;
  const main = new URL("../../main.ts", import.meta.url).pathname;
  const workerArgs = workers === undefined ? [] : ["--workers", workers];
  await runTool(Deno.execPath(), [
    "run",
    "-A",
    main,
    "loadtest",
    "--url",
    url,
    "--concurrency",
    String(connections),
    "--duration",
    `${Math.round(durationMs / 1000)}s`,
    "--warmup",
    `${WARMUP_MS / 1000}s`,
    ...workerArgs,
    "--json",
    jsonPath,
  ]);
  const stats = firstRunStats(JSON.parse(await Deno.readTextFile(jsonPath)));
  return {
    tool: `main.ts loadtest${workers === undefined ? "" : ` --workers ${workers}`}`,
    requestsPerSecond: stats.ok / (stats.elapsedMs / 1000),
    errors: stats.errors,
  };
}

/** `runs[0].stats` of a `loadtest --json` report: successes, errors and elapsed time. */
function firstRunStats(report: unknown): { ok: number; errors: number; elapsedMs: number } {
  const runs = (report as { runs?: unknown } | null)?.runs;
  const stats = Array.isArray(runs)
    ? (runs[0] as { stats?: Record<string, unknown> } | undefined)?.stats
    : undefined;
  const { ok, errors, elapsedMs } = stats ?? {};
  if (typeof ok !== "number" || typeof errors !== "number" || typeof elapsedMs !== "number") {
    throw new Error("Cannot read runs[0].stats of the loadtest JSON report");
  }
  return { ok, errors, elapsedMs };
}

/** Starts nginx serving one static `index.html` of `fileBytes` bytes. */
async function startStaticNginx(directory: string, fileBytes: number) {
  const port = freePort();
  const www = await writeStaticSite(directory, fileBytes);
  const nginx = await startNginx(directory, `  server { listen 127.0.0.1:${port}; root ${www}; }`, [
    port,
  ]);
  return { url: `http://127.0.0.1:${port}/index.html`, stop: () => nginx.stop() };
}

function formatRow(measurement: Measurement): string {
  const rate = measurement.requestsPerSecond.toFixed(0).padStart(9);
  return `  ${measurement.tool.padEnd(18)} ${rate} req/s   errors ${measurement.errors}`;
}

/** One contender: a name and how to time it for a while. */
interface Tool {
  readonly name: string;
  readonly measure: (durationMs: number) => Promise<Measurement>;
}

async function main(args: readonly string[]): Promise<void> {
  const flags = parseArgs(args, {
    string: ["duration", "slices", "connections", "file-bytes", "wrk-threads", "cli-workers"],
    boolean: ["cli", "fetch"],
  });
  const durationMs = parseDuration(String(flags.duration ?? "20s"));
  const slices = Number(flags.slices ?? 10);
  const sliceMs = Math.max(1000, Math.round(durationMs / slices / 1000) * 1000);
  const connections = Number(flags.connections ?? 50);
  const fileBytes = Number(flags["file-bytes"] ?? 612);
  const wrkThreads = Number(flags["wrk-threads"] ?? 1);
  const cliWorkers = flags["cli-workers"] === undefined ? undefined : String(flags["cli-workers"]);
  const directory = await Deno.makeTempDir({ prefix: "denolb_bench_" });
  const nginx = await startStaticNginx(directory, fileBytes);
  try {
    const spec: RequestSpec = {
      url: new URL(nginx.url),
      method: "GET",
      headers: [],
      keepAlive: true,
      timeoutMs: 5_000,
    };
    const inProcess = (name: string, factory: TransportFactory): Tool => ({
      name,
      measure: (ms) => measureInProcess(name, factory, spec, connections, ms),
    });
    const tools: Tool[] = [
      inProcess("http1 (in-process)", createHttp1Transport),
      { name: "hey", measure: (ms) => measureHey(nginx.url, connections, ms) },
      {
        name: `wrk -t${wrkThreads}`,
        measure: (ms) => measureWrk(nginx.url, connections, ms, wrkThreads),
      },
    ];
    if (flags.fetch === true) {
      tools.push(inProcess("fetch (in-process)", (s) => createFetchTransport(s)));
    }
    if (flags.cli === true) {
      tools.push({
        name: `main.ts loadtest${cliWorkers === undefined ? "" : ` --workers ${cliWorkers}`}`,
        measure: (ms) => measureCli(nginx.url, connections, ms, cliWorkers, directory),
      });
    }
    writeLine(
      `target ${nginx.url} (${fileBytes} B, nginx worker_processes 1), ` +
        `${connections} connections, ${slices} slices of ${sliceMs / 1000} s per tool ` +
        `(order rotates), ${navigator.hardwareConcurrency} CPUs, deno ${Deno.version.deno}`,
    );
    // A fresh isolate is slower for its first ~30k requests: warm the in-process clients up.
    for (const tool of tools) {
      if (tool.name.endsWith("(in-process)")) await tool.measure(WARMUP_MS);
    }
    const rates = new Map<string, number[]>(tools.map((tool) => [tool.name, []]));
    const errors = new Map<string, number>(tools.map((tool) => [tool.name, 0]));
    for (let slice = 0; slice < slices; slice++) {
      const cells: string[] = [];
      for (let i = 0; i < tools.length; i++) {
        const tool = tools[(slice + i) % tools.length];
        if (tool === undefined) continue;
        const measurement = await tool.measure(sliceMs);
        rates.get(tool.name)?.push(measurement.requestsPerSecond);
        errors.set(tool.name, (errors.get(tool.name) ?? 0) + measurement.errors);
        cells.push(`${tool.name} ${measurement.requestsPerSecond.toFixed(0)}`);
      }
      writeLine(`  slice ${slice + 1}/${slices}: ${cells.join(", ")}`);
    }
    const medians = new Map(
      [...rates].map(([name, values]) => [name, median(values)] as const),
    );
    writeLine("median req/s per slice:");
    for (const tool of tools) {
      writeLine(formatRow({
        tool: tool.name,
        requestsPerSecond: medians.get(tool.name) ?? 0,
        errors: errors.get(tool.name) ?? 0,
      }));
    }
    const heyRate = medians.get("hey") ?? Number.NaN;
    const wrkRate = medians.get(`wrk -t${wrkThreads}`) ?? Number.NaN;
    for (const tool of tools) {
      if (tool.name === "hey" || tool.name.startsWith("wrk")) continue;
      const rate = medians.get(tool.name) ?? 0;
      writeLine(
        `${tool.name}: ${(rate / heyRate).toFixed(2)}x hey (target >= 1.30), ` +
          `${(rate / wrkRate).toFixed(2)}x wrk (target >= 0.50)`,
      );
    }
  } finally {
    await nginx.stop();
    await Deno.remove(directory, { recursive: true });
  }
}

if (import.meta.main) await main(Deno.args);
