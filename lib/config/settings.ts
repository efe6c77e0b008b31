/**
 * Every balancer setting, declared once: its place in the configuration (which is also its key
 * in the JSON config file), its kind of value, default, flag and help. The
 * {@linkcode BalancerConfig} type, the defaults and merging (`config_layers.ts`), the file's
 * schema (`config_file.ts`), the flags (`config_flags.ts`) and the help (`config_help.ts`) are all
 * derived from {@linkcode SETTINGS}; a new setting is one entry here.
 *
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import { POLICY_NAMES, type PolicyName } from "../core/policy_names.ts";
import { HASH_KEY_RULE, isValidHashKey } from "../shared/hash_key.ts";
import { HTTP_TOKEN_RULE, isHttpToken } from "../shared/tokens.ts";
import { parseHostPort } from "../shared/ip.ts";

/** Reads a listen address (`host:port`, an IPv6 host in brackets): `shared/ip.ts`. */
export const parseAdminAddress: typeof parseHostPort = parseHostPort;
import { nameList, trustedProxyList } from "./kinds.ts";
import {
  DNS_SERVER_RULE,
  DNS_TARGET_RULE,
  parseDnsServer,
  parseDnsTarget,
  parseSrvName,
  SRV_NAME_RULE,
} from "../shared/dns_names.ts";
import {
  type BackendConfig,
  backendList,
  count,
  duration,
  type Kind,
  LOG_FORMATS,
  type LogFormat,
  logLevel,
  oneOf,
  pathList,
  percent,
  port,
  size,
  text,
} from "./kinds.ts";
import { parseBackendUrl } from "../core/backend.ts";
import type { OutlierKind } from "../core/outlier.ts";
import { outlierKindList } from "./outlier_kinds.ts";
import { type PoolTable, poolTable, routeTable } from "./route_kinds.ts";
import type { RouteConfig } from "../core/routes.ts";
import { domainList, httpsUrl } from "./acme_kinds.ts";

export { type BackendConfig, type LogFormat, LONGEST_DURATION } from "./kinds.ts";

/** Access log formats: nginx's combined, JSON lines, or a short text line. */
export const ACCESS_LOG_FORMATS = ["combined", "json", "text"] as const;

/** An access log format. */
export type AccessLogFormat = typeof ACCESS_LOG_FORMATS[number];

/** How requests reach `http:` backends: Deno's `fetch`, or the balancer's own HTTP/1.1 client. */
export const UPSTREAMS = ["fetch", "http1"] as const;

/** An upstream client. */
export type Upstream = typeof UPSTREAMS[number];

/** The help's sections, in order. */
export const SECTIONS = [
  "Listener",
  "TLS",
  "Backends",
  "Routes",
  "Health checks",
  "Passive health",
  "Clients",
  "Proxy",
  "Limits",
  "Admin",
  "Certificates",
  "Logging",
] as const;

/** A section of the help. */
export type Section = typeof SECTIONS[number];

/** One setting: its value's kind, default, flag and help. */
export interface Setting<T> {
  /** How its value is read from a flag and from the file, and written in the help. */
  readonly kind: Kind<T>;
  /** Its value when no source sets it. */
  readonly default: T;
  /** Its flag, without `--`. */
  readonly flag: string;
  /** What its flag's value is called in the help: `DURATION`. */
  readonly metavar: string;
  /** Where the help lists it. */
  readonly section: Section;
  /** What it does, for the help (wrapped there); `Default: ...` is added after it. */
  readonly help: string;
  /** Replaces the formatted default in the help. Default: `kind.format(default)`. */
  readonly defaultHelp?: string;
}

/** A setting without a default: absent from the configuration unless a source sets it. */
export interface OptionalSetting<T> extends Omit<Setting<T>, "default"> {
  /** Marks the setting optional. */
  readonly isOptional: true;
}

/** Whether a node of {@linkcode SETTINGS} is a setting rather than a group of them. */
export function isSetting(node: object): node is Setting<unknown> | OptionalSetting<unknown> {
  return "kind" in node;
}

/** The three demo backends on 8080-8082, as the original Python balancer used them. */
const DEMO_BACKENDS: readonly BackendConfig[] = [8080, 8081, 8082].map((port) => ({
  url: parseBackendUrl(`http://127.0.0.1:${port}`),
  weight: 1,
}));

/**
 * The shortest health interval and probe timeout. HAProxy takes `inter 1` (it refuses only 0)
 * and nginx has no active checks; Kubernetes, AWS and Google Cloud floor both at one second.
 * 100 ms keeps sub-second checks for those who want them (ten probes a second per backend)
 * while refusing the values that fail every healthy backend: at `--health-interval 1ms` the
 * default timeout followed it down to 1 ms, and the whole pool went unhealthy.
 */
