/**
 * The header rules of the proxy in both directions: what the backend receives from the client's
 * request headers (hop-by-hop headers dropped, `X-Forwarded-*`, `X-Request-Id` and `Via` set) and
 * what the client receives from the backend's response headers. Pure functions over `Headers`.
 *
 * Compression: Deno 2.9's `fetch` transparently decodes a single `gzip` or `br`
 * `Content-Encoding` unless the request's `Accept-Encoding` is exactly `identity` (or carries a
 * `Range`), and it has no option to turn that off (denoland/deno#12291). A decoded body
 * forwarded with the backend's `Content-Encoding` and `Content-Length` is corrupt (truncated and
 * mislabelled), and returning the fetch `Response` itself makes `Deno.serve` send the decoded
 * body without its encoding. So the balancer always asks backends for `identity`: whatever the
 * backend sends, compressed or not, reaches the client byte for byte with its headers. The cost
 * is that a backend which only compresses on request sends uncompressed responses through the
 * balancer.
 *
 * @module
 */
import { isHttpToken } from "../shared/tokens.ts";
import { forwardedElement } from "./forwarded.ts";
import { connectionNamed, HOP_BY_HOP } from "../shared/hop_by_hop.ts";

/** Facts about the client connection that go into the forwarding headers. */
export interface ForwardedInfo {
  /** The client's IP address, appended to `X-Forwarded-For`. */
  readonly clientIp: string;
  /**
   * The scheme of the connection the client used to reach the balancer: `X-Forwarded-Proto`.
   * Never taken from the request target.
   */
  readonly proto: string;
  /**
   * The authority the client addressed (its `Host`, or an absolute-form target's), already
   * validated: sent as `Host` and `X-Forwarded-Host`. Default: the client's `Host` header.
   */
  readonly host?: string | undefined;
  /** Sent as `X-Request-Id` when given (replacing the client's). Default: the client's, if any. */
  readonly requestId?: string | undefined;
  /** Appended to `Via` when given, such as `"1.1 denolb"`. Default: no `Via` added. */
  readonly via?: string | undefined;
  /**
   * Whether the peer is a trusted proxy (`--trusted-proxies`): then its `X-Forwarded-For` and
   * `Forwarded` are appended to and its `X-Forwarded-Proto` and `X-Forwarded-Host` kept.
   * Otherwise all four are replaced by what the balancer saw. Default: false.
   */
  readonly isPeerTrusted?: boolean | undefined;
  /** Whether the RFC 7239 `Forwarded` header is sent (`--forwarded`). Default: true. */
  readonly isForwardedSent?: boolean | undefined;
}

/**
 * Request headers never copied to the backend: hop-by-hop ones; the framing headers, which
 * fetch computes from the body it sends (RFC 9112 section 6); and the ones the balancer sets.
 */
const REQUEST_DROPPED: ReadonlySet<string> = new Set([
  ...HOP_BY_HOP,
  "content-length",
  "accept-encoding",
  // The balancer's own listener answers `100 Continue` when the body is read (RFC 9110
  // section 10.1.1); the backend gets the whole body, so the expectation ends here.
  "expect",
]);

/**
 * Headers a `Connection` header cannot remove: the balancer sets them itself, so a client
 * naming them (`Connection: host`) must not make the next hop lose them.
 */
const PROTECTED: ReadonlySet<string> = new Set(["host"]);

/** Header fields as name-value pairs, names in lower case: what `fetch` copies fastest. */
export type HeaderList = Array<[name: string, value: string]>;

/**
 * The field every upstream request carries alike, built once (`fetch` copies the pairs it is
 * given and never changes them).
 */
const ACCEPT_IDENTITY: [name: string, value: string] = ["accept-encoding", "identity"];

/**
 * Builds the headers sent to the backend from the client's. Hop-by-hop headers go, including
 * every header named in `Connection` (removed before `X-Forwarded-For` is extended, so a client
 * cannot make the next hop delete it, and never `Host`); `Content-Length` and
 * `Transfer-Encoding` go (fetch frames the body itself); `Expect` goes (the balancer answered
 * it). `Host` is the validated authority. `Accept-Encoding` becomes `identity` so fetch never
 * decodes the body (see the module docs).
 *
 * Forwarding headers (the balancer's own always come last, so nothing a client sends can
 * remove them): from a trusted peer, `X-Forwarded-For` and `Forwarded` get this hop appended
 * and `X-Forwarded-Proto` and `X-Forwarded-Host` are kept as the proxy sent them (Caddy's and
 * Traefik's rule: they describe the original request, and a list there breaks most readers);
 * from any other peer all four are replaced by what the balancer saw: the peer's address, the
 * connection's scheme and the `Host`. With `Forwarded` off, an incoming one is removed too.
 *
 * The result is a list of pairs rather than a `Headers` object: `fetch` builds its request
 * from a list in about a third of the time it takes to copy a `Headers` object.
 *
 * @param incoming The client's request headers.
 * @param info The client's address and scheme, and the request ID.
 * @returns The header fields for the upstream request.
 *
 * @example
 * ```ts
 * import { upstreamRequestHeaders } from "./proxy_headers.ts";
 * const incoming = new Headers({ host: "shop.example", "x-forwarded-for": "10.0.0.1", connection: "close" });
 * const info = { clientIp: "192.0.2.7", proto: "http", isPeerTrusted: true };
 * const headers = new Headers(upstreamRequestHeaders(incoming, info));
 * if (headers.get("x-forwarded-for") !== "10.0.0.1, 192.0.2.7") throw new Error("not appended");
 * if (headers.get("forwarded") !== "for=192.0.2.7;proto=http;host=shop.example") throw new Error();
 * if (headers.has("connection") || headers.get("host") !== "shop.example") throw new Error("bad");
 * ```
 */
