/**
 * `lb`: parses the balancer's flags, sets up logging and runs the balancer until interrupted.
 *
 * @module
 */
import { isHelpRequested, LB_HELP, parseBalancerArgs } from "./config.ts";
import { configureLogging } from "./log.ts";
import { runBalancer } from "./server.ts";
import { type CommandContext, EXIT } from "./shared/command.ts";

/**
 * Runs `lb` with its arguments.
 *
 * @param args The arguments after `lb`.
 * @param ctx I/O, environment and the shutdown signal.
 * @returns The exit code: 0 once stopped. A drain that runs out of time is logged as a warning
 *   but is still an orderly stop, so it exits 0 too.
 * @throws {UsageError} For a bad flag or value.
 */
export async function lbCommand(args: readonly string[], ctx: CommandContext): Promise<number> {
  if (isHelpRequested(args)) {
    ctx.stdout(LB_HELP);
    return EXIT.ok;
  }
  const config = await parseBalancerArgs(args, ctx.env);
  await using _logging = await configureLogging({
    level: config.log.level,
    format: config.log.format,
    color: ctx.isTerminal && ctx.env("NO_COLOR") === undefined,
    ...(config.log.file === undefined ? {} : { file: config.log.file }),
  });
  await runBalancer(config, ctx.signal);
  return EXIT.ok;
}
