/**
 * The balancer's configuration: building it from the command line, an optional JSON file and
 * the environment.
 *
 * Everything is validated here, once, before any listener opens; the rest of the balancer trusts
 * a {@linkcode BalancerConfig}. Precedence, lowest first: defaults, `--config FILE.json`, the
 * `LOGLEVEL` environment variable, the positional health period (the original Python balancer's
 * argument), flags. Every setting is declared once in `settings.ts`; the defaults and merging
 * (`config_layers.ts`), the flags (`config_flags.ts`), the file (`config_file.ts`) and the help
 * (`config_help.ts`) derive from it. This module adds the sources that are not one setting's flag
 * and the rules that tie
 * settings together, and re-exports what callers need.
 *
 * @module
 */
import { CONFIG_FLAG, flagLayer, type Flags, readFlags } from "./flags.ts";
import { loadConfigFile } from "./file.ts";
import { mergeLayers } from "./layers.ts";
import { isLoopbackHost } from "../shared/ip.ts";
import {
  type BackendConfig,
  type BalancerConfig,
  type ConfigLayer,
  LONGEST_DURATION,
  parseAdminAddress,
  SETTINGS,
} from "./settings.ts";
import { UsageError } from "../shared/command.ts";
import { formatDuration, MAX_TIMER_MS } from "../shared/duration.ts";
import { checkRoutes } from "../core/routes.ts";
import { DEFAULT_POOL } from "./route_kinds.ts";

export { isHelpRequested, LB_FLAG_NAMES } from "./flags.ts";
export { parseConfigFile } from "./file.ts";
export { LB_HELP } from "./help.ts";
export {
  type BackendConfig,
  type BalancerConfig,
  type ConfigLayer,
  type LogFormat,
} from "./settings.ts";
export { DEFAULT_BALANCER_CONFIG } from "./layers.ts";

/** Options for {@linkcode parseBalancerArgs}. */
export interface ParseBalancerArgsOptions {
  /** Reads the `--config` file. Default: `Deno.readTextFile`. */
  readonly readTextFile?: (path: string) => Promise<string>;
}

/**
 * Builds the balancer's configuration from `lb`'s arguments, an optional `--config` JSON file
 * and the `LOGLEVEL` environment variable.
 *
 * @param args The arguments after `lb`, such as `["5"]` or `["--port", "0", "--backend", "a:1"]`.
 * @param env Reads an environment variable (`LOGLEVEL`).
 * @param options How to read the config file.
 * @returns The validated configuration.
 * @throws {UsageError} For an unknown flag, a bad value, an unreadable or invalid config file,
 *   with one line naming the flag (or field) and the value.
 */
export async function parseBalancerArgs(
  args: readonly string[],
  env: (name: string) => string | undefined,
  options: ParseBalancerArgsOptions = {},
): Promise<BalancerConfig> {
  const { flags, positionals } = readFlags(args);
  const readTextFile = options.readTextFile ?? ((path: string) => Deno.readTextFile(path));
  const filePath = flags.get(CONFIG_FLAG)?.at(-1);
  const file = filePath === undefined ? {} : await loadConfigFile(filePath, readTextFile);
  const layers: ConfigLayer[] = [
    file,
    envLayer(env),
    positionalLayer(positionals),
    flagLayer(flags),
  ];
  return finish(layers, timeoutSource(flags, file, filePath));
}

/** The settings the environment gives: `LOGLEVEL`, as the original Python balancer read it. */
function envLayer(env: (name: string) => string | undefined): ConfigLayer {
  const text = env("LOGLEVEL");
  if (text === undefined || text.trim() === "") return {};
  const parsed = SETTINGS.log.level.kind.parse(text);
  if (!parsed.ok) throw new UsageError(`Invalid LOGLEVEL "${text}": ${parsed.rule}`);
  return { log: { level: parsed.value } };
}

/**
 * The settings the positional health period gives (seconds, floored at 1), the original Python
 * balancer's only argument.
 *
 * @throws {UsageError} For more than one argument or one that is not a number of seconds.
 */
function positionalLayer(positionals: readonly string[]): ConfigLayer {
  if (positionals.length === 0) return {};
  if (positionals.length > 1) {
    throw new UsageError(
      `Unexpected argument "${
        positionals[1]
      }": lb takes at most one argument, the health check period in seconds`,
    );
  }
  const text = positionals[0] ?? "";
  const seconds = /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isFinite(seconds)) {
    throw new UsageError(
      `Invalid health check period "${text}": must be a number of seconds, such as 5 or 0.5`,
    );
  }
  // The original Python balancer floors the period at one second.
  const intervalMs = Math.max(1, seconds) * 1000;
  if (intervalMs > MAX_TIMER_MS) {
    throw new UsageError(
      `Invalid health check period "${text}": must be at most ${
        Math.floor(MAX_TIMER_MS / 1000)
      } seconds (${LONGEST_DURATION}), the longest a timer can wait`,
    );
  }
  return { health: { intervalMs } };
}

