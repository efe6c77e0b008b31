import {
  type BalancerConfig,
  DEFAULT_BALANCER_CONFIG,
  isHelpRequested,
  LB_FLAG_NAMES,
  LB_HELP,
  parseBalancerArgs,
  type ParseBalancerArgsOptions,
  parseConfigFile,
} from "../../lib/config/config.ts";
import { POLICY_NAMES } from "../../lib/policies/registry.ts";
import { settingEntries } from "../../lib/config/settings.ts";
import { UsageError } from "../../lib/shared/command.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "../support/assert.ts";

const noEnv = (_name: string): string | undefined => undefined;
const envWith = (vars: Record<string, string>) => (name: string): string | undefined => vars[name];

/** Parses with an in-memory config file system. */
function parse(
  args: readonly string[],
  options: { env?: Record<string, string>; files?: Record<string, string> } = {},
): Promise<BalancerConfig> {
  const files = options.files ?? {};
  const parseOptions: ParseBalancerArgsOptions = {
    readTextFile: (path: string) => {
      const text = files[path];
      return text === undefined
        ? Promise.reject(new Deno.errors.NotFound(`No such file or directory: ${path}`))
        : Promise.resolve(text);
    },
  };
  return parseBalancerArgs(args, envWith(options.env ?? {}), parseOptions);
}

/** Asserts that parsing rejects with a UsageError whose message is exactly `message`. */
async function assertUsageError(
  args: readonly string[],
  message: string,
  options: { env?: Record<string, string>; files?: Record<string, string> } = {},
): Promise<void> {
  const error = await assertRejects(() => parse(args, options), UsageError);
  assertEquals(error.message, message, `for ${JSON.stringify(args)}`);
}

const hrefs = (config: BalancerConfig): string[] => config.backends.map((b) => b.url.href);

// ---------------------------------------------------------------------------------------------
// Defaults and the positional period (the original Python balancer's argument).

Deno.test("parseBalancerArgs() with no arguments gives the original Python balancer's defaults", async () => {
  const config = await parseBalancerArgs([], noEnv);
  assertEquals(config, DEFAULT_BALANCER_CONFIG);
  assertEquals(config.host, "127.0.0.1");
  assertEquals(config.port, 9090);
  assertEquals(hrefs(config), [
    "http://127.0.0.1:8080/",
    "http://127.0.0.1:8081/",
    "http://127.0.0.1:8082/",
  ]);
  assertEquals(config.backends.map((b) => b.weight), [1, 1, 1]);
  assertEquals(config.policy, "round-robin");
  assertEquals(config.health, {
    path: "/health",
    intervalMs: 10_000,
    timeoutMs: 2_000,
    rise: 2,
    fall: 3,
  });
  assertEquals(config.client, {
    headerTimeoutMs: 10_000,
    keepAliveTimeoutMs: 60_000,
    bodyTimeoutMs: 30_000,
  });
  assertEquals(config.proxy, {
    timeoutMs: 30_000,
    connectTimeoutMs: 5_000,
    idleBodyTimeoutMs: 0,
    retries: 2,
    retryBudgetPercent: 20,
    retryBudgetMinPerSecond: 3,
    requestBufferBytes: 1_048_576,
    upstream: "http1",
    maxIdlePerHost: 64,
    keepAliveTimeoutMs: 30_000,
    trustedProxies: [],
    forwarded: "on",
  });
  assertEquals(config.affinityCookie, { name: "denolb_affinity", maxAgeMs: 0 });
  assertEquals(config.log, { level: "info", format: "text" });
  assertEquals(config.accessLog, { path: "-", format: "combined" });
  assertEquals(config.admin, { listen: "127.0.0.1:9091", insecure: "off" });
  assertEquals(config.drainTimeoutMs, 10_000);
});

Deno.test("parseBalancerArgs() reads the original Python balancer's positional health period in seconds", async () => {
  assertEquals((await parse(["5"])).health.intervalMs, 5_000);
  assertEquals((await parse(["2.5"])).health.intervalMs, 2_500);
  assertEquals((await parse(["30"])).health.timeoutMs, 2_000);
});

Deno.test("parseBalancerArgs() floors the positional period at 1 second", async () => {
  assertEquals((await parse(["0.2"])).health.intervalMs, 1_000);
  assertEquals((await parse(["0"])).health.intervalMs, 1_000);
  assertEquals((await parse(["1"])).health.intervalMs, 1_000);
});

Deno.test("parseBalancerArgs() caps the default probe timeout at a shorter interval", async () => {
  assertEquals((await parse(["1"])).health, {
    ...DEFAULT_BALANCER_CONFIG.health,
    intervalMs: 1_000,
    timeoutMs: 1_000,
  });
  assertEquals((await parse(["--health-interval", "500ms"])).health.timeoutMs, 500);
});

