/**
 * What `main.ts` hands every subcommand: its I/O, environment and cancellation. Subcommands
 * return an exit code instead of calling `Deno.exit`, so tests call them in-process.
 *
 * @module
 */

/** Exit codes shared by every subcommand. */
export const EXIT = {
  /** Success. */
  ok: 0,
  /** A runtime failure, or a load test whose thresholds were breached. */
  failure: 1,
  /** A usage error: bad flag or value. */
  usage: 2,
} as const;

/** Writes text without adding a newline. */
export type WriteText = (text: string) => void;

/** The environment of one subcommand run. */
export interface CommandContext {
  /** Normal output (reports, help). */
  readonly stdout: WriteText;
  /** Diagnostics and progress. */
  readonly stderr: WriteText;
  /** Whether stderr is a terminal (progress bars and colours only then). */
  readonly isTerminal: boolean;
  /** Reads an environment variable. */
  readonly env: (name: string) => string | undefined;
  /** Aborts on SIGINT or SIGTERM: long-running commands stop gracefully and return. */
  readonly signal: AbortSignal;
  /**
   * The module Web Workers are started from. `main.ts` passes its own URL and runs the load
   * worker when it finds itself inside a worker, so the bundle and the compiled binary need no
   * separate worker file.
   */
  readonly workerUrl: URL;
}

/** A usage error: `main.ts` prints its message alone and exits with {@linkcode EXIT.usage}. */
export class UsageError extends Error {
  /**
   * @param message What is wrong, naming the flag and the value.
   * @param options `cause`, the original error.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}
