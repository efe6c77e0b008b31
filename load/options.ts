/**
 * Flags of `loadtest` into a validated {@linkcode LoadPlan} (or a `merge` command), checked once
 * before any request is sent. Compatible with the original Python load tester:
 * `--url --total --concurrency --rounds --timeout` with its defaults, and
 * `--concurrency 25 50 100` as a space-separated list.
 *
 * @module
 */
import { isHttpToken } from "../lib/shared/tokens.ts";
import { UsageError } from "../lib/shared/command.ts";
import { formatDuration, formatDurationText, MAX_TIMER_MS } from "../lib/shared/duration.ts";
import { parseStages, peakRate, type Stage } from "./arrivals.ts";
import { parseTargets, type Target } from "./targets.ts";
import { parseThresholdRule, type Thresholds } from "./threshold_rules.ts";
import { parseArgs } from "../lib/shared/std.ts";
import {
  BOOLEAN_FLAGS,
  FLAG_ALIASES,
  Flags,
  joinListValues,
  NEGATED_FLAGS,
  parseDurationFlag,
  parseList,
  parseValue,
  positiveInteger,
  positiveNumber,
  REPEATABLE_FLAGS,
  STRING_FLAGS,
} from "./flags.ts";
import type { Stop } from "./scheduler.ts";
import { parseShard, type Shard, shareOfLoad } from "./shard.ts";
import { DEFAULT_SUCCESS_STATUSES, parseStatusRanges, type StatusRanges } from "./stats.ts";
import type { RequestSpec } from "./transport.ts";
import { TRANSPORT_MODES, type TransportMode } from "./transports.ts";
import { DEFAULTS } from "./flag_table.ts";
import { errorText } from "../lib/shared/error_text.ts";

export { DEFAULTS } from "./flag_table.ts";

/** Upper bound on `--workers`. */
export const MAX_WORKERS = 256;

/** Upper bound on the default open-model in-flight cap. */
export const MAX_DEFAULT_IN_FLIGHT = 1000;

/** The output path that means stdout (`--json -`, `--csv -`). */
export const STDOUT = "-";

/** Where results go besides the text report on stdout. */
export interface OutputOptions {
  /** `--json FILE`: full results with encoded histograms; {@linkcode STDOUT} for stdout. Default: none. */
  readonly jsonFile?: string;
  /** `--csv FILE`: one row per run; {@linkcode STDOUT} for stdout. Default: none. */
  readonly csvFile?: string;
  /** `--chart FILE.svg`: throughput and latency chart. Default: none. */
  readonly chartFile?: string;
  /** `--html FILE.html`: one self-contained page. Default: none. */
  readonly htmlFile?: string;
  /** `--markdown`: print Markdown instead of plain text. Default: false. */
  readonly markdown: boolean;
  /** `--quiet`: no live view or progress lines. Default: false. */
  readonly quiet: boolean;
}

/** A validated load test. */
export interface LoadPlan {
  /** What every request sends. */
  readonly request: RequestSpec;
  /** `closed` (concurrency levels) or `open` (arrival rates). */
  readonly model: "closed" | "open";
  /** Concurrency levels (closed) or rates in requests per second (open), in order. */
  readonly levels: readonly number[];
  /** When each run stops. */
  readonly stop: Stop;
  /** Runs per level. */
  readonly rounds: number;
  /** Unrecorded warm-up before the first run, in ms (0: none). */
  readonly warmupMs: number;
  /** `--targets`: a request mix sent instead of `request` (which is then its first target). */
  readonly targets?: readonly Target[];
  /** Open model: a ramping arrival rate (`--stages`); its level is the peak rate. */
  readonly stages?: readonly Stage[];
  /**
   * The process's open-files soft limit, read by the command at start (not a flag); bounds the
   * default in-flight cap. Default: unknown.
   */
  readonly descriptorLimit?: number;
  /** Open model: cap on requests in flight; `undefined` derives it from rate and timeout. */
  readonly maxInFlight?: number;
  /** Statuses that count as success. */
  readonly successStatuses: StatusRanges;
  /** Worker count; `undefined` picks one from the cores and the size of the work. */
  readonly workers?: number;
  /** Transport choice. */
  readonly transport: TransportMode;
  /** Extra outputs. */
  readonly outputs: OutputOptions;
  /** SLO thresholds. */
  readonly thresholds: Thresholds;
  /** Ramp the load until it breaks instead of running the given levels. */
  readonly findCapacity: boolean;
}

