/**
 * Typed boundary over the Deno standard library.
 *
 * The std modules are mapped in `deno.json` to the `deno-std` npm package, which ships plain
 * JavaScript without types, so everything imported from it is `any`. This module is the one
 * place that touches those imports (with `std_cli.ts` and `std_status.ts`); the rest of the code base sees the types
 * below. Swapping the mapping to `jsr:@std/...` needs no change here or elsewhere. The
 * command-line helpers live in `std_cli.ts` and the status table in `std_status.ts` (both
 * re-exported here), so a command that parses flags or a data plane that needs a reason phrase
 * does not also load the media types database (about 100 ms of start-up and 5 MB of resident
 * memory).
 *
 * @module
 */
import { contentType as stdContentType } from "@std/media-types/content-type";
export {
  levenshteinDistance,
  parseArgs,
  type ParseArgsOptions,
  type ParsedArgs,
} from "./std_cli.ts";
export { statusText } from "./std_status.ts";

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
