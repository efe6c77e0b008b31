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
 * `--json FILE`.
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
import { median, writeLine, writeStaticSite } from "./bench_support.ts";
import { formatTable, type TableRow } from "./table_report.ts";
import { errorText } from "../../lib/shared/error_text.ts";

/** A row of the table before it runs. */
interface TargetSpec {
  readonly key: string;
  readonly label: string;
  /** A peer's executable and version flag; skipped when not installed. */
  readonly peer?: { readonly command: string; readonly versionArgs: readonly string[] };
  start(directory: string, backendPorts: readonly number[]): Promise<RunningPeer>;
}

function ours(key: string, label: string, flags: readonly string[], isLogged = true): TargetSpec {
  return {
    key,
    label,
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
  ours("ours", "ours, defaults (access log to a file)", []),
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
    string: ["slices", "slice", "warmup", "connections", "only", "json"],
    unknown: (arg: string) => {
      throw new TypeError(`Invalid flag "${arg}": see deno task bench --help`);
    },
  });
  const rounds = positiveInteger("slices", flags.slices, 3);
  const sliceMs = parseDuration(String(flags.slice ?? "5s"));
  const warmupMs = parseDuration(String(flags.warmup ?? "3s"));
  const connections = positiveInteger("connections", flags.connections, 50);
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
        const peer = await spec.start(directory, backends.ports);
        running.push({
          spec,
          peer,
          wrk: [],
          loadtest: [],
          cpuUsPerRequest: [],
          failures: [],
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
      const memory = await treeMemory(target.peer.pid);
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
