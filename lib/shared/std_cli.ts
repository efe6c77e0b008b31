/**
 * Typed boundary over the Deno standard library's command-line helpers: flag parsing and the
 * edit distance behind "did you mean" (see `std.ts`, which re-exports them). Apart from
 * `std.ts` so that parsing flags loads nothing else of the standard library.
 *
 * @module
 */
import { parseArgs as stdParseArgs } from "@std/cli/parse-args";
import { levenshteinDistance as stdLevenshteinDistance } from "@std/text/levenshtein-distance";

/** Options understood by {@linkcode parseArgs} (a subset of `@std/cli`'s `ParseOptions`). */
export interface ParseArgsOptions {
  /** Flags always parsed as strings. Default: none. */
  readonly string?: readonly string[];
  /** Flags always parsed as booleans. Default: none. */
  readonly boolean?: readonly string[];
  /** Flags that may be given several times and are collected into arrays. Default: none. */
  readonly collect?: readonly string[];
  /** Flags whose `--no-` form sets them to false. Default: none. */
  readonly negatable?: readonly string[];
  /** Alternative names: `{ h: "help" }`. Default: none. */
  readonly alias?: Readonly<Record<string, string | readonly string[]>>;
  /** Values used when a flag is absent. Default: none. */
  readonly default?: Readonly<Record<string, unknown>>;
  /** Collect everything after `--` into `--`. Default: false. */
  readonly "--"?: boolean;
  /** Stop parsing at the first positional argument. Default: false. */
  readonly stopEarly?: boolean;
  /**
   * Called with each flag not declared in `string`, `boolean`, `collect` or `alias`; return
   * false to drop it. Default: keep every flag.
   */
  readonly unknown?: (arg: string, key?: string, value?: unknown) => unknown;
}

/** The result of {@linkcode parseArgs}: positional arguments in `_`, flags by name. */
export interface ParsedArgs {
  /** Positional arguments, numbers already converted unless declared as strings. */
  readonly _: ReadonlyArray<string | number>;
  /** Everything after `--`, when `"--": true` was passed. */
  readonly "--"?: readonly string[];
  /** Flags by name. */
  readonly [flag: string]: unknown;
}

/**
 * Parses command-line arguments with `@std/cli/parse-args`.
 *
 * @param args The raw arguments, without the program and subcommand names.
 * @param options Which flags are strings, booleans, collected, negatable or aliased.
 * @returns The positional arguments and flags.
 *
 * @example
 * ```ts
 * import { parseArgs } from "./std_cli.ts";
 * const parsed = parseArgs(["--port", "9090", "5"], { string: ["port"] });
 * if (parsed.port !== "9090" || parsed._[0] !== 5) throw new Error("unexpected parse");
 * ```
 */
export function parseArgs(args: readonly string[], options: ParseArgsOptions = {}): ParsedArgs {
  return stdParseArgs([...args], options) as ParsedArgs;
}

/**
 * The Levenshtein edit distance between two strings (for "did you mean" suggestions).
 *
 * @param a One string.
 * @param b The other string.
 * @returns How many single-character insertions, deletions or substitutions turn `a` into `b`.
 *
 * @example
 * ```ts
 * import { levenshteinDistance } from "./std_cli.ts";
 * if (levenshteinDistance("prot", "port") !== 2) throw new Error("unexpected distance");
 * ```
 */
export function levenshteinDistance(a: string, b: string): number {
  const distance: unknown = stdLevenshteinDistance(a, b);
  return typeof distance === "number" ? distance : Number.POSITIVE_INFINITY;
}
