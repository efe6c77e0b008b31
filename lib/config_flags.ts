/**
 * `lb`'s command line: its flags, its help text, and reading the flags and the seed's positional
 * health period into settings, each bad value rejected with a message naming the flag.
 *
 * @module
 */
import { parseBackendUrl } from "./backend.ts";
import type { BackendConfig, ConfigLayer } from "./config.ts";
import {
  DEFAULT_BALANCER_CONFIG,
  DEFAULT_HEALTH_TIMEOUT_MS,
  DEFAULT_PERIOD_SECONDS,
  isLogFormat,
  isPolicyName,
  isValidHealthPath,
  isValidHost,
  LOG_LEVELS,
  parseLevel,
  RULE,
  ruleOf,
} from "./config_defaults.ts";
import { POLICY_NAMES } from "./policy.ts";
import { UsageError } from "./shared/command.ts";
import { formatDuration, parseDuration } from "./shared/duration.ts";
import { levenshteinDistance, parseArgs } from "./shared/std.ts";

/** Every flag `lb` accepts, without the leading `--` (besides `--help`). */
export const LB_FLAG_NAMES = [
  "host",
  "port",
  "backend",
  "policy",
  "health-path",
  "health-interval",
  "health-timeout",
  "rise",
  "fall",
  "timeout",
  "retries",
  "drain-timeout",
  "max-idle-per-host",
  "log-level",
  "log-format",
  "log-file",
  "config",
] as const;

type FlagName = typeof LB_FLAG_NAMES[number];

const D = DEFAULT_BALANCER_CONFIG;

/** The `lb` subcommand's help text: every flag, its default and examples. */
export const LB_HELP: string = `Usage: denolb lb [options] [health_check_period_seconds]
       deno task lb [options] [health_check_period_seconds]

Balances HTTP requests over backends (round-robin over the healthy ones) and probes their health.
With no arguments it behaves as the seed balancer: listens on ${D.host}:${D.port} and balances
over http://127.0.0.1:8080, :8081 and :8082, probing GET /health every ${DEFAULT_PERIOD_SECONDS} seconds.

Arguments:
  health_check_period_seconds  Seconds between health probes; values below 1 become 1.
                               Default: ${DEFAULT_PERIOD_SECONDS}. --health-interval overrides it.

Listener:
  --host HOST                  Address to listen on. Default: ${D.host}
  --port PORT                  Port to listen on; 0 picks a free port. Default: ${D.port}

Backends:
  --backend URL                A backend; repeat the flag or give a comma list. A bare host:port
                               means http://host:port. Replaces the defaults.
                               Default: http://127.0.0.1:8080,http://127.0.0.1:8081,http://127.0.0.1:8082
  --policy NAME                Selection policy: ${POLICY_NAMES.join(", ")}. Default: ${D.policy}

Health checks:
  --health-path PATH           Path probed on each backend (after its base path); healthy means
                               a 2xx response within the timeout. Default: ${D.health.path}
  --health-interval DURATION   Time between probes of a backend. Default: ${
  formatDuration(D.health.intervalMs)
}
  --health-timeout DURATION    Probe timeout; at most the interval. Default: ${
  formatDuration(DEFAULT_HEALTH_TIMEOUT_MS)
}, or the interval
                               when that is shorter
  --rise COUNT                 Consecutive passed probes to bring a backend back. Default: ${D.health.rise}
  --fall COUNT                 Consecutive failed probes to take a backend out. Default: ${D.health.fall}
                               The first probe's result applies at once, so a backend down at
                               start-up leaves rotation after one probe.

Proxy:
  --timeout DURATION           Wait for a backend's response headers, then answer 504.
                               Default: ${formatDuration(D.proxy.timeoutMs)}
  --retries COUNT              Retries on another backend when connecting fails, for idempotent
                               requests without a body. Default: ${D.proxy.retries}
  --max-idle-per-host COUNT    Idle keep-alive connections kept per backend. Default: ${D.proxy.maxIdlePerHost}
  --drain-timeout DURATION     On Ctrl-C or SIGTERM, time in-flight requests get to finish.
                               Default: ${formatDuration(D.drainTimeoutMs)}

Logging:
  --log-level LEVEL            ${LOG_LEVELS.join(", ")}. Default: ${D.log.level},
                               or the LOGLEVEL environment variable (LOGLEVEL=DEBUG)
  --log-format FORMAT          text or json (JSON lines). Default: ${D.log.format}
  --log-file PATH              Append logs to PATH instead of stderr; writes are buffered and never
                               block requests

Other:
  --config FILE                JSON file with any of these settings; flags override it. Keys:
                               host, port, backends (URLs or {"url", "weight"}), policy,
                               health {path, intervalMs, timeoutMs, rise, fall},
                               proxy {timeoutMs, retries, maxIdlePerHost},
                               log {level, format, file}, drainTimeoutMs (times in milliseconds)
  -h, --help                   Show this help

Durations are written 250ms, 5s, 1m or 1m30s; a bare number means seconds.

Examples:
  deno task lb                  # the seed: 127.0.0.1:9090 over :8080-:8082, probes every 10 s
  deno task lb 5                # probe every 5 seconds
  deno task lb --port 8000 --backend 10.0.0.1:80,10.0.0.2:80 --health-interval 2s --fall 2
  LOGLEVEL=DEBUG deno task lb --log-format json --log-file lb.log
  deno task lb --config lb.json --port 0
`;

