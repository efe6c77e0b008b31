/**
 * One benchmark table (`deno task bench`): ours next to nginx, HAProxy, Caddy and a bare
 * `Deno.serve` + `fetch` proxy, all in front of the same three nginx backends, driven by `wrk`
 * and by our own load tester, in one run. A benchmark, not a test: it needs `nginx` and `wrk` on
 * PATH (HAProxy and Caddy are skipped, and said so, when missing) and Linux's `/proc`.
 *
 * ```sh
 * deno task bench                                   # 3 rounds of 5 s slices, every target
 * deno task bench --slices 5 --slice 10s --json bench.json
 * deno task bench --only nginx,ours-lean,ours-http1 --slices 3 --slice 3s
 * ```
 *
 * Every round runs each target once, order rotating by one each round; a target's turn is a
 * `wrk -t1 -c50 --latency` slice then a `main.ts loadtest -c 50 --workers 1` slice. The table
 * gives medians over rounds (p50 and p99 from wrk), the peak RSS of each target's processes
 * (VmHWM, summed over the process tree) and ratios of the wrk rates to nginx and to Caddy.
 * Ours runs `--workers 1` (auto would be one isolate per core) unless the row says otherwise,
 * with `--admin off` and the access log to a file in a temp folder unless it says off.
 *
 * Flags: `--slices N` rounds (default 3), `--slice D` (default 5s), `--warmup D` per target
 * before the rounds (default 3s), `--connections C` (default 50), `--only KEY,...`,
 * `--json FILE`, `--idle N` (default 1000; 0 skips).
 *
 * Memory and start-up, per target: its RSS at rest (started, answered once, a second idle), its
 * peak RSS (VmHWM) after every slice, and for ours both per isolate; what `--idle N` idle
 * keep-alive connections (one request each, then silent) add to its RSS, per connection, and
 * what N more add; and
 * its start-up, from being spawned to its first answered request (polled every 5 ms).
 *
 * @module
 */
import { parseDuration } from "../../lib/shared/duration.ts";
import { parseArgs } from "../../lib/shared/std.ts";
import { loadtestSlice, type SliceResult, wrkSlice } from "./bench_drivers.ts";
import {
  PEER_SETTINGS,
  type RunningPeer,
  startBareDenoProxy,
  startCaddyPeer,
  startHaproxyPeer,
  startNginxPeer,
  startOursAsPeer,
  versionOf,
} from "./bench_peers.ts";
import { loadAverage, startNginxBackends, treeCpuMs, treeMemory } from "./bench_processes.ts";
import { firstAnswerAt, type IdleCost, isolatesOf, measureIdleCost } from "./bench_memory.ts";
import { median, writeLine, writeStaticSite } from "./bench_support.ts";
import { formatTable, type TableRow } from "./table_report.ts";
import { errorText } from "../../lib/shared/error_text.ts";

/** How long a target may take from its start to its first answered request. */
const STARTUP_LIMIT_MS = 10_000;
/** How long a started target sits idle before its memory at rest is read. */
const REST_SETTLE_MS = 1_000;

/** A row of the table before it runs. */
interface TargetSpec {
  readonly key: string;
  readonly label: string;
  /** A peer's executable and version flag; skipped when not installed. */
  readonly peer?: { readonly command: string; readonly versionArgs: readonly string[] };
  /** Isolates of ours (memory per isolate is shown for these rows only). */
  readonly isolates?: number;
  start(directory: string, backendPorts: readonly number[]): Promise<RunningPeer>;
}

function ours(key: string, label: string, flags: readonly string[], isLogged = true): TargetSpec {
  return {
    key,
    label,
    // startOursAsPeer puts `--workers 1` before these flags.
    isolates: isolatesOf(["--workers", "1", ...flags]),
    start(directory, backendPorts) {
      const accessLog = isLogged ? ["--access-log", `${directory}/access_${key}.log`] : [];
      return startOursAsPeer(backendPorts, [...accessLog, ...flags]);
    },
  };
}

