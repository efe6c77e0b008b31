/**
 * The standard reason phrases of HTTP status codes, apart from the rest of `std.ts`: a data-plane
 * worker needs them (a backend's `101` or refusal relayed by the WebSocket tunnel), and importing
 * `std.ts` would also load the media types database, about 5 MB of resident memory per isolate.
 *
 * @module
 */
import { STATUS_TEXT as stdStatusText } from "@std/http/status";

/**
 * The standard reason phrase of an HTTP status code, or `""` when the code has none.
 *
 * @param status The HTTP status code.
 * @returns The reason phrase, for example `"Service Unavailable"` for 503.
 *
 * @example
 * ```ts
 * import { statusText } from "./std_status.ts";
 * if (statusText(503) !== "Service Unavailable") throw new Error("unexpected text");
 * ```
 */
export function statusText(status: number): string {
  const text: unknown = (stdStatusText as Record<number, unknown>)[status];
  return typeof text === "string" ? text : "";
}
