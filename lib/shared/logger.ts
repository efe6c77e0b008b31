/**
 * The logger the data plane writes to: the four levels it uses, each a fixed message phrase and
 * fields (or a function that computes them, called only when the level is written). A LogTape `Logger` is one (the control plane and the tests pass those); a data-plane
 * worker passes the relay of `process/log_relay.ts`, so its isolate never loads LogTape.
 *
 * @module
 */

/** A record's fields, or a function computing them when the record is written. */
export type Properties = Record<string, unknown> | (() => Record<string, unknown>);

/** Writes log records: a fixed message phrase, data in fields. */
export interface Logger {
  /** Logs at debug level. */
  debug(message: string, properties?: Properties): void;
  /** Logs at info level. */
  info(message: string, properties?: Properties): void;
  /** Logs at warning level. */
  warn(message: string, properties?: Properties): void;
  /** Logs at error level. */
  error(message: string, properties?: Properties): void;
}
