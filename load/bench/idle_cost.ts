/**
 * What one idle keep-alive client connection costs our balancer in resident memory, old and new
 * tree side by side: each round starts one balancer per tree (alternating which goes first),
 * warms it with a short `wrk` slice (as the benchmark table's slices do before it measures),
 * then opens 1000 idle connections and 1000 more (`bench_memory.ts`) and reads RSS after each.
 * A benchmark, not a test: it needs `nginx` and `wrk` on PATH and Linux's `/proc`.
 *
 * ```sh
 * deno run -A load/bench/idle_cost.ts                          # this tree, 3 rounds
 * deno run -A load/bench/idle_cost.ts --baseline /tmp/old      # another checkout beside it
 * deno run -A load/bench/idle_cost.ts --rounds 5 --idle 1000 --lb="--workers 1"
 * ```
 *
 * Flags: `--rounds` (default 3), `--idle` connections per step (default 1000), `--warmup`
 * seconds of `wrk -c50` first (default 2; 0 skips), `--baseline DIR` (a tree holding `main.ts`),
 * `--lb="FLAGS"` (added to `main.ts lb --workers 1 --access-log FILE`).
 *
 * @module
 */
import { parseArgs } from "../../lib/shared/std.ts";
import { measureIdleCost } from "./bench_memory.ts";
import { wrkSlice } from "./bench_drivers.ts";
import { loadAverage, startNginxBackends } from "./bench_processes.ts";
import { startOursAsPeer } from "./bench_peers.ts";
import { median, writeLine, writeStaticSite } from "./bench_support.ts";

/** One tree's figures in one round. */
interface Figures {
  readonly firstKb: number;
  readonly nextKb: number;
}

async function main(args: readonly string[]): Promise<void> {
  const flags = parseArgs([...args], {
    string: ["rounds", "idle", "warmup", "baseline", "lb"],
  });
  const rounds = Number(flags.rounds ?? 3);
  const idle = Number(flags.idle ?? 1000);
  const warmupSeconds = Number(flags.warmup ?? 2);
  for (const [name, value] of [["rounds", rounds], ["idle", idle], ["warmup", warmupSeconds]]) {
    if (!Number.isInteger(value) || (value as number) < (name === "warmup" ? 0 : 1)) {
      throw new RangeError(`Invalid --${name} "${value}": it must be a whole number`);
    }
  }
  const extra = typeof flags.lb === "string" ? flags.lb.split(/\s+/).filter((f) => f !== "") : [];
  const trees: { readonly name: string; readonly flags: readonly string[] }[] = [
    { name: "this tree", flags: [] },
  ];
  if (typeof flags.baseline === "string") {
    trees.push({ name: "baseline", flags: [`--bench-main=${flags.baseline}/main.ts`] });
  }
  const directory = await Deno.makeTempDir({ prefix: "denolb_bench_idle_" });
  const www = await writeStaticSite(directory, 612);
  const backends = await startNginxBackends(directory, www, 3);
  const results = new Map<string, Figures[]>(trees.map((t) => [t.name, []]));
  try {
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? trees : [...trees].reverse();
      for (const tree of order) {
        const peer = await startOursAsPeer(backends.ports, [
          "--access-log",
          `${directory}/access.log`,
          ...tree.flags,
          ...extra,
        ]);
        try {
          if (warmupSeconds > 0) await wrkSlice(peer.url, 50, warmupSeconds * 1000);
          const cost = await measureIdleCost(peer.pid, peer.url, idle);
          const figures = { firstKb: cost.perConnectionKb, nextKb: cost.marginalKb };
          results.get(tree.name)?.push(figures);
          writeLine(
            `round ${round + 1} ${tree.name.padEnd(9)} KB per idle conn ` +
              `${figures.firstKb.toFixed(1)} / ${figures.nextKb.toFixed(1)} ` +
              `(RSS before ${(cost.beforeKb / 1024).toFixed(1)} MB, load ${await loadAverage()})`,
          );
        } finally {
          await peer.stop();
        }
      }
    }
  } finally {
    await backends.stop();
    await Deno.remove(directory, { recursive: true });
  }
  for (const [name, figures] of results) {
    writeLine(
      `${name.padEnd(9)} median KB per idle conn ${
        median(figures.map((f) => f.firstKb)).toFixed(1)
      } / ${median(figures.map((f) => f.nextKb)).toFixed(1)} over ${figures.length} rounds`,
    );
  }
}

if (import.meta.main) await main(Deno.args);
