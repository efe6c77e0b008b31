/**
 * Typed boundary over the Deno standard library.
 *
 * The std modules are mapped in `deno.json` to the `deno-std` npm package, which ships plain
 * JavaScript without types, so everything imported from it is `any`. This module is the one
 * place that touches those imports (with `std_cli.ts`); the rest of the code base sees the types
 * below. Swapping the mapping to `jsr:@std/...` needs no change here or elsewhere. The
 * command-line helpers live in `std_cli.ts` (re-exported here), so a command that parses flags
 * does not also load the media types database and the status table (about 100 ms of start-up
 * and 5 MB of resident memory).
 *
 * @module
 */
import { STATUS_TEXT as stdStatusText } from "@std/http/status";
import { contentType as stdContentType } from "@std/media-types/content-type";
export {
  levenshteinDistance,
  parseArgs,
  type ParseArgsOptions,
  type ParsedArgs,
} from "./std_cli.ts";

/**
 * The standard reason phrase of an HTTP status code, or `""` when the code has none.
 *
 * @param status The HTTP status code.
 * @returns The reason phrase, for example `"Service Unavailable"` for 503.
 *
 * @example
 * ```ts
 * import { statusText } from "./std.ts";
 * if (statusText(503) !== "Service Unavailable") throw new Error("unexpected text");
 * ```
 */
export function statusText(status: number): string {
  const text: unknown = (stdStatusText as Record<number, unknown>)[status];
  return typeof text === "string" ? text : "";
}

/**
 * The `Content-Type` value for a file extension or media type, with a charset for text types.
 *
 * @param extensionOrType An extension such as `".html"` or `"css"`, or a media type.
 * @returns The header value, or `undefined` when the extension is unknown.
 *
 * @example
 * ```ts
 * import { contentType } from "./std.ts";
 * if (contentType(".html") !== "text/html; charset=UTF-8") throw new Error("unexpected type");
 * ```
 */
export function contentType(extensionOrType: string): string | undefined {
  const value: unknown = stdContentType(extensionOrType);
  return typeof value === "string" ? value : undefined;
}