/**
 * Whether the arguments ask for help (`-h` or `--help` before any `--`). `main.ts` checks this
 * first and prints {@linkcode LB_HELP}; {@linkcode parseBalancerArgs} rejects those flags.
 *
 * @param args The arguments after the subcommand name.
 * @returns Whether help was asked for.
 *
 * @example
 * ```ts
 * import { isHelpRequested } from "./config.ts";
 * if (!isHelpRequested(["--port", "1", "-h"])) throw new Error("expected help");
 * ```
 */
export function isHelpRequested(args: readonly string[]): boolean {
  for (const arg of args) {
    if (arg === "--") return false;
    if (arg === "-h" || arg === "--help") return true;
  }
  return false;
}

/** The raw string value of each flag given (the last one wins), `backend` collected. */
export type Flags = Partial<Record<Exclude<FlagName, "backend">, string>> & {
  readonly backend: readonly string[];
};

/**
 * Splits `lb`'s arguments into flag values and positional arguments.
 *
 * @throws {UsageError} For an unknown flag (with a suggestion) or a flag without a value.
 */
export function readFlags(args: readonly string[]): { flags: Flags; positionals: string[] } {
  const positionals: string[] = [];
  const strings = LB_FLAG_NAMES.filter((name) => name !== "backend");
  const parsed = parseArgs(joinNegativeValues(args), {
    string: LB_FLAG_NAMES,
    collect: ["backend"],
    "--": true,
    unknown: (arg: string, key?: string) => {
      if (key === undefined || /^-\d/.test(arg)) {
        positionals.push(arg);
        return false;
      }
      throw new UsageError(unknownFlagMessage(arg));
    },
  });
  positionals.push(...(parsed["--"] ?? []));
  const flags: Record<string, string> = {};
  for (const name of strings) {
    const value = parsed[name];
    if (value === undefined) continue;
    if (typeof value !== "string" || value === "") {
      throw new UsageError(`Flag --${name} needs a value`);
    }
    flags[name] = value;
  }
  const backend = parsed.backend;
  const backends = Array.isArray(backend) ? backend.map(String) : [];
  for (const value of backends) {
    if (value === "") throw new UsageError("Flag --backend needs a value");
  }
  return { flags: { ...flags, backend: backends }, positionals };
}

/**
 * `@std/cli` reads `--port -1` as a flag `-1`; join such values to their flag (`--port=-1`) so
 * the value gets a range message instead of an unknown-flag one.
 */
