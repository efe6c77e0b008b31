/**
 * The key the `hash` policy hashes, read from a request (`--hash-key`'s syntax is in
 * `shared/hash_key.ts`).
 *
 * @module
 */
import type { HashKey } from "../shared/hash_key.ts";
import type { PickContext } from "./policy.ts";

/**
 * Reads the key from a request.
 *
 * @param key What to read.
 * @param request The client's request.
 * @param context The client's address.
 * @returns The key's value, or `undefined` when the request does not carry it.
 */
export function readHashKey(
  key: HashKey,
  request: Request,
  context: PickContext | undefined,
): string | undefined {
  switch (key.kind) {
    case "client-ip":
      return context?.clientIp;
    case "path":
      return new URL(request.url).pathname;
    case "header":
      return request.headers.get(key.name) ?? undefined;
    case "cookie":
      return readCookie(request.headers.get("cookie"), key.name);
  }
}

function readCookie(header: string | null, name: string): string | undefined {
  for (const pair of header?.split(";") ?? []) {
    const equals = pair.indexOf("=");
    if (equals > 0 && pair.slice(0, equals).trim() === name) return pair.slice(equals + 1).trim();
  }
  return undefined;
}