/** Merges the layers over the defaults and applies the rules that tie settings together. */
function finish(
  layers: readonly ConfigLayer[],
  timeout: TimeoutSource | undefined,
): BalancerConfig {
  const merged = mergeLayers(layers);
  const intervalMs = merged.health.intervalMs;
  let explicitTimeoutMs: number | undefined;
  for (const layer of layers) explicitTimeoutMs = layer.health?.timeoutMs ?? explicitTimeoutMs;
  if (explicitTimeoutMs !== undefined && explicitTimeoutMs > intervalMs) {
    const rule = `must not exceed the health interval (${formatDuration(intervalMs)})`;
    throw new UsageError(
      timeout === undefined
        ? `Invalid health timeout ${formatDuration(explicitTimeoutMs)}: ${rule}`
        : timeout(rule),
    );
  }
  const routed = withRoutes(merged);
  const seen = new Set<string>();
  for (const backend of routed.backends) {
    if (seen.has(backend.url.href)) {
      throw new UsageError(`Backend "${backend.url.href}" is listed twice`);
    }
    seen.add(backend.url.href);
  }
  checkAdminExposure(routed);
  checkDiscovery(routed);
  checkAcme(routed);
  checkTls(routed);
  // An unset probe timeout defaults to 2 s, but never more than the interval.
  const timeoutMs = explicitTimeoutMs ?? Math.min(routed.health.timeoutMs, intervalMs);
  // Backends found in DNS replace the built-in demo backends, as --backend does (a route table
  // names its pools' backends itself).
  const isDiscovered = routed.discovery.dns.length > 0 || routed.discovery.srv.length > 0;
  const isListed = layers.some((layer) => layer.backends !== undefined);
  const isRouted = Object.keys(routed.pools).length > 0;
  const backends = isDiscovered && !isListed && !isRouted ? [] : routed.backends;
  // A domain given by two --acme-domain flags (or the file and a flag) is one name.
  const acme = { ...routed.acme, domains: [...new Set(routed.acme.domains)] };
  return { ...routed, backends, health: { ...routed.health, timeoutMs }, acme };
}

/**
 * Checks the route table against the pools and, when there is one, makes `backends` every
 * backend of every pool a route uses (the pool the balancer health-checks, drains and reports
 * on) and `pools` every such pool, the top-level backends as `default` among them.
 *
 * @throws {UsageError} Naming every problem of the table at once.
 */
function withRoutes(config: BalancerConfig): BalancerConfig {
  const { routes, pools } = config;
  if (routes.length === 0 && Object.keys(pools).length === 0) return config;
  const problems: string[] = [];
  if (pools[DEFAULT_POOL] !== undefined) {
    problems.push(
      `pool "${DEFAULT_POOL}" is the top-level backends and settings; give this pool another name`,
    );
  }
  problems.push(...checkRoutes(routes, [DEFAULT_POOL, ...Object.keys(pools)], {
    exempt: [DEFAULT_POOL],
  }));
  const used = new Set(routes.flatMap((route) => route.pool === undefined ? [] : [route.pool]));
  const resolved = {
    ...(used.has(DEFAULT_POOL) ? { [DEFAULT_POOL]: { backends: config.backends } } : {}),
    ...pools,
  };
  const owner = new Map<string, string>();
  const backends: BackendConfig[] = [];
  for (const [name, pool] of Object.entries(resolved)) {
    for (const backend of pool.backends) {
      const other = owner.get(backend.url.href);
      if (other !== undefined) {
        problems.push(
          `backend "${backend.url.href}" is in pools "${other}" and "${name}"; a backend ` +
            "belongs to one pool",
        );
        continue;
      }
      owner.set(backend.url.href, name);
      backends.push(backend);
    }
  }
  if (problems.length > 0) throw new UsageError(`Invalid route table: ${problems.join("; ")}`);
  return { ...config, backends, pools: resolved };
}

/**
 * Refuses an admin API open to the network: without a token anyone who reaches it can add,
 * drain and remove backends, so an address other than loopback needs `--admin-token` or an
 * explicit `--admin-insecure on`.
 *
 * @throws {UsageError} Naming the address and both ways out.
 */
