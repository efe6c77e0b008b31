/**
 * A {@linkcode Transport} over `fetch`, for `https:` targets and HTTP/2 (the lean HTTP/1.1
 * client serves plain `http:`). Each transport owns its own `Deno.HttpClient`, so a virtual
 * user holds its own connection as it would in the wild, and `close()` leaves nothing open.
 *
 * @module
 */
import type { NetworkErrorKind, Outcome, RequestSpec, Transport } from "./transport.ts";
import { errorText } from "../lib/shared/error_text.ts";

/** Options of {@linkcode createFetchTransport}. */
export interface FetchTransportOptions {
  /** Fetch implementation (tests). Default: the global `fetch`. */
  readonly fetch?: typeof fetch;
}

const ABORTED: Outcome = { ok: false, error: "network", message: "aborted" };

/**
 * Creates a transport that sends `spec` with `fetch`.
 *
 * With `keepAlive` off, the client keeps no idle connection, so every request opens (and the
 * response closes) its own connection, as the original Python load tester's `requests.get` did.
 *
 * @param spec What to send.
 * @param options Fetch override.
 * @returns A transport for one virtual user.
 */
export function createFetchTransport(
  spec: RequestSpec,
  options: FetchTransportOptions = {},
): Transport {
  const doFetch = options.fetch ?? fetch;
  // allowHost: without it fetch silently drops a user-supplied Host header.
  const client = Deno.createHttpClient({
    allowHost: true,
    poolMaxIdlePerHost: spec.keepAlive ? 1 : 0,
  });
  const url = spec.url.href;
  const headers = new Headers(spec.headers.map(([name, value]) => [name, value]));
  if (!spec.keepAlive) headers.set("connection", "close");
  // A copy typed as ArrayBuffer-backed (fetch rejects a possibly shared buffer), made once.
  const body = spec.body === undefined ? null : new Uint8Array(spec.body);
  const method = spec.method;
  const timeoutMs = spec.timeoutMs;
  let isClosed = false;

  return {
    // fetch's pool (hyper's `retry_canceled_requests`) resends only a request it had not begun
    // to write on a connection it found closed, and does not say when: none can be counted.
    resent: 0,
    async send(signal?: AbortSignal): Promise<Outcome> {
      if (signal?.aborted) return ABORTED;
      const timeout = AbortSignal.timeout(timeoutMs);
      const combined = signal === undefined ? timeout : AbortSignal.any([timeout, signal]);
      let response: Response | undefined;
      try {
        response = await doFetch(url, { method, headers, body, client, signal: combined });
        const bodyBytes = (await response.arrayBuffer()).byteLength;
        return { ok: true, status: response.status, bodyBytes };
      } catch (error) {
        if (response?.bodyUsed === false) await response.body?.cancel().catch(() => {});
        if (timeout.aborted) {
          return { ok: false, error: "timeout", message: `no response within ${timeoutMs}ms` };
        }
        if (signal?.aborted) return ABORTED;
        return { ok: false, error: classifyNetworkError(error), message: errorMessage(error) };
      }
    },
    close(): Promise<void> {
      if (!isClosed) {
        isClosed = true;
        client.close();
      }
      return Promise.resolve();
    },
  };
}

const REFUSED = /connection refused|econnrefused|os error 111|os error 10061/i;
// "error reading a body from connection": fetch's only report of a body cut short by the peer.
const RESET =
  /connection reset|econnreset|broken pipe|epipe|connection closed before|unexpected eof|incomplete message|connection aborted|error reading a body|os error 104|os error 32/i;
const TIMED_OUT = /timed out|etimedout|os error 110/i;

/**
 * Classifies a network error from `fetch` or `Deno.connect` by its class and message, walking
 * the `cause` chain (fetch wraps the socket error).
 *
 * @param error What was thrown.
 * @returns The kind: refused, reset, timeout or other network error.
 *
 * @example
 * ```ts
 * import { classifyNetworkError } from "./fetch_transport.ts";
 * const error = new TypeError("error sending request", { cause: new Error("Connection refused (os error 111)") });
 * if (classifyNetworkError(error) !== "refused") throw new Error("bad");
 * ```
 */
export function classifyNetworkError(error: unknown): NetworkErrorKind {
  for (let current: unknown = error, depth = 0; current !== undefined && depth < 8; depth++) {
    if (current instanceof Deno.errors.ConnectionRefused) return "refused";
    if (
      current instanceof Deno.errors.ConnectionReset ||
      current instanceof Deno.errors.ConnectionAborted ||
      current instanceof Deno.errors.BrokenPipe ||
      current instanceof Deno.errors.UnexpectedEof
    ) return "reset";
    if (current instanceof Deno.errors.TimedOut) return "timeout";
    const message = errorText(current);
    if (REFUSED.test(message)) return "refused";
    if (RESET.test(message)) return "reset";
    if (TIMED_OUT.test(message)) return "timeout";
    current = current instanceof Error ? current.cause : undefined;
  }
  return "network";
}

function errorMessage(error: unknown): string {
  const parts: string[] = [];
  for (let current: unknown = error, depth = 0; current !== undefined && depth < 4; depth++) {
    parts.push(errorText(current));
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(": ");
}
