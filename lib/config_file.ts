/**
 * The balancer's JSON config file (`lb --config FILE.json`): the same settings as the flags, in
 * the shape of `BalancerConfig` with times in milliseconds, validated with zod so each
 * rejection names the field: `Invalid config "lb.json": health.intervalMs must be a positive number`.
 *
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import { z } from "zod";
import { parseBackendUrl } from "./backend.ts";
import type { BackendConfig, ConfigLayer } from "./config.ts";
import {
  isValidHealthPath,
  isValidHost,
  LOG_FORMATS,
  RULE,
  ruleOf,
  toLevel,
} from "./config_defaults.ts";
import { POLICY_NAMES } from "./policy.ts";
import { UsageError } from "./shared/command.ts";

/**
 * Parses and validates the text of a JSON config file (see {@linkcode LB_HELP} for its keys).
 *
 * @param text The file's contents.
 * @param path The file's path, for messages.
 * @returns The settings the file gives; absent keys keep their defaults.
 * @throws {UsageError} When the text is not JSON or a field is invalid:
 *   `Invalid config "lb.json": health.intervalMs must be a positive number`.
 */
export function parseConfigFile(text: string, path: string): ConfigLayer {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new UsageError(`Invalid config "${path}": not valid JSON (${detail})`, { cause });
  }
  const result = FILE_SCHEMA.safeParse(json);
  if (!result.success) {
    const problems = result.error.issues.map(describeIssue).join("; ");
    throw new UsageError(`Invalid config "${path}": ${problems}`, { cause: result.error });
  }
  return result.data;
}

/**
 * Reads and validates a JSON config file.
 *
 * @param path The file's path.
 * @param readTextFile Reads it.
 * @returns The settings the file gives.
 * @throws {UsageError} When it cannot be read, is not JSON or has an invalid field.
 */
export async function loadConfigFile(
  path: string,
  readTextFile: (path: string) => Promise<string>,
): Promise<ConfigLayer> {
  let text: string;
  try {
    text = await readTextFile(path);
  } catch (cause) {
    const reason = cause instanceof Deno.errors.NotFound
      ? "no such file"
      : cause instanceof Error
      ? cause.message
      : String(cause);
    throw new UsageError(`Cannot read config "${path}": ${reason}`, { cause });
  }
  return parseConfigFile(text, path);
}

const msPositive = z.number({ error: RULE.msPositive }).positive({ error: RULE.msPositive });
const msMin0 = z.number({ error: RULE.msMin0 }).min(0, { error: RULE.msMin0 });
const countMin1 = z.int({ error: RULE.countMin1 }).min(1, { error: RULE.countMin1 });
const countMin0 = z.int({ error: RULE.countMin0 }).min(0, { error: RULE.countMin0 });

const backendEntry = z.union([
  z.string(),
  z.strictObject({
    url: z.string({ error: "must be a URL string" }),
    weight: z.number({ error: RULE.weight }).positive({ error: RULE.weight }).optional(),
  }),
], { error: 'must be a URL string or an object {"url": ..., "weight": ...}' })
  .transform((entry, context): BackendConfig => {
    const text = typeof entry === "string" ? entry : entry.url;
    try {
      return {
        url: parseBackendUrl(text),
        weight: typeof entry === "string" ? 1 : entry.weight ?? 1,
      };
    } catch (cause) {
      context.addIssue({ code: "custom", message: `"${text}" ${ruleOf(cause)}`, input: entry });
      return z.NEVER;
    }
  });

const FILE_SCHEMA = z.strictObject({
  host: z.string({ error: RULE.host }).refine(isValidHost, { error: RULE.host }).optional(),
  port: z.int({ error: RULE.port }).min(0, { error: RULE.port }).max(65_535, { error: RULE.port })
    .optional(),
  backends: z.array(backendEntry, { error: "must be a list of backend URLs" })
    .min(1, { error: "must list at least one backend" }).optional(),
  policy: z.enum(POLICY_NAMES, { error: RULE.policy }).optional(),
  health: z.strictObject({
    path: z.string({ error: RULE.healthPath }).refine(isValidHealthPath, {
      error: RULE.healthPath,
    }).optional(),
    intervalMs: msPositive.optional(),
    timeoutMs: msPositive.optional(),
    rise: countMin1.optional(),
    fall: countMin1.optional(),
  }, { error: "must be an object" }).optional(),
  proxy: z.strictObject({
    timeoutMs: msPositive.optional(),
    retries: countMin0.optional(),
    maxIdlePerHost: countMin0.optional(),
  }, { error: "must be an object" }).optional(),
  log: z.strictObject({
    level: z.string({ error: RULE.logLevel }).transform((text, context): LogLevel => {
      const level = toLevel(text);
      if (level !== undefined) return level;
      context.addIssue({ code: "custom", message: RULE.logLevel, input: text });
      return z.NEVER;
    }).optional(),
    format: z.enum(LOG_FORMATS, { error: RULE.logFormat }).optional(),
    file: z.string({ error: RULE.logFile }).min(1, { error: RULE.logFile }).optional(),
  }, { error: "must be an object" }).optional(),
  drainTimeoutMs: msMin0.optional(),
}, { error: "must be a JSON object" });

function describeIssue(issue: z.core.$ZodIssue): string {
  const path = formatPath(issue.path);
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.map((key) => `"${path === "" ? key : `${path}.${key}`}"`);
    return `unknown ${keys.length === 1 ? "field" : "fields"} ${keys.join(", ")}`;
  }
  return path === "" ? `the file ${issue.message}` : `${path} ${issue.message}`;
}

function formatPath(path: readonly PropertyKey[]): string {
  let text = "";
  for (const key of path) {
    if (typeof key === "number") text += `[${key}]`;
    else text += text === "" ? String(key) : `.${String(key)}`;
  }
  return text;
}
