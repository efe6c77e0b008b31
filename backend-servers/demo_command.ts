/**
 * `demo`: the three demo backends and the balancer in one process, with a short guide to what
 * to try next. The README's first command.
 *
 * @module
 */
import { parseBalancerArgs } from "../lib/config/config.ts";
import { configureLogging } from "../lib/process/log.ts";
import { startBalancer } from "../lib/control/balancer.ts";
import { type CommandContext, EXIT, UsageError } from "../lib/shared/command.ts";
import { parseArgs } from "../lib/shared/std.ts";
import { ADMIN_PREFIX, DEMO_BACKENDS, type RunningBackend, serveBackend } from "./serve.ts";

/** Help text of the `demo` subcommand. */
export const DEMO_HELP: string = `Usage: deno task demo [options]

Starts the three demo backends (server8080, server8081, server8082) and the balancer in front of
them, in one process, then prints what to try. Runs until Ctrl-C, then drains and exits.

Options:
  --port PORT              Balancer port (default 9090; 0 picks a free one)
  --admin ADDRESS          Admin API and dashboard (default 127.0.0.1:9091, or a free port
                           on 127.0.0.1 with --port 0; off turns it off)
  --base-port PORT         Port of the first backend; the others take the next two
                           (default 8080; 0 picks free ports)
  --health-interval DUR    How often the balancer probes /health (default 2s, so flips show fast)
  --log-level LEVEL        trace, debug, info, warning, error or fatal (default info)
  --log-format FORMAT      text or json (default text)
  -h, --help               Show this help

Example:
  deno task demo
  deno task demo --port 0 --base-port 0 --log-format json
`;

const FLAGS = [
  "port",
  "admin",
  "base-port",
  "health-interval",
  "log-level",
  "log-format",
] as const;

interface DemoOptions {
  readonly port: string;
  readonly admin: string;
  readonly basePort: number;
  readonly healthInterval: string;
  readonly logLevel: string;
  readonly logFormat: string;
}

function parseDemoArgs(args: readonly string[]): DemoOptions | "help" {
  const parsed = parseArgs(args, {
    string: [...FLAGS],
    boolean: ["help"],
    alias: { h: "help" },
    unknown: (arg) => {
      if (!arg.startsWith("-")) throw new UsageError(`Unexpected argument "${arg}" for demo`);
      throw new UsageError(`Unknown flag "${arg}" for demo: see demo --help`);
    },
  });
  if (parsed.help === true) return "help";
  const text = (name: typeof FLAGS[number], fallback: string): string => {
    const value = parsed[name];
    if (Array.isArray(value)) throw new UsageError(`Flag --${name} for demo is given twice`);
    return typeof value === "string" ? value : fallback;
  };
  const basePortText = text("base-port", "8080");
  const basePort = Number(basePortText);
  if (!/^\d+$/.test(basePortText) || basePort > 65533) {
    throw new UsageError(
      `Invalid --base-port "${basePortText}" for demo: must be a whole number from 0 to 65533`,
    );
  }
  const port = text("port", "9090");
  return {
    port,
    admin: text("admin", port === "0" ? "127.0.0.1:0" : "127.0.0.1:9091"),
    basePort,
    healthInterval: text("health-interval", "2s"),
    logLevel: text("log-level", "info"),
    logFormat: text("log-format", "text"),
  };
}

/**
 * Runs `demo` with its arguments.
 *
 * @param args The arguments after `demo`.
 * @param ctx I/O, environment and the shutdown signal.
 * @returns The exit code: 0 after a clean stop.
 * @throws {UsageError} For a bad flag or value.
 */
export async function demoCommand(args: readonly string[], ctx: CommandContext): Promise<number> {
  const options = parseDemoArgs(args);
  if (options === "help") {
    ctx.stdout(DEMO_HELP);
    return EXIT.ok;
  }
  await using stack = new AsyncDisposableStack();
  const backends: RunningBackend[] = [];
  for (const [index, demo] of DEMO_BACKENDS.entries()) {
    const port = options.basePort === 0 ? 0 : options.basePort + index;
    const backend = stack.use(
      await serveBackend({ root: demo.root, port, name: demo.name.replace("server", "") }),
    );
    backends.push(backend);
  }
  const config = await parseBalancerArgs([
    "--port",
    options.port,
    "--admin",
    options.admin,
    "--health-interval",
    options.healthInterval,
    "--log-level",
    options.logLevel,
    "--log-format",
    options.logFormat,
    ...backends.flatMap((b) => ["--backend", b.url]),
  ], () => undefined);
  stack.use(
    await configureLogging({
      level: config.log.level,
      format: config.log.format,
      color: ctx.isTerminal && ctx.env("NO_COLOR") === undefined,
    }),
  );
  const balancer = await startBalancer(config, { workerEntry: ctx.workerUrl });
  stack.defer(async () => {
    await balancer.drain();
  });
  ctx.stdout(guide(balancer.url, balancer.adminUrl, backends));
  if (!ctx.signal.aborted) {
    await new Promise<void>((resolve) =>
      ctx.signal.addEventListener("abort", () => resolve(), { once: true })
    );
  }
  return EXIT.ok;
}

function guide(url: URL, adminUrl: URL | undefined, backends: readonly RunningBackend[]): string {
  const lb = url.href;
  const admin = adminUrl?.href ?? "";
  const second = backends[1]?.url ?? "";
  const adminLines = adminUrl === undefined ? "" : `
  open ${admin}                    # live dashboard: state, req/s, p50/p99, drain buttons
  curl ${admin}status              # pool state as JSON
  curl ${admin}metrics             # Prometheus metrics`;
  return `
Demo running.
  Balancer:  ${lb}
  Admin:     ${adminUrl === undefined ? "off" : admin}
  Backends:  ${backends.map((b) => b.url).join("  ")}

Try:
  curl -i ${lb}                           # X-Backend names who answered; repeat to see rotation
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -D - ${lb} | grep -i x-backend; done
  curl -X POST '${second}${ADMIN_PREFIX}/health?state=down'   # take a backend out; watch the log${adminLines}
  deno task loadtest --url ${lb} --total 2000 --concurrency 10 50 100

Ctrl-C drains and stops everything.
`;
}
