/**
 * Hop-by-hop header fields (RFC 9110 section 7.6.1): they describe one connection rather than
 * the message, so a proxy never passes them on, in either direction. Shared by the proxy's
 * header rules (`data/proxy_headers.ts`) and the `http1` upstream, whose responses come
 * without them.
 *
 * @module
 */

/**
 * The standard hop-by-hop fields, plus `Proxy-Connection` (a non-standard relative of
 * `Connection`), in lower case. `TE: trailers` is dropped too: a proxied response cannot
 * carry trailers back to the client.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** 1 at the index of each hop-by-hop field name's length. */
const HOP_BY_HOP_LENGTHS: Uint8Array = (() => {
  const lengths = new Uint8Array(32);
  for (const name of HOP_BY_HOP) lengths[name.length] = 1;
  return lengths;
})();

/**
 * The header names listed in a `Connection` header: the sender marks them as hop-by-hop, so
 * they are removed along with `Connection` itself.
 *
 * @param value The `Connection` header's value, or `null` when absent.
 * @returns The named headers in lower case, or `undefined` when there are none.
 *
 * @example
 * ```ts
 * import { connectionNamed } from "./hop_by_hop.ts";
 * if (connectionNamed("close") !== undefined) throw new Error("close names no header");
 * if (!connectionNamed("X-Secret, keep-alive")?.has("x-secret")) throw new Error("missed");
 * ```
 */
export function connectionNamed(value: string | null): ReadonlySet<string> | undefined {
  if (value === null) return undefined;
  // The usual values name no other header; skip the split for them (nginx sends one always).
  if (value === "keep-alive" || value === "close") return undefined;
  const named = new Set<string>();
  for (const token of value.split(",")) {
    const name = token.trim().toLowerCase();
    if (name !== "") named.add(name);
  }
  return named.size === 0 ? undefined : named;
}

/**
 * The fields without the hop-by-hop ones: the standard ones and those named in `Connection`.
 * Names are compared case-insensitively and kept as they came.
 *
 * @param fields Header fields as name-value pairs. Not modified.
 * @returns `fields` itself when none is hop-by-hop, or a filtered copy.
 *
 * @example
 * ```ts
 * import { withoutHopByHop } from "./hop_by_hop.ts";
 * const fields: Array<[string, string]> = [["Connection", "x-a"], ["X-A", "1"], ["ETag", "e"]];
 * if (withoutHopByHop(fields).map(([n]) => n).join() !== "ETag") throw new Error("not stripped");
 * ```
 */
export function withoutHopByHop(fields: Array<[string, string]>): Array<[string, string]> {
  let connection: string | null = null;
  let isClean = true;
  for (const [name, value] of fields) {
    // Most fields are told apart by their length alone, without lower-casing them.
    if (HOP_BY_HOP_LENGTHS[name.length] !== 1) continue;
    const lower = name.toLowerCase();
    if (!HOP_BY_HOP.has(lower)) continue;
    isClean = false;
    if (lower === "connection") connection = connection === null ? value : `${connection},${value}`;
  }
  if (isClean) return fields;
  const named = connectionNamed(connection);
  return fields.filter(([name]) => {
    if (named === undefined && HOP_BY_HOP_LENGTHS[name.length] !== 1) return true;
    const lower = name.toLowerCase();
    return !HOP_BY_HOP.has(lower) && named?.has(lower) !== true;
  });
}
