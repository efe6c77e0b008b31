/**
 * Request IDs: a trusted proxy's `X-Request-Id` when it sent a usable one, else one of ours.
 * Any other peer's is replaced (as its `X-Forwarded-For` is): a client must not choose the ID
 * that ties log lines together, or make two requests share one. The ID goes to the backend,
 * back to the client and into the access log.
 *
 * @module
 */

/** The longest client `X-Request-Id` kept; a longer one is replaced. */
const MAX_REQUEST_ID_LENGTH = 128;

/**
 * The request's ID: its own `X-Request-Id` when the peer is a trusted proxy and the ID is at
 * most 128 characters, else a new one from `create`.
 *
 * @param request The client's request.
 * @param isPeerTrusted Whether the peer is a trusted proxy (`--trusted-proxies`).
 * @param create Makes a new ID.
 * @returns The ID.
 *
 * @example
 * ```ts
 * import { requestIdOf } from "./request_id.ts";
 * const request = new Request("http://x/", { headers: { "x-request-id": "abc" } });
 * if (requestIdOf(request, true, () => "new") !== "abc") throw new Error();
 * if (requestIdOf(request, false, () => "new") !== "new") throw new Error();
 * ```
 */
export function requestIdOf(
  request: Request,
  isPeerTrusted: boolean,
  create: () => string,
): string {
  if (!isPeerTrusted) return create();
  const clientId = request.headers.get("x-request-id");
  return clientId !== null && clientId.length <= MAX_REQUEST_ID_LENGTH ? clientId : create();
}

/**
 * The default request ID source: a random per-isolate prefix and a counter, so IDs are unique
 * across isolates and cost one string concatenation each.
 *
 * @returns A function making the next ID, such as `"3f9a1c2e-1b"`.
 */
export function createRequestIdSource(): () => string {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  const prefix = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  let counter = 0;
  return () => `${prefix}-${(++counter).toString(36)}`;
}
