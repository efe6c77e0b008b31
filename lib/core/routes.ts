/**
 * The route table: which pool (or which fixed answer) a request gets, decided by its host, path,
 * method and headers. First match wins, as Caddy's `handle` blocks and HAProxy's `use_backend`
 * lines read. Pure functions over data: matching a request, checking a table at load time
 * (routes that can never match, pools nobody uses), and the per-route path rewrite.
 *
 * Host patterns are exact (`api.example.com`) or a leading wildcard (`*.example.com`: any name
 * ending in `.example.com`, at any depth, as nginx reads it; not `example.com` itself); the
 * comparison ignores case and the port. A path prefix matches on segment boundaries: `/api`
 * matches `/api` and `/api/users`, never `/apix`; a prefix ending in `/` (`/static/`) matches
 * what starts with it. Paths are matched after the balancer's path rule has normalized them.
 *
 * @module
 */

/** What a route matches; every part given must hold, an absent part matches anything. */
export interface RouteMatch {
  /** Host patterns, any of which matches: `api.example.com` or `*.example.com`. */
  readonly host?: readonly string[];
  /** A path prefix, on segment boundaries: `/api` matches `/api` and `/api/x`. */
  readonly path?: string;
  /** An exact path: `/login`. */
  readonly pathExact?: string;
  /** Methods, any of which matches, upper case: `["GET", "HEAD"]`. */
  readonly methods?: readonly string[];
  /** Header conditions, all of which must hold: `true` for presence, else the exact value. */
  readonly headers?: Readonly<Record<string, string | true>>;
}

/** Headers a route sets or removes. */
export interface HeaderRules {
  /** Headers set (replacing any the message had). */
  readonly set?: Readonly<Record<string, string>>;
  /** Headers removed. */
  readonly remove?: readonly string[];
}

/** A path rewrite: strip a prefix, then add one (both together replace it). */
export interface PathRewrite {
  /** Removed from the start of the path; every path the route matches must start with it. */
  readonly stripPrefix?: string;
  /** Put before the (stripped) path: `/v2`. */
  readonly addPrefix?: string;
}

/** How a route's rate limit tells clients apart. */
export type RateLimitKey = "client" | "route" | `header:${string}`;

/** A token bucket: `perSecond` tokens a second, at most `burst` saved up. */
export interface RateLimit {
  /** Requests a second allowed on average. */
  readonly perSecond: number;
  /** Requests allowed at once after a quiet spell. */
  readonly burst: number;
  /**
   * What is counted apart: `client` (the client's address, after trusted proxies), `route`
   * (one bucket for the route) or `header:NAME` (the header's value; absent is one key).
   */
  readonly key: RateLimitKey;
}

/** A redirect a route answers with itself. */
export interface RedirectAction {
  /** The `Location`; a value ending in `/` gets the request path appended when `keepPath`. */
  readonly to: string;
  /** 301, 302, 303, 307 or 308. */
  readonly status: number;
  /** Appends the request's path (after the rewrite) and query to `to`. Default: false. */
  readonly keepPath?: boolean;
}

/** A fixed answer a route gives itself. */
export interface RespondAction {
  /** The status, 200 to 599. */
  readonly status: number;
  /** The body. Default: empty. */
  readonly body?: string;
  /** Its `Content-Type`. Default: `text/plain; charset=utf-8`. */
  readonly contentType?: string;
}

/** One route as the config file gives it: a match and exactly one action. */
export interface RouteConfig {
  /** Its name, for logs, metrics and `--explain`. */
  readonly name: string;
  /** What it matches. Default: everything. */
  readonly match?: RouteMatch;
  /** Sends the request to this pool. */
  readonly pool?: string;
  /** Answers with a redirect. */
  readonly redirect?: RedirectAction;
  /** Answers with a fixed response (such as a 404). */
  readonly respond?: RespondAction;
  /** Rewrites the path forwarded (or redirected to). */
  readonly rewrite?: PathRewrite;
  /** Headers set or removed on the forwarded request. */
  readonly requestHeaders?: HeaderRules;
  /** Headers set or removed on the response. */
  readonly responseHeaders?: HeaderRules;
  /** A rate limit for the whole balancer. */
  readonly rateLimit?: RateLimit;
}

