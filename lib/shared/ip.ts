/**
 * IP addresses and CIDR blocks: `--trusted-proxies`, the peers whose `X-Forwarded-*` and `Forwarded` headers the balancer
 * keeps and appends to. Entries are IPv4 or IPv6 addresses or CIDR blocks; an IPv4-mapped IPv6
 * address (`::ffff:192.0.2.1`, as a dual-stack socket reports an IPv4 peer) matches as the IPv4
 * address it carries, both as a peer and as an entry. Pure parsing and matching.
 *
 * @module
 */

/** An address as bytes: 4 for IPv4, 16 for IPv6. */
type Address = Uint8Array;

/** One entry: a network and its prefix length in bits. */
interface Block {
  readonly network: Address;
  readonly prefixBits: number;
}

/** A parsed `--trusted-proxies` list. */
export interface TrustedProxies {
  /** Whether the list is empty (then no peer is trusted, and nothing is parsed per request). */
  readonly isEmpty: boolean;
  /**
   * Whether a peer is trusted.
   *
   * @param ip The peer's address as `Deno.serve` reports it (no brackets, maybe a zone).
   * @returns Whether it falls in one of the blocks; `false` for anything not an address.
   */
  has(ip: string): boolean;
}

/** The rule an entry follows, worded for error messages. */
export const TRUSTED_PROXY_RULE =
  "must be an IPv4 or IPv6 address or CIDR block, such as 10.0.0.0/8 or 2001:db8::/32";

/** No trusted proxies. */
export const NO_TRUSTED_PROXIES: TrustedProxies = { isEmpty: true, has: () => false };

/**
 * Reads an IP address: dotted-quad IPv4, or IPv6 with `::` and an optional dotted-quad tail.
 * An IPv4-mapped IPv6 address becomes its IPv4 address.
 *
 * @param text The address, without brackets; an IPv6 zone (`%eth0`) is ignored.
 * @returns Its bytes (4 or 16), or `undefined` when it is not an address.
 *
 * @example
 * ```ts
 * import { parseIp } from "./ip.ts";
 * if (parseIp("::ffff:10.1.2.3")?.join(".") !== "10.1.2.3") throw new Error();
 * if (parseIp("2001:db8::1")?.length !== 16 || parseIp("1.2.3") !== undefined) throw new Error();
 * ```
 */
export function parseIp(text: string): Address | undefined {
  const zone = text.indexOf("%");
  const address = zone < 0 ? text : text.slice(0, zone);
  if (!address.includes(":")) return zone < 0 ? parseIpv4(address) : undefined;
  const bytes = parseIpv6(address);
  if (bytes === undefined) return undefined;
  return isIpv4Mapped(bytes) ? bytes.slice(12) : bytes;
}

/**
 * Reads one entry: an address (a block of one) or `address/prefix`. Bits past the prefix are
 * ignored (`10.1.2.3/8` is `10.0.0.0/8`). An IPv4-mapped IPv6 block of prefix 96 or more is
 * the IPv4 block it covers.
 *
 * @param text The entry.
 * @returns The block, or the reason it is not one.
 */
function parseBlock(text: string): Block | { readonly rule: string } {
  const slash = text.indexOf("/");
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const bytes = addressText.includes("%") ? undefined : parseIp(addressText);
  if (bytes === undefined) return { rule: TRUSTED_PROXY_RULE };
  const maxBits = bytes.length * 8;
  if (slash < 0) return { network: bytes, prefixBits: maxBits };
  const prefixText = text.slice(slash + 1);
  let prefixBits = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : Number.NaN;
  // A mapped address was shortened to IPv4 above: its prefix counts the 96 bits before it.
  const isMapped = bytes.length === 4 && addressText.includes(":");
  if (isMapped) prefixBits -= 96;
  if (!(prefixBits >= 0 && prefixBits <= maxBits)) {
    const range = isMapped ? "96 to 128 for an IPv4-mapped block" : `0 to ${maxBits}`;
    return { rule: `the prefix length must be from ${range}` };
  }
  return { network: mask(bytes, prefixBits), prefixBits };
}

/**
 * Parses a list of entries.
 *
 * @param entries Addresses and CIDR blocks, IPv4 or IPv6.
 * @returns The matcher.
 * @throws {SyntaxError} Naming the first entry that is not an address or block, and why.
 *
 * @example
 * ```ts
 * import { parseTrustedProxies } from "./ip.ts";
 * const trusted = parseTrustedProxies(["10.0.0.0/8", "::1"]);
 * if (!trusted.has("10.9.8.7") || !trusted.has("::ffff:10.0.0.1") || trusted.has("11.0.0.1")) {
 *   throw new Error();
 * }
 * ```
 */