export function upstreamRequestHeaders(incoming: Headers, info: ForwardedInfo): HeaderList {
  const named = connectionNamed(incoming.get("connection"));
  const isTrusted = info.isPeerTrusted === true;
  const out: HeaderList = [];
  // The trusted peer's forwarding headers (each stays undefined for an untrusted peer).
  let forwardedFor: string | undefined;
  let forwardedProto: string | undefined;
  let forwardedHost: string | undefined;
  let forwarded: string | undefined;
  let via: string | undefined;
  let host: string | undefined;
  // Iteration yields lower-case names with repeated fields already combined (except
  // Set-Cookie, which a request does not carry).
  for (const field of incoming) {
    const name = field[0];
    if (REQUEST_DROPPED.has(name) || (named?.has(name) && !PROTECTED.has(name))) continue;
    switch (name) {
      case "x-forwarded-for":
        if (isTrusted) forwardedFor = field[1];
        continue;
      case "x-forwarded-proto":
        if (isTrusted) forwardedProto = field[1];
        continue;
      case "x-forwarded-host":
        if (isTrusted) forwardedHost = field[1];
        continue;
      case "forwarded":
        if (isTrusted) forwarded = field[1];
        continue;
      case "via":
        if (info.via === undefined) break;
        via = field[1];
        continue;
      case "host":
        host = info.host ?? field[1];
        out.push(["host", host]);
        continue;
      case "x-request-id":
        if (info.requestId !== undefined) continue;
        break;
    }
    out.push(field);
  }
  if (host === undefined && info.host !== undefined) {
    // HTTP/2 carries the authority as `:authority`, not `Host`: a hop to HTTP/1.1 makes it the
    // `Host` (RFC 9113 section 8.3.1).
    host = info.host;
    out.push(["host", host]);
  }
  out.push(
    [
      "x-forwarded-for",
      forwardedFor === undefined ? info.clientIp : `${forwardedFor}, ${info.clientIp}`,
    ],
    ["x-forwarded-proto", forwardedProto ?? info.proto],
    ACCEPT_IDENTITY,
  );
  const forwardedHostValue = forwardedHost ?? host;
  if (forwardedHostValue !== undefined) out.push(["x-forwarded-host", forwardedHostValue]);
  if (info.isForwardedSent !== false) {
    const element = forwardedElement(info.clientIp, info.proto, host);
    out.push(["forwarded", forwarded === undefined ? element : `${forwarded}, ${element}`]);
  }
  if (info.requestId !== undefined) out.push(["x-request-id", info.requestId]);
  if (info.via !== undefined) {
    out.push(["via", via === undefined ? info.via : `${via}, ${info.via}`]);
  }
  return out;
}

/**
 * Deletes the hop-by-hop fields from response headers in place: the standard ones and those
 * named in `Connection`. `Content-Length` stays (the body is never decoded, so it is exact and
 * `Deno.serve` sends a fixed-length body); `Content-Encoding` stays.
 *
 * @param headers Mutable headers, such as those of a `Response` just built from the backend's.
 *
 * @example
 * ```ts
 * import { removeHopByHop } from "./proxy_headers.ts";
 * const headers = new Headers({ connection: "x-secret", "x-secret": "1", "content-encoding": "gzip" });
 * removeHopByHop(headers);
 * if (headers.has("x-secret") || headers.get("content-encoding") !== "gzip") throw new Error("bad");
 * ```
 */
export function removeHopByHop(headers: Headers): void {
  const named = connectionNamed(headers.get("connection"));
  if (named !== undefined) {
    // `delete` throws for a name that is not a token; such a name matches no field anyway.
    for (const name of named) if (isHttpToken(name)) headers.delete(name);
  }
  for (const name of HOP_BY_HOP) {
    if (headers.has(name)) headers.delete(name);
  }
}

/**
 * Builds the headers sent to the client from the backend's, without touching them: a copy
 * with {@linkcode removeHopByHop} applied, or `upstream` itself when it has no hop-by-hop field.
 *
 * @param upstream The backend's response headers. Not modified.
 * @returns Headers for the client response: `upstream` itself when nothing is to be stripped.
 *
 * @example
 * ```ts
 * import { clientResponseHeaders } from "./proxy_headers.ts";
 * const upstream = new Headers({ connection: "x-secret", "x-secret": "1", "content-encoding": "gzip" });
 * const headers = clientResponseHeaders(upstream);
 * if (headers.has("x-secret") || headers.get("content-encoding") !== "gzip") throw new Error("bad");
 * ```
 */
export function clientResponseHeaders(upstream: Headers): Headers {
  let isClean = true;
  for (const name of HOP_BY_HOP) {
    if (upstream.has(name)) {
      isClean = false;
      break;
    }
  }
  if (isClean) return upstream;
  const out = new Headers(upstream);
  removeHopByHop(out);
  return out;
}