/** What the arguments ask for. */
export type LoadCommand =
  | { readonly kind: "help" }
  | { readonly kind: "schema" }
  | {
    readonly kind: "run";
    readonly plan: LoadPlan;
    /** Flags that parse but are almost certainly not what was meant, one line each. */
    readonly warnings: readonly string[];
  }
  | {
    readonly kind: "merge";
    readonly files: readonly string[];
    readonly outputs: OutputOptions;
    readonly thresholds: Thresholds;
    /** As for a run. */
    readonly warnings: readonly string[];
  };

/** Dependencies of {@linkcode parseLoadArgs}. */
export interface ParseLoadDeps {
  /** Reads `--body-file`. Default: `Deno.readFileSync`. */
  readonly readFile?: (path: string) => Uint8Array;
}

const MERGE_FLAGS = new Set([
  "json",
  "csv",
  "chart",
  "html",
  "markdown",
  "max-error-rate",
  "max-p99",
  "threshold",
]);

/**
 * Parses the arguments of `loadtest` (without the subcommand name).
 *
 * @param args Raw arguments, such as `["--concurrency", "25", "50", "--rounds", "2"]`.
 * @param deps File reading for `--body-file`.
 * @returns Help, the report schema, a validated plan, or a merge command.
 * @throws {UsageError} For an unknown flag, a bad value or a conflicting combination; the
 * message names the flag, the value and the rule.
 *
 * @example
 * ```ts
 * import { parseLoadArgs } from "./options.ts";
 * const command = parseLoadArgs(["--concurrency", "25", "50", "--rounds", "2"]);
 * if (command.kind !== "run" || command.plan.levels.join() !== "25,50") throw new Error("bad");
 * ```
 */
export function parseLoadArgs(args: readonly string[], deps: ParseLoadDeps = {}): LoadCommand {
  if (args.length === 1 && args[0] === "schema") return { kind: "schema" };
  const isMerge = args[0] === "merge";
  const unknown: string[] = [];
  const parsed = parseArgs(joinListValues(isMerge ? args.slice(1) : args), {
    string: STRING_FLAGS,
    boolean: BOOLEAN_FLAGS,
    collect: REPEATABLE_FLAGS,
    negatable: NEGATED_FLAGS,
    alias: FLAG_ALIASES,
    default: Object.fromEntries(NEGATED_FLAGS.map((name) => [name, true])),
    unknown: (arg: string) => {
      if (arg.startsWith("-")) unknown.push(arg);
      return !arg.startsWith("-");
    },
  });
  if (unknown.length > 0) {
    throw new UsageError(`Unknown flag "${unknown[0]}": run "loadtest --help" for the flags`);
  }
  if (parsed.help === true) return { kind: "help" };
  const flags = new Flags(parsed);
  const outputs = parseOutputs(flags);
  const thresholds = parseThresholds(flags);

  if (isMerge) {
    const extra = [...flags.given()].find((name) => !MERGE_FLAGS.has(name));
    if (extra !== undefined) {
      throw new UsageError(
        `Unexpected flag "--${extra}" for merge: merge takes JSON files, outputs and thresholds`,
      );
    }
    const files = parsed._.map(String);
    if (files.length === 0) {
      throw new UsageError(`Missing files for merge: give one or more JSON results of --json`);
    }
    return { kind: "merge", files, outputs, thresholds, warnings: p99Warnings(flags) };
  }
  const positional = parsed._[0];
  if (positional !== undefined) {
    throw new UsageError(
      `Unexpected argument "${positional}": loadtest takes flags only (or "merge FILE...")`,
    );
  }
  const plan = parsePlan(flags, outputs, thresholds, deps);
  return { kind: "run", plan, warnings: p99Warnings(flags, plan.request.timeoutMs) };
}

/** A bare `--max-p99` at least this large is almost certainly milliseconds written as seconds. */
const BARE_P99_SECONDS_WARNING = 10;

/**
 * Warns about `--max-p99 200`: a bare number is seconds (as in every duration flag), and a
 * p99 limit of 10 s or more is almost always a limit in milliseconds missing its unit.
 */
