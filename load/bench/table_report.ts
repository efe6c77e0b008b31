/**
 * The benchmark table's report: one Markdown table of medians and ratios, then notes (machine,
 * method, peer settings, the issue's ratio targets, anything odd). Pure: rows in, lines out.
 *
 * @module
 */
import type { SliceResult } from "./bench_drivers.ts";

/** One target's medians and memory. */
export interface TableRow {
  readonly key: string;
  readonly label: string;
  readonly wrkRps: number;
  readonly wrkP50Ms: number;
  readonly wrkP99Ms: number;
  readonly loadtestRps: number;
  readonly loadtestP50Ms: number;
  readonly loadtestP99Ms: number;
  /** Failed requests over all slices of both tools. */
  readonly errors: number;
  /** Median CPU microseconds per request over the wrk slices, its process tree's. */
  readonly cpuUsPerRequest: number;
  /** VmHWM summed over the target's process tree (NaN when it was gone). */
  readonly peakRssKb: number;
  readonly processes: number;
  /** VmRSS summed over the tree once started, before any load (NaN when unknown). */
  readonly restRssKb: number;
  /** From spawn to the first answered request, ms (NaN when unknown). */
  readonly startupMs: number;
  /** RSS added per idle keep-alive connection, kB (NaN when not measured). */
  readonly idleKbPerConnection: number;
  /** RSS added per idle connection by as many again, kB: one more connection's cost. */
  readonly idleMarginalKb: number;
  /** How many idle connections that figure comes from. */
  readonly idleConnections: number;
  /** Isolates of ours (NaN for the peers, whose memory is not split). */
  readonly isolates: number;
  readonly slices: {
    readonly wrk: readonly SliceResult[];
    readonly loadtest: readonly SliceResult[];
  };
  /** Failed slices, exits and stderr output. */
  readonly trouble: string[];
}

/** How the run went, for the notes. */
export interface TableContext {
  readonly date: Date;
  readonly rounds: number;
  readonly sliceSeconds: number;
  readonly connections: number;
  /** Peer key to its version line. */
  readonly versions: Readonly<Record<string, string>>;
  /** Peer key to its settings. */
  readonly peerSettings: Readonly<Record<string, string>>;
  /** More notes (skipped peers, the version of ours), one sentence each. */
  readonly extraNotes: readonly string[];
}

/** A ratio the issue sets a target for: `numerator / denominator >= target`. */
interface RatioTarget {
  readonly name: string;
  readonly numerator: string;
  readonly denominator: string;
  readonly target: number;
}

const RATIO_TARGETS: readonly RatioTarget[] = [
  {
    name: "access log on / off (both --log-level warning)",
    numerator: "ours-warning",
    denominator: "ours-lean",
    target: 0.95,
  },
  {
    name: "ours --log-level warning --access-log off / bare fetch proxy",
    numerator: "ours-lean",
    denominator: "deno-fetch",
    target: 0.9,
  },
  {
    name: "ours --upstream http1 / Caddy",
    numerator: "ours-http1",
    denominator: "caddy",
    target: 1.5,
  },
  {
    name: "ours --upstream http1 --workers 2 / Caddy (both on two cores)",
    numerator: "ours-http1-workers2",
    denominator: "caddy",
    target: 1.5,
  },
  {
    name: "ours defaults (no flags) / Caddy (the goal)",
    numerator: "ours-auto",
    denominator: "caddy",
    target: 1,
  },
  {
    name: "ours defaults (no flags) / bare fetch proxy (the goal)",
    numerator: "ours-auto",
    denominator: "deno-fetch",
    target: 0.9,
  },
  { name: "ours --workers 1 / Caddy", numerator: "ours", denominator: "caddy", target: 1 },
  {
    name: "ours --workers 1 / bare fetch proxy (both one isolate)",
    numerator: "ours",
    denominator: "deno-fetch",
    target: 0.9,
  },
];

/** The memory and start-up goals, checked on every ours row. */
const MEMORY_GOALS = {
  peakMbPerIsolate: 100,
  restMbPerIsolate: 60,
  idleKbPerConnection: 20,
  startupMs: 300,
} as const;

function mb(kb: number): string {
  return Number.isFinite(kb) ? `${(kb / 1024).toFixed(0)}` : "n/a";
}

/** `total MB` and, for ours with several isolates, `/ per isolate`. */
function perIsolate(kb: number, isolates: number): string {
  if (!Number.isFinite(kb)) return "n/a";
  if (!Number.isFinite(isolates) || isolates <= 1) return `${mb(kb)} MB`;
  return `${mb(kb)} MB (${mb(kb / isolates)}/isolate)`;
}

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "n/a";
}

function ms(value: number): string {
  return Number.isFinite(value) ? `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ms` : "n/a";
}

function cpuModel(): string {
  try {
    const text = Deno.readTextFileSync("/proc/cpuinfo");
    return /^model name\s*:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? "unknown CPU";
  } catch {
    return "unknown CPU";
  }
}

/**
 * Renders the table and its notes, and the same figures for JSON.
 *
 * @param rows One per target, in table order.
 * @param context How the run went.
 * @returns The Markdown lines and a JSON-ready summary (ratios, notes).
 */
