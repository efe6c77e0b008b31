/**
 * Telling descriptor exhaustion apart from other failures of `accept()`, `connect()` and
 * `fetch`.
 *
 * @module
 */

/**
 * Whether an error means the process or the system ran out of file descriptors (EMFILE,
 * ENFILE).
 *
 * @param error What `accept()`, `connect()` or `fetch` threw.
 * @returns Whether it is descriptor exhaustion, looking through `cause`.
 *
 * @example
 * ```ts
 * import { isFdExhaustion } from "./fd_exhaustion.ts";
 * if (!isFdExhaustion(new Error("Too many open files (os error 24)"))) throw new Error();
 * ```
 */
export function isFdExhaustion(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 4; depth++) {
    if (/too many open files|os error 2[34]\b/i.test(e.message)) return true;
    e = e.cause;
  }
  return false;
}
