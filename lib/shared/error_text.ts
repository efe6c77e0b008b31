/**
 * The text of anything thrown: an `Error`'s message, anything else as a string. Written once here
 * for every log line, answer and report that names a failure.
 *
 * @module
 */

/**
 * The text of a thrown value.
 *
 * @example
 * ```ts
 * import { errorText } from "./error_text.ts";
 * if (errorText(new RangeError("too big")) !== "too big" || errorText(42) !== "42") {
 *   throw new Error();
 * }
 * ```
 *
 * @param error What was thrown.
 * @returns Its message, or it as a string.
 */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
