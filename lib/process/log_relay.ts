/**
 * Logging in a data-plane worker without LogTape: records at or above the configured level are
 * posted to the control plane, which writes them through its own LogTape configuration
 * ({@linkcode logRelayed} in `log.ts`). LogTape resolves its `#util` import to its Node build,
 * which loads Deno's Node layer: about 4 MB of resident memory per isolate that a worker, which
 * logs a few warnings at most, need not carry. The control plane stays the one writer of the
 * log, so a reopened log file (SIGUSR1) is reopened once.
 *
 * @module
 */
import type { Logger, Properties } from "../shared/logger.ts";
import { LOG_CONTEXT_STORAGE } from "./log_context.ts";

/** A log level, lowest first (LogTape's names). */
export const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

/** A log level. */
export type RelayLevel = typeof LOG_LEVELS[number];

/** One log record as a worker posts it. */
export interface RelayedRecord {
  /** The logger's category, `["denolb", "proxy"]`. */
  readonly category: readonly string[];
  /** The record's level. */
  readonly level: RelayLevel;
  /** The fixed message phrase. */
  readonly message: string;
  /** When it was logged, in milliseconds since the epoch. */
  readonly timestamp: number;
  /** Its fields, the request's ID first when it was logged during a request. */
  readonly properties: Record<string, unknown>;
}

/** Options for {@linkcode createRelayLogger}. */
export interface RelayLoggerOptions {
  /** The lowest level posted. */
  readonly level: RelayLevel;
  /** Sends a record to the control plane (the worker's `postMessage`). */
  readonly post: (record: RelayedRecord) => void;
  /** The clock of the timestamps. Default: `Date.now`. */
  readonly now?: () => number;
}

/**
 * A logger that posts its records instead of writing them.
 *
 * @param category The logger's category, `["denolb", "server"]`.
 * @param options The lowest level and where records go.
 * @returns The logger.
 *
 * @example
 * ```ts
 * import { createRelayLogger, type RelayedRecord } from "./log_relay.ts";
 * const posted: RelayedRecord[] = [];
 * const logger = createRelayLogger(["denolb", "proxy"], {
 *   level: "info",
 *   post: (record) => posted.push(record),
 * });
 * logger.debug("Not posted");
 * logger.warn("Backend failed", { backend: "127.0.0.1:8081" });
 * if (posted.length !== 1 || posted[0]?.level !== "warning") throw new Error("unexpected");
 * ```
 */
export function createRelayLogger(
  category: readonly string[],
  options: RelayLoggerOptions,
): Logger {
  const lowest = LOG_LEVELS.indexOf(options.level);
  const now = options.now ?? Date.now;
  const at = (level: RelayLevel) =>
    LOG_LEVELS.indexOf(level) < lowest ? () => {} : (message: string, given: Properties = {}) => {
      const properties = typeof given === "function" ? given() : given;
      // As LogTape merges its implicit context: the request's fields first, the record's own
      // after them.
      const context = LOG_CONTEXT_STORAGE.getStore();
      postRecord({
        category,
        level,
        message,
        timestamp: now(),
        properties: context === undefined ? properties : { ...context, ...properties },
      }, options.post);
    };
  return { debug: at("debug"), info: at("info"), warn: at("warning"), error: at("error") };
}

/**
 * Posts a record. Structured cloning turns a `URL` into an empty object without complaint, so a
 * `URL` field is sent as its text; when another field cannot be cloned (a symbol, a function) the record is
 * posted again with every field that is not a string, number, boolean, null or `Error` as text,
 * so a record is never lost to its fields.
 */
function postRecord(record: RelayedRecord, post: (record: RelayedRecord) => void): void {
  const properties: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record.properties)) {
    properties[key] = value instanceof URL ? value.href : value;
  }
  try {
    post({ ...record, properties });
  } catch (error) {
    if (!(error instanceof DOMException && error.name === "DataCloneError")) throw error;
    for (const [key, value] of Object.entries(properties)) {
      const isKept = value === null || value instanceof Error || typeof value === "string" ||
        typeof value === "number" || typeof value === "boolean";
      if (!isKept) properties[key] = String(value);
    }
    post({ ...record, properties });
  }
}
