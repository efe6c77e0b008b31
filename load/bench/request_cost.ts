/**
 * CPU cost per request, side by side (`deno task bench:cost`): the bare `Deno.serve` + `fetch`
 * proxy and our balancer in several shapes, all running at once in front of the same three nginx
 * backends, each driven by its own `wrk` in the same seconds. A benchmark, not a test: it needs
 * `nginx` and `wrk` on PATH and Linux's `/proc`.
 *
 * ```sh
 * deno task bench:cost                                   # 6 rounds of 5 s slices
 * deno task bench:cost --rounds 10 --only bare,ours-lean,ours-defaults
 * ```
 *
 * Why at once rather than in turn (as `deno task bench` does for req/s): on a shared 2-core
 * machine the speed of the whole machine drifts by a factor of two within minutes, so slices
 * taken in turn disagree by far more than the few percent an optimisation is worth. Targets
 * that run in the same seconds share that drift. Each round gives every target's CPU
 * microseconds per request (CPU time of its process tree from `/proc`, over the requests `wrk`
 * completed) and its ratio to the first target's in the same round; the report gives the
 * medians. Absolute figures are inflated by the shared cores and mean little. Keep to about four
 * targets: more, and each gets too small a share of the cores for a steady figure.
 *
 * Flags: `--rounds N` (default 6), `--slice D` (default 5s), `--connections C` per target
 * (default 20), `--only KEY,...` (the first is the reference), `--baseline DIR` (each ours
 * target again, run from the copy of the tree in DIR, such as
 * `git archive HEAD~1 | tar -x -C DIR`).
 *
 * @module
 */
import { parseDuration } from "../../lib/shared/duration.ts";
import { parseArgs } from "../../lib/shared/std.ts";
import { type RunningPeer, startBareDenoProxy, startOursAsPeer } from "./bench_peers.ts";
import { startNginxBackends, treeCpuMs, treeMemory } from "./bench_processes.ts";
import { median, runTool, writeLine, writeStaticSite, wrkErrors } from "./bench_support.ts";

/** A target before it runs. */
interface CostTarget {
  readonly key: string;
  readonly label: string;
  start(
    directory: string,
    backendPorts: readonly number[],
    more?: readonly string[],
  ): Promise<RunningPeer>;
}

const LEAN = ["--log-level", "warning", "--access-log", "off"];

function ours(key: string, label: string, flags: (directory: string) => string[]): CostTarget {
  return {
    key,
    label,
    start: (directory, backendPorts, more = []) =>
      startOursAsPeer(backendPorts, [...flags(directory), ...more]),
  };
}

/** Every target, the reference first; the first four run by default. */
const TARGETS: readonly CostTarget[] = [
  { key: "bare", label: "bare Deno.serve + fetch", start: startBareDenoProxy },
  ours("ours-lean", "ours: warning, access log off", () => LEAN),
  ours(
    "ours-lean-native",
    "ours lean, --websocket off (no peek at new connections)",
    () => [...LEAN, "--websocket", "off"],
  ),
  ours("ours-http1", "ours lean, --upstream http1", () => [...LEAN, "--upstream", "http1"]),
  ours("ours-fetch", "ours lean, --upstream fetch", () => [...LEAN, "--upstream", "fetch"]),
  ours("ours-workers2", "ours lean, --workers 2", () => [...LEAN, "--workers", "2"]),
  ours(
    "ours-logged",
    "ours: warning, access log to a file",
    (directory) => ["--log-level", "warning", "--access-log", `${directory}/access_logged.log`],
  ),
  ours(
    "ours-defaults",
    "ours: defaults, access log to a file",
    (directory) => ["--access-log", `${directory}/access.log`],
  ),
  // V8's young generation (`deno task lb` runs with 8 MB semi-spaces; 0 is V8's own choice,
  // from the machine's memory): smaller semi-spaces mean a smaller peak RSS, more scavenges.
  ...[0, 4, 16].map((mb) =>
    ours(
      `ours-defaults-semi${mb}`,
      `ours: defaults, access log to a file, --max-semi-space-size=${mb}`,
      (directory) => [
        `--v8-flags=--max-semi-space-size=${mb}`,
        "--access-log",
        `${directory}/access_semi${mb}.log`,
      ],
    )
  ),
];

/** One target's figures over the rounds. */
interface CostResult {
  readonly target: CostTarget;
  readonly peer: RunningPeer;
  readonly cpuMicrosPerRequest: number[];
  readonly ratioToReference: number[];
  errors: number;
}