const HEALTH_FLOOR_MS = 100;
const HEALTH_FLOOR_WHY = "a shorter probe interval or timeout fails healthy backends";

const isValidHost = (value: string): boolean => value !== "" && !/[\s/]/.test(value);
const isValidHealthPath = (value: string): boolean => value.startsWith("/") && !/\s/.test(value);

/** Every setting; groups (`health`, `client`, ...) nest as they do in the configuration. */
export const SETTINGS = {
  host: {
    kind: text(isValidHost, "must be a host name or IP address, without spaces or slashes"),
    default: "127.0.0.1",
    flag: "host",
    metavar: "HOST",
    section: "Listener",
    help: "Address to listen on.",
  } satisfies Setting<string>,
  port: {
    kind: port(),
    default: 9090,
    flag: "port",
    metavar: "PORT",
    section: "Listener",
    help: "Port to listen on; 0 picks a free port.",
  } satisfies Setting<number>,
  workers: {
    kind: text(
      (value) => value === "auto" || /^[1-9][0-9]{0,2}$/.test(value),
      "must be auto or a whole number from 1 to 999",
    ),
    default: "auto",
    flag: "workers",
    metavar: "N|auto",
    section: "Listener",
    help: "Isolates serving requests, sharing the address (SO_REUSEPORT; needs Deno's " +
      "--unstable-net, which the tasks and the binary pass). auto is one per core (on 2 cores " +
      "two isolates measured 1.2x one). Health checks, the admin API and reloads stay in one " +
      "control plane.",
  } satisfies Setting<string>,
  websocket: {
    kind: oneOf(["on", "off"]),
    default: "on",
    flag: "websocket",
    metavar: "on|off",
    section: "Listener",
    help: "Proxy WebSocket upgrades: after the backend's 101 the connection is a byte tunnel " +
      "(TCP backpressure, frames untouched), and the header and keep-alive timeouts and " +
      "--max-connections still apply; wss too, over TLS. Plain HTTP needs Linux and " +
      "--allow-ffi (the tasks and the binary grant it); without them, and with off, upgrade " +
      "requests are answered 501. Over TLS, off serves HTTP/1.1 without the local pipe the " +
      "listener otherwise hands it to Deno's server through (13 to 24% of its throughput).",
  } satisfies Setting<"on" | "off">,
  tls: {
    certFiles: {
      kind: pathList(),
      default: [],
      flag: "tls-cert",
      metavar: "FILE",
      section: "TLS",
      help: "Serve HTTPS (HTTP/2 and HTTP/1.1, TLS 1.2 and 1.3) with this PEM certificate " +
        "chain; pair each with a --tls-key, in order. Repeat both for several certificates: " +
        "each is chosen by the name the client asks for (SNI, matched against the " +
        "certificate's names), the first when none matches. Read again on reload.",
      defaultHelp: "none (plain HTTP)",
    } satisfies Setting<readonly string[]>,
    keyFiles: {
      kind: pathList(),
      default: [],
      flag: "tls-key",
      metavar: "FILE",
      section: "TLS",
      help: "The PEM private key of the --tls-cert at the same position.",
      defaultHelp: "none",
    } satisfies Setting<readonly string[]>,
    handshakeTimeoutMs: {
      kind: duration({ isZeroAllowed: false }),
      default: 10_000,
      flag: "tls-timeout",
      metavar: "DURATION",
      section: "TLS",
      help: "Time a client has, from connecting, to complete its TLS handshake (a handshake " +
        "timeout); then the connection is closed. Its socket is freed at once only on Linux " +
        "with --allow-ffi (the tasks and the binary grant it); otherwise it stays open until the " +
        "client sends or leaves, and the listener logs that it is degraded.",
    } satisfies Setting<number>,
    redirectHttp: {
      kind: text(
        (value) => parseAdminAddress(value) !== undefined,
        "must be host:port, such as 0.0.0.0:80",
      ),
      isOptional: true,
      flag: "redirect-http",
      metavar: "ADDRESS",
      section: "TLS",
      help: "Also listen for plain HTTP here and answer every request with 308 to the same " +
        "URL on https (on the TLS port); /.well-known/acme-challenge/ is answered by the " +
        "certificate manager instead. Needs --tls-cert or --acme-domain.",
      defaultHelp: "off",
    } satisfies OptionalSetting<string>,
    hstsMaxAgeSeconds: {
      kind: count(0),
      default: 0,
      flag: "hsts",
      metavar: "SECONDS",
      section: "TLS",
      help: "Send Strict-Transport-Security: max-age=SECONDS on every HTTPS response " +
        "(31536000 is a year); 0 sends none.",
    } satisfies Setting<number>,
  },
  backends: {
    kind: backendList(),
    default: DEMO_BACKENDS,
    flag: "backend",
    metavar: "URL",
    section: "Backends",
    help: "A backend; repeat the flag or give a comma list. A bare host:port means " +
      "http://host:port. Replaces the defaults.",
  } satisfies Setting<readonly BackendConfig[]>,
  policy: {
    kind: oneOf(POLICY_NAMES),
    default: "round-robin",
    flag: "policy",
    metavar: "NAME",
    section: "Backends",
    help: `Selection policy: ${POLICY_NAMES.join(", ")}.`,
  } satisfies Setting<PolicyName>,
  hashKey: {
    kind: text(isValidHashKey, HASH_KEY_RULE),
    default: "client-ip",
    flag: "hash-key",
    metavar: "KEY",
    section: "Backends",
    help: "What --policy hash hashes: client-ip, path, header:NAME or cookie:NAME.",
  } satisfies Setting<string>,
  slowStartMs: {
    kind: duration({ isZeroAllowed: true }),
    default: 0,
    flag: "slow-start",
    metavar: "DURATION",
    section: "Backends",
    help: "A backend that comes back (recovered, returned from ejection, undrained) or is added " +
      "while serving gets its weight ramped from 10% to full over this time (round-robin, " +
      "random, p2c, least-in-flight). Backends present at start-up take their full share at once. 0 turns it off.",
  } satisfies Setting<number>,
  affinityCookie: {
    name: {
      kind: text(isHttpToken, `must be a cookie name: ${HTTP_TOKEN_RULE}`),
      default: "denolb_affinity",
      flag: "cookie-name",
      metavar: "NAME",
      section: "Backends",
      help: "The cookie --policy cookie pins a client to its backend with.",
    } satisfies Setting<string>,
    secret: {
      kind: text(
        (value) => value.length >= 16 && !/\s/.test(value),
        "must be at least 16 characters without spaces",
      ),
      isOptional: true,
      flag: "cookie-secret",
      metavar: "SECRET",
      section: "Backends",
      help: "Key the affinity cookie is signed with (HMAC-SHA256); give the same one to every " +
        "balancer that must honour the others' cookies, and to keep them valid across restarts.",
      defaultHelp: "random at each start, shared by every worker",
    } satisfies OptionalSetting<string>,
    maxAgeMs: {
      kind: duration({ isZeroAllowed: true }),
      default: 0,
      flag: "cookie-max-age",
      metavar: "DURATION",
      section: "Backends",
      help: "The affinity cookie's Max-Age; 0 makes it a session cookie.",
    } satisfies Setting<number>,
  },
  discovery: {
    dns: {
      kind: nameList((entry) => parseDnsTarget(entry) !== undefined, DNS_TARGET_RULE),
      default: [],
      flag: "backend-dns",
      metavar: "NAME:PORT",
      section: "Backends",
      help: "Backends from DNS: one http backend per A and AAAA address of NAME, on PORT (a " +
        "Kubernetes headless Service, a Consul or Compose name). Re-resolved on the records' " +
        "TTL and on reload; a new address takes traffic once its first health probe passes, a " +
        "vanished one drains; a failed lookup keeps the last good set. Repeat the flag or give " +
        "a comma list; without --backend the built-in backends are not used.",
      defaultHelp: "none",
    } satisfies Setting<readonly string[]>,
    srv: {
      kind: nameList((entry) => parseSrvName(entry) !== undefined, SRV_NAME_RULE),
      default: [],
      flag: "backend-srv",
      metavar: "SRV_NAME",
      section: "Backends",
      help:
        "Backends from DNS SRV records of SRV_NAME (_SERVICE._tcp.NAME): each target's addresses on the record's port, " +
        "weighted by the record's weight (scaled to at most 256; weight 0 gets 1/100 of the " +
        "smallest), from the records of the lowest priority only. Re-resolved like " +
        "--backend-dns; Deno does not report an SRV record's TTL, so the SRV set is re-read at " +
        "least every --dns-ttl-max.",
      defaultHelp: "none",
    } satisfies Setting<readonly string[]>,
    server: {
      kind: text((value) => parseDnsServer(value) !== undefined, DNS_SERVER_RULE),
      isOptional: true,
      flag: "dns-server",
      metavar: "IP:PORT",
      section: "Backends",
      help: "The DNS server discovery asks (Consul's DNS interface, a cluster's DNS).",
      defaultHelp: "the system's resolvers (/etc/resolv.conf)",
    } satisfies OptionalSetting<string>,
    minTtlMs: {
      kind: duration({ isZeroAllowed: false }),
      default: 1_000,
      flag: "dns-ttl-min",
      metavar: "DURATION",
      section: "Backends",
      help: "The shortest time between two lookups of a name, whatever its TTL says; also the " +
        "first wait after a failed lookup (doubling while they fail, up to --dns-ttl-max).",
    } satisfies Setting<number>,
    maxTtlMs: {
      kind: duration({ isZeroAllowed: false }),
      default: 30_000,
      flag: "dns-ttl-max",
      metavar: "DURATION",
      section: "Backends",
      help: "The longest time between two lookups of a name, whatever its TTL says; at least " +
        "--dns-ttl-min.",
    } satisfies Setting<number>,
  },
  pools: {
    kind: poolTable(),
    default: {},
    flag: "pools",
    metavar: "JSON",
    section: "Routes",
    help: "Named pools, each with its backends and, when it differs from the top level, its " +
      "policy, hashKey, maxInFlight, timeoutMs, retries and health {path}. The top-level backends form the " +
      'pool "default". A backend belongs to one pool. Usually written in the config file.',
    defaultHelp: "none",
  } satisfies Setting<PoolTable>,
  routes: {
    kind: routeTable(),
    default: [],
    flag: "routes",
    metavar: "JSON",
    section: "Routes",
    help: "The route table, first match wins: each route has a name, a match (host, exact or " +
      "*.domain; path prefix or pathExact; methods; headers) and one action (pool, redirect " +
      "{to, status, keepPath} or respond {status, body, contentType}), and may rewrite " +
      "(stripPrefix, addPrefix), set or remove requestHeaders and responseHeaders, and carry a " +
      "rateLimit {perSecond, burst, key: client|route|header:NAME}. A request no route " +
      "matches is answered 404. None: every request goes to the top-level backends.",
    defaultHelp: "none",
  } satisfies Setting<readonly RouteConfig[]>,
  health: {
    path: {
      kind: text(isValidHealthPath, 'must start with "/" and contain no spaces'),
      default: "/health",
      flag: "health-path",
      metavar: "PATH",
      section: "Health checks",
      help: "Path probed on each backend (after its base path); healthy means a 2xx response " +
        "within the timeout.",
    } satisfies Setting<string>,
    intervalMs: {
      kind: duration({ isZeroAllowed: false, min: HEALTH_FLOOR_MS, why: HEALTH_FLOOR_WHY }),
      default: 10_000,
      flag: "health-interval",
      metavar: "DURATION",
      section: "Health checks",
      help: "Time between probes of a backend; at least 100ms.",
    } satisfies Setting<number>,
    timeoutMs: {
      kind: duration({ isZeroAllowed: false, min: HEALTH_FLOOR_MS, why: HEALTH_FLOOR_WHY }),
      default: 2_000,
      flag: "health-timeout",
      metavar: "DURATION",
      section: "Health checks",
      help: "Probe timeout; at least 100ms and at most the interval.",
      defaultHelp: "2s, or the interval when that is shorter",
    } satisfies Setting<number>,
    rise: {
      kind: count(1),
      default: 2,
      flag: "rise",
      metavar: "COUNT",
      section: "Health checks",
      help: "Consecutive passed probes to bring a backend back.",
    } satisfies Setting<number>,
    fall: {
      kind: count(1),
      default: 3,
      flag: "fall",
      metavar: "COUNT",
      section: "Health checks",
      help: "Consecutive failed probes to take a backend out. The first probe's result applies " +
        "at once, so a backend down at start-up leaves rotation after one probe.",
    } satisfies Setting<number>,
  },
  outlier: {
    failures: {
      kind: count(0),
      default: 5,
      flag: "outlier-failures",
      metavar: "COUNT",
      section: "Passive health",
      help: "Consecutive failed requests (of the --outlier-on kinds) that eject a backend " +
        "between probes. 0 turns passive health off.",
    } satisfies Setting<number>,
    kinds: {
      kind: outlierKindList(),
      default: ["connect", "timeout"],
      flag: "outlier-on",
      metavar: "KIND,...",
      section: "Passive health",
      help: "What counts as a failure: connect (refused, timed out, or broken before a " +
        "response), timeout (no response headers in time), 5xx (a 5xx response). Any other " +
        "response resets the count.",
    } satisfies Setting<readonly OutlierKind[]>,
    baseEjectionMs: {
      kind: duration({ isZeroAllowed: false }),
      default: 30_000,
      flag: "outlier-ejection",
      metavar: "DURATION",
      section: "Passive health",
      help: "How long the first ejection lasts; the n-th in a row lasts n times this (one is " +
        "forgiven for each such time back in rotation). Then it returns if its probes pass.",
    } satisfies Setting<number>,
    maxEjectionMs: {
      kind: duration({ isZeroAllowed: false }),
      default: 300_000,
      flag: "outlier-max-time",
      metavar: "DURATION",
      section: "Passive health",
      help: "The longest an ejection lasts.",
    } satisfies Setting<number>,
    maxEjectedPercent: {
      kind: percent(),
      default: 50,
      flag: "outlier-max-ejected",
      metavar: "PCT",
      section: "Passive health",
      help: "The most of the pool ejected at once, in percent; an ejection past it is skipped, " +
        "so at 50 the last of two backends stays in.",
    } satisfies Setting<number>,
  },
  client: {
    headerTimeoutMs: {
      kind: duration({ isZeroAllowed: false }),
      default: 10_000,
      flag: "header-timeout",
      metavar: "DURATION",
      section: "Clients",
      help: "Time a client has, from connecting, to send its first request's complete " +
        "headers; then the connection is closed. Later requests on a kept-alive connection " +
        "are bounded by --keepalive-timeout.",
    } satisfies Setting<number>,
    keepAliveTimeoutMs: {
      kind: duration({ isZeroAllowed: true }),
      default: 60_000,
      flag: "keepalive-timeout",
      metavar: "DURATION",
      section: "Clients",
      help: "How long a kept-alive client connection may wait, after a response, for the " +
        "complete headers of its next request; 0 closes it after each response.",
    } satisfies Setting<number>,
    bodyTimeoutMs: {
      kind: duration({ isZeroAllowed: true }),
      default: 30_000,
      flag: "body-timeout",
      metavar: "DURATION",
      section: "Clients",
      help: "Longest pause between two reads of a request body; 0 turns it off.",
    } satisfies Setting<number>,
  },
  proxy: {
    timeoutMs: {
      kind: duration({ isZeroAllowed: false }),
      default: 30_000,
      flag: "timeout",
      metavar: "DURATION",
      section: "Proxy",
      help: "Response-header timeout: wait for a backend's response headers, then answer 504. " +
        "The wait starts when the request has been sent: upload time is not included. With " +
        "--upstream fetch it includes connecting.",
    } satisfies Setting<number>,
    connectTimeoutMs: {
      kind: duration({ isZeroAllowed: true }),
      default: 5_000,
      flag: "connect-timeout",
      metavar: "DURATION",
      section: "Proxy",
      help: "Wait for a new connection to a backend, then answer 504 (or retry elsewhere: the " +
        "request was never sent). Enforced by --upstream http1 for http: backends; Deno's " +
        "fetch has no connect hook, so with fetch connecting counts toward --timeout. 0 " +
        "leaves it to the operating system.",
    } satisfies Setting<number>,
    idleBodyTimeoutMs: {
      kind: duration({ isZeroAllowed: true }),
      default: 0,
      flag: "idle-body-timeout",
      metavar: "DURATION",
      section: "Proxy",
      help: "Longest pause between two chunks of a backend's response body; then the client's " +
        "response is cut (its status was already sent). 0 turns it off (long polls and " +
        "server-sent events may pause for as long as they like).",
    } satisfies Setting<number>,
    retries: {
      kind: count(0),
      default: 2,
      flag: "retries",
      metavar: "COUNT",
      section: "Proxy",
      help: "Retries on another backend, never the same one twice: after a refused connection " +
        "or connect timeout for any method, after a broken one for idempotent methods; only " +
        "when the body fit --request-buffer (or was absent), and within --retry-budget.",
    } satisfies Setting<number>,
    retryBudgetPercent: {
      kind: percent(),
      default: 20,
      flag: "retry-budget",
      metavar: "PERCENT",
      section: "Proxy",
      help: "Retries allowed as a share of the requests of the last 10 seconds " +
        "(or --retry-budget-min per second, whichever is more); beyond it a failure is " +
        "answered as it is, not retried. 0 leaves only the minimum.",
    } satisfies Setting<number>,
    retryBudgetMinPerSecond: {
      kind: count(0),
      default: 3,
      flag: "retry-budget-min",
      metavar: "COUNT",
      section: "Proxy",
      help: "Retries per second the retry budget always allows, however few the requests.",
    } satisfies Setting<number>,
    requestBufferBytes: {
      kind: size(),
      default: 1024 * 1024,
      flag: "request-buffer",
      metavar: "SIZE",
      section: "Proxy",
      help: "Request bodies up to this size are read completely before a backend is contacted, " +
        "so slow uploads hold no backend connection and such requests can be retried; larger " +
        "bodies stream on after the buffered part. 0 turns buffering off.",
    } satisfies Setting<number>,
    upstream: {
      kind: oneOf(UPSTREAMS),
      default: "http1",
      flag: "upstream",
      metavar: "NAME",
      section: "Proxy",
      help: "How requests reach http: backends: http1 (the balancer's own HTTP/1.1 client, " +
        "which forwards exactly the client's headers, enforces --connect-timeout and costs " +
        "about half the CPU per request) or fetch (Deno's client). https: backends always " +
        "use fetch.",
    } satisfies Setting<Upstream>,
    maxIdlePerHost: {
      kind: count(0),
      default: 64,
      flag: "max-idle-per-host",
      metavar: "COUNT",
      section: "Proxy",
      help: "Idle keep-alive connections kept per backend.",
    } satisfies Setting<number>,
    keepAliveTimeoutMs: {
      kind: duration({ isZeroAllowed: false }),
      default: 30_000,
      flag: "pool-idle-timeout",
      metavar: "DURATION",
      section: "Proxy",
      help: "How long an idle keep-alive connection to a backend is kept for reuse; keep it " +
        "below the backends' own idle timeout (Node.js closes after 5s), or a request may go " +
        "out on a connection the backend is closing.",
    } satisfies Setting<number>,
    backendCaFile: {
      kind: text((value) => value !== "", "must be a non-empty path"),
      isOptional: true,
      flag: "backend-ca",
      metavar: "FILE",
      section: "Proxy",
      help: "PEM certificates of the authorities https: backends (and their health probes) are " +
        "verified against, instead of the system's; verification is always on.",
      defaultHelp: "the system's authorities",
    } satisfies OptionalSetting<string>,
    trustedProxies: {
      kind: trustedProxyList(),
      default: [],
      flag: "trusted-proxies",
      metavar: "CIDR,...",
      section: "Proxy",
      help: "Peers (IPv4 or IPv6 addresses or CIDR blocks) whose X-Forwarded-For and Forwarded " +
        "are appended to and whose X-Forwarded-Proto and -Host are kept; from any other peer " +
        "all four are replaced by what the balancer saw.",
      defaultHelp: "none",
    } satisfies Setting<readonly string[]>,
    forwarded: {
      kind: oneOf(["on", "off"]),
      default: "on",
      flag: "forwarded",
      metavar: "on|off",
      section: "Proxy",
      help: "Send the RFC 7239 Forwarded header (for=, proto=, host=) beside X-Forwarded-*; " +
        "off removes it, an incoming one too.",
    } satisfies Setting<"on" | "off">,
  },
  log: {
    level: {
      kind: logLevel(),
      default: "info",
      flag: "log-level",
      metavar: "LEVEL",
      section: "Logging",
      help: "trace, debug, info, warning, error or fatal.",
      defaultHelp: "info, or the LOGLEVEL environment variable (LOGLEVEL=DEBUG)",
    } satisfies Setting<LogLevel>,
    format: {
      kind: oneOf(LOG_FORMATS),
      default: "text",
      flag: "log-format",
      metavar: "FORMAT",
      section: "Logging",
      help: "text or json (JSON lines).",
    } satisfies Setting<LogFormat>,
    file: {
      kind: text((value) => value !== "", "must be a non-empty path"),
      isOptional: true,
      flag: "log-file",
      metavar: "PATH",
      section: "Logging",
      help: "Append logs to PATH instead of stderr, reopened on SIGHUP (logrotate); writes are " +
        "buffered and never block requests.",
    } satisfies OptionalSetting<string>,
  },
  accessLog: {
    path: {
      kind: text((value) => value !== "", "must be a path, - (stdout) or off"),
      default: "-",
      flag: "access-log",
      metavar: "PATH",
      section: "Logging",
      help: "Where the access log (one line per request) goes: a file, appended to and reopened " +
        "on SIGHUP (logrotate); - for stdout; off for none. Diagnostics stay on stderr " +
        "(--log-file).",
    } satisfies Setting<string>,
    format: {
      kind: oneOf(ACCESS_LOG_FORMATS),
      default: "combined",
      flag: "access-log-format",
      metavar: "FORMAT",
      section: "Logging",
      help: "combined (nginx's, plus request time, upstream time and request ID), json (JSON " +
        "lines) or text.",
    } satisfies Setting<AccessLogFormat>,
  },
  admin: {
    listen: {
      kind: text(
        (value) => value === "off" || parseAdminAddress(value) !== undefined,
        "must be host:port (such as 127.0.0.1:9091; port 0 picks a free one) or off",
      ),
      default: "127.0.0.1:9091",
      flag: "admin",
      metavar: "ADDRESS",
      section: "Admin",
      help: "Where the admin API and dashboard listen (status, metrics, drain, /health for an " +
        "upstream load balancer), apart from the proxy port; off turns it off. An address " +
        "other than loopback needs --admin-token (or --admin-insecure on).",
    } satisfies Setting<string>,
    token: {
      kind: text(
        (value) => value.length >= 16 && !/\s/.test(value),
        "must be at least 16 characters without spaces",
      ),
      isOptional: true,
      flag: "admin-token",
      metavar: "TOKEN",
      section: "Admin",
      help: "Bearer token every admin route but /health requires (Authorization: Bearer TOKEN).",
    } satisfies OptionalSetting<string>,
    insecure: {
      kind: oneOf(["on", "off"]),
      default: "off",
      flag: "admin-insecure",
      metavar: "on|off",
      section: "Admin",
      help: "on lets the admin API listen on an address other than loopback without " +
        "--admin-token, so anyone who can reach it can add, drain and remove backends; off " +
        "refuses to start that way.",
    } satisfies Setting<"on" | "off">,
  },
  limits: {
    maxConnections: {
      kind: count(0),
      default: 10_000,
      flag: "max-connections",
      metavar: "COUNT",
      section: "Limits",
      help: "Client connections open at once, over every isolate; one more is answered 503 " +
        "with Connection: close. 0 is no limit.",
    } satisfies Setting<number>,
    maxHeaderBytes: {
      kind: size({ max: 32 * 1024, why: "below Deno's own 64KiB limit on a request head" }),
      default: 16 * 1024,
      flag: "max-header-size",
      metavar: "SIZE",
      section: "Limits",
      help: "Request header fields, names plus values, summed; more is answered 431. 0 turns " +
        "it off (Deno still answers 400 to a request head over 64KiB or 128 fields).",
    } satisfies Setting<number>,
    maxUrlLength: {
      kind: size({ max: 16 * 1024, why: "below Deno's own 64KiB limit on a request head" }),
      default: 8 * 1024,
      flag: "max-url-length",
      metavar: "SIZE",
      section: "Limits",
      help: "Request target (path and query); longer is answered 414. 0 turns it off.",
    } satisfies Setting<number>,
    maxBodyBytes: {
      kind: size(),
      default: 0,
      flag: "max-body-size",
      metavar: "SIZE",
      section: "Limits",
      help: "Request body; a larger Content-Length is answered 413 unread, and a chunked body " +
        "that grows past it is cut off (413 unless the backend already answered). 0 is no limit.",
    } satisfies Setting<number>,
    maxInFlight: {
      kind: count(0),
      default: 0,
      flag: "max-in-flight",
      metavar: "COUNT",
      section: "Limits",
      help: "Requests each backend takes at once, over every isolate; a full backend is " +
        "skipped. A " +
        'backend\'s "maxInFlight" in the config file overrides it. 0 is no limit.',
    } satisfies Setting<number>,
    queueSize: {
      kind: count(0),
      default: 100,
      flag: "queue-size",
      metavar: "COUNT",
      section: "Limits",
      help: "Requests that wait, over every isolate, when every backend is full; one more is " +
        "answered " +
        "503. 0 answers 503 at once.",
    } satisfies Setting<number>,
    queueTimeoutMs: {
      kind: duration({ isZeroAllowed: false }),
      default: 5_000,
      flag: "queue-timeout",
      metavar: "DURATION",
      section: "Limits",
      help: "Longest wait in the queue for a backend with room, then 503.",
    } satisfies Setting<number>,
  },
  acme: {
    domains: {
      kind: domainList(),
      default: [],
      flag: "acme-domain",
      metavar: "NAME",
      section: "Certificates",
      help: "Get a certificate for NAME from an ACME CA (Let's Encrypt by default) and serve " +
        "HTTPS with it on the proxy port (--port), renewed a third of its lifetime before it " +
        "expires; the HTTP-01 challenge is answered on --redirect-http (the CA must reach it on " +
        "port 80). A first start waits for the certificate. Repeat the flag or give a comma " +
        "list for one certificate naming them all. Needs --state-dir and --redirect-http; " +
        "excludes --tls-cert.",
    } satisfies Setting<readonly string[]>,
    directory: {
      kind: httpsUrl(),
      default: "https://acme-v02.api.letsencrypt.org/directory",
      flag: "acme-directory",
      metavar: "URL",
      section: "Certificates",
      help: "The ACME CA's directory URL.",
    } satisfies Setting<string>,
    email: {
      kind: text(
        (value) => /^[^\s@]+@[^\s@]+$/.test(value),
        "must be an email address such as ops@example.com",
      ),
      isOptional: true,
      flag: "acme-email",
      metavar: "ADDRESS",
      section: "Certificates",
      help: "Contact address given to the ACME CA with the account (expiry warnings).",
    } satisfies OptionalSetting<string>,
    caCert: {
      kind: text((value) => value !== "", "must be a non-empty path"),
      isOptional: true,
      flag: "acme-ca-cert",
      metavar: "FILE",
      section: "Certificates",
      help: "PEM file of the root that the ACME CA's own HTTPS endpoint is verified against " +
        "(a private CA); the system's roots otherwise.",
    } satisfies OptionalSetting<string>,
  },
  stateDir: {
    kind: text((value) => value !== "", "must be a non-empty path"),
    isOptional: true,
    flag: "state-dir",
    metavar: "DIR",
    section: "Certificates",
    help: "Where the balancer keeps what must outlive it: the ACME account key, certificates " +
      "and their lock, in an acme folder private to its user (0700, files 0600; the directory " +
      "is created 0700). Balancers sharing it share one certificate: one orders, the others " +
      "load it.",
  } satisfies OptionalSetting<string>,
  drainTimeoutMs: {
    kind: duration({ isZeroAllowed: true }),
    default: 10_000,
    flag: "drain-timeout",
    metavar: "DURATION",
    section: "Proxy",
    help: "On Ctrl-C or SIGTERM, time in-flight requests get to finish.",
  } satisfies Setting<number>,
} as const;