function joinNegativeValues(args: readonly string[]): string[] {
  const joined: string[] = [];
  for (let index = 0; index < args.length; index++) {
    const arg = args[index] ?? "";
    const next = args[index + 1];
    const isFlag = /^--[a-z-]+$/.test(arg) && (LB_FLAG_NAMES as readonly string[]).includes(
      arg.slice(2),
    );
    if (isFlag && next !== undefined && /^-\d/.test(next)) {
      joined.push(`${arg}=${next}`);
      index++;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}

function unknownFlagMessage(arg: string): string {
  if (arg === "-h" || arg === "--help") {
    return `Flag "${arg}" prints the help: check isHelpRequested() before parsing`;
  }
  const name = arg.replace(/^-+/, "").split("=")[0] ?? "";
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of LB_FLAG_NAMES) {
    const distance = levenshteinDistance(name.toLowerCase(), candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const flag = arg.split("=")[0] ?? arg;
  const isClose = best !== undefined &&
    (bestDistance <= 2 || bestDistance <= Math.floor(name.length / 3) ||
      (name.length >= 3 && best.startsWith(name.toLowerCase())));
  const hint = isClose ? ` (did you mean --${best}?)` : "; see lb --help";
  return `Unknown flag "${flag}" for lb${hint}`;
}

/**
 * The settings the seed's positional health period gives (seconds, floored at 1).
 *
 * @throws {UsageError} For more than one argument or one that is not a number.
 */
export function positionalLayer(positionals: readonly string[]): ConfigLayer {
  if (positionals.length === 0) return {};
  if (positionals.length > 1) {
    throw new UsageError(
      `Unexpected argument "${
        positionals[1]
      }": lb takes at most one argument, the health check period in seconds`,
    );
  }
  const text = positionals[0] ?? "";
  const seconds = /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isFinite(seconds)) {
    throw new UsageError(
      `Invalid health check period "${text}": must be a number of seconds, such as 5 or 0.5`,
    );
  }
  // The seed floors the period at one second.
  return { health: { intervalMs: Math.max(1, seconds) * 1000 } };
}

/**
 * The settings the flags give, each value validated.
 *
 * @throws {UsageError} Naming the flag and the value when a value breaks its rule.
 */
export function flagLayer(flags: Flags): ConfigLayer {
  const duration = (name: FlagName, allowZero: boolean): number | undefined => {
    const text = flags[name as Exclude<FlagName, "backend">];
    if (text === undefined) return undefined;
    let ms: number;
    try {
      ms = parseDuration(text);
    } catch (cause) {
      throw new UsageError(`Invalid --${name} "${text}": ${ruleOf(cause)}`, { cause });
    }
    if (allowZero ? ms < 0 : ms <= 0) {
      const rule = allowZero ? RULE.durationMin0 : RULE.durationPositive;
      throw new UsageError(`Invalid --${name} "${text}": ${rule}`);
    }
    return ms;
  };
  const count = (name: FlagName, min: number): number | undefined => {
    const text = flags[name as Exclude<FlagName, "backend">];
    if (text === undefined) return undefined;
    const value = /^\s*\d+\s*$/.test(text) ? Number(text) : Number.NaN;
    if (!Number.isSafeInteger(value) || value < min) {
      throw new UsageError(
        `Invalid --${name} "${text}": ${min === 0 ? RULE.countMin0 : RULE.countMin1}`,
      );
    }
    return value;
  };
  const port = flags.port === undefined ? undefined : parsePort(flags.port);
  const host = flags.host;
  if (host !== undefined && !isValidHost(host)) {
    throw new UsageError(`Invalid --host "${host}": ${RULE.host}`);
  }
  const policy = flags.policy;
  if (policy !== undefined && !isPolicyName(policy)) {
    throw new UsageError(`Invalid --policy "${policy}": ${RULE.policy}`);
  }
  const healthPath = flags["health-path"];
  if (healthPath !== undefined && !isValidHealthPath(healthPath)) {
    throw new UsageError(`Invalid --health-path "${healthPath}": ${RULE.healthPath}`);
  }
  const format = flags["log-format"];
  if (format !== undefined && !isLogFormat(format)) {
    throw new UsageError(`Invalid --log-format "${format}": ${RULE.logFormat}`);
  }
  return {
    host,
    port,
    backends: flags.backend.length === 0 ? undefined : parseBackendFlags(flags.backend),
    policy,
    health: {
      path: healthPath,
      intervalMs: duration("health-interval", false),
      timeoutMs: duration("health-timeout", false),
      rise: count("rise", 1),
      fall: count("fall", 1),
    },
    proxy: {
      timeoutMs: duration("timeout", false),
      retries: count("retries", 0),
      maxIdlePerHost: count("max-idle-per-host", 0),
    },
    log: {
      level: flags["log-level"] === undefined
        ? undefined
        : parseLevel(flags["log-level"], "--log-level"),
      format,
      file: flags["log-file"],
    },
    drainTimeoutMs: duration("drain-timeout", true),
  };
}

function parsePort(text: string): number {
  const value = /^\s*\d+\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(value) || value > 65_535) {
    throw new UsageError(`Invalid --port "${text}": ${RULE.port}`);
  }
  return value;
}

function parseBackendFlags(values: readonly string[]): BackendConfig[] {
  const backends: BackendConfig[] = [];
  for (const value of values) {
    for (const item of value.split(",")) {
      if (item.trim() === "") {
        throw new UsageError(`Invalid --backend "${value}": the list has an empty entry`);
      }
      try {
        backends.push({ url: parseBackendUrl(item), weight: 1 });
      } catch (cause) {
        throw new UsageError(`Invalid --backend "${item}": ${ruleOf(cause)}`, { cause });
      }
    }
  }
  return backends;
}
