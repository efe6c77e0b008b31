/**
 * The answers the balancer gives itself rather than a backend's: which status each forwarding
 * failure maps to, which failures are not the backend's fault, the methods it refuses, and the
 * one-line plain-text bodies (never a stack trace or a backend's error message).
 *
 * @module
 */
import type { ForwardFailureReason } from "./proxy.ts";

const TEXT_HEADERS = { "content-type": "text/plain; charset=utf-8" } as const;

/** The status the client gets for each reason a forward failed. */
export const FAILURE_STATUS: Readonly<Record<ForwardFailureReason, number>> = {
  connect: 502,
  protocol: 502,
  "connect-timeout": 504,
  "response-timeout": 504,
  "client-abort": 499,
  "client-timeout": 408,
  "client-too-large": 413,
  "fd-exhausted": 503,
  unsendable: 400,
};

/**
 * Failures that are not the backend's: they do not count against it, and passive health never
 * hears of them.
 */
export const NOT_BACKENDS_FAULT: ReadonlySet<ForwardFailureReason> = new Set([
  "client-abort",
  "client-timeout",
  "client-too-large",
  "fd-exhausted",
  "unsendable",
]);

/** The default body of each status the balancer answers with. */
const FAILURE_BODY: Readonly<Record<number, string>> = {
  400: "Bad request\n",
  405: "Method not allowed\n",
  408: "Request timeout: the request body stalled\n",
  499: "Client closed request\n",
  501: "Not implemented: the balancer does not forward this method\n",
  502: "Bad gateway: the backend could not be reached or failed\n",
  503: "Service unavailable: no backend is healthy\n",
  504: "Gateway timeout: the backend did not answer in time\n",
};

/** The 400's body for a GET or HEAD request with a body, which the balancer cannot forward. */
export const GET_BODY_REFUSED_BODY =
  "Bad request: the balancer does not forward a body with GET or HEAD\n";

/** The 503's body when no descriptor was left to connect with. */
export const FD_EXHAUSTED_BODY = "Service unavailable: the balancer is out of file descriptors\n";

/** The 503's body when every available backend stayed at its in-flight limit. */
export const AT_CAPACITY_BODY = "Service unavailable: every backend is at its in-flight limit\n";

/**
 * Methods the balancer answers itself, by their upper-case name (a method's case is
 * significant, but `fetch` refuses these three in any case before connecting, so passing any
 * spelling on could only fail): nothing is tunnelled (`CONNECT`), nothing echoed (`TRACE`, and
 * IIS's `TRACK`).
 */
export const REFUSED_METHOD_STATUS: Readonly<Record<string, number>> = {
  CONNECT: 501,
  TRACE: 405,
  TRACK: 501,
};

/**
 * The status the balancer answers `method` with itself, if it refuses it.
 *
 * @param method The request's method, in the case it came.
 * @returns 405 or 501, or `undefined` when the method is forwarded.
 *
 * @example
 * ```ts
 * import { refusedMethodStatus } from "./answers.ts";
 * if (refusedMethodStatus("track") !== 501 || refusedMethodStatus("GET") !== undefined) {
 *   throw new Error();
 * }
 * ```
 */
export function refusedMethodStatus(method: string): number | undefined {
  // Every method the Request constructor normalizes is already upper case: most requests
  // never pay for the second lookup.
  return REFUSED_METHOD_STATUS[method] ??
    (method.length === 5 || method.length === 7
      ? REFUSED_METHOD_STATUS[method.toUpperCase()]
      : undefined);
}

/** The `Allow` header of a refused method's answer. */
export const ALLOWED_METHODS = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

/**
 * A plain-text answer of the balancer's own.
 *
 * @param status The status code.
 * @param requestId Sent back as `X-Request-Id`, when known.
 * @param retryAfter Seconds for `Retry-After`, when the client should come back.
 * @param extraHeaders More header fields (such as `Connection: close`).
 * @param body The body. Default: the status's one-line text.
 * @returns The response.
 *
 * @example
 * ```ts
 * import { textResponse } from "./answers.ts";
 * const response = textResponse(502, "r-1");
 * if (response.headers.get("x-request-id") !== "r-1") throw new Error();
 * ```
 */
export function textResponse(
  status: number,
  requestId: string | undefined,
  retryAfter?: string,
  extraHeaders?: Record<string, string>,
  body?: string,
): Response {
  const headers: Record<string, string> = { ...TEXT_HEADERS, ...extraHeaders };
  if (requestId !== undefined) headers["x-request-id"] = requestId;
  if (retryAfter !== undefined) headers["retry-after"] = retryAfter;
  return new Response(body ?? FAILURE_BODY[status] ?? "Error\n", { status, headers });
}
