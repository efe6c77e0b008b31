/**
 * Waiting for a file to hold something: logs are written in the background, so a test polls
 * the file (bounded) instead of sleeping a fixed time.
 *
 * @module
 */

/** Bounds of {@linkcode waitForFileText}. */
export interface WaitOptions {
  /** Reads before giving up. Default: 500. */
  readonly tries?: number;
  /** Pause between reads, in milliseconds. Default: 10. */
  readonly intervalMs?: number;
}

/**
 * Reads `path` until its text contains `wanted` (a string or a pattern), at most `tries` times.
 * A missing file reads as empty.
 *
 * @param path The file.
 * @param wanted What the text must contain.
 * @param options How often and how long to read.
 * @returns The last text read: the caller asserts on it, so a timeout fails there, with the text.
 */
export async function waitForFileText(
  path: string,
  wanted: string | RegExp,
  options: WaitOptions = {},
): Promise<string> {
  const isThere = (text: string) =>
    typeof wanted === "string" ? text.includes(wanted) : wanted.test(text);
  let text = "";
  for (let tries = options.tries ?? 500; tries > 0 && !isThere(text); tries--) {
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 10));
    text = await Deno.readTextFile(path).catch(() => "");
  }
  return text;
}