function checkAdminExposure(config: BalancerConfig): void {
  const { listen, token, insecure } = config.admin;
  const address = listen === "off" ? undefined : parseAdminAddress(listen);
  if (address === undefined || token !== undefined || insecure === "on") return;
  if (isLoopbackHost(address.hostname)) return;
  throw new UsageError(
    `Invalid --admin "${listen}": an admin address other than loopback needs --admin-token ` +
      "(anyone who can reach it could add, drain and remove backends); " +
      "--admin-insecure on runs it without one",
  );
}

/**
 * Checks the DNS discovery settings that go together: the TTL floor must not be above the
 * ceiling, and a name is listed once.
 *
 * @throws {UsageError} Naming the values.
 */
function checkDiscovery(config: BalancerConfig): void {
  const { minTtlMs, maxTtlMs, dns, srv } = config.discovery;
  if (minTtlMs > maxTtlMs) {
    throw new UsageError(
      `Invalid --dns-ttl-min ${formatDuration(minTtlMs)}: must not exceed --dns-ttl-max ` +
        `(${formatDuration(maxTtlMs)})`,
    );
  }
  const seen = new Set<string>();
  for (const name of [...dns, ...srv]) {
    const key = name.toLowerCase().replace(/\.(?=:|$)/, "");
    if (seen.has(key)) throw new UsageError(`DNS name "${name}" is listed twice`);
    seen.add(key);
  }
}

/**
 * ACME needs a place to keep its account key and certificates, and its other settings mean
 * nothing without a domain: each is refused rather than ignored.
 *
 * @throws {UsageError} Naming the setting and what it needs.
 */
function checkAcme(config: BalancerConfig): void {
  const { domains, email, caCert } = config.acme;
  if (domains.length > 0) {
    if (config.stateDir === undefined) {
      throw new UsageError(
        "Invalid --acme-domain: ACME needs --state-dir, where the account key and the " +
          "certificates are kept across restarts",
      );
    }
    // One source of certificates for the proxy port: a file and an ACME certificate for the
    // same port would leave it to chance which one a client gets.
    if (config.tls.certFiles.length > 0) {
      throw new UsageError(
        "Invalid --acme-domain: the proxy port serves either the --tls-cert files or the ACME " +
          "certificate; drop --tls-cert/--tls-key, or --acme-domain",
      );
    }
    if (config.tls.redirectHttp === undefined) {
      throw new UsageError(
        "Invalid --acme-domain: the HTTP-01 challenge is answered on --redirect-http, which the " +
          "CA must reach on port 80 (such as --redirect-http 0.0.0.0:80)",
      );
    }
    return;
  }
  const orphan = [
    email === undefined ? undefined : "--acme-email",
    caCert === undefined ? undefined : "--acme-ca-cert",
  ].find((flag) => flag !== undefined);
  if (orphan !== undefined) {
    throw new UsageError(`Invalid ${orphan}: it applies only with --acme-domain`);
  }
}

/**
 * Certificates and keys come in pairs, and redirecting plain HTTP to https needs https.
 *
 * @throws {UsageError} Naming what is missing.
 */
function checkTls(config: BalancerConfig): void {
  const { certFiles, keyFiles, redirectHttp } = config.tls;
  if (certFiles.length !== keyFiles.length) {
    throw new UsageError(
      `Invalid TLS settings: ${certFiles.length} --tls-cert and ${keyFiles.length} --tls-key ` +
        "given; each certificate needs its key, in the same order",
    );
  }
  if (redirectHttp !== undefined && certFiles.length === 0 && config.acme.domains.length === 0) {
    throw new UsageError(
      `Invalid --redirect-http "${redirectHttp}": redirecting to https needs --tls-cert and ` +
        "--tls-key, or --acme-domain",
    );
  }
}

/** Words a health-timeout rule into a message naming where the timeout was set. */
type TimeoutSource = (rule: string) => string;

function timeoutSource(
  flags: Flags,
  file: ConfigLayer,
  filePath: string | undefined,
): TimeoutSource | undefined {
  const flag = flags.get(SETTINGS.health.timeoutMs.flag)?.at(-1);
  if (flag !== undefined) return (rule) => `Invalid --health-timeout "${flag}": ${rule}`;
  if (file.health?.timeoutMs !== undefined && filePath !== undefined) {
    return (rule) => `Invalid config "${filePath}": health.timeoutMs ${rule}`;
  }
  return undefined;
}
