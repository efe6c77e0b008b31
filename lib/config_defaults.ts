/**
 * What each balancer setting defaults to and which values it accepts: the defaults (the seed's
 * behaviour), the allowed log levels and formats, and the rules shared by the command line and
 * the config file so both word a rejection the same way.
 *
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import { parseBackendUrl } from "./backend.ts";
import type { BalancerConfig } from "./config.ts";
import { POLICY_NAMES, type PolicyName } from "./policy.ts";
import { UsageError } from "./shared/command.ts";

/** The log levels, most verbose first. */
export const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

/** How log records are written: human-readable text or JSON lines. */
export const LOG_FORMATS = ["text", "json"] as const;

/** A log output format. */
export type LogFormat = typeof LOG_FORMATS[number];

/** The seed's health period when none is given, in seconds. */
export const DEFAULT_PERIOD_SECONDS = 10;
/** The default probe timeout; capped at the interval when no timeout is given. */
export const DEFAULT_HEALTH_TIMEOUT_MS = 2_000;

/** The configuration of a plain `lb` with no arguments: the seed's behaviour. */
export const DEFAULT_BALANCER_CONFIG: BalancerConfig = Object.freeze({
  host: "127.0.0.1",
  port: 9090,
  backends: Object.freeze(
    ["http://127.0.0.1:8080", "http://127.0.0.1:8081", "http://127.0.0.1:8082"].map((text) =>
      Object.freeze({ url: parseBackendUrl(text), weight: 1 })
    ),
  ),
  policy: "round-robin",
  health: Object.freeze({
    path: "/health",
    intervalMs: DEFAULT_PERIOD_SECONDS * 1000,
    timeoutMs: DEFAULT_HEALTH_TIMEOUT_MS,
    rise: 2,
    fall: 3,
  }),
  proxy: Object.freeze({ timeoutMs: 30_000, retries: 1, maxIdlePerHost: 64 }),
  log: Object.freeze({ level: "info", format: "text" }),
  drainTimeoutMs: 10_000,
});

/** The rule each setting must follow, worded once for its flag and its config-file field. */
export const RULE = {
  host: "must be a host name or IP address, without spaces or slashes",
  port: "must be an integer from 0 to 65535",
  policy: `must be one of ${POLICY_NAMES.join(", ")}`,
  healthPath: 'must start with "/" and contain no spaces',
  durationPositive: "must be more than 0, such as 500ms or 5s",
  durationMin0: "must be 0 or more, such as 0, 500ms or 5s",
  msPositive: "must be a positive number",
  msMin0: "must be a number, 0 or more",
  countMin1: "must be a whole number, 1 or more",
  countMin0: "must be a whole number, 0 or more",
  weight: "must be a positive number",
  logLevel: `must be one of ${LOG_LEVELS.join(", ")}`,
  logFormat: `must be one of ${LOG_FORMATS.join(", ")}`,
  logFile: "must be a non-empty path",
} as const;

/** Python's names for levels, as `LOGLEVEL` is in the seed, and common short forms. */
const LEVEL_ALIASES: Readonly<Record<string, LogLevel>> = {
  warn: "warning",
  critical: "fatal",
  err: "error",
};

/** Reads a log level in any case, also Python's `WARN`/`CRITICAL`; `undefined` if unknown. */
export function toLevel(text: string): LogLevel | undefined {
  const lower = text.trim().toLowerCase();
  const alias = LEVEL_ALIASES[lower];
  if (alias !== undefined) return alias;
  return (LOG_LEVELS as readonly string[]).includes(lower) ? lower as LogLevel : undefined;
}

/**
 * Reads a log level given by `source` (a flag or `LOGLEVEL`).
 *
 * @throws {UsageError} Naming the source and the value when the level is unknown.
 */
export function parseLevel(text: string, source: string): LogLevel {
  const level = toLevel(text);
  if (level === undefined) {
    throw new UsageError(`Invalid ${source} "${text}": ${RULE.logLevel}`);
  }
  return level;
}

/** Whether a listen host is plausible: non-empty, no spaces or slashes. */
export function isValidHost(text: string): boolean {
  return text !== "" && !/[\s/]/.test(text);
}

/** Whether a health path starts with `/` and has no spaces. */
export function isValidHealthPath(text: string): boolean {
  return text.startsWith("/") && !/\s/.test(text);
}

/** Whether the text names a policy. */
export function isPolicyName(text: string): text is PolicyName {
  return (POLICY_NAMES as readonly string[]).includes(text);
}

/** Whether the text names a log format. */
export function isLogFormat(text: string): text is LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(text);
}

/** The rule part of a parser's message: `Cannot parse X "v": rule` gives `rule`. */
export function ruleOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const match = /^[^"]*"[^"]*": (.+)$/s.exec(message);
  return match?.[1] ?? message;
}
