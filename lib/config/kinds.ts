/**
 * The kinds of value a balancer setting holds (a duration, a count, a port, a backend list...):
 * for each, how a flag's text is read, how the config file's JSON value is validated, and how a
 * value is written back for the help. A rule is worded once here, so the flag and the file
 * reject a value alike: `Invalid --rise "0": must be a whole number, 1 or more` and
 * `Invalid config "lb.json": health.rise must be a whole number, 1 or more`.
 *
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import { z } from "zod";
import { ipBlockRule, TRUSTED_PROXY_RULE } from "../shared/ip.ts";
import { DEFAULT_WEIGHT, parseBackendUrl } from "../core/backend.ts";
import { formatDurationText, MAX_TIMER_MS, parseDuration } from "../shared/duration.ts";
import { formatSize, parseSize } from "../shared/size.ts";
import { errorText } from "../shared/error_text.ts";

/** A value read from text, or the rule it broke (and the part of the text that broke it). */
export type Parsed<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly rule: string; readonly text?: string };

/** How one kind of setting value is read, validated and written. */
export interface Kind<T> {
  /** Reads a flag's (or the environment's) text. */
  parse(text: string): Parsed<T>;
  /** Validates the config file's JSON value; each issue's message is a rule. */
  readonly schema: z.ZodType<T>;
  /** Writes a value as a flag would take it, for the help. */
  format(value: T): string;
  /** Whether repeating the flag adds to the list instead of replacing it. Default: false. */
  readonly isRepeatable?: boolean;
  /** How the file writes the value when that is not obvious, for the help. Default: none. */
  readonly fileHint?: string;
}

/** One backend as configured. */
export interface BackendConfig {
  /** Base URL, as returned by `parseBackendUrl` (path ends in `/`). */
  readonly url: URL;
  /** Relative share of traffic for weighted policies; round-robin ignores it. */
  readonly weight: number;
  /**
   * Requests this backend takes at once, over every isolate, overriding `--max-in-flight`; 0 is no
   * limit. Default: `--max-in-flight`.
   */
  readonly maxInFlight?: number;
}

/**
 * The largest backend weight: HAProxy's range too (0 to 256). Weights are relative, so 256 to 1
 * is every ratio a pool needs, and the weighted policies' sums stay far from overflowing (a
 * weight of 1e308 made them Infinity, and the pool answered 503).
 */
export const MAX_WEIGHT = 256;

const WEIGHT_RULE = "must be a positive number";
const MAX_WEIGHT_RULE = `must be at most ${MAX_WEIGHT}`;

/**
 * A backend weight as the config file and the admin API take it: a positive number, at most
 * {@linkcode MAX_WEIGHT}.
 */
export const WEIGHT_SCHEMA: z.ZodType<number> = z.number({
  error: (issue) => issue.input === Number.POSITIVE_INFINITY ? MAX_WEIGHT_RULE : WEIGHT_RULE,
}).positive({ error: WEIGHT_RULE }).max(MAX_WEIGHT, { error: MAX_WEIGHT_RULE });

/**
 * Checks a backend weight from any source (the config file, `POST /backends`).
 *
 * @param value The weight as given.
 * @returns The weight, or the rule it broke.
 *
 * @example
 * ```ts
 * import { checkWeight } from "./kinds.ts";
 * if (!checkWeight(2).ok || checkWeight(1e308).ok || checkWeight(0).ok) throw new Error();
 * ```
 */
export function checkWeight(value: unknown): Parsed<number> {
  const parsed = WEIGHT_SCHEMA.safeParse(value);
  return parsed.success ? ok(parsed.data) : fail(parsed.error.issues[0]?.message ?? WEIGHT_RULE);
}

/** The log levels, most verbose first. */
const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

/** How log records are written: human-readable text or JSON lines. */
export const LOG_FORMATS = ["text", "json"] as const;

/** A log output format. */
export type LogFormat = typeof LOG_FORMATS[number];

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(rule: string, text?: string): Parsed<T> =>
  text === undefined ? { ok: false, rule } : { ok: false, rule, text };

