/**
 * `backends`: starts the three demo backends of the original Python balancer (`server8080/` to
 * `server8082/`) on
 * consecutive ports and runs until interrupted.
 *
 * @module
 */
import type { CommandContext } from "../lib/shared/command.ts";
import { EXIT, UsageError } from "../lib/shared/command.ts";
import {
  formatDuration,
  formatDurationText,
  MAX_TIMER_MS,
  parseDuration,
} from "../lib/shared/duration.ts";
import { parseArgs } from "../lib/shared/std.ts";
import type { RunningBackend } from "./serve.ts";
import { ADMIN_PREFIX, DEMO_BACKENDS, serveBackend } from "./serve.ts";

/** Help text of the `backends` subcommand. */
export const BACKENDS_HELP: string = `Usage: deno task backends [options]

Starts the three demo backends (server8080, server8081, server8082) on consecutive ports, as the
original Python balancer's "python -m http.server 8080 --directory server8080" did, and runs
until Ctrl-C.

Options:
  --host HOST            Address to bind (default 127.0.0.1)
  --base-port PORT       Port of the first backend; the others take the next two
                         (default 8080; 0 picks free ports)
  --delay DURATION       Delay before each page or /echo answer, e.g. 250ms or 1s; a bare
                         number is seconds, as for every duration flag (default 0)
  --failure-rate RATE    Share of page and /echo requests answered with 500, 0 to 1 or a
                         percentage such as 20% (default 0)
  --unhealthy NAME       Start backend NAME (server8081 or 8081) with /health answering 503;
                         repeatable
  -h, --help             Show this help

Every response carries an X-Backend header naming the port that answered. At runtime:
  curl -X POST 'http://127.0.0.1:8081${ADMIN_PREFIX}/health?state=down'     (or state=up)
  curl -X POST 'http://127.0.0.1:8081${ADMIN_PREFIX}/delay?ms=500'
  curl -X POST 'http://127.0.0.1:8081${ADMIN_PREFIX}/failure-rate?rate=0.3'
  curl http://127.0.0.1:8081${ADMIN_PREFIX}                                 (current knobs)

Example:
  deno task backends --delay 100ms --unhealthy server8082
`;

/** The validated flags of `backends`. */
export interface BackendsOptions {
  /** Address to bind. */
  readonly hostname: string;
  /** Port of the first backend, or 0 for free ports. */
  readonly basePort: number;
  /** Added delay in milliseconds. */
  readonly delayMs: number;
  /** Failure rate from 0 to 1. */
  readonly failureRate: number;
  /** Names of the demo backends that start unhealthy. */
  readonly unhealthy: ReadonlySet<string>;
}

/**
 * Parses the flags of `backends`.
 *
 * @param args The arguments after the subcommand name.
 * @returns The options, or `"help"` when help was asked for.
 * @throws {UsageError} Naming the flag and value that are wrong.
 *
 * @example
 * ```ts
 * import { parseBackendsArgs } from "./backends_command.ts";
 * const options = parseBackendsArgs(["--base-port", "0", "--delay", "1s"]);
 * if (options === "help" || options.basePort !== 0 || options.delayMs !== 1000) {
 *   throw new Error("unexpected parse");
 * }
 * ```
 */