Deno.test("parseBalancerArgs() lets --health-interval override the positional period", async () => {
  assertEquals((await parse(["5", "--health-interval", "2s"])).health.intervalMs, 2_000);
  assertEquals((await parse(["--health-interval", "2s", "5"])).health.intervalMs, 2_000);
});

// ---------------------------------------------------------------------------------------------
// Flags.

Deno.test("parseBalancerArgs() reads every flag", async () => {
  const config = await parse([
    "--host",
    "0.0.0.0",
    "--port",
    "0",
    "--backend",
    "http://10.0.0.1:80",
    "--backend=10.0.0.2:8080,https://b.example/app",
    "--policy",
    "round-robin",
    "--health-path",
    "/ready",
    "--health-interval",
    "1m30s",
    "--health-timeout",
    "750ms",
    "--rise",
    "4",
    "--fall",
    "5",
    "--timeout",
    "45s",
    "--retries",
    "0",
    "--connect-timeout",
    "2s",
    "--idle-body-timeout",
    "1m",
    "--retry-budget",
    "50",
    "--retry-budget-min",
    "0",
    "--drain-timeout",
    "0",
    "--max-idle-per-host",
    "8",
    "--pool-idle-timeout",
    "4s",
    "--header-timeout",
    "5s",
    "--keepalive-timeout",
    "0",
    "--body-timeout",
    "2m",
    "--request-buffer",
    "64KB",
    "--upstream",
    "http1",
    "--cookie-name",
    "sid",
    "--cookie-secret",
    "0123456789abcdef-secret",
    "--cookie-max-age",
    "1h",
    "--slow-start",
    "20s",
    "--outlier-failures",
    "7",
    "--outlier-on",
    "connect,5xx",
    "--outlier-ejection",
    "1m",
    "--outlier-max-time",
    "10m",
    "--outlier-max-ejected",
    "25",
    "--trusted-proxies",
    "10.0.0.0/8, 192.0.2.1",
    "--trusted-proxies",
    "2001:db8::/32",
    "--forwarded",
    "off",
    "--max-connections",
    "500",
    "--max-header-size",
    "8KiB",
    "--max-url-length",
    "4KiB",
    "--max-body-size",
    "10MiB",
    "--max-in-flight",
    "20",
    "--queue-size",
    "0",
    "--queue-timeout",
    "2s",
    "--admin",
    "[::1]:0",
    "--admin-token",
    "0123456789abcdef",
    "--log-level",
    "debug",
    "--log-format",
    "json",
    "--log-file",
    "lb.log",
    "--access-log",
    "/var/log/lb/access.log",
    "--access-log-format",
    "json",
  ]);
  assertEquals(config, {
    host: "0.0.0.0",
    port: 0,
    workers: "auto",
    websocket: "on",
    tls: { certFiles: [], keyFiles: [], handshakeTimeoutMs: 10_000, hstsMaxAgeSeconds: 0 },
    backends: [
      { url: new URL("http://10.0.0.1/"), weight: 1 },
      { url: new URL("http://10.0.0.2:8080/"), weight: 1 },
      { url: new URL("https://b.example/app/"), weight: 1 },
    ],
    policy: "round-robin",
    pools: {},
    routes: [],
    hashKey: "client-ip",
    discovery: { dns: [], srv: [], minTtlMs: 1_000, maxTtlMs: 30_000 },
    affinityCookie: { name: "sid", secret: "0123456789abcdef-secret", maxAgeMs: 3_600_000 },
    slowStartMs: 20_000,
    outlier: {
      failures: 7,
      kinds: ["connect", "5xx"],
      baseEjectionMs: 60_000,
      maxEjectionMs: 600_000,
      maxEjectedPercent: 25,
    },
    health: { path: "/ready", intervalMs: 90_000, timeoutMs: 750, rise: 4, fall: 5 },
    client: { headerTimeoutMs: 5_000, keepAliveTimeoutMs: 0, bodyTimeoutMs: 120_000 },
    proxy: {
      timeoutMs: 45_000,
      connectTimeoutMs: 2_000,
      idleBodyTimeoutMs: 60_000,
      retries: 0,
      retryBudgetPercent: 50,
      retryBudgetMinPerSecond: 0,
      requestBufferBytes: 64_000,
      upstream: "http1",
      maxIdlePerHost: 8,
      keepAliveTimeoutMs: 4_000,
      trustedProxies: ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"],
      forwarded: "off",
    },
    limits: {
      maxConnections: 500,
      maxHeaderBytes: 8192,
      maxUrlLength: 4096,
      maxBodyBytes: 10_485_760,
      maxInFlight: 20,
      queueSize: 0,
      queueTimeoutMs: 2_000,
    },
    admin: { listen: "[::1]:0", token: "0123456789abcdef", insecure: "off" },
    log: { level: "debug", format: "json", file: "lb.log" },
    accessLog: { path: "/var/log/lb/access.log", format: "json" },
    acme: { domains: [], directory: "https://acme-v02.api.letsencrypt.org/directory" },
    drainTimeoutMs: 0,
  });
});

