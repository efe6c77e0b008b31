/**
 * What keeps a web page from driving the admin API. Without a token (the default) anyone who
 * can reach the admin listener may add, drain and remove backends, and a browser can reach a
 * loopback listener on a page's behalf in two ways, each closed here:
 *
 * - **Cross-site requests.** A form or `fetch(..., { mode: "no-cors" })` sends a POST with
 *   `Content-Type: text/plain` (or a form type) and no preflight. State-changing routes refuse
 *   an `Origin` (or `Sec-Fetch-Site`) of another site, and a body that is not
 *   `application/json`: a page can send that type only after a CORS preflight, which this
 *   listener never grants.
 * - **DNS rebinding.** A page on `evil.example` whose name is re-pointed at 127.0.0.1 is
 *   same-origin with itself, so it passes the Origin check; but its requests carry
 *   `Host: evil.example`. Without a token every route but `/health` takes only an IP address,
 *   `localhost` (or a `*.localhost` name) or the admin address's own host name in `Host`, as
 *   webpack-dev-server's `allowedHosts: "auto"` does. The port is not compared, so a port
 *   forward (`kubectl port-forward 8000:9091`) still works. With a token the token is the
 *   defence: a rebinding page does not have it.
 *
 * And the listener refuses to start on a non-loopback address without a token unless the
 * operator says `--admin-insecure on` (`isLoopbackHost` in `shared/ip.ts`, checked in `config/config.ts`).
 *
 * @module
 */
import { parseIp } from "../shared/ip.ts";

/** A request the guard refuses: the status and the one-line reason sent as the body. */
export interface AdminRefusal {
  /** 403 for a foreign Host or Origin, 415 for a body that is not JSON. */
  readonly status: 403 | 415;
  /** Names what was refused and why. */
  readonly message: string;
}

/** What the guard compares a request with. */
export interface AdminGuardOptions {
  /** The admin address's host as configured (`127.0.0.1`, `::1`, `admin.internal`). */
  readonly hostname: string;
  /** Whether a bearer token protects the API: then `Host` is not checked. */
  readonly isTokenRequired: boolean;
}

/**
 * Checks where an admin request comes from and what it carries.
 *
 * @param request The admin request.
 * @param options The admin address's host name, and whether a token is required.
 * @returns Why it is refused, or `undefined` to serve it.
 */
export function checkAdminRequest(
  request: Request,
  options: AdminGuardOptions,
): AdminRefusal | undefined {
  const host = request.headers.get("host") ?? "";
  if (!options.isTokenRequired && !isAllowedHost(host, options.hostname)) {
    return {
      status: 403,
      message: `Forbidden: Host "${host}" is not this admin listener's address (an IP address, ` +
        `localhost or ${options.hostname}); without --admin-token other names are refused, ` +
        "as a DNS-rebinding page would send them",
    };
  }
  const method = request.method;
  if (method === "GET" || method === "HEAD" || method === "OPTIONS") return undefined;
  const origin = request.headers.get("origin");
  if (origin !== null && !isSameOrigin(origin, host)) {
    return {
      status: 403,
      message: `Forbidden: Origin "${origin}" is not this admin listener; ` +
        "a state-changing admin request from another site is refused",
    };
  }
  const site = request.headers.get("sec-fetch-site");
  if (site !== null && site !== "same-origin" && site !== "none") {
    return {
      status: 403,
      message: `Forbidden: Sec-Fetch-Site "${site}": ` +
        "a state-changing admin request from another site is refused",
    };
  }
  const type = request.headers.get("content-type");
  if ((type !== null || hasBody(request)) && !isJson(type)) {
    return {
      status: 415,
      message: `Unsupported Media Type: Content-Type "${type ?? ""}"; ` +
        "a state-changing admin request's body must be application/json",
    };
  }
  return undefined;
}

/** Whether `Host` names an IP address, `localhost`, a `*.localhost` name or the admin host. */
function isAllowedHost(host: string, adminHostname: string): boolean {
  const hostname = hostnameOf(host);
  if (hostname === undefined) return false;
  if (hostname === "localhost" || hostname.endsWith(".localhost")) return true;
  if (hostname === adminHostname.toLowerCase()) return true;
  return parseIp(hostname) !== undefined;
}

/** The host name of a `Host` value, lowercased and without brackets or port. */
function hostnameOf(host: string): string | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]/@]+))(?::\d{1,5})?$/.exec(host);
  const hostname = match?.[1] ?? match?.[2];
  return hostname?.toLowerCase();
}

/**
 * Whether an `Origin` names the request's own `Host` (and port). The scheme may be `https`: a
 * TLS proxy in front of the admin listener passes the browser's Origin on.
 */
function isSameOrigin(origin: string, host: string): boolean {
  if (origin === "null") return false;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  let own: URL;
  try {
    own = new URL(`http://${host}`);
  } catch {
    return false;
  }
  return (url.protocol === "http:" || url.protocol === "https:") && url.host === own.host;
}

/** Whether the request says it has a body (`Content-Length` above 0, or chunked). */
function hasBody(request: Request): boolean {
  const length = request.headers.get("content-length");
  if (length !== null) return length.trim() !== "0";
  return request.headers.has("transfer-encoding");
}

/** Whether a Content-Type is `application/json` (parameters such as `charset` allowed). */
function isJson(type: string | null): boolean {
  return type !== null && /^application\/json\s*(;|$)/i.test(type.trim());
}
