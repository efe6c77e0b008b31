/**
 * `lb`: parses the balancer's flags, sets up logging, raises the open-file limit, and runs the
 * balancer until interrupted. SIGHUP reloads the configuration (the same flags and
 * `--config` file, read again); an invalid one changes nothing.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import { isHelpRequested, LB_HELP, parseBalancerArgs } from "./config/config.ts";
import {
  type FileLimitDeps,
  raiseFileLimit,
  type RaiseFileLimitOutcome,
} from "./process/fd_limit.ts";
import { configureLogging, getModuleLogger } from "./process/log.ts";
import { runBalancer, type RunningBalancer } from "./control/balancer.ts";
import { type CommandContext, EXIT, UsageError } from "./shared/command.ts";
import { listenForHangup, listenForReopen, type SignalApi } from "./process/signals.ts";
import { explainRequest, formatRouteTable } from "./config/route_table.ts";
import { resolveTarget } from "./data/request_target.ts";
import { isHttpToken } from "./shared/tokens.ts";

/** Process-level dependencies of {@linkcode lbCommand}, each with a production default. */
export interface LbCommandDeps {
  /** Where the SIGHUP listener is registered. Default: `Deno`. */
  readonly signals?: SignalApi;
  /** How the open-file limit is read and raised. Default: libc through FFI. */
  readonly fileLimit?: FileLimitDeps;
}

/**
 * Runs `lb` with its arguments.
 *
 * @param args The arguments after `lb`.
 * @param ctx I/O, environment and the shutdown signal.
 * @param deps Signal registration and the open-file limit's system calls.
 * @returns The exit code: 0 once stopped. A drain that runs out of time is logged as a warning
 *   but is still an orderly stop, so it exits 0 too.
 * @throws {UsageError} For a bad flag or value.
 */
export async function lbCommand(
  args: readonly string[],
  ctx: CommandContext,
  deps: LbCommandDeps = {},
): Promise<number> {
  if (isHelpRequested(args)) {
    ctx.stdout(LB_HELP);
    return EXIT.ok;
  }
  if (args[0] === "check-config") return await checkConfig(args.slice(1), ctx);
  const config = await parseBalancerArgs(args, ctx.env);
  await using logging = await configureLogging({
    level: config.log.level,
    format: config.log.format,
    color: ctx.isTerminal && ctx.env("NO_COLOR") === undefined,
    ...(config.log.file === undefined ? {} : { file: config.log.file }),
  });
  const logger = getModuleLogger("lb");
  const signalOptions = deps.signals === undefined ? {} : { api: deps.signals };
  // SIGUSR1 and SIGHUP reopen the log file (logrotate); the data planes, their access logs.
  using _reopen = config.log.file === undefined
    ? undefined
    : listenForReopen(() => logging.reopen(), signalOptions);
  // SIGHUP reloads: the same flags and config file, read again.
  let balancer: RunningBalancer | undefined;
  using _hangup = listenForHangup(
    () => {
      logger.info("SIGHUP: reloading the configuration");
      if (balancer === undefined) logger.warn("Not started yet; SIGHUP ignored");
      else void balancer.reload();
    },
    signalOptions,
  );
  logFileLimit(logger, raiseFileLimit(deps.fileLimit));
  await runBalancer(config, ctx.signal, {
    loadConfig: () => parseBalancerArgs(args, ctx.env),
    workerEntry: ctx.workerUrl,
    onStarted: (started) => balancer = started,
  });
  return EXIT.ok;
}

/**
 * `lb check-config FILE [flags]`: validates the file (and any flags) as `lb` would, without
 * starting anything.
 *
 * @throws {UsageError} Naming the field, value and rule of the first problem (exit 2).
 */
async function checkConfig(args: readonly string[], ctx: CommandContext): Promise<number> {
  const [file, ...rest] = args;
  if (file === undefined || file.startsWith("-")) {
    throw new UsageError("lb check-config needs a config file: lb check-config FILE");
  }
  const { explain, flags } = readExplainFlags(rest);
  const config = await parseBalancerArgs(["--config", file, ...flags], ctx.env);
  const table = formatRouteTable(config);
  ctx.stdout(
    `Config "${file}" is valid: ${config.backends.length} backend(s), listening on ` +
      `${config.host}:${config.port}, admin ${config.admin.listen}\n` +
      table.map((line) => `${line}\n`).join(""),
  );
  if (explain === undefined) return EXIT.ok;
  const target = resolveTarget(explain.url.href, explain.url.host);
  if (!target.ok) throw new UsageError(`Invalid --explain "${explain.url.href}": ${target.reason}`);
  const lines = explainRequest(config, {
    host: target.authority,
    path: target.path,
    method: explain.method,
    header: (name) => explain.headers.get(name),
  });
  ctx.stdout(
    `${explain.method} ${explain.url.host}${target.path}${target.query}:\n` +
      lines.map((line) => `  ${line}\n`).join(""),
  );
  return EXIT.ok;
}

/** A request `--explain` describes. */
interface ExplainedRequest {
  readonly url: URL;
  readonly method: string;
  readonly headers: Headers;
}

/**
 * Takes `--explain URL`, `--method NAME` and `--header "Name: value"` (repeatable) out of
 * `check-config`'s flags; the rest are `lb`'s.
 *
 * @throws {UsageError} For a URL that is not http(s), a bad method or header.
 */
function readExplainFlags(
  args: readonly string[],
): { explain: ExplainedRequest | undefined; flags: string[] } {
  const flags: string[] = [];
  let url: URL | undefined;
  let method = "GET";
  const headers = new Headers();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    const [name, inline] = arg.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    if (name !== "--explain" && name !== "--method" && name !== "--header") {
      flags.push(arg);
      continue;
    }
    const value = inline ?? args[++i];
    if (value === undefined || value === "") throw new UsageError(`Flag ${name} needs a value`);
    if (name === "--explain") {
      url = URL.canParse(value) ? new URL(value) : undefined;
      if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
        throw new UsageError(
          `Invalid --explain "${value}": must be an http or https URL, such as http://api.example.com/users`,
        );
      }
    } else if (name === "--method") {
      if (!isHttpToken(value)) {
        throw new UsageError(`Invalid --method "${value}": must be a method, such as GET`);
      }
      method = value.toUpperCase();
    } else {
      const colon = value.indexOf(":");
      const headerName = colon < 0 ? "" : value.slice(0, colon).trim();
      if (!isHttpToken(headerName)) {
        throw new UsageError(`Invalid --header "${value}": must be "Name: value"`);
      }
      headers.append(headerName, value.slice(colon + 1).trim());
    }
  }
  if (url === undefined && flags.length !== args.length) {
    throw new UsageError("Flags --method and --header go with --explain URL");
  }
  return { explain: url === undefined ? undefined : { url, method, headers }, flags };
}

/** One record of the open-file limit the balancer runs with: INFO, or WARN when not raised. */
function logFileLimit(logger: Logger, outcome: RaiseFileLimitOutcome): void {
  // JSON has no Infinity: an unlimited limit is logged as "unlimited".
  const show = (limit: number): number | string =>
    limit === Number.POSITIVE_INFINITY ? "unlimited" : limit;
  if (outcome.raised) {
    logger.info("Open file limit", {
      soft: show(outcome.soft),
      hard: show(outcome.hard),
      previousSoft: show(outcome.previousSoft),
    });
  } else {
    logger.warn("Cannot raise the open file limit", {
      reason: outcome.reason,
      ...(outcome.soft === undefined ? {} : { soft: show(outcome.soft) }),
      ...(outcome.hard === undefined ? {} : { hard: show(outcome.hard) }),
    });
  }
}
