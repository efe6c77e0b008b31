/**
 * The balancer's configuration: its type, and building it from the command line, an optional
 * JSON file and the environment.
 *
 * Everything is validated here, once, before any listener opens; the rest of the balancer trusts
 * a {@linkcode BalancerConfig}. Precedence, lowest first: defaults, `--config FILE.json`, the
 * `LOGLEVEL` environment variable, the seed's positional health period, flags. The pieces live
 * in `config_defaults.ts` (defaults and rules), `config_flags.ts` (flags and help) and
 * `config_file.ts` (the JSON file); this module re-exports what callers need.
 *
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import {
  DEFAULT_BALANCER_CONFIG,
  DEFAULT_HEALTH_TIMEOUT_MS,
  type LogFormat,
  parseLevel,
} from "./config_defaults.ts";
import { loadConfigFile } from "./config_file.ts";
import { flagLayer, type Flags, positionalLayer, readFlags } from "./config_flags.ts";
import type { PolicyName } from "./policy.ts";
import { UsageError } from "./shared/command.ts";
import { formatDuration } from "./shared/duration.ts";

export {
  DEFAULT_BALANCER_CONFIG,
  LOG_FORMATS,
  LOG_LEVELS,
  type LogFormat,
} from "./config_defaults.ts";
export { parseConfigFile } from "./config_file.ts";
export { isHelpRequested, LB_FLAG_NAMES, LB_HELP } from "./config_flags.ts";

/** One backend as configured. */
export interface BackendConfig {
  /** Base URL, as returned by `parseBackendUrl` (path ends in `/`). */
  readonly url: URL;
  /** Relative share of traffic for weighted policies; round-robin ignores it. */
  readonly weight: number;
}

/** Active health checking. */
export interface HealthConfig {
  /** Path probed on every backend, appended to its base path. */
  readonly path: string;
  /** Time between the starts of two probes of one backend. */
  readonly intervalMs: number;
  /** A probe without a 2xx response within this time fails. Never more than `intervalMs`. */
  readonly timeoutMs: number;
  /** Consecutive successful probes that bring an unhealthy backend back. */
  readonly rise: number;
  /** Consecutive failed probes that take a healthy backend out of rotation. */
  readonly fall: number;
}

/** Forwarding to backends. */
export interface ProxyConfig {
  /** Time to wait for a backend's response headers before answering 504. */
  readonly timeoutMs: number;
  /** Retries, on another backend, of an idempotent request without a body that failed to connect. */
  readonly retries: number;
  /** Idle keep-alive connections kept per backend. */
  readonly maxIdlePerHost: number;
}

/** Logging. */
export interface LogConfig {
  /** The lowest level written. */
  readonly level: LogLevel;
  /** Text lines or JSON lines. */
  readonly format: LogFormat;
  /** Append records to this file instead of stderr. */
  readonly file?: string;
}

/** Everything the balancer needs to run, validated. */
export interface BalancerConfig {
  /** Address to listen on. */
  readonly host: string;
  /** Port to listen on; 0 picks a free one. */
  readonly port: number;
  /** The backends, in order, at least one, no duplicates. */
  readonly backends: readonly BackendConfig[];
  /** The selection policy. */
  readonly policy: PolicyName;
  /** Active health checking. */
  readonly health: HealthConfig;
  /** Forwarding to backends. */
  readonly proxy: ProxyConfig;
  /** Logging. */
  readonly log: LogConfig;
  /** On SIGINT/SIGTERM, how long in-flight requests may take to finish. */
  readonly drainTimeoutMs: number;
}

/** Settings from one source (file, environment, positional, flags); absent means "not set". */
export interface ConfigLayer {
  readonly host?: string | undefined;
  readonly port?: number | undefined;
  readonly backends?: readonly BackendConfig[] | undefined;
  readonly policy?: PolicyName | undefined;
  readonly health?: {
    readonly path?: string | undefined;
    readonly intervalMs?: number | undefined;
    readonly timeoutMs?: number | undefined;
    readonly rise?: number | undefined;
    readonly fall?: number | undefined;
  } | undefined;
  readonly proxy?: {
    readonly timeoutMs?: number | undefined;
    readonly retries?: number | undefined;
    readonly maxIdlePerHost?: number | undefined;
  } | undefined;
  readonly log?: {
    readonly level?: LogLevel | undefined;
    readonly format?: LogFormat | undefined;
    readonly file?: string | undefined;
  } | undefined;
  readonly drainTimeoutMs?: number | undefined;
}

/** Options for {@linkcode parseBalancerArgs}. */
export interface ParseBalancerArgsOptions {
  /** Reads the `--config` file. Default: `Deno.readTextFile`. */
  readonly readTextFile?: (path: string) => Promise<string>;
}