Deno.test("parseBalancerArgs() reads a bare number as seconds in duration flags", async () => {
  const config = await parse(["--health-interval", "4", "--timeout", "0.5"]);
  assertEquals(config.health.intervalMs, 4_000);
  assertEquals(config.proxy.timeoutMs, 500);
});

Deno.test("parseBalancerArgs() reads --request-buffer as bytes, KB/MB and KiB/MiB", async () => {
  const bytesOf = async (text: string) =>
    (await parse(["--request-buffer", text])).proxy.requestBufferBytes;
  assertEquals(await bytesOf("512"), 512);
  assertEquals(await bytesOf("0"), 0);
  assertEquals(await bytesOf("64kb"), 64_000);
  assertEquals(await bytesOf("1MB"), 1_000_000);
  assertEquals(await bytesOf("1MiB"), 1_048_576);
  assertEquals(await bytesOf("1.5KiB"), 1_536);
});

Deno.test("parseBalancerArgs() accepts a duration at the timer limit", async () => {
  const config = await parse(["--health-interval", "596h31m23s", "--timeout", "2147483s"]);
  assertEquals(config.health.intervalMs, 2_147_483_000);
  assertEquals(config.proxy.timeoutMs, 2_147_483_000);
  const file = await parse(["--config", "lb.json"], {
    files: { "lb.json": '{"health": {"intervalMs": 2147483647}}' },
  });
  assertEquals(file.health.intervalMs, 2 ** 31 - 1);
});

Deno.test("parseBalancerArgs() lets the last of a repeated flag win", async () => {
  assertEquals((await parse(["--port", "1", "--port", "2"])).port, 2);
});

Deno.test("parseBalancerArgs() collects --backend from repeats and comma lists in order", async () => {
  const config = await parse(["--backend", "a:1, b:2", "--backend", "c:3"]);
  assertEquals(hrefs(config), ["http://a:1/", "http://b:2/", "http://c:3/"]);
});

Deno.test("parseBalancerArgs() accepts every policy name", async () => {
  for (const name of POLICY_NAMES) {
    assertEquals((await parse(["--policy", name])).policy, name);
  }
});

Deno.test("parseBalancerArgs() accepts log levels in any case and Python's names", async () => {
  const levelOf = async (text: string) => (await parse(["--log-level", text])).log.level;
  assertEquals(await levelOf("TRACE"), "trace");
  assertEquals(await levelOf("Info"), "info");
  assertEquals(await levelOf("WARNING"), "warning");
  assertEquals(await levelOf("warn"), "warning");
  assertEquals(await levelOf("ERROR"), "error");
  assertEquals(await levelOf("CRITICAL"), "fatal");
  assertEquals(await levelOf("fatal"), "fatal");
});

Deno.test("parseBalancerArgs() takes the log level from LOGLEVEL, and the flag over it", async () => {
  assertEquals((await parse([], { env: { LOGLEVEL: "DEBUG" } })).log.level, "debug");
  assertEquals((await parse([], { env: { LOGLEVEL: "" } })).log.level, "info");
  const both = await parse(["--log-level", "error"], { env: { LOGLEVEL: "DEBUG" } });
  assertEquals(both.log.level, "error");
});

// ---------------------------------------------------------------------------------------------
// Rejections: each names the flag and the value and states the rule.

