/**
 * Validates load reports against the published JSON Schema (`load/report.schema.json`) with a
 * JSON Schema validator independent of zod, so what a script relies on is what is checked.
 *
 * @module
 */
import { Ajv2020 } from "ajv/2020";
import { assert } from "../support/assert.ts";

const schema: unknown = JSON.parse(
  await Deno.readTextFile(new URL("../../load/report.schema.json", import.meta.url)),
);
const validate = new Ajv2020({ strict: true, allErrors: true }).compile(
  schema as Record<string, unknown>,
);

/**
 * Asserts that `text` is a JSON report the published schema accepts.
 *
 * @param text The report as written by `--json`.
 * @returns The parsed report.
 */
export function assertValidReport(text: string): unknown {
  const data: unknown = JSON.parse(text);
  assert(validate(data), `report does not match the schema: ${JSON.stringify(validate.errors)}`);
  return data;
}