export function parseTrustedProxies(entries: readonly string[]): TrustedProxies {
  if (entries.length === 0) return NO_TRUSTED_PROXIES;
  const blocks: Block[] = [];
  for (const entry of entries) {
    const block = parseBlock(entry.trim());
    if ("rule" in block) {
      throw new SyntaxError(`Cannot parse trusted proxy "${entry}": ${block.rule}`);
    }
    blocks.push(block);
  }
  return {
    isEmpty: false,
    has(ip: string): boolean {
      const address = parseIp(ip);
      if (address === undefined) return false;
      return blocks.some((block) => isInBlock(address, block));
    },
  };
}

/**
 * Why `entry` is no address or CIDR block, for `--trusted-proxies` to name it.
 *
 * @param entry One entry as given.
 * @returns The rule it breaks, or `undefined` when it is valid.
 */
export function ipBlockRule(entry: string): string | undefined {
  const block = parseBlock(entry.trim());
  return "rule" in block ? block.rule : undefined;
}

/**
 * Whether `hostname` names this machine's loopback: `localhost`, 127.0.0.0/8 or `::1`.
 *
 * @param hostname A host name or address, without brackets.
 * @returns Whether only this machine can reach it.
 *
 * @example
 * ```ts
 * import { isLoopbackHost } from "./ip.ts";
 * if (!isLoopbackHost("127.0.0.1") || !isLoopbackHost("::1") || !isLoopbackHost("localhost")) {
 *   throw new Error();
 * }
 * if (isLoopbackHost("0.0.0.0") || isLoopbackHost("::") || isLoopbackHost("lb.internal")) {
 *   throw new Error();
 * }
 * ```
 */
export function isLoopbackHost(hostname: string): boolean {
  if (hostname.toLowerCase() === "localhost") return true;
  const bytes = parseIp(hostname);
  if (bytes === undefined) return false;
  if (bytes.length === 4) return bytes[0] === 127;
  return bytes.every((byte, i) => byte === (i === 15 ? 1 : 0));
}

function parseIpv4(text: string): Address | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i] ?? "";
    // No leading zeros: `010` is octal to some parsers and decimal to others.
    if (!/^(?:0|[1-9]\d{0,2})$/.test(part) || Number(part) > 255) return undefined;
    bytes[i] = Number(part);
  }
  return bytes;
}

function parseIpv6(text: string): Address | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groupsOf = (half: string | undefined): number[] | undefined => {
    if (half === undefined || half === "") return [];
    const groups: number[] = [];
    const parts = half.split(":");
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] ?? "";
      if (i === parts.length - 1 && part.includes(".")) {
        const v4 = parseIpv4(part);
        if (v4 === undefined) return undefined;
        groups.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(part)) {
        groups.push(parseInt(part, 16));
      } else {
        return undefined;
      }
    }
    return groups;
  };
  const head = groupsOf(halves[0]);
  const tail = groupsOf(halves[1]);
  if (head === undefined || tail === undefined) return undefined;
  const isCompressed = halves.length === 2;
  const missing = 8 - head.length - tail.length;
  if (isCompressed ? missing < 1 : missing !== 0) return undefined;
  const groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  groups.forEach((group, i) => {
    bytes[i * 2] = group >> 8;
    bytes[i * 2 + 1] = group & 0xff;
  });
  return bytes;
}

/** `::ffff:0:0/96`. */
function isIpv4Mapped(bytes: Address): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

function mask(bytes: Address, prefixBits: number): Address {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.max(0, Math.min(8, prefixBits - i * 8));
    out[i] = (bytes[i] ?? 0) & ((0xff00 >> bits) & 0xff);
  }
  return out;
}

function isInBlock(address: Address, block: Block): boolean {
  if (address.length !== block.network.length) return false;
  const fullBytes = block.prefixBits >> 3;
  for (let i = 0; i < fullBytes; i++) if (address[i] !== block.network[i]) return false;
  const restBits = block.prefixBits & 7;
  if (restBits === 0) return true;
  const byteMask = (0xff00 >> restBits) & 0xff;
  return ((address[fullBytes] ?? 0) & byteMask) === block.network[fullBytes];
}

/**
 * Reads a listen address: `host:port`, with an IPv6 host in brackets.
 *
 * @param text The address, such as `127.0.0.1:9091` or `[::1]:0`.
 * @returns The host (without brackets) and port, or `undefined` when it is not an address.
 *
 * @example
 * ```ts
 * import { parseHostPort } from "./ip.ts";
 * const address = parseHostPort("[::1]:9091");
 * if (address?.hostname !== "::1" || address.port !== 9091) throw new Error();
 * ```
 */
export function parseHostPort(text: string): { hostname: string; port: number } | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s/:[\]]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  const hostname = match?.[1] ?? match?.[2];
  if (hostname === undefined || !(port <= 65_535)) return undefined;
  return { hostname, port };
}
