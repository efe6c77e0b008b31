/**
 * Every flag of `loadtest`, declared once: its name, value, default and help. The parser's flag
 * lists (`flags.ts`), `loadtest --help` (`help.ts`) and the flag tables of the reference
 * (`deno task docs`) derive from {@linkcode LOADTEST_FLAG_SECTIONS}; a new flag is one entry here
 * plus the code that reads it in `options.ts`.
 *
 * @module
 */

/** The defaults of the original Python load tester's flags, kept. */
export const DEFAULTS = {
  url: "http://127.0.0.1:9090/",
  total: 200,
  concurrency: 50,
  timeoutMs: 5000,
  rounds: 1,
} as const;

/** One flag of `loadtest`. */
export interface LoadtestFlag {
  /** The long name, without `--`: `concurrency`. */
  readonly name: string;
  /** A one-letter alias, without `-`: `c`. Default: none. */
  readonly short?: string;
  /** What its value is called in the help: `N...`. Default: none (a switch without a value). */
  readonly metavar?: string;
  /** Whether it may be given more than once, each value kept. Default: false. */
  readonly isRepeatable?: boolean;
  /** Whether the switch is written `--no-NAME` (its default is on). Default: false. */
  readonly isNegated?: boolean;
  /** What it does (wrapped in the help). */
  readonly help: string;
  /** Its default, as the help writes it. Default: none. */
  readonly default?: string;
}

/** A titled group of flags, in help order. */
export interface LoadtestFlagSection {
  /** The heading. */
  readonly title: string;
  /** Its flags, in order. */
  readonly flags: readonly LoadtestFlag[];
  /** A paragraph printed after the flags. Default: none. */
  readonly note?: string;
}