/** What a request is routed on. */
export interface RouteRequest {
  /** The `Host` header (port allowed; compared without it, ignoring case). */
  readonly host: string;
  /** The normalized path, starting with `/`. */
  readonly path: string;
  /** The method. */
  readonly method: string;
  /** Reads a request header; `null` when absent. */
  readonly header: (name: string) => string | null;
}

/** Which route took a request (its index in the table), or none. */
export type RouteChoice =
  | { readonly ok: true; readonly index: number; readonly route: RouteConfig }
  | { readonly ok: false };

/**
 * Picks the first route whose match holds.
 *
 * @param routes The table, in order.
 * @param request What the request is routed on.
 * @returns The route and its index, or `{ ok: false }` when none matches.
 *
 * @example
 * ```ts
 * import { matchRoute } from "./routes.ts";
 * const routes = [
 *   { name: "api", match: { host: ["api.example.com"] }, pool: "api" },
 *   { name: "web", pool: "web" },
 * ];
 * const choice = matchRoute(routes, {
 *   host: "API.example.com:8080", path: "/", method: "GET", header: () => null,
 * });
 * if (!choice.ok || choice.route.name !== "api") throw new Error();
 * ```
 */
export function matchRoute(routes: readonly RouteConfig[], request: RouteRequest): RouteChoice {
  const host = hostName(request.host);
  for (let index = 0; index < routes.length; index++) {
    const route = routes[index] as RouteConfig;
    if (route.match === undefined || isMatch(route.match, host, request)) {
      return { ok: true, index, route };
    }
  }
  return { ok: false };
}

/**
 * Why each route before the chosen one did not match, and why the chosen one did: what
 * `lb check-config --explain URL` prints.
 *
 * @param routes The table, in order.
 * @param request What the request is routed on.
 * @returns One line per route tried, the last one the match (when any matched).
 */
export function explainRoute(routes: readonly RouteConfig[], request: RouteRequest): string[] {
  const host = hostName(request.host);
  const lines: string[] = [];
  for (const route of routes) {
    const miss = route.match === undefined ? undefined : firstMiss(route.match, host, request);
    if (miss === undefined) {
      lines.push(`route "${route.name}" matches (${describeMatch(route.match)})`);
      return lines;
    }
    lines.push(`route "${route.name}" does not match: ${miss}`);
  }
  lines.push("no route matches: the balancer answers 404");
  return lines;
}

/** `host[:port]` without the port, lower case. */
export function hostName(host: string): string {
  let end = host.length;
  if (host.startsWith("[")) {
    const close = host.indexOf("]");
    end = close < 0 ? host.length : close + 1;
  } else {
    const colon = host.lastIndexOf(":");
    if (colon >= 0) end = colon;
  }
  return host.slice(0, end).toLowerCase();
}

/** Whether a host pattern matches a host name (both lower case). */
export function isHostMatch(pattern: string, host: string): boolean {
  if (pattern.startsWith("*.")) {
    return host.length > pattern.length - 1 && host.endsWith(pattern.slice(1));
  }
  return pattern === host;
}

/**
 * Whether a path prefix matches a path, on segment boundaries.
 *
 * @example
 * ```ts
 * import { isPrefixMatch } from "./routes.ts";
 * if (!isPrefixMatch("/api", "/api/x") || isPrefixMatch("/api", "/apix")) throw new Error();
 * ```
 */
export function isPrefixMatch(prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  return prefix.endsWith("/") || path.length === prefix.length ||
    path.charCodeAt(prefix.length) === 47;
}

/** Whether every part of a match holds: {@linkcode firstMiss} without building its words. */
function isMatch(match: RouteMatch, host: string, request: RouteRequest): boolean {
  if (match.host !== undefined && !match.host.some((pattern) => isHostMatch(pattern, host))) {
    return false;
  }
  if (match.pathExact !== undefined && request.path !== match.pathExact) return false;
  if (match.path !== undefined && !isPrefixMatch(match.path, request.path)) return false;
  if (match.methods !== undefined && !match.methods.includes(request.method)) return false;
  if (match.headers !== undefined) {
    for (const name in match.headers) {
      const value = request.header(name);
      if (value === null) return false;
      const wanted = match.headers[name];
      if (wanted !== true && value !== wanted) return false;
    }
  }
  return true;
}