const REJECTIONS: ReadonlyArray<readonly [readonly string[], string]> = [
  [["--prot", "9090"], 'Unknown flag "--prot" for lb (did you mean --port?)'],
  [["--backends", "a:1"], 'Unknown flag "--backends" for lb (did you mean --backend?)'],
  [["--healthpath=/x"], 'Unknown flag "--healthpath" for lb (did you mean --health-path?)'],
  [["--verbose"], 'Unknown flag "--verbose" for lb; see lb --help'],
  [
    ["--max-header-size", "64KiB"],
    `Invalid --max-header-size "64KiB": must be at most 32KiB, below Deno's own 64KiB limit on a request head`,
  ],
  [
    ["--max-body-size", "lots"],
    'Invalid --max-body-size "lots": must be a size such as 64KB or 1MiB',
  ],
  [
    ["--queue-timeout", "0"],
    'Invalid --queue-timeout "0": must be more than 0, such as 500ms or 5s',
  ],
  [["-p", "1"], 'Unknown flag "-p" for lb; see lb --help'],
  [["--help"], 'Flag "--help" prints the help: check isHelpRequested() before parsing'],
  [["abc"], 'Invalid health check period "abc": must be a number of seconds, such as 5 or 0.5'],
  [["-5"], 'Invalid health check period "-5": must be a number of seconds, such as 5 or 0.5'],
  [["1e3"], 'Invalid health check period "1e3": must be a number of seconds, such as 5 or 0.5'],
  [
    ["5", "6"],
    'Unexpected argument "6": lb takes at most one argument, the health check period in seconds',
  ],
  [["--port"], "Flag --port needs a value"],
  [["--backend"], "Flag --backend needs a value"],
  [["--port", "http"], 'Invalid --port "http": must be an integer from 0 to 65535'],
  [["--port", "65536"], 'Invalid --port "65536": must be an integer from 0 to 65535'],
  [["--port", "-1"], 'Invalid --port "-1": must be an integer from 0 to 65535'],
  [["--port", "80.5"], 'Invalid --port "80.5": must be an integer from 0 to 65535'],
  [
    ["--host", "local host"],
    'Invalid --host "local host": must be a host name or IP address, without spaces or slashes',
  ],
  [
    ["--host", "http://x"],
    'Invalid --host "http://x": must be a host name or IP address, without spaces or slashes',
  ],
  [["--backend", "htp://a:1"], 'Invalid --backend "htp://a:1": protocol must be http or https'],
  [
    ["--backend", "http://a:1?x=1"],
    'Invalid --backend "http://a:1?x=1": a backend has no query or fragment',
  ],
  [["--backend", "http://[::1"], 'Invalid --backend "http://[::1": not a URL'],
  [["--backend", "a:1,,b:2"], 'Invalid --backend "a:1,,b:2": the list has an empty entry'],
  [["--backend", "a:1", "--backend", "http://a:1/"], 'Backend "http://a:1/" is listed twice'],
  [
    ["--hash-key", "query:x"],
    'Invalid --hash-key "query:x": must be client-ip, path, header:NAME or cookie:NAME',
  ],
  [
    ["--policy", "fastest"],
    'Invalid --policy "fastest": must be one of round-robin, least-in-flight, random, p2c, hash, cookie',
  ],
  [
    ["--trusted-proxies", "10.0.0.0/8,10.0.0.0/33"],
    'Invalid --trusted-proxies "10.0.0.0/33": the prefix length must be from 0 to 32',
  ],
  [
    ["--trusted-proxies", "proxy.internal"],
    'Invalid --trusted-proxies "proxy.internal": must be an IPv4 or IPv6 address or CIDR block, such as 10.0.0.0/8 or 2001:db8::/32',
  ],
  [["--forwarded", "yes"], 'Invalid --forwarded "yes": must be one of on, off'],
  [
    ["--cookie-name", "a;b"],
    'Invalid --cookie-name "a;b": must be a cookie name: letters, digits and !#$%&\'*+-.^_`|~',
  ],
  [
    ["--cookie-secret", "short"],
    'Invalid --cookie-secret "short": must be at least 16 characters without spaces',
  ],
  [
    ["--health-path", "health"],
    'Invalid --health-path "health": must start with "/" and contain no spaces',
  ],
  [
    ["--health-interval", "5 parsecs"],
    'Invalid --health-interval "5 parsecs": use a number with a unit such as 250ms, 5s, 1m or 1m30s',
  ],
  [
    ["--health-interval", "0s"],
    'Invalid --health-interval "0s": must be more than 0, such as 500ms or 5s',
  ],
  [
    ["--health-timeout", "0"],
    'Invalid --health-timeout "0": must be more than 0, such as 500ms or 5s',
  ],
  [
    ["--health-timeout", "5s", "--health-interval", "2s"],
    'Invalid --health-timeout "5s": must not exceed the health interval (2.0s)',
  ],
  [
    ["--health-timeout", "3s", "2"],
    'Invalid --health-timeout "3s": must not exceed the health interval (2.0s)',
  ],
  [["--rise", "0"], 'Invalid --rise "0": must be a whole number, 1 or more'],
  [["--fall", "1.5"], 'Invalid --fall "1.5": must be a whole number, 1 or more'],
  [
    ["--timeout", "-2s"],
    'Invalid --timeout "-2s": use a number with a unit such as 250ms, 5s, 1m or 1m30s',
  ],
  [["--timeout", "0ms"], 'Invalid --timeout "0ms": must be more than 0, such as 500ms or 5s'],
  [["--retries", "-1"], 'Invalid --retries "-1": must be a whole number, 0 or more'],
  [["--retries", "once"], 'Invalid --retries "once": must be a whole number, 0 or more'],
  [["--retry-budget", "101"], 'Invalid --retry-budget "101": must be a whole number from 0 to 100'],
  [
    ["--connect-timeout", "-1s"],
    'Invalid --connect-timeout "-1s": use a number with a unit such as 250ms, 5s, 1m or 1m30s',
  ],
  [
    ["--drain-timeout", "soon"],
    'Invalid --drain-timeout "soon": use a number with a unit such as 250ms, 5s, 1m or 1m30s',
  ],
  [
    ["--max-idle-per-host", "-3"],
    'Invalid --max-idle-per-host "-3": must be a whole number, 0 or more',
  ],
  [
    ["--log-level", "verbose"],
    'Invalid --log-level "verbose": must be one of trace, debug, info, warning, error, fatal',
  ],
  [["--log-format", "xml"], 'Invalid --log-format "xml": must be one of text, json'],
  [
    ["--access-log-format", "common"],
    'Invalid --access-log-format "common": must be one of combined, json, text',
  ],
  [["--access-log", ""], "Flag --access-log needs a value"],
  [["--upstream", "tcp"], 'Invalid --upstream "tcp": must be one of fetch, http1'],
  [["--workers", "0"], 'Invalid --workers "0": must be auto or a whole number from 1 to 999'],
  [
    ["--admin", "9091"],
    'Invalid --admin "9091": must be host:port (such as 127.0.0.1:9091; port 0 picks a free one) or off',
  ],
  [
    ["--admin-token", "short"],
    'Invalid --admin-token "short": must be at least 16 characters without spaces',
  ],
  [["--log-file"], "Flag --log-file needs a value"],
  [
    ["--header-timeout", "0"],
    'Invalid --header-timeout "0": must be more than 0, such as 500ms or 5s',
  ],
  [
    ["--keepalive-timeout", "forever"],
    'Invalid --keepalive-timeout "forever": use a number with a unit such as 250ms, 5s, 1m or 1m30s',
  ],
  [
    ["--body-timeout", "1d"],
    'Invalid --body-timeout "1d": use a number with a unit such as 250ms, 5s, 1m or 1m30s',
  ],
  [["--request-buffer", "x"], 'Invalid --request-buffer "x": must be a size such as 64KB or 1MiB'],
  [
    ["--request-buffer", "1.5"],
    'Invalid --request-buffer "1.5": must be a size such as 64KB or 1MiB',
  ],
  [
    ["--request-buffer", "-1"],
    'Invalid --request-buffer "-1": must be a size such as 64KB or 1MiB',
  ],
  [
    ["--request-buffer", "1TB"],
    'Invalid --request-buffer "1TB": must be a size such as 64KB or 1MiB',
  ],
  [
    ["--health-interval", "720h"],
    'Invalid --health-interval "720h": must be at most 596h31m23s, the longest a timer can wait (2^31-1 ms)',
  ],
  [
    ["--timeout", "9999999999"],
    'Invalid --timeout "9999999999": must be at most 596h31m23s, the longest a timer can wait (2^31-1 ms)',
  ],
  [
    ["--timeout", "9".repeat(400)],
    `Invalid --timeout "${
      "9".repeat(400)
    }": use a number with a unit such as 250ms, 5s, 1m or 1m30s`,
  ],
  [
    ["3000000"],
    'Invalid health check period "3000000": must be at most 2147483 seconds (596h31m23s), the longest a timer can wait',
  ],
  [["--config", "missing.json"], 'Cannot read config "missing.json": no such file'],
];

