/**
 * The RFC 7239 `Forwarded` element the balancer adds for its hop: `for=` (the peer), `proto=`
 * (the connection's scheme) and `host=` (the `Host` the client sent). Pure.
 *
 * @module
 */
import { isHttpToken } from "../shared/tokens.ts";

/**
 * A `Forwarded` parameter value: as it is when it is a token, otherwise a quoted string with
 * `"` and `\` escaped (RFC 7239 section 4).
 *
 * @param value The value.
 * @returns The value as written in the header.
 */
function forwardedValue(value: string): string {
  return isHttpToken(value) ? value : `"${value.replace(/["\\]/g, "\\$&")}"`;
}

/**
 * The `for=` node of an address (RFC 7239 section 6): IPv4 as it is, IPv6 in brackets and
 * quotes (`"[2001:db8::1]"`, as `:` and `[` are not token characters), anything that is not
 * an address (`unknown`) as a token or quoted string.
 *
 * @param ip The peer's address, as `Deno.serve` reports it (IPv6 without brackets).
 * @returns The node as written in the header.
 */
function forwardedNode(ip: string): string {
  return ip.includes(":") ? `"[${ip.replace(/["\\]/g, "\\$&")}]"` : forwardedValue(ip);
}

/**
 * The balancer's own `Forwarded` element.
 *
 * @param clientIp The peer's address.
 * @param proto The connection's scheme.
 * @param host The authority the client addressed, when known.
 * @returns `for=...;proto=...` and `;host=...` when a host is given.
 *
 * @example
 * ```ts
 * import { forwardedElement } from "./forwarded.ts";
 * const element = forwardedElement("2001:db8::1", "http", "shop.example:8080");
 * if (element !== 'for="[2001:db8::1]";proto=http;host="shop.example:8080"') throw new Error();
 * if (forwardedElement("192.0.2.7", "https", "shop.example") !== "for=192.0.2.7;proto=https;host=shop.example") {
 *   throw new Error();
 * }
 * ```
 */
export function forwardedElement(
  clientIp: string,
  proto: string,
  host: string | undefined,
): string {
  const element = `for=${forwardedNode(clientIp)};proto=${forwardedValue(proto)}`;
  return host === undefined ? element : `${element};host=${forwardedValue(host)}`;
}
