/**
 * Relaying a backend's streamed response body to the client while knowing how it ended: every
 * byte handed on is counted, and the end is told once, as one of three: the body came whole,
 * the backend failed in the middle of it (the connection broke, the framing was wrong, the
 * idle-body timeout cut it), or the client went away.
 *
 * `Deno.serve` cannot say which: its `completed` resolves in all three cases, and a body
 * stream that errors is passed to the server's `onError` as if the handler had failed. So the
 * access log would show the declared length for a body cut short, passive health would never
 * hear of the backend's failure, and the log would say "Unhandled error". Once the response's
 * head has gone, the only thing left to do for the client is to end its connection without the
 * body's proper end (fewer bytes than `Content-Length`, or no last chunk), which erroring the
 * stream does; the error is a {@linkcode ResponseBodyCut}, which the server's `onError` knows
 * is already handled.
 *
 * The relay costs a JavaScript stream per relayed body (`fetch`'s bodies are otherwise piped
 * natively), which on a small response is more than reading it whole: `proxy.ts` reads bodies
 * of up to 64 KiB with a `Content-Length` whole instead, so only larger bodies, and those of
 * unknown length, are relayed.
 *
 * @module
 */

/** How a relayed body ended, with the body bytes handed on to the client. */
export type BodyEnd =
  /** The backend's body ended properly. */
  | { readonly kind: "complete"; readonly bytes: number }
  /** Reading the backend's body failed: the backend's fault (or its stall's). */
  | { readonly kind: "backend-failed"; readonly bytes: number; readonly error: unknown }
  /** The client stopped reading (went away): nobody's fault but the client's. */
  | { readonly kind: "client-gone"; readonly bytes: number };

/**
 * The error a relayed body ends with when the backend failed mid-body: the failure has been
 * logged and counted already, so the server's `onError` must not report it again.
 */
export class ResponseBodyCut extends Error {
  override readonly name = "ResponseBodyCut";
}

/** A relayed body and a way to end it from outside. */
export interface RelayedBody {
  /** The stream to give the client's response. */
  readonly stream: ReadableStream<Uint8Array>;
  /**
   * Ends the relay as `client-gone` unless it already ended: for when the server finished the
   * response without reading the body to its end or cancelling it.
   */
  abandon(): void;
}

/**
 * Wraps a backend's response body so that its end is reported once to `onEnd`. A body of
 * `declaredBytes` is complete as soon as that many bytes have been handed on, before the
 * backend's stream says so, so the end is known before the client can see it. When `onEnd`
 * returns a promise (the access log is full), the body's end waits for it.
 *
 * @param body The backend's response body.
 * @param declaredBytes Its `Content-Length`, when it has one.
 * @param onEnd Told how the body ended, once.
 * @returns The stream for the client and its fallback end.
 *
 * @example
 * ```ts
 * import { relayBody } from "./response_body.ts";
 * let ended = "";
 * const body = new Response("hello").body as ReadableStream<Uint8Array>;
 * const relayed = relayBody(body, undefined, (end) => {
 *   ended = `${end.kind} ${end.bytes}`;
 *   return undefined;
 * });
 * if (await new Response(relayed.stream).text() !== "hello" || ended !== "complete 5") {
 *   throw new Error(ended);
 * }
 * ```
 */
export function relayBody(
  body: ReadableStream<Uint8Array>,
  declaredBytes: number | undefined,
  onEnd: (end: BodyEnd) => Promise<void> | undefined,
): RelayedBody {
  const reader = body.getReader();
  let bytes = 0;
  let isEnded = false;
  const end = (result: BodyEnd): Promise<void> | undefined => {
    if (isEnded) return undefined;
    isEnded = true;
    return onEnd(result);
  };
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        if (isEnded) return;
        void end({ kind: "backend-failed", bytes, error });
        controller.error(new ResponseBodyCut("Backend response body failed", { cause: error }));
        return;
      }
      if (result.done) {
        const wait = end({ kind: "complete", bytes });
        if (wait !== undefined) await wait;
        controller.close();
        return;
      }
      bytes += result.value.byteLength;
      if (declaredBytes !== undefined && bytes >= declaredBytes) {
        const wait = end({ kind: "complete", bytes });
        if (wait !== undefined) await wait;
      }
      controller.enqueue(result.value);
    },
    cancel(reason) {
      void end({ kind: "client-gone", bytes });
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  return { stream, abandon: () => void end({ kind: "client-gone", bytes }) };
}
