/**
 * Memory soak: our balancer under a constant, moderate arrival rate for a while, its resident
 * memory sampled at a fixed interval. Prints the series, min/max, the peak (VmHWM) and the
 * slope (least squares, MB per minute, over the whole run and over its second half). The issue's
 * target: RSS under 100 MB per isolate, flat over 10 minutes. A benchmark, not a test: it needs
 * `nginx` on PATH and Linux's `/proc`.
 *
 * ```sh
 * deno run -A load/bench/soak.ts                                  # 10 min at 1000 req/s
 * deno run -A load/bench/soak.ts --duration 1m --rate 500 --interval 5s
 * deno run -A load/bench/soak.ts --lb="--workers 2 --access-log off" --json soak.json
 * ```
 *
 * Setup: three nginx backends (one worker, a 612 B file); ours `main.ts lb` with `--workers 1`
 * and the access log to a file in a temp folder (override with `--lb="FLAGS"`, appended);
 * load from our own `main.ts loadtest --rate R --max-in-flight M --duration D` (open model, one
 * worker). The in-flight cap keeps a constant, moderate load: when the machine is busy the
 * load tester sends late instead of piling up connections on the balancer (uncapped, a busy
 * moment left ~1000 requests in flight and the backlog never drained; latency then measures
 * the backlog, not the balancer). RSS is
 * the balancer process's; with `--workers N` that process holds N+1 isolates (N data planes
 * and the control plane), so the per-isolate figure is at most RSS / (N+1) only on average.
 *
 * Flags: `--duration` (default 10m), `--rate` req/s (default 1000: about a third
 * of what one isolate serves here while the load tester shares the two cores; at 2000 req/s
 * requests queued), `--interval` between
 * samples (default 10s), `--max-in-flight` (default 50), `--lb="FLAGS"`, `--json FILE` (the
 * series and summary).
 *
 * @module
 */
import { parseDuration } from "../../lib/shared/duration.ts";
import { parseArgs } from "../../lib/shared/std.ts";
import {
  loadAverage,
  processMemory,
  startNginxBackends,
  startOurBalancer,
} from "./bench_processes.ts";
import { freePort, writeLine, writeStaticSite } from "./bench_support.ts";

const MAIN = new URL("../../main.ts", import.meta.url);
const MB = 1024;

/** One RSS reading. */
interface Sample {
  readonly seconds: number;
  readonly rssMb: number;
  /** The machine's 1-minute load average then. */
  readonly loadAverage: number;
}

/**
 * The least-squares slope of RSS over time, in MB per minute (0 for fewer than two samples).
 *
 * @param samples The readings.
 * @returns The slope.
 */
