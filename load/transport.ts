/**
 * The contract between the load runner and the code that sends one HTTP request.
 *
 * A {@linkcode Transport} is owned by one virtual user (one closed-model loop, or one slot of the
 * open-model sender) and sends one request at a time, reusing its connection when keep-alive is
 * on. Two implementations: the lean HTTP/1.1 client over `Deno.connect` for `http:` targets,
 * and `fetch` for `https:` (and anything the lean client does not support).
 *
 * @module
 */

/** What to send, fixed for a whole run and prepared once. */
export interface RequestSpec {
  /** Target URL (`http:` or `https:`). */
  readonly url: URL;
  /** HTTP method, upper case. */
  readonly method: string;
  /** Extra request headers, in order. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** Request body, sent with every request. */
  readonly body?: Uint8Array;
  /**
   * Reuse connections. When false, one connection per request (as the original Python load
   * tester's `requests.get`).
   */
  readonly keepAlive: boolean;
  /** Per-request timeout in milliseconds, from the start of the send to the end of the body. */
  readonly timeoutMs: number;
}

/** Why a request produced no HTTP response. */
export type NetworkErrorKind = "timeout" | "refused" | "reset" | "network";

/** The result of one request. Times are not here: the runner takes them around `send`. */
export type Outcome =
  | { readonly ok: true; readonly status: number; readonly bodyBytes: number }
  | { readonly ok: false; readonly error: NetworkErrorKind; readonly message: string };

/** Sends requests for one virtual user. */
export interface Transport {
  /**
   * Sends the request and reads the whole response body. Never throws for network failures:
   * they come back as `{ ok: false }`. Aborting `signal` ends the request as `"timeout"`-free
   * cancellation: the outcome is `{ ok: false, error: "network", message: "aborted" }`.
   */
  send(signal?: AbortSignal): Promise<Outcome>;
  /**
   * Requests sent on a new connection because the server had closed the idle kept-alive one
   * and its EOF was seen before the request was written; each reached the server once. A
   * request that failed after it was written is an error and is never sent again.
   */
  readonly resent: number;
  /** Closes the connection(s). Idempotent. */
  close(): Promise<void>;
}

/** Creates one {@linkcode Transport} per virtual user. */
export type TransportFactory = (spec: RequestSpec) => Transport;