/** Every flag of `loadtest`, by section, in help order. */
export const LOADTEST_FLAG_SECTIONS: readonly LoadtestFlagSection[] = [
  {
    title: "Target and request",
    flags: [
      { name: "url", metavar: "URL", help: "Target (http or https).", default: DEFAULTS.url },
      { name: "method", metavar: "METHOD", help: "HTTP method.", default: "GET" },
      {
        name: "header",
        short: "H",
        metavar: '"N: V"',
        isRepeatable: true,
        help: "Request header; repeatable.",
      },
      { name: "body", metavar: "TEXT", help: "Request body." },
      { name: "body-file", metavar: "PATH", help: "Request body read from a file." },
      {
        name: "targets",
        metavar: "FILE",
        help: 'Mixed traffic from a vegeta-format file: blank-line separated targets of "METHOD ' +
          'URL", header lines and an optional @body-file line; "# weight: N" weights a target ' +
          "(default: take turns). -H headers apply to every target. Replaces --url, --method " +
          "and --body.",
      },
      {
        name: "timeout",
        metavar: "DURATION",
        help: "Per-request timeout, to the end of the body; a bare number is seconds (as the " +
          "original Python load tester's --timeout 4).",
        default: `${DEFAULTS.timeoutMs / 1000}s`,
      },
      {
        name: "keepalive",
        isNegated: true,
        help: "A new connection per request (as the original Python load tester's " +
          "requests.get).",
        default: "keep-alive",
      },
      {
        name: "success",
        metavar: "STATUSES",
        help: "Statuses that count as success: codes, classes, ranges (a 5xx is an error).",
        default: "2xx,3xx",
      },
    ],
  },
  {
    title: "Load (closed model, as the original Python load tester)",
    note: "While the target stalls, the closed model's users wait instead of arriving, so a " +
      "stall barely moves the percentiles: a run whose max is far above its p99.9 says so; " +
      "use --rate to see what arriving users would wait.",
    flags: [
      {
        name: "concurrency",
        short: "c",
        metavar: "N...",
        help: "Concurrency levels, space- or comma-separated: 25 50 100 or 25,50,100. Each " +
          "level runs --rounds times.",
        default: String(DEFAULTS.concurrency),
      },
      {
        name: "total",
        metavar: "N",
        help: "Requests per run.",
        default: String(DEFAULTS.total),
      },
      {
        name: "duration",
        metavar: "DURATION",
        help: "Run for a time instead of --total; requests still in flight at the end enter " +
          "the latency with the time they had waited (not waited for).",
      },
      { name: "rounds", metavar: "N", help: "Runs per level.", default: String(DEFAULTS.rounds) },
      {
        name: "warmup",
        metavar: "DURATION",
        help: "Unrecorded warm-up at the first level before measuring.",
      },
    ],
  },
  {
    title: "Load (open model)",
    flags: [
      {
        name: "rate",
        metavar: "R...",
        help: "Constant arrival rates in requests/s, space- or comma-separated. A request " +
          "that waited for a free slot under --max-in-flight is timed from its planned start " +
          "(no coordinated omission); the generator's own lateness (timers, CPU) is measured " +
          "apart and kept out of the latency, and when the generator fell behind the report " +
          "says so. Use with --duration (or --total).",
      },
      {
        name: "stages",
        metavar: "D:R,...",
        help: "Ramping arrival rate (k6's ramping-arrival-rate): each stage moves the rate " +
          "linearly from the previous target (0 at the start) to R req/s over D, e.g. " +
          "30s:100,1m:500,30s:0; replaces --rate and --duration, timed from each request's " +
          "intended start as --rate.",
      },
      {
        name: "max-in-flight",
        metavar: "N",
        help: "Cap on requests in flight; a run that reaches the cap and runs late says so.",
        default: "rate x timeout, at most 1000 and at most the open-files limit less 64 (from " +
          "/proc/self/limits)",
      },
    ],
  },
  {
    title: "Scale",
    flags: [
      {
        name: "workers",
        metavar: "N",
        help: "Web Workers to spread the load over; results merge exactly.",
        default: "decided without sending anything: 1 for runs under 20000 requests; else " +
          "half the cores when the target is on this machine (it needs CPU too: 1 on 2 " +
          "cores), one per core when it is elsewhere; never more than the lowest concurrency, " +
          "or one per 20000 req/s of rate. The header line says which rule decided",
      },
      {
        name: "shard",
        metavar: "I/N",
        help: "Be shard I (counting from 0) of N load generators run side by side, here or on " +
          "other machines (a Kubernetes Indexed Job: denolb kube loadtest): this one makes its " +
          "share of every concurrency level, rate, stage and --total; --duration stays. " +
          "Combine their --json results with loadtest merge.",
        default: "0/1 (the whole load)",
      },
      {
        name: "transport",
        metavar: "MODE",
        help: "auto (lean HTTP/1.1 client for http, fetch for https), fetch or http1.",
        default: "auto",
      },
    ],
  },
  {
    title: "Output (paths are checked before the run starts)",
    flags: [
      {
        name: "json",
        metavar: "FILE",
        help: "Full results: per run the label (c25-r1), counts, errors by class, rps, meanMs, " +
          "p50Ms ... p999Ms, maxMs (null, shown as n/a, when nothing succeeded) and the " +
          'encoded histogram (input of merge). "-" writes it to stdout and moves the text ' +
          "report to stderr.",
      },
      { name: "csv", metavar: "FILE", help: 'One row per run; "-" for stdout, as --json.' },
      { name: "markdown", help: "Print the report as Markdown." },
      {
        name: "chart",
        metavar: "FILE.svg",
        help: "Throughput and p50/p95/p99 against concurrency or rate (against time for a " +
          "single rate run); SVG only.",
      },
      {
        name: "html",
        metavar: "FILE.html",
        help: "One self-contained page: settings, summary, charts, and each run with its " +
          "histogram and status distribution.",
      },
      { name: "quiet", help: "No live view or progress lines." },
    ],
    note: "While a run goes, stderr shows elapsed time, req/s, errors by class and rolling " +
      "p50/p99: one line redrawn in place on a terminal, a plain line every 5s otherwise.",
  },
  {
    title: "Thresholds (exit 1 when breached, with a line saying which and by how much)",
    flags: [
      {
        name: "max-error-rate",
        metavar: "X",
        help: "Highest share of failed requests: 0.01 or 1%.",
      },
      {
        name: "max-p99",
        metavar: "DURATION",
        help: "Highest p99 latency, such as 200ms (a bare number is seconds, so --max-p99 200 " +
          "is 200s and earns a warning).",
      },
      {
        name: "threshold",
        metavar: "RULE",
        isRepeatable: true,
        help: "A rule on any statistic, repeatable (as k6): STAT OP LIMIT with STAT mean, p50, " +
          "p90, p95, p99, p99.9, max, rps or errors and OP < <= > >=: 'p95<200ms', " +
          "'errors<1%', 'rps>=1000'. Checked against every run; n/a (nothing succeeded) never " +
          "passes.",
      },
      {
        name: "find-capacity",
        help: "Ramp from the first level (x2 each step) until errors (over --max-error-rate, " +
          "default any), unsent requests or --max-p99, bisect, and report the highest level " +
          "that held; the thresholds then judge levels instead of failing the command.",
      },
    ],
  },
  {
    title: "Other",
    flags: [{ name: "help", short: "h", help: "Show this help." }],
  },
];

/** Every flag of `loadtest`, in help order. */
export const LOADTEST_FLAGS: readonly LoadtestFlag[] = LOADTEST_FLAG_SECTIONS.flatMap((
  section,
) => section.flags);

/**
 * How a flag is written in the help: `-c, --concurrency N...`, `--no-keepalive`.
 *
 * @param flag The flag.
 * @returns Its synopsis.
 *
 * @example
 * ```ts
 * import { flagSynopsis, LOADTEST_FLAGS } from "./flag_table.ts";
 * const c = LOADTEST_FLAGS.find((flag) => flag.name === "concurrency");
 * if (c === undefined || flagSynopsis(c) !== "-c, --concurrency N...") throw new Error();
 * ```
 */
export function flagSynopsis(flag: LoadtestFlag): string {
  const long = `--${flag.isNegated === true ? "no-" : ""}${flag.name}`;
  const names = flag.short === undefined ? long : `-${flag.short}, ${long}`;
  return flag.metavar === undefined ? names : `${names} ${flag.metavar}`;
}