export function parseBackendsArgs(args: readonly string[]): BackendsOptions | "help" {
  const parsed = parseArgs(args, {
    string: ["host", "base-port", "delay", "failure-rate"],
    collect: ["unhealthy"],
    boolean: ["help"],
    alias: { h: "help" },
    unknown: (arg: string) => {
      if (arg.startsWith("-")) {
        throw new UsageError(`Unknown flag "${arg}" for backends: see backends --help`);
      }
      throw new UsageError(`Unexpected argument "${arg}" for backends: it takes only flags`);
    },
  });
  if (parsed.help === true) return "help";

  const hostname = lastString(parsed.host) ?? "127.0.0.1";
  if (hostname.trim() === "") {
    throw new UsageError(`Invalid --host "${hostname}": must not be empty`);
  }

  const portText = lastString(parsed["base-port"]) ?? "8080";
  const basePort = /^\d+$/.test(portText) ? Number(portText) : Number.NaN;
  if (!(basePort >= 0 && basePort <= 65533)) {
    throw new UsageError(`Invalid --base-port "${portText}": must be an integer from 0 to 65533`);
  }

  const delayText = lastString(parsed.delay) ?? "0";
  let delayMs: number;
  try {
    delayMs = parseDuration(delayText);
  } catch (error) {
    throw new UsageError(
      `Invalid --delay "${delayText}": use a duration such as 250ms or 1s (a bare number is seconds)`,
      { cause: error },
    );
  }
  if (delayMs > MAX_TIMER_MS) {
    // A longer timer fires at once: the delay would silently become none.
    throw new UsageError(
      `Invalid --delay "${delayText}": must be at most ${
        formatDurationText(Math.floor(MAX_TIMER_MS / 1000) * 1000)
      }, the longest a timer can wait (2^31-1 ms)`,
    );
  }

  const rateText = (lastString(parsed["failure-rate"]) ?? "0").trim();
  const rate = rateText.endsWith("%")
    ? Number(rateText.slice(0, -1)) / 100
    : rateText === ""
    ? Number.NaN
    : Number(rateText);
  if (!(rate >= 0 && rate <= 1)) {
    throw new UsageError(
      `Invalid --failure-rate "${rateText}": must be a number from 0 to 1 or a percentage`,
    );
  }

  const unhealthy = new Set<string>();
  const names = Array.isArray(parsed.unhealthy) ? parsed.unhealthy : [];
  for (const name of names) {
    const demo = DEMO_BACKENDS.find((d) =>
      d.name === String(name) || String(d.port) === String(name)
    );
    if (demo === undefined) {
      const known = DEMO_BACKENDS.map((d) => d.name).join(", ");
      throw new UsageError(`Invalid --unhealthy "${String(name)}": must be one of ${known}`);
    }
    unhealthy.add(demo.name);
  }
  return { hostname, basePort, delayMs, failureRate: rate, unhealthy };
}

/**
 * Runs `backends`: starts the three demo backends, prints one line per backend, and closes them
 * when `ctx.signal` aborts.
 *
 * @param args The arguments after the subcommand name.
 * @param ctx Output, environment and the stop signal.
 * @returns The exit code: 0 after a clean stop (or help).
 * @throws {UsageError} For a bad flag or value, before anything listens.
 * @throws {Error} When a backend cannot listen; the ones already started are closed first.
 */
export async function backendsCommand(
  args: readonly string[],
  ctx: CommandContext,
): Promise<number> {
  const options = parseBackendsArgs(args);
  if (options === "help") {
    ctx.stdout(BACKENDS_HELP);
    return EXIT.ok;
  }

  const running: RunningBackend[] = [];
  try {
    for (const [index, demo] of DEMO_BACKENDS.entries()) {
      if (ctx.signal.aborted) break;
      running.push(
        await serveBackend({
          root: demo.root,
          hostname: options.hostname,
          port: options.basePort === 0 ? 0 : options.basePort + index,
          delayMs: options.delayMs,
          failureRate: options.failureRate,
          isHealthy: !options.unhealthy.has(demo.name),
        }),
      );
    }
  } catch (error) {
    await Promise.all(running.map((backend) => backend.close()));
    throw error;
  }

  try {
    for (const [index, backend] of running.entries()) {
      const knobs = [
        options.delayMs > 0 ? `delay ${formatDuration(options.delayMs)}` : "",
        options.failureRate > 0 ? `failure rate ${options.failureRate}` : "",
        backend.isHealthy ? "" : "unhealthy",
      ].filter((knob) => knob !== "").join(", ");
      const name = DEMO_BACKENDS[index]?.name ?? backend.name;
      ctx.stdout(`${name} listening on ${backend.url}${knobs === "" ? "" : ` (${knobs})`}\n`);
    }
    if (!ctx.signal.aborted) ctx.stderr("Demo backends running; press Ctrl-C to stop\n");
    await aborted(ctx.signal);
  } finally {
    await Promise.all(running.map((backend) => backend.close()));
  }
  return EXIT.ok;
}

function lastString(value: unknown): string | undefined {
  const last: unknown = Array.isArray(value) ? value.at(-1) : value;
  return typeof last === "string" ? last : undefined;
}

function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}