Deno.test("parseBalancerArgs() rejects each bad flag or value with a UsageError naming it", async () => {
  for (const [args, message] of REJECTIONS) await assertUsageError(args, message);
});

Deno.test("parseBalancerArgs() rejects a bad LOGLEVEL naming the variable", async () => {
  await assertUsageError(
    [],
    'Invalid LOGLEVEL "loud": must be one of trace, debug, info, warning, error, fatal',
    { env: { LOGLEVEL: "loud" } },
  );
});

// ---------------------------------------------------------------------------------------------
// The JSON config file.

const FULL_FILE = JSON.stringify({
  host: "::1",
  port: 8000,
  workers: "2",
  backends: ["10.0.0.1:80", { url: "http://10.0.0.2:80", weight: 3, maxInFlight: 7 }],
  policy: "round-robin",
  hashKey: "path",
  discovery: { dns: [], srv: [], minTtlMs: 1_000, maxTtlMs: 30_000 },
  affinityCookie: { name: "lb", secret: "file-secret-0123456789", maxAgeMs: 60_000 },
  slowStartMs: 15_000,
  outlier: {
    failures: 2,
    kinds: ["5xx"],
    baseEjectionMs: 5_000,
    maxEjectionMs: 60_000,
    maxEjectedPercent: 100,
  },
  health: { path: "/livez", intervalMs: 5000, timeoutMs: 1000, rise: 1, fall: 2 },
  client: { headerTimeoutMs: 4000, keepAliveTimeoutMs: 0, bodyTimeoutMs: 0 },
  proxy: {
    timeoutMs: 10_000,
    connectTimeoutMs: 1_500,
    idleBodyTimeoutMs: 0,
    retries: 2,
    retryBudgetPercent: 10,
    retryBudgetMinPerSecond: 5,
    requestBufferBytes: 0,
    upstream: "http1",
    maxIdlePerHost: 16,
    keepAliveTimeoutMs: 4_500,
    trustedProxies: ["127.0.0.1", "::1"],
    forwarded: "off",
  },
  limits: {
    maxConnections: 50,
    maxHeaderBytes: 1000,
    maxUrlLength: 2000,
    maxBodyBytes: 3000,
    maxInFlight: 4,
    queueSize: 5,
    queueTimeoutMs: 600,
  },
  admin: { listen: "off" },
  log: { level: "WARNING", format: "json", file: "/var/log/lb.log" },
  accessLog: { path: "off", format: "text" },
  drainTimeoutMs: 3000,
});