async function wrkRequests(url: string, connections: number, seconds: number) {
  const text = await runTool("wrk", ["-t1", `-c${connections}`, `-d${seconds}s`, url]);
  return { requests: Number(text.match(/(\d+) requests in/)?.[1] ?? 0), errors: wrkErrors(text) };
}

async function run(args: readonly string[]): Promise<void> {
  const flags = parseArgs(args, {
    string: ["rounds", "slice", "connections", "only", "baseline"],
  });
  const rounds = Number(flags.rounds ?? 6);
  const seconds = parseDuration(String(flags.slice ?? "5s")) / 1000;
  const connections = Number(flags.connections ?? 20);
  const only = flags.only === undefined ? undefined : String(flags.only).split(",");
  const chosen = only === undefined ? TARGETS.slice(0, 4) : only.map((key) => {
    const target = TARGETS.find((t) => t.key === key);
    if (target === undefined) throw new Error(`Unknown target ${key}`);
    return target;
  });
  const baseline = flags.baseline === undefined ? undefined : String(flags.baseline);
  // The same shapes of ours again, run from another copy of the tree: old and new side by side.
  const targets = baseline === undefined ? chosen : [
    ...chosen,
    ...chosen.filter((t) => t.key.startsWith("ours")).map((t) => ({
      key: `${t.key}@baseline`,
      label: `${t.label} (baseline ${baseline})`,
      start: (directory: string, backendPorts: readonly number[]) =>
        t.start(directory, backendPorts, [`--bench-main=${baseline}/main.ts`]),
    })),
  ];
  const directory = await Deno.makeTempDir({ prefix: "denolb-cost-" });
  const site = await writeStaticSite(directory, 100);
  const backends = await startNginxBackends(directory, site, 3);
  const results: CostResult[] = [];
  try {
    for (const target of targets) {
      const peer = await target.start(directory, backends.ports);
      results.push({ target, peer, cpuMicrosPerRequest: [], ratioToReference: [], errors: 0 });
    }
    await Promise.all(results.map((r) => wrkRequests(r.peer.url, connections, 2)));
    /** One slice of one target: its CPU microseconds per request. */
    const slice = async (result: CostResult): Promise<number> => {
      const before = await treeCpuMs(result.peer.pid);
      const { requests, errors } = await wrkRequests(result.peer.url, connections, seconds);
      result.errors += errors;
      return (await treeCpuMs(result.peer.pid) - before) * 1000 / Math.max(1, requests);
    };
    for (let round = 1; round <= rounds; round++) {
      const costs = await Promise.all(results.map(slice));
      const reference = costs[0] ?? Number.NaN;
      results.forEach((result, i) => {
        const cost = costs[i] ?? Number.NaN;
        result.cpuMicrosPerRequest.push(cost);
        result.ratioToReference.push(cost / reference);
      });
      writeLine(`round ${round}/${rounds}: ${costs.map((c) => c.toFixed(0)).join(" ")} µs/req`);
      const exited = results.find((r) => r.peer.trouble()?.startsWith("exited") === true);
      if (exited !== undefined) {
        throw new Error(`${exited.target.key} ${exited.peer.trouble()}`);
      }
    }
    writeLine("");
    writeLine(
      `${rounds} rounds of ${seconds} s, wrk -t1 -c${connections} per target, all at once; ` +
        `ratio = CPU per request / ${targets[0]?.key}'s in the same round`,
    );
    writeLine("| target | CPU µs/req | ratio | ratio per round | peak RSS | wrk errors |");
    writeLine("|---|---:|---:|---|---:|---:|");
    for (const r of results) {
      // VmHWM over the whole run: what the target's heap settings let it grow to under load.
      const memory = await treeMemory(r.peer.pid);
      writeLine(
        `| ${r.target.label} | ${median(r.cpuMicrosPerRequest).toFixed(1)} | ` +
          `${median(r.ratioToReference).toFixed(2)} | ` +
          `${r.ratioToReference.map((x) => x.toFixed(2)).join(" ")} | ` +
          `${(memory.peakRssKb / 1024).toFixed(0)} MB | ${r.errors} |`,
      );
    }
    for (const r of results) {
      const trouble = r.peer.trouble();
      if (trouble !== undefined) writeLine(`- ${r.target.key}: ${trouble}`);
    }
  } finally {
    await Promise.all(results.map((r) => r.peer.stop()));
    await backends.stop();
    await Deno.remove(directory, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await run(Deno.args);
