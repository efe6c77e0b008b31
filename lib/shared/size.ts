/**
 * Byte sizes as people type them (`512`, `64KB`, `1MiB`): KB, MB and GB are powers of 1000,
 * KiB, MiB and GiB powers of 1024, as their standards (SI, IEC 80000-13) define them.
 *
 * @module
 */

const UNIT_BYTES: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/**
 * Parses a size into bytes. A bare number is bytes; units are case-insensitive.
 *
 * @param text The size, such as `"512"`, `"64KB"`, `"1MiB"` or `"1.5MB"`.
 * @returns The size in bytes, a safe integer.
 * @throws {SyntaxError} When the text is not a size or is not a whole number of bytes.
 *
 * @example
 * ```ts
 * import { parseSize } from "./size.ts";
 * if (parseSize("512") !== 512) throw new Error("bad");
 * if (parseSize("64KB") !== 64_000) throw new Error("bad");
 * if (parseSize("1MiB") !== 1_048_576) throw new Error("bad");
 * ```
 */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = UNIT_BYTES[(match?.[2] ?? "").toLowerCase() || "b"];
  const bytes = match === null || unit === undefined ? Number.NaN : Number(match[1]) * unit;
  if (!Number.isSafeInteger(bytes)) {
    throw new SyntaxError(
      `Cannot parse size "${text}": use a whole number of bytes or a unit, such as 512, 64KB or 1MiB`,
    );
  }
  return bytes;
}

/**
 * Formats bytes the way {@linkcode parseSize} reads them, in the largest unit that divides them
 * exactly: `1MiB`, `64KB`, `1500`.
 *
 * @param bytes The size in bytes, a whole number.
 * @returns The size as a flag value.
 *
 * @example
 * ```ts
 * import { formatSize } from "./size.ts";
 * if (formatSize(1_048_576) !== "1MiB") throw new Error("bad");
 * if (formatSize(64_000) !== "64KB") throw new Error("bad");
 * if (formatSize(1500) !== "1500") throw new Error("bad");
 * ```
 */
export function formatSize(bytes: number): string {
  for (const unit of ["GiB", "GB", "MiB", "MB", "KiB", "KB"]) {
    const size = UNIT_BYTES[unit.toLowerCase()] ?? 1;
    if (bytes > 0 && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}