Deno.test("parseBalancerArgs() reads every setting from a --config file", async () => {
  const config = await parse(["--config", "lb.json"], { files: { "lb.json": FULL_FILE } });
  assertEquals(config, {
    host: "::1",
    port: 8000,
    workers: "2",
    websocket: "on",
    tls: { certFiles: [], keyFiles: [], handshakeTimeoutMs: 10_000, hstsMaxAgeSeconds: 0 },
    backends: [
      { url: new URL("http://10.0.0.1/"), weight: 1 },
      { url: new URL("http://10.0.0.2/"), weight: 3, maxInFlight: 7 },
    ],
    policy: "round-robin",
    pools: {},
    routes: [],
    hashKey: "path",
    discovery: { dns: [], srv: [], minTtlMs: 1_000, maxTtlMs: 30_000 },
    affinityCookie: { name: "lb", secret: "file-secret-0123456789", maxAgeMs: 60_000 },
    slowStartMs: 15_000,
    outlier: {
      failures: 2,
      kinds: ["5xx"],
      baseEjectionMs: 5_000,
      maxEjectionMs: 60_000,
      maxEjectedPercent: 100,
    },
    health: { path: "/livez", intervalMs: 5000, timeoutMs: 1000, rise: 1, fall: 2 },
    client: { headerTimeoutMs: 4000, keepAliveTimeoutMs: 0, bodyTimeoutMs: 0 },
    proxy: {
      timeoutMs: 10_000,
      connectTimeoutMs: 1_500,
      idleBodyTimeoutMs: 0,
      retries: 2,
      retryBudgetPercent: 10,
      retryBudgetMinPerSecond: 5,
      requestBufferBytes: 0,
      upstream: "http1",
      maxIdlePerHost: 16,
      keepAliveTimeoutMs: 4_500,
      trustedProxies: ["127.0.0.1", "::1"],
      forwarded: "off",
    },
    limits: {
      maxConnections: 50,
      maxHeaderBytes: 1000,
      maxUrlLength: 2000,
      maxBodyBytes: 3000,
      maxInFlight: 4,
      queueSize: 5,
      queueTimeoutMs: 600,
    },
    admin: { listen: "off", insecure: "off" },
    log: { level: "warning", format: "json", file: "/var/log/lb.log" },
    accessLog: { path: "off", format: "text" },
    acme: { domains: [], directory: "https://acme-v02.api.letsencrypt.org/directory" },
    drainTimeoutMs: 3000,
  });
});

Deno.test("parseBalancerArgs() keeps defaults for settings a config file leaves out", async () => {
  const config = await parse(["--config", "lb.json"], { files: { "lb.json": '{"port": 0}' } });
  assertEquals(config, { ...DEFAULT_BALANCER_CONFIG, port: 0 });
});

