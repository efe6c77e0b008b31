/**
 * The one place that decides where a request goes on the backend: its authority (from `Host`,
 * or from an absolute-form target) and its path, normalized by one rule. What the balancer
 * logs, routes on and forwards is the path this module returns, so a backend's path rules see
 * exactly what the balancer recorded.
 *
 * `Deno.serve` builds `Request.url` by gluing `http://`, the raw `Host` header and the raw
 * request target together, without parsing: a `Host` of `shop.example/admin` moves text into
 * the path, and dot segments or backslashes stay unresolved until `fetch` parses the URL. So
 * the target is recovered here from the raw string, and the rule is:
 *
 * - `Host` must be one valid `host[:port]` (RFC 9110 section 7.2, RFC 3986 section 3.2.2);
 *   missing, empty or invalid is 400 (RFC 9112 section 3.2). `Deno.serve` already answers a
 *   repeated `Host` with 400 itself.
 * - An absolute-form target (`GET http://other.example/p`) names the authority itself: its
 *   authority replaces `Host` (RFC 9112 section 3.2.2). Its scheme must be http or https and
 *   never sets `X-Forwarded-Proto`, which comes from the connection.
 * - The path must be origin-form; `\`, `%2F`, `%5C`, `%00`, a malformed `%` escape, a `#`,
 *   and bytes outside visible ASCII are 400 (Envoy's `normalize_path` with escaped slashes
 *   rejected, which nginx and HAProxy approximate).
 * - Percent-encoded unreserved characters are decoded (`%41` is `A`, `%2e` is `.`), then dot
 *   segments are removed (RFC 3986 section 5.2.4): `/a/%2e%2e/b` and `/a/../b` both become `/b`.
 * - Characters that `fetch`'s URL parser would percent-encode (`"`, `<`, `>`, `` ` ``, `{`,
 *   `}` in the path; `"`, `<`, `>`, `'` in the query) are encoded here, so the URL `fetch`
 *   sends is byte for byte the one returned.
 * - The query is otherwise kept as sent.
 *
 * @module
 */

/** A request target the balancer accepts. */
export interface AcceptedTarget {
  readonly ok: true;
  /** The authority the client addressed: the `Host` header, or an absolute-form target's. */
  readonly authority: string;
  /** The normalized path, starting with `/`: what is forwarded, logged and routed on. */
  readonly path: string;
  /** The query including its `?`, or `""`. */
  readonly query: string;
}

/** A request target the balancer answers with 400. */
export interface RejectedTarget {
  readonly ok: false;
  /** What is wrong, for the log and the 400 body. */
  readonly reason: string;
}

/** The outcome of {@linkcode resolveTarget}. */
export type ResolvedTarget = AcceptedTarget | RejectedTarget;

/**
 * A `Host` value: a registered name, IPv4 address or bracketed IPv6 literal, then an optional
 * port of at most five digits. Userinfo, paths, queries, fragments and spaces are not allowed.
 */