/** The rule part of a parser's message: `Cannot parse X "v": rule` gives `rule`. */
function ruleOf(error: unknown): string {
  const message = errorText(error);
  const match = /^[^"]*"[^"]*": (.+)$/s.exec(message);
  return match?.[1] ?? message;
}

/**
 * The longest duration a setting takes, as a flag writes it: {@linkcode MAX_TIMER_MS} in whole
 * seconds, so that the text is itself accepted.
 */
export const LONGEST_DURATION: string = formatDurationText(
  Math.floor(MAX_TIMER_MS / 1000) * 1000,
);
const TIMER_LIMIT = `the longest a timer can wait (2^31-1 ms)`;
const MAX_FLAG_RULE = `must be at most ${LONGEST_DURATION}, ${TIMER_LIMIT}`;
const MAX_FILE_RULE = `must be at most ${MAX_TIMER_MS}, ${TIMER_LIMIT}`;

/**
 * A duration: flags take `250ms`, `5s`, `1m30s` or a bare number of seconds; the file takes
 * milliseconds. Never more than {@linkcode MAX_TIMER_MS}, which a timer cannot wait.
 *
 * @param options `isZeroAllowed`: whether 0 (off) is a valid value; `min`: the shortest
 *   positive duration accepted, in milliseconds, and `why` it is the shortest (stated in the
 *   rule). Default: any positive duration.
 */
export function duration(
  options: { readonly isZeroAllowed: boolean; readonly min?: number; readonly why?: string },
): Kind<number> {
  const flagRule = options.isZeroAllowed
    ? "must be 0 or more, such as 0, 500ms or 5s"
    : "must be more than 0, such as 500ms or 5s";
  const fileRule = options.isZeroAllowed
    ? "must be a number, 0 or more"
    : "must be a positive number";
  const min = options.min ?? 0;
  const why = options.why === undefined ? "" : `: ${options.why}`;
  const minFlagRule = `must be at least ${formatDurationText(min)}${why}`;
  const minFileRule = `must be at least ${min}${why}`;
  // JSON's 1e999 is Infinity, which z.number() refuses as not a number: it is too long.
  const base = z.number({
    error: (issue) => issue.input === Number.POSITIVE_INFINITY ? MAX_FILE_RULE : fileRule,
  });
  // `abort`: a negative value breaks one rule, not the minimum's too.
  const signed = options.isZeroAllowed
    ? base.min(0, { error: fileRule, abort: true })
    : base.positive({ error: fileRule, abort: true });
  return {
    parse(text) {
      let ms: number;
      try {
        ms = parseDuration(text);
      } catch (cause) {
        return fail(ruleOf(cause));
      }
      if (options.isZeroAllowed ? ms < 0 : ms <= 0) return fail(flagRule);
      if (ms > 0 && ms < min) return fail(minFlagRule);
      return ms > MAX_TIMER_MS ? fail(MAX_FLAG_RULE) : ok(ms);
    },
    schema: signed
      .refine((ms) => ms === 0 || ms >= min, { error: minFileRule })
      .max(MAX_TIMER_MS, { error: MAX_FILE_RULE }),
    format: formatDurationText,
  };
}

/**
 * A byte size: flags take `512`, `64KB` or `1MiB`; the file takes a number of bytes.
 *
 * @param options `max`: the largest size accepted, and `why` it is the largest (stated in
 *   the rule). Default: no maximum.
 */
export function size(
  options: { readonly max?: number; readonly why?: string } = {},
): Kind<number> {
  const fileRule = "must be a whole number of bytes, 0 or more";
  const max = options.max ?? Number.MAX_SAFE_INTEGER;
  const why = options.why === undefined ? "" : `, ${options.why}`;
  const maxFlagRule = `must be at most ${formatSize(max)}${why}`;
  const maxFileRule = `must be at most ${max}${why}`;
  return {
    parse(text) {
      let bytes: number;
      try {
        bytes = parseSize(text);
      } catch {
        return fail("must be a size such as 64KB or 1MiB");
      }
      return bytes > max ? fail(maxFlagRule) : ok(bytes);
    },
    schema: z.int({ error: fileRule }).min(0, { error: fileRule }).max(max, { error: maxFileRule }),
    format: formatSize,
  };
}

/** A whole number, `min` or more. */
export function count(min: 0 | 1): Kind<number> {
  const rule = `must be a whole number, ${min} or more`;
  return {
    parse(text) {
      const value = /^\s*\d+\s*$/.test(text) ? Number(text) : Number.NaN;
      return Number.isSafeInteger(value) && value >= min ? ok(value) : fail(rule);
    },
    schema: z.int({ error: rule }).min(min, { error: rule }),
    format: String,
  };
}

/** A percentage: a whole number from 0 to 100. */
export function percent(): Kind<number> {
  const rule = "must be a whole number from 0 to 100";
  return {
    parse(text) {
      const value = /^\s*\d+\s*$/.test(text) ? Number(text) : Number.NaN;
      return value >= 0 && value <= 100 ? ok(value) : fail(rule);
    },
    schema: z.int({ error: rule }).min(0, { error: rule }).max(100, { error: rule }),
    format: String,
  };
}

/** A TCP port; 0 picks a free one. */
export function port(): Kind<number> {
  const rule = "must be an integer from 0 to 65535";
  return {
    parse(text) {
      const value = /^\s*\d+\s*$/.test(text) ? Number(text) : Number.NaN;
      return Number.isInteger(value) && value <= 65_535 ? ok(value) : fail(rule);
    },
    schema: z.int({ error: rule }).min(0, { error: rule }).max(65_535, { error: rule }),
    format: String,
  };
}

/** Free text that must pass `isValid`, stated as `rule`. */
export function text(isValid: (text: string) => boolean, rule: string): Kind<string> {
  return {
    parse: (value) => isValid(value) ? ok(value) : fail(rule),
    schema: z.string({ error: rule }).refine(isValid, { error: rule }),
    format: (value) => value,
  };
}

/** One of a fixed list of names. */
export function oneOf<const Name extends string>(names: readonly [Name, ...Name[]]): Kind<Name> {
  const rule = `must be one of ${names.join(", ")}`;
  const isName = (value: string): value is Name => (names as readonly string[]).includes(value);
  return {
    parse: (value) => isName(value) ? ok(value) : fail(rule),
    schema: z.enum(names, { error: rule }),
    format: (value) => value,
  };
}

/** Python's names for levels (`LOGLEVEL` of the original Python balancer), and short forms. */
const LEVEL_ALIASES: Readonly<Record<string, LogLevel>> = {
  warn: "warning",
  critical: "fatal",
  err: "error",
};

/** A log level in any case, also Python's `WARN` and `CRITICAL`. */
export function logLevel(): Kind<LogLevel> {
  const rule = `must be one of ${LOG_LEVELS.join(", ")}`;
  const toLevel = (value: string): LogLevel | undefined => {
    const lower = value.trim().toLowerCase();
    const alias = LEVEL_ALIASES[lower];
    if (alias !== undefined) return alias;
    return (LOG_LEVELS as readonly string[]).includes(lower) ? lower as LogLevel : undefined;
  };
  return {
    parse(value) {
      const level = toLevel(value);
      return level === undefined ? fail(rule) : ok(level);
    },
    schema: z.string({ error: rule }).transform((value, context): LogLevel => {
      const level = toLevel(value);
      if (level !== undefined) return level;
      context.addIssue({ code: "custom", message: rule, input: value });
      return z.NEVER;
    }),
    format: (value) => value,
  };
}

/**
 * Backends: a flag takes a comma list of URLs (a bare `host:port` means `http://host:port`)
 * and may be repeated; the file takes a list of URLs or `{"url", "weight", "maxInFlight"}`
 * objects.
 */
export function backendList(): Kind<readonly BackendConfig[]> {
  const entry = z.union([
    z.string(),
    z.strictObject({
      url: z.string({ error: "must be a URL string" }),
      weight: WEIGHT_SCHEMA.optional(),
      maxInFlight: z.int({ error: "must be a whole number, 0 or more" })
        .min(0, { error: "must be a whole number, 0 or more" }).optional(),
    }),
  ], { error: 'must be a URL string or an object {"url": ..., "weight": ...}' })
    .transform((entry, context): BackendConfig => {
      const url = typeof entry === "string" ? entry : entry.url;
      try {
        const backend = {
          url: parseBackendUrl(url),
          weight: typeof entry === "string" ? DEFAULT_WEIGHT : entry.weight ?? DEFAULT_WEIGHT,
        };
        const maxInFlight = typeof entry === "string" ? undefined : entry.maxInFlight;
        return maxInFlight === undefined ? backend : { ...backend, maxInFlight };
      } catch (cause) {
        context.addIssue({ code: "custom", message: `"${url}" ${ruleOf(cause)}`, input: entry });
        return z.NEVER;
      }
    });
  return {
    parse(value) {
      const backends: BackendConfig[] = [];
      for (const item of value.split(",")) {
        if (item.trim() === "") return fail("the list has an empty entry");
        try {
          backends.push({ url: parseBackendUrl(item), weight: DEFAULT_WEIGHT });
        } catch (cause) {
          return fail(ruleOf(cause), item);
        }
      }
      return ok(backends);
    },
    schema: z.array(entry, { error: "must be a list of backend URLs" })
      .min(1, { error: "must list at least one backend" }),
    format: (backends) => backends.map((backend) => backend.url.href.replace(/\/$/, "")).join(","),
    isRepeatable: true,
    fileHint: '(URLs or {"url", "weight", "maxInFlight"})',
  };
}

/**
 * The `--trusted-proxies` setting: a flag takes a comma list (and may be repeated), the file a
 * list of strings. An invalid entry is named in the error.
 *
 * @returns The setting's kind.
 */
export function trustedProxyList(): Kind<readonly string[]> {
  const ruleOf = ipBlockRule;
  return {
    parse(text) {
      const entries = text.split(",").map((entry) => entry.trim()).filter((entry) => entry !== "");
      for (const entry of entries) {
        const rule = ruleOf(entry);
        if (rule !== undefined) return { ok: false, rule, text: entry };
      }
      return { ok: true, value: entries };
    },
    schema: z.array(
      z.string({ error: TRUSTED_PROXY_RULE }).superRefine((entry, context) => {
        const rule = ruleOf(entry);
        if (rule !== undefined) {
          context.addIssue({ code: "custom", message: `"${entry}" ${rule}`, input: entry });
        }
      }),
      { error: "must be a list of addresses or CIDR blocks" },
    ),
    format: (entries) => entries.join(","),
    isRepeatable: true,
    fileHint: "(a list of strings)",
  };
}

/**
 * A list of names a flag takes as a comma list (and may repeat), the file as a list of strings;
 * each entry must pass `isValid`, and an invalid one is named in the error.
 *
 * @param isValid Whether one entry is valid.
 * @param rule What an entry must be.
 * @returns The setting's kind.
 */
export function nameList(
  isValid: (entry: string) => boolean,
  rule: string,
): Kind<readonly string[]> {
  return {
    parse(value) {
      // An empty text is the empty list, as the help writes the default.
      if (value.trim() === "") return ok([]);
      const entries = value.split(",").map((entry) => entry.trim());
      for (const entry of entries) {
        if (entry === "") return fail("the list has an empty entry");
        if (!isValid(entry)) return fail(rule, entry);
      }
      return ok(entries);
    },
    schema: z.array(
      z.string({ error: rule }).superRefine((entry, context) => {
        if (!isValid(entry)) {
          context.addIssue({ code: "custom", message: `"${entry}" ${rule}`, input: entry });
        }
      }),
      { error: "must be a list of strings" },
    ),
    format: (entries) => entries.join(","),
    isRepeatable: true,
    fileHint: "(a list of strings)",
  };
}

/**
 * A list of file paths: each flag gives one path and the flag may be repeated (`--tls-cert a.pem
 * --tls-cert b.pem`); the file takes a list of strings.
 *
 * @returns The setting's kind.
 */
export function pathList(): Kind<readonly string[]> {
  const rule = "must be a non-empty path";
  return {
    // An empty flag adds nothing, so the empty default (written as "") reads back unchanged.
    parse: (text) => ok(text === "" ? [] : [text]),
    schema: z.array(z.string({ error: rule }).min(1, { error: rule }), {
      error: "must be a list of paths",
    }),
    format: (paths) => paths.join(" "),
    isRepeatable: true,
    fileHint: "(a list of paths)",
  };
}
