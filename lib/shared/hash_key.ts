/**
 * The syntax of a hash key (`--hash-key`): what the `hash` policy hashes. Parsed here, where
 * configuration validates it and the policy reads it, so the two cannot disagree.
 *
 * @module
 */
import { isHttpToken } from "./tokens.ts";

/** A parsed `--hash-key`. */
export type HashKey =
  | { readonly kind: "client-ip" }
  | { readonly kind: "path" }
  | { readonly kind: "header"; readonly name: string }
  | { readonly kind: "cookie"; readonly name: string };

/** The rule `--hash-key` must follow, worded for error messages. */
export const HASH_KEY_RULE = "must be client-ip, path, header:NAME or cookie:NAME";

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
  if (colon < 0 || !isHttpToken(name)) return undefined;
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