function p99Warnings(flags: Flags, timeoutMs?: number): string[] {
  const text = flags.string("max-p99")?.trim();
  if (text === undefined || !/^\d+(\.\d+)?$/.test(text)) return [];
  const seconds = Number(text);
  if (seconds < BARE_P99_SECONDS_WARNING) return [];
  const beyond = timeoutMs !== undefined && seconds * 1000 >= timeoutMs
    ? `, which no request can reach with --timeout ${formatDuration(timeoutMs)}`
    : "";
  return [
    `Warning: --max-p99 ${text} means ${text} seconds (a bare number is seconds)${beyond}; write --max-p99 ${text}ms if you meant milliseconds`,
  ];
}

function parsePlan(
  flags: Flags,
  outputs: OutputOptions,
  thresholds: Thresholds,
  deps: ParseLoadDeps,
): LoadPlan {
  const targets = parseTargetsFlag(flags, deps);
  const request = targets?.[0]?.spec ?? parseRequest(flags, deps);
  const concurrencyText = flags.string("concurrency");
  const rateText = flags.string("rate");
  if (concurrencyText !== undefined && rateText !== undefined) {
    throw new UsageError(
      `Cannot combine --concurrency and --rate: --concurrency sets closed-model users, --rate an open-model arrival rate`,
    );
  }
  const stagesText = flags.string("stages");
  const stages = stagesText === undefined ? undefined : parseStagesFlag(stagesText, flags);
  const model = rateText === undefined && stages === undefined ? "closed" : "open";
  const levels = stages !== undefined
    ? [peakRate(stages)]
    : rateText === undefined
    ? parseList("--concurrency", concurrencyText ?? String(DEFAULTS.concurrency), positiveInteger)
    : parseList("--rate", rateText, positiveNumber);

  const totalText = flags.string("total");
  const durationText = flags.string("duration");
  if (totalText !== undefined && durationText !== undefined) {
    throw new UsageError(
      `Cannot combine --total and --duration: a run stops after a number of requests or after a time, not both`,
    );
  }
  const stop: Stop = stages !== undefined
    ? { kind: "time", durationMs: stages.reduce((sum, stage) => sum + stage.durationMs, 0) }
    : durationText === undefined
    ? {
      kind: "count",
      total: parseValue("--total", totalText ?? String(DEFAULTS.total), positiveInteger),
    }
    : { kind: "time", durationMs: parseDurationFlag("--duration", durationText, false) };

  const rounds = parseValue(
    "--rounds",
    flags.string("rounds") ?? String(DEFAULTS.rounds),
    positiveInteger,
  );
  const warmupText = flags.string("warmup");
  const warmupMs = warmupText === undefined ? 0 : parseDurationFlag("--warmup", warmupText, true);
  const successText = flags.string("success");
  let successStatuses = DEFAULT_SUCCESS_STATUSES;
  if (successText !== undefined) {
    try {
      successStatuses = parseStatusRanges(successText);
    } catch (error) {
      throw new UsageError(
        `Invalid --success "${successText}": use codes (200), classes (2xx) or ranges (200-204) between 100 and 599`,
        { cause: error },
      );
    }
  }
  const transportText = flags.string("transport") ?? "auto";
  const transport = TRANSPORT_MODES.find((mode) => mode === transportText);
  if (transport === undefined) {
    throw new UsageError(
      `Invalid --transport "${transportText}": must be one of ${TRANSPORT_MODES.join(", ")}`,
    );
  }
  for (const spec of targets?.map((target) => target.spec) ?? [request]) {
    if (transport === "http1" && spec.url.protocol !== "http:") {
      throw new UsageError(
        `Invalid --transport "http1" for "${spec.url.href}": the HTTP/1.1 client speaks plain http only`,
      );
    }
  }
  const workersText = flags.string("workers");
  const workers = workersText === undefined
    ? undefined
    : parseValue("--workers", workersText, positiveInteger);
  if (workers !== undefined && workers > MAX_WORKERS) {
    throw new UsageError(`Invalid --workers "${workersText}": must be at most ${MAX_WORKERS}`);
  }
  const inFlightText = flags.string("max-in-flight");
  const maxInFlight = inFlightText === undefined
    ? undefined
    : parseValue("--max-in-flight", inFlightText, positiveInteger);
  if (maxInFlight !== undefined && model === "closed") {
    throw new UsageError(
      `Invalid --max-in-flight "${inFlightText}": it caps the open model, so it needs --rate`,
    );
  }
  const shard = parseShardFlag(flags);
  const load = shareOfShard(
    {
      model,
      levels,
      stop,
      ...(stages === undefined ? {} : { stages }),
      ...(maxInFlight === undefined ? {} : { maxInFlight }),
    },
    shard,
  );
  return {
    request,
    ...load,
    rounds,
    warmupMs,
    ...(targets === undefined ? {} : { targets }),
    successStatuses,
    ...(workers === undefined ? {} : { workers }),
    transport,
    outputs,
    thresholds,
    findCapacity: flags.boolean("find-capacity"),
  };
}