/** The first part of a match that fails for the request, worded; `undefined` when all hold. */
function firstMiss(match: RouteMatch, host: string, request: RouteRequest): string | undefined {
  if (match.host !== undefined && !match.host.some((pattern) => isHostMatch(pattern, host))) {
    return `host "${host}" is not ${match.host.join(" or ")}`;
  }
  if (match.pathExact !== undefined && request.path !== match.pathExact) {
    return `path "${request.path}" is not ${match.pathExact}`;
  }
  if (match.path !== undefined && !isPrefixMatch(match.path, request.path)) {
    return `path "${request.path}" is not under ${match.path}`;
  }
  if (match.methods !== undefined && !match.methods.includes(request.method)) {
    return `method ${request.method} is not ${match.methods.join(" or ")}`;
  }
  if (match.headers !== undefined) {
    for (const [name, wanted] of Object.entries(match.headers)) {
      const value = request.header(name);
      if (value === null) return `header ${name} is absent`;
      if (wanted !== true && value !== wanted) {
        return `header ${name} is "${value}", not "${wanted}"`;
      }
    }
  }
  return undefined;
}

/** A match, worded: `host api.example.com, path /api`. */
export function describeMatch(match: RouteMatch | undefined): string {
  if (match === undefined) return "everything";
  const parts: string[] = [];
  if (match.host !== undefined) parts.push(`host ${match.host.join(" or ")}`);
  if (match.pathExact !== undefined) parts.push(`path = ${match.pathExact}`);
  if (match.path !== undefined) parts.push(`path under ${match.path}`);
  if (match.methods !== undefined) parts.push(`method ${match.methods.join(" or ")}`);
  for (const [name, wanted] of Object.entries(match.headers ?? {})) {
    parts.push(wanted === true ? `header ${name} present` : `header ${name} = "${wanted}"`);
  }
  return parts.length === 0 ? "everything" : parts.join(", ");
}

/** A route's action, worded: `pool api`, `redirect 301 to https://...`, `respond 404`. */
export function describeAction(route: RouteConfig): string {
  if (route.pool !== undefined) return `pool ${route.pool}`;
  if (route.redirect !== undefined) {
    return `redirect ${route.redirect.status} to ${route.redirect.to}`;
  }
  if (route.respond !== undefined) return `respond ${route.respond.status}`;
  return "nothing";
}

/**
 * Every problem of a route table, each naming the route: actions (exactly one, to a pool that
 * exists), rewrites that do not fit the match, routes an earlier one shadows (they can never
 * match), duplicate names, and pools no route uses.
 *
 * @param routes The table, in order.
 * @param pools The names of the configured pools.
 * @param options Pools exempt from the unused check (the implicit `default`).
 * @returns The problems, empty when the table is sound.
 *
 * @example
 * ```ts
 * import { checkRoutes } from "./routes.ts";
 * const problems = checkRoutes([{ name: "all", pool: "web" }, { name: "api", pool: "api" }], [
 *   "web", "api",
 * ]);
 * if (!problems.some((p) => p.includes('"api" can never match'))) throw new Error();
 * ```
 */
export function checkRoutes(
  routes: readonly RouteConfig[],
  pools: readonly string[],
  options: { readonly exempt?: readonly string[] } = {},
): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  const used = new Set<string>();
  routes.forEach((route, index) => {
    const label = `route "${route.name}"`;
    if (names.has(route.name)) problems.push(`${label} is named twice`);
    names.add(route.name);
    const actions = [route.pool, route.redirect, route.respond].filter((a) => a !== undefined);
    if (actions.length !== 1) {
      problems.push(`${label} needs exactly one of pool, redirect and respond`);
    }
    if (route.pool !== undefined) {
      used.add(route.pool);
      if (!pools.includes(route.pool)) {
        problems.push(`${label} sends to pool "${route.pool}", which is not defined`);
      }
    } else if (route.rateLimit === undefined && route.requestHeaders !== undefined) {
      problems.push(`${label} sets request headers but forwards nothing`);
    }
    const match = route.match;
    if (match?.path !== undefined && match.pathExact !== undefined) {
      problems.push(`${label} gives both path and pathExact; give one`);
    }
    const strip = route.rewrite?.stripPrefix;
    if (strip !== undefined) {
      const matched = match?.pathExact ?? match?.path;
      if (matched === undefined || !matched.startsWith(strip)) {
        problems.push(
          `${label} strips "${strip}", but not every path it matches starts with it ` +
            `(match a path under ${strip})`,
        );
      }
    }
    for (let earlier = 0; earlier < index; earlier++) {
      const before = routes[earlier] as RouteConfig;
      if (covers(before.match, route.match)) {
        problems.push(
          `${label} can never match: route "${before.name}" before it matches every request ` +
            `it would (${describeMatch(before.match)})`,
        );
        break;
      }
    }
  });
  for (const pool of pools) {
    if (!used.has(pool) && !(options.exempt ?? []).includes(pool)) {
      problems.push(`pool "${pool}" is used by no route`);
    }
  }
  return problems;
}

