/**
 * The process's open-files limit, which bounds how many sockets the load tester may hold: read
 * from `/proc/self/limits` on Linux. Deno has no `getrlimit`, so elsewhere it is unknown and the
 * fixed default cap applies alone.
 *
 * @module
 */

/**
 * Reads the soft open-files limit.
 *
 * @param readText Reads a file. Default: `Deno.readTextFileSync`.
 * @returns The limit, or `undefined` when unknown (not Linux, no permission, "unlimited").
 *
 * @example
 * ```ts
 * import { readDescriptorLimit } from "./descriptor_limit.ts";
 * const text = "Limit  Soft Limit  Hard Limit  Units\nMax open files  1024  4096  files\n";
 * if (readDescriptorLimit(() => text) !== 1024) throw new Error();
 * ```
 */
export function readDescriptorLimit(
  readText: (path: string) => string = Deno.readTextFileSync,
): number | undefined {
  let text: string;
  try {
    text = readText("/proc/self/limits");
  } catch {
    // Not Linux, or no read permission: the limit is unknown, which the caller allows for.
    return undefined;
  }
  const match = /^Max open files\s+(\d+)\s/m.exec(text);
  return match === null ? undefined : Number(match[1]);
}