function slopeMbPerMinute(samples: readonly Sample[]): number {
  if (samples.length < 2) return 0;
  const n = samples.length;
  const meanX = samples.reduce((sum, s) => sum + s.seconds, 0) / n;
  const meanY = samples.reduce((sum, s) => sum + s.rssMb, 0) / n;
  let numerator = 0;
  let denominator = 0;
  for (const s of samples) {
    numerator += (s.seconds - meanX) * (s.rssMb - meanY);
    denominator += (s.seconds - meanX) ** 2;
  }
  return denominator === 0 ? 0 : (numerator / denominator) * 60;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main(args: readonly string[]): Promise<void> {
  const flags = parseArgs(args, {
    string: ["duration", "rate", "interval", "lb", "json", "max-in-flight"],
    unknown: (arg: string) => {
      throw new TypeError(`Invalid flag "${arg}": see the module docs of soak.ts`);
    },
  });
  const durationMs = parseDuration(String(flags.duration ?? "10m"));
  const rate = Number(flags.rate ?? 1000);
  const intervalMs = parseDuration(String(flags.interval ?? "10s"));
  const maxInFlight = Number(flags["max-in-flight"] ?? 50);
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1) {
    throw new RangeError(
      `Invalid --max-in-flight "${flags["max-in-flight"]}": must be a positive integer`,
    );
  }
  if (!Number.isFinite(rate) || rate <= 0) {
    throw new RangeError(`Invalid --rate "${flags.rate}": must be a positive number`);
  }
  const directory = await Deno.makeTempDir({ prefix: "denolb_soak_" });
  const www = await writeStaticSite(directory, 612);
  const backends = await startNginxBackends(directory, www, 3);
  const lbFlags = [
    "--workers",
    "1",
    "--access-log",
    `${directory}/access.log`,
    ...(flags.lb === undefined ? [] : String(flags.lb).split(/\s+/).filter((a) => a !== "")),
  ];
  const port = freePort();
  const ours = await startOurBalancer(port, backends.ports, lbFlags);
  const jsonPath = `${directory}/loadtest.json`;
  try {
    writeLine(
      `soak: denolb ${lbFlags.join(" ")}, ${rate} req/s (main.ts loadtest --rate, open model, ` +
        `at most ${maxInFlight} in flight) ` +
        `for ${durationMs / 1000} s, RSS sampled every ${intervalMs / 1000} s, ` +
        `${navigator.hardwareConcurrency} CPUs, deno ${Deno.version.deno}, ` +
        `${new Date().toISOString()}`,
    );
    const load = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        MAIN.pathname,
        "loadtest",
        "--url",
        `http://127.0.0.1:${port}/index.html`,
        "--rate",
        String(rate),
        "--duration",
        `${Math.round(durationMs / 1000)}s`,
        "--max-in-flight",
        String(maxInFlight),
        "--workers",
        "1",
        "--quiet",
        "--json",
        jsonPath,
      ],
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    const samples: Sample[] = [];
    const startedAt = performance.now();
    let isLoadDone = false;
    const loadStatus = load.status.then((status) => {
      isLoadDone = true;
      return status;
    });
    for (;;) {
      const seconds = (performance.now() - startedAt) / 1000;
      const memory = await processMemory(ours.pid);
      if (memory === undefined) {
        writeLine(`  t=${seconds.toFixed(0)}s: the balancer is gone (exit ${ours.exitCode()})`);
        break;
      }
      const load = await loadAverage();
      samples.push({ seconds, rssMb: memory.rssKb / MB, loadAverage: load });
      writeLine(
        `  t=${seconds.toFixed(0).padStart(4)}s  RSS ${(memory.rssKb / MB).toFixed(1)} MB  ` +
          `load average ${load}`,
      );
      if (isLoadDone) break;
      await Promise.race([sleep(intervalMs), loadStatus]);
    }
    const status = await loadStatus;
    const peak = await processMemory(ours.pid);
    // The first sample is taken before the load starts: the idle baseline, not under load.
    const idleRssMb = samples[0]?.rssMb ?? Number.NaN;
    const loaded = samples.slice(1);
    const rss = loaded.map((s) => s.rssMb);
    const secondHalf = loaded.filter((s) => s.seconds >= durationMs / 2000);
    const summary = {
      lbFlags,
      rate,
      maxInFlight,
      durationMs,
      intervalMs,
      samples,
      idleRssMb,
      minRssMb: Math.min(...rss),
      maxRssMb: Math.max(...rss),
      peakRssMb: peak === undefined ? null : peak.peakRssKb / MB,
      slopeMbPerMinute: slopeMbPerMinute(loaded),
      secondHalfSlopeMbPerMinute: slopeMbPerMinute(secondHalf),
      loadtest: status.success ? await loadtestSummary(jsonPath) : null,
      stderrLines: ours.stderr().count,
    };
    writeLine(
      `RSS idle ${idleRssMb.toFixed(1)} MB; under load min ${summary.minRssMb.toFixed(1)} MB, max ${
        summary.maxRssMb.toFixed(1)
      } MB, ` +
        `peak (VmHWM) ${summary.peakRssMb?.toFixed(1) ?? "n/a"} MB; slope ` +
        `${summary.slopeMbPerMinute.toFixed(2)} MB/min under load, ` +
        `${summary.secondHalfSlopeMbPerMinute.toFixed(2)} MB/min over its second half`,
    );
    writeLine(
      summary.loadtest === null
        ? `loadtest exited with code ${status.code}`
        : `loadtest: ${summary.loadtest.ok} ok, ${summary.loadtest.errors} errors, ` +
          `${summary.loadtest.late} sent late, ${summary.loadtest.unsent} never sent, ` +
          `${summary.loadtest.rps.toFixed(0)} req/s, p50 ${summary.loadtest.p50Ms} ms, ` +
          `p99 ${summary.loadtest.p99Ms} ms`,
    );
    const stderr = ours.stderr();
    writeLine(`balancer stderr: ${stderr.count} lines${stderr.count > 0 ? ", last:" : ""}`);
    for (const line of stderr.last) writeLine(`  ${line}`);
    if (flags.json !== undefined) {
      await Deno.writeTextFile(String(flags.json), `${JSON.stringify(summary, null, 2)}\n`);
    }
  } finally {
    await ours.stop();
    await backends.stop();
    await Deno.remove(directory, { recursive: true });
  }
}

/** The figures of `runs[0].stats` in a `loadtest --json` report. */
async function loadtestSummary(path: string): Promise<{
  ok: number;
  errors: number;
  late: number;
  unsent: number;
  rps: number;
  p50Ms: number | null;
  p99Ms: number | null;
}> {
  const report = JSON.parse(await Deno.readTextFile(path)) as {
    runs?: { stats?: Record<string, unknown> }[];
  };
  const stats = report.runs?.[0]?.stats ?? {};
  const num = (value: unknown): number => (typeof value === "number" ? value : Number.NaN);
  const orNull = (value: unknown): number | null => (typeof value === "number" ? value : null);
  return {
    ok: num(stats.ok),
    errors: num(stats.errors),
    late: num(stats.late),
    unsent: num(stats.unsent),
    rps: num(stats.rps),
    p50Ms: orNull(stats.p50Ms),
    p99Ms: orNull(stats.p99Ms),
  };
}

if (import.meta.main) await main(Deno.args);
