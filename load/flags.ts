/**
 * Reading the flags of `loadtest`, below the meaning of any one flag: the flag names, the
 * space-separated lists of the original Python load tester, typed access to the parsed values,
 * and readers for numbers, lists and
 * durations that reject a bad value with a {@linkcode UsageError} naming the flag.
 *
 * @module
 */
import { UsageError } from "../lib/shared/command.ts";
import { formatDurationText, MAX_TIMER_MS, parseDuration } from "../lib/shared/duration.ts";
import { LOADTEST_FLAGS } from "./flag_table.ts";

/** The longest duration a flag takes, as a flag writes it (whole seconds, itself accepted). */
const LONGEST_DURATION = formatDurationText(Math.floor(MAX_TIMER_MS / 1000) * 1000);

const LIST_FLAGS = /^(--concurrency|-c|--rate)(=.*)?$/;

/** Flags of `loadtest` that take a value, without the leading `--`. */
export const STRING_FLAGS: readonly string[] = LOADTEST_FLAGS
  .filter((flag) => flag.metavar !== undefined).map((flag) => flag.name);
/** Flags of `loadtest` that take no value, without the leading `--` (or `--no-`). */
export const BOOLEAN_FLAGS: readonly string[] = LOADTEST_FLAGS
  .filter((flag) => flag.metavar === undefined).map((flag) => flag.name);
/** Flags of `loadtest` that may be repeated, each value kept. */
export const REPEATABLE_FLAGS: readonly string[] = LOADTEST_FLAGS
  .filter((flag) => flag.isRepeatable === true).map((flag) => flag.name);
/** Switches of `loadtest` written `--no-NAME`: on unless turned off. */
export const NEGATED_FLAGS: readonly string[] = LOADTEST_FLAGS
  .filter((flag) => flag.isNegated === true).map((flag) => flag.name);
/** One-letter aliases of `loadtest`'s flags: `{ c: "concurrency" }`. */
export const FLAG_ALIASES: Readonly<Record<string, string>> = Object.fromEntries(
  LOADTEST_FLAGS.flatMap((flag) => flag.short === undefined ? [] : [[flag.short, flag.name]]),
);

/**
 * Folds the values after `--concurrency`/`--rate` into one `--flag=a,b,c` argument, so the
 * original space-separated list parses, and joins a negative value (or `-`, stdout) to its flag,
 * so `-5` is read as a (bad) value rather than as a flag.
 *
 * @param args Raw arguments, such as `["-c", "25", "50", "--total", "-1"]`.
 * @returns The arguments to hand to `parseArgs`, such as `["--concurrency=25,50", "--total=-1"]`.
 *
 * @example
 * ```ts
 * import { joinListValues } from "./flags.ts";
 * const joined = joinListValues(["-c", "25", "50", "--rounds", "2"]);
 * if (joined.join(" ") !== "--concurrency=25,50 --rounds 2") throw new Error(joined.join(" "));
 * ```
 */
export function joinListValues(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    const match = LIST_FLAGS.exec(arg);
    if (match === null) {
      // `--total -1` is a bad value, not a flag named "-1"; `--json -` means stdout.
      const next = args[i + 1];
      if (STRING_FLAGS.includes(arg.slice(2)) && next !== undefined && /^-([\d.]|$)/.test(next)) {
        out.push(`${arg}=${next}`);
        i++;
      } else out.push(arg);
      continue;
    }
    const name = match[1] === "-c" ? "--concurrency" : match[1];
    const values: string[] = [];
    if (match[2] !== undefined) values.push(match[2].slice(1));
    else if (i + 1 < args.length) values.push(args[++i] ?? "");
    else {
      out.push(arg);
      continue;
    }
    while (i + 1 < args.length && /^\d/.test(args[i + 1] ?? "")) values.push(args[++i] ?? "");
    out.push(`${name}=${values.join(",")}`);
  }
  return out;
}

/** Typed access to parsed flags, remembering which were given. */
export class Flags {
  readonly #parsed: Readonly<Record<string, unknown>>;

  /**
   * Wraps parsed flags.
   *
   * @param parsed The result of `parseArgs` over {@linkcode joinListValues}'s output.
   */
  constructor(parsed: Readonly<Record<string, unknown>>) {
    this.#parsed = parsed;
  }

