/**
 * What the `hash` policy hashes: `--hash-key` parsed, and the key read from a request.
 *
 * @module
 */
import type { PickContext } from "./policy.ts";

/** A parsed `--hash-key`. */
export type HashKey =
  | { readonly kind: "client-ip" }
  | { readonly kind: "path" }
  | { readonly kind: "header"; readonly name: string }
  | { readonly kind: "cookie"; readonly name: string };

/** The rule `--hash-key` must follow, worded for error messages. */
export const HASH_KEY_RULE = "must be client-ip, path, header:NAME or cookie:NAME";

/** An HTTP token (RFC 9110 section 5.6.2): what header and cookie names are made of. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Parses a `--hash-key` value.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseHashKey } from "./hash_key.ts";
 * assertEquals(parseHashKey("header:X-User"), { kind: "header", name: "x-user" });
 * assertEquals(parseHashKey("header:"), undefined);
 * ```
 *
 * @param text The value as given.
 * @returns The key, or `undefined` when `text` is none of the forms.
 */
export function parseHashKey(text: string): HashKey | undefined {
  if (text === "client-ip" || text === "path") return { kind: text };
  const colon = text.indexOf(":");
  const kind = text.slice(0, colon);
  const name = text.slice(colon + 1);
  if (colon < 0 || !TOKEN.test(name)) return undefined;
  if (kind === "header") return { kind, name: name.toLowerCase() };
  if (kind === "cookie") return { kind, name };
  return undefined;
}

/**
 * Whether `text` is a valid `--hash-key`.
 *
 * @param text The value as given.
 * @returns Whether `parseHashKey` accepts it.
 */
export function isValidHashKey(text: string): boolean {
  return parseHashKey(text) !== undefined;
}

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