const HOST_PATTERN =
  /^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+(?::[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?$/;

/**
 * Whether `value` is a valid `Host` field value: `host[:port]` with a port up to 65535.
 *
 * @param value The header's value.
 * @returns Whether it is valid.
 *
 * @example
 * ```ts
 * import { isValidHost } from "./request_target.ts";
 * if (!isValidHost("shop.example:8080") || isValidHost("shop.example/admin")) throw new Error();
 * ```
 */
export function isValidHost(value: string): boolean {
  if (!HOST_PATTERN.test(value)) return false;
  const colon = value.lastIndexOf(":");
  if (colon < 0 || value.endsWith("]")) return true;
  return Number(value.slice(colon + 1)) <= 65_535;
}

/**
 * Recovers and normalizes the request target of a request as `Deno.serve` delivers it.
 *
 * @param url `Request.url`: `http://` + the raw `Host` + the raw target, or the absolute-form
 *   target itself.
 * @param host The `Host` header's value, or `null` when the request had none.
 * @returns The authority and normalized path and query, or why the request is rejected.
 *
 * @example
 * ```ts
 * import { resolveTarget } from "./request_target.ts";
 * const target = resolveTarget("http://shop.example/a/%2e%2e/b?x=1", "shop.example");
 * if (!target.ok || target.path !== "/b" || target.query !== "?x=1") throw new Error();
 * if (resolveTarget("http://shop.example/admin/secret", "shop.example/admin").ok) throw new Error();
 * ```
 */
export function resolveTarget(url: string, host: string | null): ResolvedTarget {
  if (host === null || host === "") return { ok: false, reason: "missing Host header" };
  if (!isValidHost(host)) return { ok: false, reason: "invalid Host header" };
  let authority = host;
  let target: string;
  // Origin-form (or an absolute-form target naming the same authority): url is
  // `http://` + host + target, and target starts with "/".
  const originPrefix = "http://" + host;
  if (url.startsWith(originPrefix) && url.charCodeAt(originPrefix.length) === SLASH) {
    target = url.slice(originPrefix.length);
  } else {
    const absolute = splitAbsolute(url);
    if (!absolute.ok) return absolute;
    authority = absolute.authority;
    target = absolute.target;
  }
  return normalizeTarget(target, authority);
}

const SLASH = 0x2f;

function splitAbsolute(
  url: string,
): { ok: true; authority: string; target: string } | RejectedTarget {
  const schemeEnd = url.indexOf("://");
  const scheme = schemeEnd < 0 ? "" : url.slice(0, schemeEnd).toLowerCase();
  if (scheme !== "http" && scheme !== "https") {
    return { ok: false, reason: "request target must be a path or an http(s) URL" };
  }
  const start = schemeEnd + 3;
  let end = start;
  while (end < url.length && !"/?#".includes(url.charAt(end))) end++;
  const authority = url.slice(start, end);
  if (!isValidHost(authority)) return { ok: false, reason: "invalid authority in request target" };
  const rest = url.slice(end);
  return { ok: true, authority, target: rest === "" || rest.startsWith("?") ? "/" + rest : rest };
}

/** Unreserved characters (RFC 3986 section 2.3): their percent-encodings are decoded. */
const UNRESERVED = /[A-Za-z0-9\-._~]/;
/** What the WHATWG URL parser percent-encodes in a path (beyond what is rejected here). */
const PATH_ENCODED: Readonly<Record<string, string>> = {
  '"': "%22",
  "<": "%3C",
  ">": "%3E",
  "`": "%60",
  "{": "%7B",
  "}": "%7D",
};
/** What it percent-encodes in the query of a special (http/https) URL. */
const QUERY_ENCODED: Readonly<Record<string, string>> = {
  '"': "%22",
  "<": "%3C",
  ">": "%3E",
  "'": "%27",
};

function normalizeTarget(target: string, authority: string): ResolvedTarget {
  if (target.charCodeAt(0) !== SLASH) {
    return { ok: false, reason: "request target must start with /" };
  }
  const queryStart = target.indexOf("?");
  const rawPath = queryStart < 0 ? target : target.slice(0, queryStart);
  const rawQuery = queryStart < 0 ? "" : target.slice(queryStart);
  let path = "";
  for (let i = 0; i < rawPath.length; i++) {
    const char = rawPath.charAt(i);
    const code = rawPath.charCodeAt(i);
    if (code <= 0x20 || code >= 0x7f) return { ok: false, reason: "invalid byte in path" };
    if (char === "\\") return { ok: false, reason: "backslash in path" };
    if (char === "#") return { ok: false, reason: "fragment in request target" };
    if (char === "%") {
      const hex = rawPath.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { ok: false, reason: "malformed % escape in path" };
      const decoded = String.fromCharCode(parseInt(hex, 16));
      if (decoded === "/" || decoded === "\\") {
        return { ok: false, reason: "escaped slash or backslash in path" };
      }
      if (decoded === "\0") return { ok: false, reason: "escaped NUL in path" };
      path += UNRESERVED.test(decoded) ? decoded : "%" + hex;
      i += 2;
      continue;
    }
    path += PATH_ENCODED[char] ?? char;
  }
  let query = "";
  for (let i = 0; i < rawQuery.length; i++) {
    const char = rawQuery.charAt(i);
    const code = rawQuery.charCodeAt(i);
    if (code <= 0x20 || code >= 0x7f) return { ok: false, reason: "invalid byte in query" };
    if (char === "#") return { ok: false, reason: "fragment in request target" };
    if (char === "%" && !/^[0-9A-Fa-f]{2}$/.test(rawQuery.slice(i + 1, i + 3))) {
      return { ok: false, reason: "malformed % escape in query" };
    }
    query += QUERY_ENCODED[char] ?? char;
  }
  return { ok: true, authority, path: removeDotSegments(path), query };
}

/**
 * Removes `.` and `..` segments from an absolute path (RFC 3986 section 5.2.4); `..` never
 * climbs above the root.
 *
 * @param path A path starting with `/`, already percent-decoded for unreserved characters.
 * @returns The path without dot segments.
 *
 * @example
 * ```ts
 * import { removeDotSegments } from "./request_target.ts";
 * if (removeDotSegments("/a/b/../../../c/./d/..") !== "/c/") throw new Error();
 * ```
 */
export function removeDotSegments(path: string): string {
  if (!path.includes("/.")) return path;
  const segments = path.split("/");
  const out: string[] = [];
  // segments[0] is the empty string before the leading "/".
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i] ?? "";
    const isLast = i === segments.length - 1;
    if (segment === ".") {
      if (isLast) out.push("");
    } else if (segment === "..") {
      out.pop();
      if (isLast) out.push("");
    } else {
      out.push(segment);
    }
  }
  return "/" + out.join("/");
}
