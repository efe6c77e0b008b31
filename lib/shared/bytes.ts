/**
 * Joining byte chunks, as read from a socket or a body stream.
 *
 * @module
 */

/**
 * The chunks as one array: the only chunk itself when there is one, else a copy of them all.
 *
 * @param chunks The chunks, in order.
 * @returns Their bytes, one after another.
 *
 * @example
 * ```ts
 * import { concatBytes } from "./bytes.ts";
 * const joined = concatBytes([new Uint8Array([1, 2]), new Uint8Array([3])]);
 * if (joined.join() !== "1,2,3") throw new Error(joined.join());
 * ```
 */
export function concatBytes(chunks: readonly Uint8Array<ArrayBuffer>[]): Uint8Array<ArrayBuffer> {
  if (chunks.length === 1 && chunks[0] !== undefined) return chunks[0];
  let length = 0;
  for (const chunk of chunks) length += chunk.byteLength;
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}