const TARGETS: readonly TargetSpec[] = [
  {
    key: "nginx",
    label: "nginx {v} as balancer (1 worker, upstream keepalive)",
    peer: { command: "nginx", versionArgs: ["-v"] },
    start: startNginxPeer,
  },
  {
    key: "haproxy",
    label: "HAProxy {v}",
    peer: { command: "haproxy", versionArgs: ["-v"] },
    start: startHaproxyPeer,
  },
  {
    key: "caddy",
    label: "Caddy {v} `reverse_proxy`",
    peer: { command: "caddy", versionArgs: ["version"] },
    start: startCaddyPeer,
  },
  {
    key: "deno-fetch",
    label: "bare 6-line `Deno.serve` + `fetch` proxy",
    start: startBareDenoProxy,
  },
  ours("ours", "ours `--workers 1` (access log to a file)", []),
  ours(
    "ours-auto",
    "ours, no flags (`--workers auto`, access log to stdout, here /dev/null)",
    ["--workers", "auto"],
    false,
  ),
  ours("ours-warning", "ours `--log-level warning` (access log to a file)", [
    "--log-level",
    "warning",
  ]),
  ours(
    "ours-lean",
    "ours `--log-level warning --access-log off`",
    ["--log-level", "warning", "--access-log", "off"],
    false,
  ),
  ours("ours-fetch", "ours `--upstream fetch` (access log to a file)", ["--upstream", "fetch"]),
  ours("ours-http1", "ours `--upstream http1` (access log to a file)", ["--upstream", "http1"]),
  ours("ours-workers2", "ours `--workers 2` (access log to a file)", ["--workers", "2"]),
  ours(
    "ours-http1-workers2",
    "ours `--upstream http1 --workers 2` (access log to a file)",
    ["--upstream", "http1", "--workers", "2"],
  ),
];

/** What `--help` prints. */
function usage(): string {
  return `deno task bench [flags]: one benchmark table, ours beside nginx, HAProxy, Caddy and a
bare Deno.serve + fetch proxy, in front of the same three nginx backends (needs nginx and wrk).

  --slices N         rounds; each runs every target once (default 3)
  --slice DURATION   length of each wrk and loadtest slice (default 5s)
  --warmup DURATION  per target before the rounds (default 3s)
  --connections C    concurrent connections (default 50)
  --idle N           idle keep-alive connections whose memory is measured (default 1000; 0 skips)
  --only KEY,...     targets to run: ${TARGETS.map((target) => target.key).join(",")}
  --json FILE        also write the figures as JSON
  -h, --help         this text`;
}

/** A target while the rounds run. */
interface Running {
  readonly spec: TargetSpec;
  readonly peer: RunningPeer;
  readonly wrk: SliceResult[];
  readonly loadtest: SliceResult[];
  /** CPU microseconds the target's processes spent per request, one per wrk slice. */
  readonly cpuUsPerRequest: number[];
  readonly failures: string[];
  /** From start to the first answered request, ms. */
  readonly startupMs: number;
  /** RSS once started, before any load, kB. */
  readonly restRssKb: number;
  isDead: boolean;
}

/** The commit ours runs from, and whether lib/ or main.ts differ from it. */
async function treeVersion(): Promise<string> {
  const git = async (...args: string[]): Promise<string> => {
    const output = await new Deno.Command("git", {
      args: ["-C", new URL("../../", import.meta.url).pathname, ...args],
      stdout: "piped",
      stderr: "null",
    }).output();
    return new TextDecoder().decode(output.stdout).trim();
  };
  const head = await git("rev-parse", "--short", "HEAD");
  const changed = await git("status", "--porcelain", "--", "lib", "main.ts");
  return `the working tree at ${head || "an unknown commit"}` +
    (changed === "" ? "" : " with uncommitted changes in lib/ or main.ts");
}

function positiveInteger(flag: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) {
    throw new RangeError(`Invalid --${flag} "${value}": must be a positive integer`);
  }
  return number;
}

function selectTargets(only: unknown): readonly TargetSpec[] {
  if (only === undefined) return TARGETS;
  const keys = String(only).split(",").map((key) => key.trim()).filter((key) => key !== "");
  for (const key of keys) {
    if (!TARGETS.some((target) => target.key === key)) {
      throw new TypeError(
        `Invalid --only "${key}": known targets are ${TARGETS.map((t) => t.key).join(", ")}`,
      );
    }
  }
  return TARGETS.filter((target) => keys.includes(target.key));
}