function parseShardFlag(flags: Flags): Shard | undefined {
  const text = flags.string("shard");
  if (text === undefined) return undefined;
  if (flags.boolean("find-capacity")) {
    throw new UsageError(
      `Cannot combine --shard and --find-capacity: each shard would search on its own`,
    );
  }
  try {
    return parseShard(text);
  } catch (error) {
    const reason = errorText(error);
    throw new UsageError(`Invalid --shard "${text}": ${reason}`, { cause: error });
  }
}

function shareOfShard<T extends Parameters<typeof shareOfLoad>[0]>(
  load: T,
  shard: Shard | undefined,
): T {
  if (shard === undefined) return load;
  try {
    return shareOfLoad(load, shard);
  } catch (error) {
    const reason = errorText(error);
    throw new UsageError(`Invalid --shard "${shard.index}/${shard.count}": ${reason}`, {
      cause: error,
    });
  }
}

/** `--stages` sets the whole load shape, so the flags it replaces cannot come with it. */
const STAGES_CONFLICTS = ["concurrency", "rate", "total", "duration", "find-capacity"];

function parseStagesFlag(text: string, flags: Flags): Stage[] {
  const given = flags.given();
  const conflict = STAGES_CONFLICTS.find((name) => given.has(name));
  if (conflict !== undefined) {
    throw new UsageError(
      `Cannot combine --stages and --${conflict}: the stages set the rate and the run's length`,
    );
  }
  let stages: Stage[];
  try {
    stages = parseStages(text);
  } catch (error) {
    const reason = errorText(error);
    throw new UsageError(`Invalid --stages "${text}": ${reason}`, { cause: error });
  }
  // The run lasts as long as the stages together, and waits for its end on one timer.
  const totalMs = stages.reduce((sum, stage) => sum + stage.durationMs, 0);
  if (totalMs > MAX_TIMER_MS) {
    throw new UsageError(
      `Invalid --stages "${text}": together they must last at most ${
        formatDurationText(Math.floor(MAX_TIMER_MS / 1000) * 1000)
      }, the longest a timer can wait (2^31-1 ms)`,
    );
  }
  return stages;
}

/** A targets file says what to send, so the flags for one request cannot come with it. */
const TARGETS_CONFLICTS = ["url", "method", "body", "body-file"];

function parseTargetsFlag(flags: Flags, deps: ParseLoadDeps): Target[] | undefined {
  const path = flags.string("targets");
  if (path === undefined) return undefined;
  const given = flags.given();
  const conflict = TARGETS_CONFLICTS.find((name) => given.has(name));
  if (conflict !== undefined) {
    throw new UsageError(
      `Cannot combine --targets and --${conflict}: the targets file says what each request sends`,
    );
  }
  // Headers, keep-alive and the timeout still come from the flags and apply to every target.
  const shared = parseRequest(flags, deps);
  const readFile = deps.readFile ?? Deno.readFileSync;
  let text: string;
  try {
    text = new TextDecoder().decode(readFile(path));
  } catch (error) {
    const reason = errorText(error);
    throw new UsageError(`Cannot read --targets "${path}": ${reason}`, { cause: error });
  }
  try {
    return parseTargets(text, {
      headers: shared.headers,
      keepAlive: shared.keepAlive,
      timeoutMs: shared.timeoutMs,
      readFile,
    });
  } catch (error) {
    const reason = errorText(error);
    throw new UsageError(`Invalid --targets "${path}": ${reason}`, { cause: error });
  }
}