  /** Names of value flags given on the command line (plus true booleans). */
  given(): Set<string> {
    const names = new Set<string>();
    for (const name of STRING_FLAGS) if (this.strings(name).length > 0) names.add(name);
    for (const name of BOOLEAN_FLAGS) {
      if (NEGATED_FLAGS.includes(name)) {
        if (this.#parsed[name] === false) names.add(`no-${name}`);
      } else if (this.#parsed[name] === true) names.add(name);
    }
    return names;
  }

  /** The last value of a flag, or `undefined` when it was not given. */
  string(name: string): string | undefined {
    const value = this.#parsed[name];
    if (Array.isArray(value)) return value.length > 0 ? String(value[value.length - 1]) : undefined;
    return value === undefined ? undefined : String(value);
  }

  /** Every value of a repeatable flag, in order; empty when it was not given. */
  strings(name: string): string[] {
    const value = this.#parsed[name];
    if (value === undefined) return [];
    return Array.isArray(value) ? value.map(String) : [String(value)];
  }

  /** Whether a boolean flag is set. */
  boolean(name: string): boolean {
    return this.#parsed[name] === true;
  }
}

/** A rule for a numeric flag value: the test and how an error message states it. */
export type Check = { readonly test: (value: number) => boolean; readonly rule: string };

/** Accepts safe integers above zero. */
export const positiveInteger: Check = {
  test: (value) => Number.isSafeInteger(value) && value > 0,
  rule: "must be a positive integer",
};
/** Accepts finite numbers above zero. */
export const positiveNumber: Check = {
  test: (value) => Number.isFinite(value) && value > 0,
  rule: "must be a positive number",
};

/**
 * Reads one numeric flag value.
 *
 * @param flag The flag, such as `"--total"`, for the error message.
 * @param text The value as given.
 * @param check The rule the number must follow.
 * @returns The number.
 * @throws {UsageError} When the text is empty, not a number, or breaks the rule.
 *
 * @example
 * ```ts
 * import { parseValue, positiveInteger } from "./flags.ts";
 * if (parseValue("--total", "200", positiveInteger) !== 200) throw new Error();
 * ```
 */
export function parseValue(flag: string, text: string, check: Check): number {
  const value = text.trim() === "" ? Number.NaN : Number(text);
  if (!check.test(value)) throw new UsageError(`Invalid ${flag} "${text}": ${check.rule}`);
  return value;
}

/**
 * Reads a comma-separated list of numbers (what {@linkcode joinListValues} produces).
 *
 * @param flag The flag, such as `"--concurrency"`, for the error message.
 * @param text The values, such as `"25,50,100"`.
 * @param check The rule each number must follow.
 * @returns The numbers, in order.
 * @throws {UsageError} When the list is empty or a value breaks the rule.
 *
 * @example
 * ```ts
 * import { parseList, positiveInteger } from "./flags.ts";
 * if (parseList("--concurrency", "25,50", positiveInteger).join() !== "25,50") throw new Error();
 * ```
 */
export function parseList(flag: string, text: string, check: Check): number[] {
  const parts = text.split(",").map((part) => part.trim()).filter((part) => part !== "");
  if (parts.length === 0) {
    throw new UsageError(`Invalid ${flag} "${text}": give at least one value`);
  }
  return parts.map((part) => {
    const value = Number(part);
    if (!check.test(value)) {
      throw new UsageError(`Invalid ${flag} "${text}": each value ${check.rule}, not "${part}"`);
    }
    return value;
  });
}

/**
 * Reads a duration flag value into milliseconds. A bare number is seconds, for every flag of
 * every command (as the original Python load tester's `--timeout 4`).
 *
 * @param flag The flag, such as `"--timeout"`, for the error message.
 * @param text The value, such as `"250ms"`, `"5s"` or a bare number of seconds.
 * @param allowZero Whether zero is accepted.
 * @returns The duration in milliseconds.
 * @throws {UsageError} When the text is not a duration, is negative, is zero when not allowed,
 * or is longer than a timer can wait (`MAX_TIMER_MS`: a longer timer would fire at once).
 *
 * @example
 * ```ts
 * import { parseDurationFlag } from "./flags.ts";
 * if (parseDurationFlag("--timeout", "4", false) !== 4000) throw new Error();
 * ```
 */
export function parseDurationFlag(
  flag: string,
  text: string,
  allowZero: boolean,
): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (error) {
    throw new UsageError(
      `Invalid ${flag} "${text}": use a duration such as 250ms, 5s or 1m (a bare number is seconds)`,
      { cause: error },
    );
  }
  if (ms < 0 || (!allowZero && ms === 0)) {
    throw new UsageError(
      `Invalid ${flag} "${text}": must be ${allowZero ? "zero or more" : "more than zero"}`,
    );
  }
  if (ms > MAX_TIMER_MS) {
    throw new UsageError(
      `Invalid ${flag} "${text}": must be at most ${LONGEST_DURATION}, the longest a timer can wait (2^31-1 ms)`,
    );
  }
  return ms;
}