async function runSlice(target: Running, measure: () => Promise<SliceResult>, into: SliceResult[]) {
  try {
    into.push(await measure());
  } catch (error) {
    target.failures.push(errorText(error));
  }
  const trouble = target.peer.trouble();
  if (trouble?.startsWith("exited") === true) target.isDead = true;
}

async function main(args: readonly string[]): Promise<void> {
  if (args.includes("--help") || args.includes("-h")) {
    writeLine(usage());
    return;
  }
  const flags = parseArgs(args, {
    string: ["slices", "slice", "warmup", "connections", "only", "json", "idle"],
    unknown: (arg: string) => {
      throw new TypeError(`Invalid flag "${arg}": see deno task bench --help`);
    },
  });
  const rounds = positiveInteger("slices", flags.slices, 3);
  const sliceMs = parseDuration(String(flags.slice ?? "5s"));
  const warmupMs = parseDuration(String(flags.warmup ?? "3s"));
  const connections = positiveInteger("connections", flags.connections, 50);
  const idleCount = flags.idle === "0" ? 0 : positiveInteger("idle", flags.idle, 1000);
  const wanted = selectTargets(flags.only);
  if (await versionOf("wrk", ["-v"]) === undefined) throw new Error("wrk is not installed");
  if (await versionOf("nginx", ["-v"]) === undefined) throw new Error("nginx is not installed");

  const notes: string[] = [];
  const specs: TargetSpec[] = [];
  const versions: Record<string, string> = {};
  for (const spec of wanted) {
    if (spec.peer === undefined) {
      specs.push(spec);
      continue;
    }
    const version = await versionOf(spec.peer.command, spec.peer.versionArgs);
    if (version === undefined) {
      notes.push(`${spec.label}: skipped, not installed (\`${spec.peer.command}\` not on PATH)`);
      continue;
    }
    versions[spec.key] = version;
    const number = /\d+\.\d+(\.\d+)?/.exec(version)?.[0];
    specs.push({
      ...spec,
      label: spec.label.replace(number === undefined ? "{v} " : "{v}", number ?? ""),
    });
  }
  const sliceSeconds = Math.max(1, Math.round(sliceMs / 1000));
  // Per turn: two slices plus ~1.5 s of tool start-up; per target: start-up and warm-up.
  const expectedSeconds = specs.length * (2 + warmupMs / 1000) +
    rounds * specs.length * (2 * sliceSeconds + 1.5);
  const startedAt = new Date();
  writeLine(
    `bench: ${specs.length} targets x ${rounds} rounds x (wrk + loadtest) slices of ` +
      `${sliceSeconds} s, ${connections} connections; expected about ` +
      `${Math.ceil(expectedSeconds / 60)} min (${startedAt.toISOString()})`,
  );

  const directory = await Deno.makeTempDir({ prefix: "denolb_bench_table_" });
  const www = await writeStaticSite(directory, 612);
  const backends = await startNginxBackends(directory, www, 3);
  const running: Running[] = [];
  try {
    for (const spec of specs) {
      try {
        const spawnedAt = performance.now();
        const peer = await spec.start(directory, backends.ports);
        const startupMs = await firstAnswerAt(peer.url, STARTUP_LIMIT_MS) - spawnedAt;
        // At rest: started and answered once, then left alone for a moment.
        await new Promise((resolve) => setTimeout(resolve, REST_SETTLE_MS));
        const restRssKb = (await treeMemory(peer.pid)).rssKb;
        running.push({
          spec,
          peer,
          wrk: [],
          loadtest: [],
          cpuUsPerRequest: [],
          failures: [],
          startupMs,
          restRssKb,
          isDead: false,
        });
      } catch (error) {
        const reason = errorText(error);
        notes.push(`${spec.label}: skipped, it did not start (${reason})`);
        writeLine(`  ${spec.key} did not start: ${reason}`);
      }
    }
    // A fresh isolate (and a cold upstream pool) is slower at first: warm every target up.
    for (const target of running) await wrkSlice(target.peer.url, connections, warmupMs);
    const jsonPath = `${directory}/loadtest.json`;
    const loads: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const order = running.map((_, i) => running[(i + round) % running.length])
        .filter((target): target is Running => target !== undefined && !target.isDead);
      const cells: string[] = [];
      for (const target of order) {
        const url = target.peer.url;
        const cpuBefore = await treeCpuMs(target.peer.pid);
        const slicesBefore = target.wrk.length;
        await runSlice(target, () => wrkSlice(url, connections, sliceMs), target.wrk);
        const slice = target.wrk.at(-1);
        if (target.wrk.length > slicesBefore && slice !== undefined) {
          const cpuMs = await treeCpuMs(target.peer.pid) - cpuBefore;
          const requests = slice.requestsPerSecond * sliceMs / 1000;
          if (requests > 0) target.cpuUsPerRequest.push(cpuMs * 1000 / requests);
        }
        await runSlice(
          target,
          () => loadtestSlice(url, connections, sliceMs, jsonPath),
          target.loadtest,
        );
        const wrk = target.wrk.at(-1)?.requestsPerSecond.toFixed(0) ?? "failed";
        const own = target.loadtest.at(-1)?.requestsPerSecond.toFixed(0) ?? "failed";
        cells.push(`${target.spec.key} ${wrk}/${own}`);
      }
      const load = await loadAverage();
      loads.push(load);
      writeLine(
        `  round ${round + 1}/${rounds} (wrk/loadtest req/s): ${cells.join(", ")}; ` +
          `load average ${load}`,
      );
    }
    const rows: TableRow[] = [];
    for (const target of running) {
      // Peak first: the idle connections opened next must not count in it.
      const memory = await treeMemory(target.peer.pid);
      let idle: IdleCost | undefined;
      if (idleCount > 0 && !target.isDead) {
        try {
          idle = await measureIdleCost(target.peer.pid, target.peer.url, idleCount);
        } catch (error) {
          target.failures.push(
            `idle connections: ${error instanceof Error ? error.message : String(error)}`,
          );
        }
      }
      const medianOf = (values: readonly SliceResult[], pick: (r: SliceResult) => number) =>
        values.length === 0 ? Number.NaN : median(values.map(pick));
      rows.push({
        key: target.spec.key,
        label: target.spec.label,
        wrkRps: medianOf(target.wrk, (r) => r.requestsPerSecond),
        wrkP50Ms: medianOf(target.wrk, (r) => r.p50Ms),
        wrkP99Ms: medianOf(target.wrk, (r) => r.p99Ms),
        loadtestRps: medianOf(target.loadtest, (r) => r.requestsPerSecond),
        loadtestP50Ms: medianOf(target.loadtest, (r) => r.p50Ms),
        loadtestP99Ms: medianOf(target.loadtest, (r) => r.p99Ms),
        errors: [...target.wrk, ...target.loadtest].reduce((sum, r) => sum + r.errors, 0),
        cpuUsPerRequest: target.cpuUsPerRequest.length === 0
          ? Number.NaN
          : median(target.cpuUsPerRequest),
        peakRssKb: memory.processes === 0 ? Number.NaN : memory.peakRssKb,
        processes: memory.processes,
        restRssKb: target.restRssKb,
        startupMs: target.startupMs,
        idleKbPerConnection: idle?.perConnectionKb ?? Number.NaN,
        idleMarginalKb: idle?.marginalKb ?? Number.NaN,
        idleConnections: idleCount,
        isolates: target.spec.isolates ?? Number.NaN,
        slices: { wrk: target.wrk, loadtest: target.loadtest },
        trouble: [...target.failures],
      });
      const trouble = target.peer.trouble();
      if (trouble !== undefined) rows.at(-1)?.trouble.push(trouble);
    }
    const report = formatTable(rows, {
      date: startedAt,
      rounds,
      sliceSeconds,
      connections,
      versions,
      peerSettings: PEER_SETTINGS,
      extraNotes: [
        ...notes,
        `ours: ${await treeVersion()}.`,
        `1-minute load average at the end of each round: ${loads.join(", ")} ` +
        `(${navigator.hardwareConcurrency} cores; above that, other work shared the machine).`,
      ],
    });
    writeLine("");
    for (const line of report.lines) writeLine(line);
    if (flags.json !== undefined) {
      await Deno.writeTextFile(
        String(flags.json),
        `${JSON.stringify({ ...report.json, rows }, null, 2)}\n`,
      );
    }
  } finally {
    for (const target of running) await target.peer.stop();
    await backends.stop();
    await Deno.remove(directory, { recursive: true });
  }
}

if (import.meta.main) await main(Deno.args);