/** The value type of a setting, or the configuration type of a group. */
type ValueOf<Node> = Node extends { readonly kind: Kind<infer T> } ? T : ConfigOf<Node>;

/** The configuration a table of settings gives: optional settings become optional keys. */
type ConfigOf<Table> = Simplify<
  & {
    readonly [K in keyof Table as Table[K] extends { isOptional: true } ? never : K]: ValueOf<
      Table[K]
    >;
  }
  & {
    readonly [K in keyof Table as Table[K] extends { isOptional: true } ? K : never]?: ValueOf<
      Table[K]
    >;
  }
>;

/** One object type instead of an intersection, so editors and errors show plain keys. */
type Simplify<T> = { [K in keyof T]: T[K] } & unknown;

/** Settings from one source (file, environment, positional, flags); absent means "not set". */
type LayerOf<Table> = {
  readonly [K in keyof Table]?:
    | (Table[K] extends { readonly kind: Kind<infer T> } ? T : LayerOf<Table[K]>)
    | undefined;
};

/**
 * Everything the balancer needs to run, validated: `host`, `port`, `backends`, `policy`,
 * `health`, `client`, `proxy`, `log` and `drainTimeoutMs`, as {@linkcode SETTINGS} declares them.
 */
export type BalancerConfig = ConfigOf<typeof SETTINGS>;

