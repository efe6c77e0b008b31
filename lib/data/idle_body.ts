/**
 * The idle-body timeout: a backend's response body that pauses longer than `timeoutMs` between
 * two chunks is cut. The response's status and headers have already gone to the client, so
 * the only thing left to do is to end its stream with an error, which makes `Deno.serve` close
 * the client connection without the body's proper end (no last chunk, or fewer bytes than the
 * `Content-Length`): the client sees a truncated response, never a complete-looking one.
 *
 * Only the wait for the backend counts: the stream pulls (and arms a deadline) when its
 * reader asks for a chunk, so a client slow to read is not taken for a backend slow to send.
 * Deadlines go on a shared {@linkcode DeadlineQueue}, not a `setTimeout` per chunk.
 *
 * @module
 */
import type { Deadline, DeadlineQueue } from "../shared/deadlines.ts";

/** What the idle-body timeout runs on; built once per handler. */
export interface IdleBodyWatch<Context> {
  /** The longest wait for the backend's next chunk, in milliseconds (more than 0). */
  readonly timeoutMs: number;
  /** Runs the deadlines; share one per handler, so one timeout value keeps it in order. */
  readonly deadlines: DeadlineQueue;
  /** The deadlines' clock's `now`. */
  readonly now: () => number;
  /** Called once when the timeout fires, with the `context` given to {@linkcode watchIdleBody}. */
  readonly onTimeout: (context: Context) => void;
}

/** Why the stream was cut; also the error the client's stream ends with. */
export const IDLE_BODY_TIMEOUT: DOMException = new DOMException(
  "Backend response body idle too long",
  "TimeoutError",
);

/**
 * Wraps a backend's response body so that a pause longer than `watch.timeoutMs` between two
 * chunks cancels the backend's body and errors the returned stream.
 *
 * @param body The backend's response body.
 * @param watch The timeout, its deadline queue and what to call when it fires.
 * @param context Passed to `watch.onTimeout` (such as the backend and request ID).
 * @returns The stream to hand to the client.
 *
 * @example
 * ```ts
 * import { DeadlineQueue } from "../shared/deadlines.ts";
 * import { watchIdleBody } from "./idle_body.ts";
 * const watch = {
 *   timeoutMs: 1000,
 *   deadlines: new DeadlineQueue(),
 *   now: () => performance.now(),
 *   onTimeout: () => {},
 * };
 * const body = watchIdleBody(new Response("hello").body as ReadableStream<Uint8Array>, watch, 0);
 * if (await new Response(body).text() !== "hello") throw new Error();
 * ```
 */
export function watchIdleBody<Context>(
  body: ReadableStream<Uint8Array>,
  watch: IdleBodyWatch<Context>,
  context: Context,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const { deadlines, timeoutMs } = watch;
  let deadline: Deadline | undefined;
  // Once timed out or cancelled by the client, a read settling afterwards is ignored.
  let isTimedOut = false;
  let isCancelled = false;
  const expire = (controller: ReadableStreamDefaultController<Uint8Array>) => {
    deadline = undefined;
    isTimedOut = true;
    reader.cancel(IDLE_BODY_TIMEOUT).catch(() => {});
    controller.error(IDLE_BODY_TIMEOUT);
    watch.onTimeout(context);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      deadline = deadlines.add(watch.now() + timeoutMs, expire, controller);
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        if (isTimedOut) return;
        if (deadline !== undefined) deadlines.cancel(deadline);
        deadline = undefined;
        if (!isCancelled) controller.error(error);
        return;
      }
      if (isTimedOut) return;
      if (deadline !== undefined) deadlines.cancel(deadline);
      deadline = undefined;
      if (isCancelled) return;
      if (result.done) controller.close();
      else controller.enqueue(result.value);
    },
    cancel(reason) {
      isCancelled = true;
      if (deadline !== undefined) deadlines.cancel(deadline);
      deadline = undefined;
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
