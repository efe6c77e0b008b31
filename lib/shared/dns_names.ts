/**
 * The names DNS discovery is configured with: `--backend-dns NAME:PORT`, `--backend-srv
 * _SERVICE._tcp.NAME` and `--dns-server HOST:PORT`. Each reader returns the rule the text broke,
 * so the flag and the config file word a rejection alike.
 *
 * @module
 */

/** A host name as DNS takes it: dot-separated labels of letters, digits, `-` and `_`. */
const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** The rule a `--backend-dns` entry follows. */
export const DNS_TARGET_RULE = "must be NAME:PORT, a DNS name and a port from 1 to 65535";

/** The rule a `--backend-srv` entry follows. */
export const SRV_NAME_RULE = "must be an SRV name such as _http._tcp.example.com";

/** The rule a `--dns-server` address follows. */
export const DNS_SERVER_RULE =
  "must be IP:PORT or IP (port 53), an IPv6 address in brackets with a port";

/**
 * Whether a text is a DNS name (a trailing dot is allowed; at most 253 characters).
 *
 * @example
 * ```ts
 * import { isDnsName } from "./dns_names.ts";
 * if (!isDnsName("web.default.svc.cluster.local") || isDnsName("a..b")) throw new Error();
 * ```
 */
export function isDnsName(text: string): boolean {
  const name = text.endsWith(".") ? text.slice(0, -1) : text;
  if (name === "" || name.length > 253) return false;
  return name.split(".").every((label) => LABEL.test(label));
}

/**
 * Reads a `--backend-dns` entry: a name and the port its backends listen on.
 *
 * @param text Such as `web.default.svc.cluster.local:8080`.
 * @returns The name (lower case, no trailing dot) and port, or `undefined` when it is not one.
 *
 * @example
 * ```ts
 * import { parseDnsTarget } from "./dns_names.ts";
 * const target = parseDnsTarget("Web.local:8080");
 * if (target?.name !== "web.local" || target.port !== 8080) throw new Error();
 * ```
 */
export function parseDnsTarget(text: string): { name: string; port: number } | undefined {
  const match = /^(.+):(\d{1,5})$/.exec(text.trim());
  const name = match?.[1];
  const port = Number(match?.[2]);
  if (name === undefined || !isDnsName(name) || !(port >= 1 && port <= 65_535)) return undefined;
  return { name: name.replace(/\.$/, "").toLowerCase(), port };
}

/**
 * Reads a `--backend-srv` entry: `_service._proto.name` (RFC 2782).
 *
 * @param text Such as `_http._tcp.web.default.svc.cluster.local`.
 * @returns The name in lower case without a trailing dot, or `undefined` when it is not one.
 *
 * @example
 * ```ts
 * import { parseSrvName } from "./dns_names.ts";
 * if (parseSrvName("_http._tcp.web.local") !== "_http._tcp.web.local") throw new Error();
 * if (parseSrvName("web.local") !== undefined) throw new Error();
 * ```
 */
export function parseSrvName(text: string): string | undefined {
  const name = text.trim().replace(/\.$/, "").toLowerCase();
  if (!/^_[a-z0-9-]+\._(tcp|udp)\..+$/.test(name) || !isDnsName(name)) return undefined;
  return name;
}

/**
 * Reads a `--dns-server` address: an IP address and an optional port (53).
 *
 * @param text Such as `127.0.0.1:8600`, `10.96.0.10` or `[::1]:53`.
 * @returns The address and port, or `undefined` when it is not one.
 *
 * @example
 * ```ts
 * import { parseDnsServer } from "./dns_names.ts";
 * const server = parseDnsServer("[::1]:5353");
 * if (server?.ipAddr !== "::1" || server.port !== 5353) throw new Error();
 * if (parseDnsServer("127.0.0.1")?.port !== 53) throw new Error();
 * ```
 */
export function parseDnsServer(text: string): { ipAddr: string; port: number } | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3}))(?::(\d{1,5}))?$/.exec(
    text.trim(),
  );
  const ipAddr = match?.[1] ?? match?.[2];
  const port = match?.[3] === undefined ? 53 : Number(match[3]);
  if (ipAddr === undefined || !(port >= 1 && port <= 65_535)) return undefined;
  if (match?.[2] !== undefined && ipAddr.split(".").some((part) => Number(part) > 255)) {
    return undefined;
  }
  return { ipAddr, port };
}