function parseRequest(flags: Flags, deps: ParseLoadDeps): RequestSpec {
  const urlText = flags.string("url") ?? DEFAULTS.url;
  let url: URL;
  try {
    url = new URL(urlText);
  } catch (error) {
    throw new UsageError(`Invalid --url "${urlText}": not an absolute URL`, { cause: error });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`Invalid --url "${urlText}": protocol must be http or https`);
  }
  const methodText = flags.string("method") ?? "GET";
  if (!isHttpToken(methodText)) {
    throw new UsageError(
      `Invalid --method "${methodText}": must be an HTTP method token such as GET`,
    );
  }
  const headers = flags.strings("header").map((text): readonly [string, string] => {
    const colon = text.indexOf(":");
    const name = colon < 0 ? "" : text.slice(0, colon).trim();
    if (!isHttpToken(name)) {
      throw new UsageError(`Invalid --header "${text}": use "Name: value" with a token name`);
    }
    return [name, text.slice(colon + 1).trim()];
  });
  const bodyText = flags.string("body");
  const bodyFile = flags.string("body-file");
  if (bodyText !== undefined && bodyFile !== undefined) {
    throw new UsageError(`Cannot combine --body and --body-file: give the body one way`);
  }
  let body: Uint8Array | undefined;
  if (bodyText !== undefined) body = new TextEncoder().encode(bodyText);
  if (bodyFile !== undefined) {
    try {
      body = (deps.readFile ?? Deno.readFileSync)(bodyFile);
    } catch (error) {
      const reason = errorText(error);
      throw new UsageError(`Cannot read --body-file "${bodyFile}": ${reason}`, { cause: error });
    }
  }
  const timeoutMs = parseDurationFlag(
    "--timeout",
    flags.string("timeout") ?? `${DEFAULTS.timeoutMs}ms`,
    false,
  );
  return {
    url,
    method: methodText.toUpperCase(),
    headers,
    ...(body === undefined ? {} : { body }),
    keepAlive: !flags.given().has("no-keepalive"),
    timeoutMs,
  };
}

function parseOutputs(flags: Flags): OutputOptions {
  const json = flags.string("json");
  const csv = flags.string("csv");
  const chart = flags.string("chart");
  const html = flags.string("html");
  const paths = [["--json", json], ["--csv", csv], ["--chart", chart], ["--html", html]] as const;
  for (const [flag, value] of paths) {
    if (value === "") throw new UsageError(`Invalid ${flag} "": give a file path`);
  }
  if (json === STDOUT && csv === STDOUT) {
    throw new UsageError(`Cannot combine --json - and --csv -: only one of them can take stdout`);
  }
  if (chart !== undefined && !chart.toLowerCase().endsWith(".svg")) {
    throw new UsageError(
      `Invalid --chart "${chart}": the chart is SVG, give a path ending in .svg`,
    );
  }
  if (html !== undefined && !/\.html?$/i.test(html)) {
    throw new UsageError(
      `Invalid --html "${html}": the report is a web page, give a path ending in .html`,
    );
  }
  return {
    ...(json === undefined ? {} : { jsonFile: json }),
    ...(csv === undefined ? {} : { csvFile: csv }),
    ...(chart === undefined ? {} : { chartFile: chart }),
    ...(html === undefined ? {} : { htmlFile: html }),
    markdown: flags.boolean("markdown"),
    quiet: flags.boolean("quiet"),
  };
}

function parseThresholds(flags: Flags): Thresholds {
  const rateText = flags.string("max-error-rate");
  const p99Text = flags.string("max-p99");
  let maxErrorRate: number | undefined;
  if (rateText !== undefined) {
    const isPercent = rateText.trim().endsWith("%");
    const value = Number(isPercent ? rateText.trim().slice(0, -1) : rateText);
    maxErrorRate = isPercent ? value / 100 : value;
    if (
      rateText.trim() === "" || !Number.isFinite(maxErrorRate) || maxErrorRate < 0 ||
      maxErrorRate > 1
    ) {
      throw new UsageError(
        `Invalid --max-error-rate "${rateText}": must be a fraction between 0 and 1 (0.01) or a percentage (1%)`,
      );
    }
  }
  const maxP99Ms = p99Text === undefined
    ? undefined
    : parseDurationFlag("--max-p99", p99Text, false);
  const rules = flags.strings("threshold").map((text) => {
    try {
      return parseThresholdRule(text);
    } catch (error) {
      const reason = errorText(error);
      throw new UsageError(`Invalid --threshold "${text}": ${reason}`, { cause: error });
    }
  });
  return {
    ...(maxErrorRate === undefined ? {} : { maxErrorRate }),
    ...(maxP99Ms === undefined ? {} : { maxP99Ms }),
    ...(rules.length === 0 ? {} : { rules }),
  };
}
