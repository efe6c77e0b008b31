/**
 * The backend side of a WebSocket relay: opening it with Deno's client (`new WebSocket(url,
 * { protocols, headers, client })`) within a timeout, and classifying why it did not open.
 * Deno reports a non-101 answer only as an error message naming the status, so the status is
 * read from that message.
 *
 * @module
 */
import type { Clock } from "../shared/clock.ts";
import { closeQuietly } from "./websocket_close.ts";
import { errorText } from "../shared/error_text.ts";

/** Why the backend side did not open. */
export type OpenFailure =
  /** No connection (refused, unreachable): the request never left; another backend may try. */
  | { readonly reason: "connect"; readonly message: string }
  /** The backend answered, but not 101; `status` when Deno's error names it. */
  | { readonly reason: "refused"; readonly status: number | undefined; readonly message: string }
  | { readonly reason: "timeout"; readonly message: string }
  | { readonly reason: "client-abort"; readonly message: string };

/** The result of {@linkcode openBackendSocket}. */
export type OpenOutcome =
  | { readonly ok: true; readonly socket: WebSocket }
  | (
    { readonly ok: false } & OpenFailure
  );

/** Options for {@linkcode openBackendSocket}. */
export interface OpenBackendOptions {
  /** The subprotocols the client offered, in its order. */
  readonly protocols: string[];
  /** The handshake's headers (the client's end-to-end ones and the forwarding headers). */
  readonly headers: Array<[string, string]>;
  /** The client request's signal: when it aborts, so does the handshake. */
  readonly signal: AbortSignal;
  /** How long the backend may take to accept, in milliseconds. */
  readonly timeoutMs: number;
  /** The upstream client (it lets `Host` through). Default: Deno's default client. */
  readonly client?: Deno.HttpClient | undefined;
  /** Runs the timeout. */
  readonly clock: Clock;
}

/**
 * Opens the backend side of a relay: resolves once it is open, or with why not. Never throws
 * or rejects. A failed socket is closed.
 *
 * @param url The backend's `ws:` or `wss:` URL.
 * @param options Subprotocols, headers, client signal, timeout, client and clock.
 * @returns The open socket (binary messages as `ArrayBuffer`), or the failure.
 */
export function openBackendSocket(url: string, options: OpenBackendOptions): Promise<OpenOutcome> {
  const { protocols, headers, clock } = options;
  const clientSignal = options.signal;
  let socket: WebSocket;
  try {
    socket = new WebSocket(url, {
      protocols,
      headers,
      ...(options.client === undefined ? {} : { client: options.client }),
    });
  } catch (error) {
    const message = errorText(error);
    return Promise.resolve({ ok: false, reason: "connect", message });
  }
  socket.binaryType = "arraybuffer";
  const { promise, resolve } = Promise.withResolvers<OpenOutcome>();
  const timer = new AbortController();
  const settle = (outcome: OpenOutcome) => {
    timer.abort();
    clientSignal.removeEventListener("abort", onClientAbort);
    socket.onopen = null;
    socket.onerror = null;
    if (!outcome.ok) closeQuietly(socket, 1000, "");
    resolve(outcome);
  };
  const onClientAbort = () =>
    settle({ ok: false, reason: "client-abort", message: "Client went away" });
  clientSignal.addEventListener("abort", onClientAbort, { once: true });
  clock.sleep(options.timeoutMs, timer.signal).then(
    () =>
      settle({
        ok: false,
        reason: "timeout",
        message: `No upgrade within ${options.timeoutMs} ms`,
      }),
    () => {},
  );
  socket.onopen = () => settle({ ok: true, socket });
  socket.onerror = (event: Event) => {
    const message = event instanceof ErrorEvent ? event.message : "WebSocket error";
    settle(classifyOpenError(message));
  };
  return promise;
}

/**
 * Classifies the error Deno's WebSocket client reports when it cannot open: a non-101 answer
 * names its status (`Invalid status code: 403`); anything else is a connect failure.
 *
 * @param message The `ErrorEvent`'s message.
 * @returns The failure.
 *
 * @example
 * ```ts
 * import { classifyOpenError } from "./websocket_backend.ts";
 * const failure = classifyOpenError("NetworkError: failed to connect to WebSocket: Invalid status code: 403");
 * if (failure.reason !== "refused" || failure.status !== 403) throw new Error();
 * ```
 */
export function classifyOpenError(message: string): { ok: false } & OpenFailure {
  const match = /Invalid status code:? (\d{3})/.exec(message);
  if (match !== null) {
    return { ok: false, reason: "refused", status: Number(match[1]), message };
  }
  if (/status|protocol|header|handshake/i.test(message) && !/connect error/i.test(message)) {
    return { ok: false, reason: "refused", status: undefined, message };
  }
  return { ok: false, reason: "connect", message };
}