Deno.test("parseBalancerArgs() lets flags, the positional and LOGLEVEL override the file", async () => {
  const files = { "lb.json": FULL_FILE };
  const config = await parse(
    ["--config", "lb.json", "--port", "0", "--backend", "c:3", "--log-format", "text", "9"],
    { files, env: { LOGLEVEL: "debug" } },
  );
  assertEquals(config.port, 0);
  assertEquals(hrefs(config), ["http://c:3/"]);
  assertEquals(config.log, { level: "debug", format: "text", file: "/var/log/lb.log" });
  assertEquals(config.health.intervalMs, 9_000);
  assertEquals(config.health.timeoutMs, 1_000, "the file's timeout still applies");
  assertEquals(config.host, "::1");
  const flagLevel = await parse(["--config", "lb.json", "--log-level", "trace"], {
    files,
    env: { LOGLEVEL: "debug" },
  });
  assertEquals(flagLevel.log.level, "trace");
});

Deno.test("parseBalancerArgs() rejects an invalid config file naming the file and the field", async () => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ['{"health": {"intervalMs": -5}}', "health.intervalMs must be a positive number"],
    ['{"health": {"intervalMs": "5s"}}', "health.intervalMs must be a positive number"],
    ['{"port": 99999}', "port must be an integer from 0 to 65535"],
    ['{"port": 80.5}', "port must be an integer from 0 to 65535"],
    ['{"prot": 80}', 'unknown field "prot"'],
    ['{"health": {"interval": 5}}', 'unknown field "health.interval"'],
    ['{"backends": []}', "backends must list at least one backend"],
    ['{"backends": "a:1"}', "backends must be a list of backend URLs"],
    [
      '{"backends": ["a:1", 7]}',
      'backends[1] must be a URL string or an object {"url": ..., "weight": ...}',
    ],
    ['{"backends": ["ftp://a"]}', 'backends[0] "ftp://a" protocol must be http or https'],
    ['{"backends": [{"url": "a:1", "weight": 0}]}', "backends[0].weight must be a positive number"],
    [
      '{"policy": "fastest"}',
      "policy must be one of round-robin, least-in-flight, random, p2c, hash, cookie",
    ],
    ['{"health": {"path": "x"}}', 'health.path must start with "/" and contain no spaces'],
    ['{"health": {"rise": 0}}', "health.rise must be a whole number, 1 or more"],
    ['{"proxy": {"retries": -1}}', "proxy.retries must be a whole number, 0 or more"],
    [
      '{"proxy": {"retryBudgetPercent": 20.5}}',
      "proxy.retryBudgetPercent must be a whole number from 0 to 100",
    ],
    [
      '{"log": {"level": "loud"}}',
      "log.level must be one of trace, debug, info, warning, error, fatal",
    ],
    ['{"log": {"format": "xml"}}', "log.format must be one of text, json"],
    ['{"drainTimeoutMs": -1}', "drainTimeoutMs must be a number, 0 or more"],
    [
      '{"health": {"intervalMs": 99999999999}}',
      "health.intervalMs must be at most 2147483647, the longest a timer can wait (2^31-1 ms)",
    ],
    [
      '{"proxy": {"timeoutMs": 1e999}}',
      "proxy.timeoutMs must be at most 2147483647, the longest a timer can wait (2^31-1 ms)",
    ],
    ['{"client": {"headerTimeoutMs": 0}}', "client.headerTimeoutMs must be a positive number"],
    ['{"client": {"bodyTimeoutMs": "30s"}}', "client.bodyTimeoutMs must be a number, 0 or more"],
    ['{"client": {"idleMs": 5}}', 'unknown field "client.idleMs"'],
    [
      '{"proxy": {"requestBufferBytes": "1MiB"}}',
      "proxy.requestBufferBytes must be a whole number of bytes, 0 or more",
    ],
    [
      '{"proxy": {"requestBufferBytes": -1}}',
      "proxy.requestBufferBytes must be a whole number of bytes, 0 or more",
    ],
    [
      '{"proxy": {"trustedProxies": ["10.0.0.0/8", "::1/200"]}}',
      'proxy.trustedProxies[1] "::1/200" the prefix length must be from 0 to 128',
    ],
    ["[1, 2]", "the file must be a JSON object"],
    [
      '{"port": -1, "rise": 2}',
      'port must be an integer from 0 to 65535; unknown field "rise"',
    ],
  ];
  for (const [text, problem] of cases) {
    await assertUsageError(["--config", "lb.json"], `Invalid config "lb.json": ${problem}`, {
      files: { "lb.json": text },
    });
  }
});

Deno.test("parseBalancerArgs() rejects a config file that is not JSON", async () => {
  const error = await assertRejects(
    () => parse(["--config", "lb.json"], { files: { "lb.json": "port = 80" } }),
    UsageError,
  );
  assert(error.message.startsWith('Invalid config "lb.json": not valid JSON ('), error.message);
});

