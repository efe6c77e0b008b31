/**
 * The balancer's JSON config file (`lb --config FILE.json`): the same settings as the flags, in
 * the shape of `BalancerConfig` with times in milliseconds and sizes in bytes. Its schema is
 * derived from {@linkcode SETTINGS}, so each rejection names the field:
 * `Invalid config "lb.json": health.intervalMs must be a positive number`.
 *
 * @module
 */
import { z } from "zod";
import { type ConfigLayer, isSetting, SETTINGS } from "./settings.ts";
import { UsageError } from "../shared/command.ts";
import { errorText } from "../shared/error_text.ts";

/**
 * Parses and validates the text of a JSON config file (see `LB_HELP` for its keys).
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
    const detail = errorText(cause);
    throw new UsageError(`Invalid config "${path}": not valid JSON (${detail})`, { cause });
  }
  const result = FILE_SCHEMA.safeParse(json);
  if (!result.success) {
    const problems = result.error.issues.map(describeIssue).join("; ");
    throw new UsageError(`Invalid config "${path}": ${problems}`, { cause: result.error });
  }
  // The schema is built from the same table as ConfigLayer, key for key and kind for kind.
  return result.data as ConfigLayer;
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

/** A strict object of the group's settings and subgroups, every key optional. */
function groupSchema(group: object, error: string): z.ZodType<unknown> {
  const shape: Record<string, z.ZodOptional<z.ZodType<unknown>>> = {};
  for (const [key, node] of Object.entries(group)) {
    shape[key] = (isSetting(node) ? node.kind.schema : groupSchema(node, "must be an object"))
      .optional();
  }
  return z.strictObject(shape, { error });
}

const FILE_SCHEMA = groupSchema(SETTINGS, "must be a JSON object");

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