/** Whether every request `inner` matches is matched by `outer` too. */
function covers(outer: RouteMatch | undefined, inner: RouteMatch | undefined): boolean {
  if (outer === undefined) return true;
  const i = inner ?? {};
  if (outer.host !== undefined) {
    if (i.host === undefined) return false;
    if (!i.host.every((h) => outer.host?.some((o) => isHostPatternCovered(o, h)))) return false;
  }
  if (outer.pathExact !== undefined && i.pathExact !== outer.pathExact) return false;
  if (outer.path !== undefined) {
    const path = i.pathExact ?? i.path;
    if (path === undefined || !isPrefixMatch(outer.path, path)) return false;
    // `/api/` does not cover the prefix `/api` (which also matches `/api` itself).
    if (i.pathExact === undefined && outer.path.endsWith("/") && !path.startsWith(outer.path)) {
      return false;
    }
  }
  if (outer.methods !== undefined) {
    if (i.methods === undefined || !i.methods.every((m) => outer.methods?.includes(m))) {
      return false;
    }
  }
  for (const [name, wanted] of Object.entries(outer.headers ?? {})) {
    const given = i.headers?.[name] ?? i.headers?.[name.toLowerCase()];
    if (given === undefined) return false;
    if (wanted !== true && given !== wanted) return false;
  }
  return true;
}

/** Whether host pattern `outer` matches every host `inner` does. */
function isHostPatternCovered(outer: string, inner: string): boolean {
  if (outer === inner) return true;
  if (!outer.startsWith("*.")) return false;
  return inner.endsWith(outer.slice(1)) && inner.length > outer.length - 1;
}

/**
 * Applies a route's path rewrite to a normalized path. The result is normalized again by the
 * caller's path rule; the prefixes are checked at load time (`isSafePrefix`), so no rewrite
 * can climb out of a backend's base path.
 *
 * @param path The normalized request path.
 * @param rewrite The route's rewrite.
 * @returns The path to forward, starting with `/`.
 *
 * @example
 * ```ts
 * import { rewritePath } from "./routes.ts";
 * if (rewritePath("/api/users", { stripPrefix: "/api", addPrefix: "/v2" }) !== "/v2/users") {
 *   throw new Error();
 * }
 * ```
 */
export function rewritePath(path: string, rewrite: PathRewrite): string {
  let rest = path;
  const strip = rewrite.stripPrefix;
  if (strip !== undefined && rest.startsWith(strip)) rest = rest.slice(strip.length);
  const add = rewrite.addPrefix;
  // The prefix itself is replaced by the new one as written: `/api` to `/v1`, not `/v1/`.
  if (add !== undefined && rest === "") return add;
  if (!rest.startsWith("/")) rest = "/" + rest;
  if (add === undefined || add === "/") return rest;
  return (add.endsWith("/") ? add.slice(0, -1) : add) + rest;
}

/** The rule a rewrite prefix or route path keeps, worded for messages. */
export const SAFE_PREFIX_RULE =
  'must start with "/" and hold no "." or ".." segment, "%", "?", "#", "\\" or whitespace';

/**
 * Whether a path prefix from the config is safe to match on and to put in front of a path:
 * absolute, with no dot segments or characters the path rule would change.
 */
export function isSafePrefix(prefix: string): boolean {
  if (!prefix.startsWith("/") || /[%?#\\\s]/.test(prefix)) return false;
  return !prefix.split("/").some((segment) => segment === "." || segment === "..");
}

/** Whether a host pattern is a host name or `*.` and one: lower case is not required. */
export function isHostPattern(pattern: string): boolean {
  return /^(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$|^\[[0-9A-Fa-f:.]+\]$/.test(pattern);
}