/**
 * Builds the balancer's configuration from `lb`'s arguments, an optional `--config` JSON file
 * and the `LOGLEVEL` environment variable.
 *
 * @param args The arguments after `lb`, such as `["5"]` or `["--port", "0", "--backend", "a:1"]`.
 * @param env Reads an environment variable (`LOGLEVEL`).
 * @param options How to read the config file.
 * @returns The validated configuration.
 * @throws {UsageError} For an unknown flag, a bad value, an unreadable or invalid config file,
 *   with one line naming the flag (or field) and the value.
 */
export async function parseBalancerArgs(
  args: readonly string[],
  env: (name: string) => string | undefined,
  options: ParseBalancerArgsOptions = {},
): Promise<BalancerConfig> {
  const { flags, positionals } = readFlags(args);
  const readTextFile = options.readTextFile ?? ((path: string) => Deno.readTextFile(path));

  const file = flags.config === undefined
    ? { layer: {}, label: undefined }
    : { layer: await loadConfigFile(flags.config, readTextFile), label: flags.config };
  const envLevel = env("LOGLEVEL");
  const layers: ConfigLayer[] = [
    file.layer,
    envLevel === undefined || envLevel.trim() === ""
      ? {}
      : { log: { level: parseLevel(envLevel, "LOGLEVEL") } },
    positionalLayer(positionals),
    flagLayer(flags),
  ];
  return finish(layers, timeoutSource(flags, file.layer, file.label));
}

const D = DEFAULT_BALANCER_CONFIG;

/** Merges the layers over the defaults (a later layer wins) and runs the cross-field checks. */
function finish(
  layers: readonly ConfigLayer[],
  timeout: TimeoutSource | undefined,
): BalancerConfig {
  const pick = <T>(base: T, get: (layer: ConfigLayer) => T | undefined): T => {
    let value = base;
    for (const layer of layers) value = get(layer) ?? value;
    return value;
  };
  const intervalMs = pick(D.health.intervalMs, (l) => l.health?.intervalMs);
  const explicitTimeoutMs = pick<number | undefined>(undefined, (l) => l.health?.timeoutMs);
  if (explicitTimeoutMs !== undefined && explicitTimeoutMs > intervalMs) {
    const rule = `must not exceed the health interval (${formatDuration(intervalMs)})`;
    throw new UsageError(
      timeout === undefined
        ? `Invalid health timeout ${formatDuration(explicitTimeoutMs)}: ${rule}`
        : timeout(rule),
    );
  }
  const backends = pick(D.backends, (l) => l.backends);
  const seen = new Set<string>();
  for (const backend of backends) {
    if (seen.has(backend.url.href)) {
      throw new UsageError(`Backend "${backend.url.href}" is listed twice`);
    }
    seen.add(backend.url.href);
  }
  const file = pick<string | undefined>(undefined, (l) => l.log?.file);
  return {
    host: pick(D.host, (l) => l.host),
    port: pick(D.port, (l) => l.port),
    backends,
    policy: pick(D.policy, (l) => l.policy),
    health: {
      path: pick(D.health.path, (l) => l.health?.path),
      intervalMs,
      timeoutMs: explicitTimeoutMs ?? Math.min(DEFAULT_HEALTH_TIMEOUT_MS, intervalMs),
      rise: pick(D.health.rise, (l) => l.health?.rise),
      fall: pick(D.health.fall, (l) => l.health?.fall),
    },
    proxy: {
      timeoutMs: pick(D.proxy.timeoutMs, (l) => l.proxy?.timeoutMs),
      retries: pick(D.proxy.retries, (l) => l.proxy?.retries),
      maxIdlePerHost: pick(D.proxy.maxIdlePerHost, (l) => l.proxy?.maxIdlePerHost),
    },
    log: {
      level: pick(D.log.level, (l) => l.log?.level),
      format: pick(D.log.format, (l) => l.log?.format),
      ...(file === undefined ? {} : { file }),
    },
    drainTimeoutMs: pick(D.drainTimeoutMs, (l) => l.drainTimeoutMs),
  };
}

/** Words a health-timeout rule into a message naming where the timeout was set. */
type TimeoutSource = (rule: string) => string;

function timeoutSource(
  flags: Flags,
  file: ConfigLayer,
  fileLabel: string | undefined,
): TimeoutSource | undefined {
  const flag = flags["health-timeout"];
  if (flag !== undefined) return (rule) => `Invalid --health-timeout "${flag}": ${rule}`;
  if (file.health?.timeoutMs !== undefined && fileLabel !== undefined) {
    return (rule) => `Invalid config "${fileLabel}": health.timeoutMs ${rule}`;
  }
  return undefined;
}