Deno.test("parseBalancerArgs() checks a file's health timeout against the interval", async () => {
  await assertUsageError(
    ["--config", "lb.json"],
    'Invalid config "lb.json": health.timeoutMs must not exceed the health interval (1.0s)',
    { files: { "lb.json": '{"health": {"intervalMs": 1000, "timeoutMs": 3000}}' } },
  );
});

Deno.test("parseBalancerArgs() names the file's timeout when a flag shortens the interval", async () => {
  await assertUsageError(
    ["--config", "lb.json", "--health-interval", "500ms"],
    'Invalid config "lb.json": health.timeoutMs must not exceed the health interval (500ms)',
    { files: { "lb.json": '{"health": {"timeoutMs": 1000}}' } },
  );
});

Deno.test("parseBalancerArgs() reads a real config file from disk", async () => {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(path, '{"port": 0, "health": {"rise": 5}}');
    const config = await parseBalancerArgs(["--config", path], noEnv);
    assertEquals([config.port, config.health.rise], [0, 5]);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("parseConfigFile() returns only the settings the file gives", () => {
  assertEquals(parseConfigFile('{"port": 1}', "x.json"), { port: 1 });
  assertThrows(() => parseConfigFile("{", "x.json"), UsageError, 'Invalid config "x.json"');
});

// ---------------------------------------------------------------------------------------------
// Help.

Deno.test("LB_HELP documents every flag, the positional period and an example", () => {
  for (const name of LB_FLAG_NAMES) assertStringIncludes(LB_HELP, `--${name} `);
  assertStringIncludes(LB_HELP, "--help");
  assertStringIncludes(LB_HELP, "health_check_period_seconds");
  assertStringIncludes(LB_HELP, "LOGLEVEL");
  assertStringIncludes(LB_HELP, "Examples:");
  assertStringIncludes(LB_HELP, "Default: 127.0.0.1");
  assertStringIncludes(LB_HELP, "Default: 9090");
});

Deno.test("LB_HELP shows every setting's flag, default and config-file key", () => {
  for (const { path, setting } of settingEntries()) {
    assertStringIncludes(LB_HELP, `  --${setting.flag} ${setting.metavar} `);
    if ("default" in setting) {
      const shown = setting.defaultHelp ?? setting.kind.format(setting.default);
      assertStringIncludes(LB_HELP.replace(/\s+/g, " "), `Default: ${shown}`);
    }
    assertStringIncludes(LB_HELP, path.at(-1) ?? "");
  }
  assertStringIncludes(LB_HELP, "--request-buffer SIZE");
  assertStringIncludes(LB_HELP, "Default: 1MiB");
  assertStringIncludes(LB_HELP, "a bare number means seconds");
});

// ---------------------------------------------------------------------------------------------
// The settings table itself.

Deno.test("settings: each flag is declared by exactly one setting", () => {
  const flags = settingEntries().map(({ setting }) => setting.flag);
  assertEquals(new Set(flags).size, flags.length);
  assertEquals(LB_FLAG_NAMES, [...flags, "config"]);
});

Deno.test("settings: each default, written as the help writes it, reads back unchanged", () => {
  for (const { setting } of settingEntries()) {
    if (!("default" in setting)) continue;
    const parsed = setting.kind.parse(setting.kind.format(setting.default));
    assertEquals(parsed, { ok: true, value: setting.default }, `--${setting.flag}`);
  }
});

Deno.test("every duration setting rejects more than the timer limit, as a flag and in the file", async () => {
  const durations = settingEntries().filter(({ setting }) => setting.metavar === "DURATION");
  assertEquals(
    durations.length,
    18,
    "slow start, affinity cookie, DNS TTL floor and ceiling, health (2), outlier (2), " +
      "client (3), proxy (4), queue, drain and TLS handshake durations",
  );
  for (const { path, setting } of durations) {
    await assertUsageError(
      [`--${setting.flag}`, "720h"],
      `Invalid --${setting.flag} "720h": must be at most 596h31m23s, the longest a timer can wait (2^31-1 ms)`,
    );
    let json: unknown = 99_999_999_999;
    for (const key of [...path].reverse()) json = { [key]: json };
    await assertUsageError(
      ["--config", "lb.json"],
      `Invalid config "lb.json": ${
        path.join(".")
      } must be at most 2147483647, the longest a timer can wait (2^31-1 ms)`,
      { files: { "lb.json": JSON.stringify(json) } },
    );
  }
});

Deno.test("isHelpRequested() finds -h and --help before --", () => {
  assertEquals(isHelpRequested(["--help"]), true);
  assertEquals(isHelpRequested(["5", "-h"]), true);
  assertEquals(isHelpRequested(["--port", "1"]), false);
  assertEquals(isHelpRequested(["--", "--help"]), false);
});
