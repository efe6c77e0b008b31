/**
 * HTTP tokens (RFC 9110 section 5.6.2): what methods, header field names and cookie names
 * (RFC 6265 section 4.1.1) are made of. Written once here rather than as a regex in every module
 * that checks one.
 *
 * @module
 */

/** An HTTP token: one or more of letters, digits and ``!#$%&'*+-.^_`|~``. */
export const HTTP_TOKEN: RegExp = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The token rule, worded for error messages. */
export const HTTP_TOKEN_RULE = "letters, digits and !#$%&'*+-.^_`|~";

/**
 * Whether `text` is an HTTP token.
 *
 * @example
 * ```ts
 * import { isHttpToken } from "./tokens.ts";
 * if (!isHttpToken("X-Request-Id") || isHttpToken("a b") || isHttpToken("")) throw new Error();
 * ```
 *
 * @param text The text to check.
 * @returns Whether it is a non-empty token.
 */
export function isHttpToken(text: string): boolean {
  return HTTP_TOKEN.test(text);
}
