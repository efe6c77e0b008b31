/**
 * `lb`'s command line: splitting the arguments into flags and positionals, and reading the flags
 * into settings, every flag derived from {@linkcode SETTINGS} and each bad value rejected with a
 * message naming the flag: `Invalid --rise "0": must be a whole number, 1 or more`.
 *
 * @module
 */
import { setAt } from "./layers.ts";
import { type ConfigLayer, settingEntries, type SettingEntry } from "./settings.ts";
import { UsageError } from "../shared/command.ts";
import { levenshteinDistance, parseArgs } from "../shared/std_cli.ts";

/** The flag that names the JSON config file; not a setting itself. */
export const CONFIG_FLAG = "config";

/** Every flag `lb` accepts, without the leading `--` (besides `--help`). */
export const LB_FLAG_NAMES: readonly string[] = [
  ...settingEntries().map(({ setting }) => setting.flag),
  CONFIG_FLAG,
];

/** Each flag's values, in the order given (only the last counts unless the flag repeats). */
export type Flags = ReadonlyMap<string, readonly string[]>;

/**
 * Whether the arguments ask for help (`-h` or `--help` before any `--`). `main.ts` checks this
 * first and prints `LB_HELP`; `parseBalancerArgs` rejects those flags.
 *
 * @param args The arguments after the subcommand name.
 * @returns Whether help was asked for.
 *
 * @example
 * ```ts
 * import { isHelpRequested } from "./flags.ts";
 * if (!isHelpRequested(["--port", "1", "-h"])) throw new Error("expected help");
 * ```
 */
export function isHelpRequested(args: readonly string[]): boolean {
  for (const arg of args) {
    if (arg === "--") return false;
    if (arg === "-h" || arg === "--help") return true;
  }
  return false;
}

/**
 * Splits `lb`'s arguments into flag values and positional arguments.
 *
 * @param args The arguments after `lb`.
 * @returns Each flag's values and the positional arguments.
 * @throws {UsageError} For an unknown flag (with a suggestion) or a flag without a value.
 */
export function readFlags(args: readonly string[]): { flags: Flags; positionals: string[] } {
  const positionals: string[] = [];
  const parsed = parseArgs(joinNegativeValues(args), {
    string: LB_FLAG_NAMES,
    collect: LB_FLAG_NAMES,
    "--": true,
    unknown: (arg: string, key?: string) => {
      if (key === undefined || /^-\d/.test(arg)) {
        positionals.push(arg);
        return false;
      }
      throw new UsageError(unknownFlagMessage(arg));
    },
  });
  positionals.push(...(parsed["--"] ?? []));
  const flags = new Map<string, string[]>();
  for (const name of LB_FLAG_NAMES) {
    const given = parsed[name];
    const values = Array.isArray(given) ? given.map(String) : [];
    if (values.includes("")) throw new UsageError(`Flag --${name} needs a value`);
    if (values.length > 0) flags.set(name, values);
  }
  return { flags, positionals };
}

/**
 * The settings the flags give, each value read by its setting's kind.
 *
 * @param flags From {@linkcode readFlags}.
 * @returns The layer of settings the flags set.
 * @throws {UsageError} Naming the flag and the value when a value breaks its rule.
 */
export function flagLayer(flags: Flags): ConfigLayer {
  const layer: Record<string, unknown> = {};
  for (const entry of settingEntries()) {
    const values = flags.get(entry.setting.flag);
    if (values === undefined) continue;
    setAt(layer, entry.path, readSetting(entry, values));
  }
  // Keys and values come from the table walked above, each value read by its own kind.
  return layer as ConfigLayer;
}

/** Reads one setting's flag values: the last one, or all of them for a repeatable flag. */
function readSetting({ setting }: SettingEntry, values: readonly string[]): unknown {
  const read = (text: string): unknown => {
    const parsed = setting.kind.parse(text);
    if (parsed.ok) return parsed.value;
    throw new UsageError(`Invalid --${setting.flag} "${parsed.text ?? text}": ${parsed.rule}`);
  };
  if (setting.kind.isRepeatable === true) return values.flatMap((text) => read(text) as unknown[]);
  return read(values.at(-1) ?? "");
}

/**
 * `@std/cli` reads `--port -1` as a flag `-1`; join such values to their flag (`--port=-1`) so
 * the value gets a range message instead of an unknown-flag one.
 */
function joinNegativeValues(args: readonly string[]): string[] {
  const joined: string[] = [];
  for (let index = 0; index < args.length; index++) {
    const arg = args[index] ?? "";
    const next = args[index + 1];
    const isFlag = /^--[a-z-]+$/.test(arg) && LB_FLAG_NAMES.includes(arg.slice(2));
    if (isFlag && next !== undefined && /^-\d/.test(next)) {
      joined.push(`${arg}=${next}`);
      index++;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}

/** Flags that existed once, and what replaces each: named in their unknown-flag message. */
const RETIRED_FLAGS: Readonly<Record<string, string>> = {
  "acme-https": "with --acme-domain the proxy port (--port) itself serves HTTPS with the ACME " +
    "certificate, and --redirect-http answers the challenge",
};

function unknownFlagMessage(arg: string): string {
  if (arg === "-h" || arg === "--help") {
    return `Flag "${arg}" prints the help: check isHelpRequested() before parsing`;
  }
  const name = arg.replace(/^-+/, "").split("=")[0] ?? "";
  const replacement = RETIRED_FLAGS[name];
  if (replacement !== undefined) {
    return `Unknown flag "--${name}" for lb: it was removed; ${replacement}`;
  }
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of LB_FLAG_NAMES) {
    const distance = levenshteinDistance(name.toLowerCase(), candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const flag = arg.split("=")[0] ?? arg;
  const isClose = best !== undefined &&
    (bestDistance <= 2 || bestDistance <= Math.floor(name.length / 3) ||
      (name.length >= 3 && best.startsWith(name.toLowerCase())));
  const hint = isClose ? ` (did you mean --${best}?)` : "; see lb --help";
  return `Unknown flag "${flag}" for lb${hint}`;
}