export function formatTable(
  rows: readonly TableRow[],
  context: TableContext,
): { lines: string[]; json: Record<string, unknown> } {
  const byKey = new Map(rows.map((row) => [row.key, row]));
  const nginx = byKey.get("nginx")?.wrkRps ?? Number.NaN;
  const caddy = byKey.get("caddy")?.wrkRps ?? Number.NaN;
  const lines = [
    "| target | req/s (wrk) | p50 | p99 | req/s (our loadtest) | CPU µs/req | peak RSS | " +
    "RSS at rest | KB per idle conn | startup | x nginx | x Caddy |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const row of rows) {
    const processes = row.processes > 1 ? ` (${row.processes} proc)` : "";
    const rss = `${perIsolate(row.peakRssKb, row.isolates)}${processes}`;
    lines.push(
      `| ${row.label} | ${fixed(row.wrkRps, 0)} | ${ms(row.wrkP50Ms)} | ${ms(row.wrkP99Ms)} | ` +
        `${fixed(row.loadtestRps, 0)} | ${fixed(row.cpuUsPerRequest, 0)} | ${rss} | ` +
        `${perIsolate(row.restRssKb, row.isolates)} | ` +
        `${fixed(row.idleKbPerConnection, 1)} / ${fixed(row.idleMarginalKb, 1)} | ` +
        `${Number.isFinite(row.startupMs) ? `${row.startupMs.toFixed(0)} ms` : "n/a"} | ` +
        `${fixed(row.wrkRps / nginx, 2)} | ` +
        `${fixed(row.wrkRps / caddy, 2)} |`,
    );
  }
  const ratios = RATIO_TARGETS.flatMap((ratio) => {
    const top = byKey.get(ratio.numerator);
    const bottom = byKey.get(ratio.denominator);
    if (top === undefined || bottom === undefined) return [];
    return [{
      ...ratio,
      wrk: top.wrkRps / bottom.wrkRps,
      loadtest: top.loadtestRps / bottom.loadtestRps,
    }];
  });
  const notes: string[] = [
    `Measured ${context.date.toISOString().slice(0, 16).replace("T", " ")} UTC on one machine ` +
    `(${navigator.hardwareConcurrency} cores, ${cpuModel()}, Linux ${Deno.osRelease()}, ` +
    `deno ${Deno.version.deno}): the load generators, every balancer and the three nginx ` +
    `backends (one worker, a 612 B static file) share the cores, all on 127.0.0.1. Absolute ` +
    `rates drift from run to run; ratios measured in one run hold.`,
    `Each round runs every target once, order rotated: a \`wrk -t1 -c${context.connections} ` +
    `--latency\` slice, then a \`main.ts loadtest -c ${context.connections} --workers 1\` ` +
    `slice (closed model), ${context.sliceSeconds} s each; figures are medians over ` +
    `${context.rounds} round${context.rounds === 1 ? "" : "s"}; p50/p99 are wrk's. x nginx ` +
    `and x Caddy divide the wrk rates.`,
    `CPU µs/req is the CPU time (user and system) the target's processes spent during each wrk ` +
    `slice divided by the requests it served, median over the rounds: what a request costs, ` +
    `which holds steadier than req/s when other work shares the cores.`,
    `Peak RSS is VmHWM at the end of the run (warm-up and both tools included), summed over ` +
    `the target's processes. Ours is one process whatever its isolates: \`--workers 2\` holds ` +
    `two data-plane isolates and the control plane. Every ours row runs \`--workers 1\` ` +
    `(auto would be one isolate per core) and \`--admin off\` unless it says otherwise.`,
    `RSS at rest is VmRSS once the target answered its first request and sat idle for a ` +
    `second; for ours with several isolates both RSS figures are also shown divided by them. ` +
    `KB per idle conn: VmRSS with ${rows[0]?.idleConnections ?? 0} client connections open ` +
    `(one request each, then silent for a second) minus VmRSS before, per connection, after ` +
    `the rounds; after the slash, what as many more added per connection (without the ` +
    `one-off growth the first ones cause: heap grown for their requests, code compiled). Startup: from spawning the target to its first 2xx answer through it ` +
    `(polled every 5 ms; the balancers' process start, module loading and first forward).`,
  ];
  for (const [key, settings] of Object.entries(context.peerSettings)) {
    if (!byKey.has(key)) continue;
    const version = context.versions[key];
    notes.push(`${key}${version === undefined ? "" : ` (${version})`}: ${settings}.`);
  }
  notes.push(...context.extraNotes);
  for (const ratio of ratios) {
    notes.push(
      `${ratio.name}: ${fixed(ratio.wrk, 2)}x with wrk, ${fixed(ratio.loadtest, 2)}x with our ` +
        `loadtest (goal >= ${ratio.target}).`,
    );
  }
  for (const row of rows) {
    if (!Number.isFinite(row.isolates)) continue;
    const checks = [
      ["peak RSS per isolate", row.peakRssKb / row.isolates / 1024, MEMORY_GOALS.peakMbPerIsolate],
      [
        "RSS at rest per isolate",
        row.restRssKb / row.isolates / 1024,
        MEMORY_GOALS.restMbPerIsolate,
      ],
      ["KB per idle connection", row.idleKbPerConnection, MEMORY_GOALS.idleKbPerConnection],
      ["startup ms", row.startupMs, MEMORY_GOALS.startupMs],
    ] as const;
    notes.push(
      `${row.key} memory and start-up goals: ` +
        checks.map(([name, value, goal]) =>
          `${name} ${fixed(value, 1)} (goal <= ${goal}: ${value <= goal ? "met" : "not met"})`
        ).join(", ") + ".",
    );
  }
  for (const row of rows) {
    if (row.errors > 0) notes.push(`${row.key}: ${row.errors} failed requests over its slices.`);
    for (const trouble of row.trouble) notes.push(`${row.key}: ${trouble}`);
  }
  return {
    lines: [...lines, "", ...notes.map((note) => `- ${note}`)],
    json: { date: context.date.toISOString(), context, ratios, notes },
  };
}
