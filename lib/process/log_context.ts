/**
 * The request ID every log record logged during a request carries: one `AsyncLocalStorage` per
 * isolate, which LogTape reads as its implicit context (`log.ts`) and a data-plane worker's relay
 * logger reads itself (`log_relay.ts`). Apart from `log.ts` so that a worker, which sets it on
 * every request, does not load LogTape.
 *
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";

/** The root category of every balancer log record. */
export const LOG_ROOT = "denolb";

/** The fields every record logged inside {@linkcode withRequestId} carries. */
export const LOG_CONTEXT_STORAGE: AsyncLocalStorage<Record<string, unknown>> =
  new AsyncLocalStorage();

/**
 * Runs one request's work so that every record logged during it, by any module, carries its
 * `requestId`.
 *
 * @param requestId The request's ID.
 * @param run The request's work.
 * @returns What `run` returns.
 */
export function withRequestId<T>(requestId: string, run: () => T): T {
  return LOG_CONTEXT_STORAGE.run({ requestId }, run);
}