/** Settings from one source (file, environment, positional, flags); absent means "not set". */
export type ConfigLayer = LayerOf<typeof SETTINGS>;

/** The `tls` group of {@linkcode SETTINGS}, as a component receives it. */
export type TlsSettings = BalancerConfig["tls"];
/** The `health` group of {@linkcode SETTINGS}, as a component receives it. */
export type HealthSettings = BalancerConfig["health"];
/** The `outlier` group of {@linkcode SETTINGS}, as a component receives it. */
export type OutlierSettings = BalancerConfig["outlier"];
/** The `client` group of {@linkcode SETTINGS}, as a component receives it. */
export type ClientSettings = BalancerConfig["client"];
/** The `proxy` group of {@linkcode SETTINGS}, as a component receives it. */
export type ProxySettings = BalancerConfig["proxy"];
/** The `limits` group of {@linkcode SETTINGS}, as a component receives it. */
export type LimitsSettings = BalancerConfig["limits"];
/** The `affinityCookie` group of {@linkcode SETTINGS}, as a component receives it. */
export type AffinityCookieSettings = BalancerConfig["affinityCookie"];

/** One setting with where it sits: `["health", "intervalMs"]`. */
export interface SettingEntry {
  /** Its keys from the configuration's root, also its path in the config file. */
  readonly path: readonly string[];
  /** The setting. */
  readonly setting: Setting<unknown> | OptionalSetting<unknown>;
}

/** Every setting of {@linkcode SETTINGS} with its path, in declaration order. */
export function settingEntries(): SettingEntry[] {
  const entries: SettingEntry[] = [];
  const walk = (node: object, path: readonly string[]): void => {
    for (const [key, child] of Object.entries(node)) {
      if (isSetting(child)) entries.push({ path: [...path, key], setting: child });
      else walk(child, [...path, key]);
    }
  };
  walk(SETTINGS, []);
  return entries;
}
