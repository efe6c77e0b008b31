/**
 * Logging set-up with LogTape: text lines (time, level, module, message, `key=value` fields) or
 * JSON lines, to stderr or appended to a file, through a buffered non-blocking sink so a
 * request never waits for a log write.
 *
 * Library code never configures logging: it asks for a child logger of the `["denolb"]` root
 * with {@linkcode getModuleLogger} (or receives one), and `main.ts` calls
 * {@linkcode configureLogging} once. Tests configure a capturing sink instead
 * (`tests/support/capture_logs.ts`).
 *
 * @module
 */
import {
  configure,
  getJsonLinesFormatter,
  getLogger,
  getStreamSink,
  getTextFormatter,
  type Logger,
  type LogLevel,
  type LogRecord,
  reset,
  type Sink,
  type TextFormatter,
} from "@logtape/logtape";
import { LOG_CONTEXT_STORAGE, LOG_ROOT } from "./log_context.ts";
import type { RelayedRecord } from "./log_relay.ts";
import type { LogFormat } from "../config/kinds.ts";
import { errorText } from "../shared/error_text.ts";

export { LOG_ROOT };

/**
 * The logger of one module, a child of the `["denolb"]` root: `getModuleLogger("health")` logs
 * under `["denolb", "health"]`.
 *
 * @param name The module's short name: `"health"`, `"proxy"`, `"server"`.
 * @returns The module's logger.
 */
export function getModuleLogger(name: string): Logger {
  return getLogger([LOG_ROOT, name]);
}

/** Options for {@linkcode configureLogging}. */
export interface LoggingOptions {
  /** The lowest level written. */
  readonly level: LogLevel;
  /** Text lines or JSON lines. */
  readonly format: LogFormat;
  /** Append records to this file (created if missing) instead of writing to `stream`. */
  readonly file?: string;
  /** Colour the text format with ANSI escapes (pass whether stderr is a terminal). Default: false. */
  readonly color?: boolean;
  /**
   * Where records go when there is no `file`; it stays open afterwards.
   * Default: `Deno.stderr.writable`.
   */
  readonly stream?: WritableStream<Uint8Array>;
  /** Extra sinks that receive every record at `level` and above (tests). Default: none. */
  readonly sinks?: Readonly<Record<string, Sink>>;
  /**
   * How long buffered records may wait before they are written, in milliseconds. A full buffer
   * is written at once. Default: {@linkcode FLUSH_INTERVAL_MS}.
   */
  readonly flushIntervalMs?: number;
}

/** How many records are buffered before a write is started regardless of the interval. */
const BUFFER_RECORDS = 256;
/** How long buffered records wait before they are written, in ms (not a setting). */
const FLUSH_INTERVAL_MS = 100;

/** Logging as configured by {@linkcode configureLogging}. */
export interface Logging extends AsyncDisposable {
  /**
   * Reopens the log file by its path before the next write, as after logrotate moved it
   * (SIGUSR1). Records already buffered go to the new file. When the path cannot be opened
   * the old file is kept and a warning says why. Does nothing when logging to a stream.
   */
  reopen(): void;
}

/**
 * Configures LogTape for the balancer. Records go through a buffered non-blocking stream sink,
 * so logging never blocks a request: under a flood the sink drops the oldest buffered records
 * rather than grow without bound (the access log, which must not lose a record, has a sink of
 * its own: `data/access_log.ts`). The returned handle reopens the log file (SIGUSR1); its
 * disposal flushes what is buffered, closes the log file and resets LogTape. Dispose it before
 * exiting, since the sink's flush timer keeps the process alive.
 *
 * @param options Level, format and destination.
 * @returns A handle that reopens the log file and whose disposal flushes and resets logging.
 * @throws {Error} When the log file cannot be opened, naming the path.
 *
 * @example
 * ```ts ignore
 * await using logging = await configureLogging({ level: "info", format: "json" });
 * getModuleLogger("server").info("Listening", { host: "127.0.0.1", port: 9090 });
 * logging.reopen(); // on SIGUSR1
 * ```
 */
export async function configureLogging(options: LoggingOptions): Promise<Logging> {
  const formatter = createLogFormatter(options.format, { color: options.color ?? false });
  const nonBlocking = {
    bufferSize: BUFFER_RECORDS,
    flushInterval: options.flushIntervalMs ?? FLUSH_INTERVAL_MS,
  };
  let output: Sink;
  let file: ReopenableFile | undefined;
  if (options.file !== undefined) {
    file = new ReopenableFile(options.file, await openLogFile(options.file));
    // closeStream (the default) closes the file when LogTape disposes the sink.
    output = getStreamSink(file.writable, { formatter, nonBlocking });
  } else {
    output = getStreamSink(options.stream ?? Deno.stderr.writable, {
      formatter,
      nonBlocking,
      closeStream: false,
    });
  }
  const extra = options.sinks ?? {};
  const sinkIds = ["output", ...Object.keys(extra)];
  await configure({
    reset: true,
    contextLocalStorage: LOG_CONTEXT_STORAGE,
    sinks: { ...extra, output },
    loggers: [
      { category: [LOG_ROOT], sinks: sinkIds, lowestLevel: options.level },
      // LogTape's own diagnostics (a failing sink); also silences its start-up notice.
      { category: ["logtape", "meta"], sinks: sinkIds, lowestLevel: "warning" },
    ],
  });
  let disposed: Promise<void> | undefined;
  return {
    reopen: () => file?.reopen(),
    [Symbol.asyncDispose]: () => disposed ??= reset(),
  };
}

/** Opens a log file for appending, creating it; the error names the path. */
async function openLogFile(path: string): Promise<Deno.FsFile> {
  try {
    return await Deno.open(path, { write: true, create: true, append: true });
  } catch (cause) {
    const reason = errorText(cause);
    throw new Error(`Cannot open log file "${path}": ${reason}`, { cause });
  }
}

/**
 * A log file as a stream that writes each chunk to the file at once, and opens its path again
 * before the next chunk once asked to. Deno 2.9.6's `FsFile.writable` kept written chunks off
 * the disk until the stream closed, so a running balancer's log file stayed empty (`tail -f`
 * showed nothing); `tests/log_test.ts` guards this.
 */
class ReopenableFile {
  readonly writable: WritableStream<Uint8Array>;
  readonly #path: string;
  #file: Deno.FsFile;
  #isReopenWanted = false;

  constructor(path: string, file: Deno.FsFile) {
    this.#path = path;
    this.#file = file;
    this.writable = new WritableStream<Uint8Array>({
      write: (chunk) => this.#write(chunk),
      close: () => this.#file.close(),
      abort: () => this.#file.close(),
    });
  }

  /** Opens the path again before the next write. */
  reopen(): void {
    this.#isReopenWanted = true;
  }

  async #write(chunk: Uint8Array): Promise<void> {
    if (this.#isReopenWanted) {
      this.#isReopenWanted = false;
      try {
        const next = await openLogFile(this.#path);
        this.#file.close();
        this.#file = next;
      } catch (error) {
        // Written after this chunk, through LogTape, into the file still open.
        queueMicrotask(() =>
          getModuleLogger("log").warn("Log file not reopened; still writing to the old one", {
            error,
          })
        );
      }
    }
    for (let offset = 0; offset < chunk.length;) {
      offset += await this.#file.write(chunk.subarray(offset));
    }
  }
}

/** Options for {@linkcode createLogFormatter}. */
export interface LogFormatterOptions {
  /** Colour the text format with ANSI escapes. Default: false. */
  readonly color?: boolean;
}

const LEVEL_LABEL: Readonly<Record<LogLevel, string>> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO ",
  warning: "WARN ",
  error: "ERROR",
  fatal: "FATAL",
};

const LEVEL_COLOR: Readonly<Record<LogLevel, string>> = {
  trace: "\x1b[2m",
  debug: "\x1b[34m",
  info: "\x1b[32m",
  warning: "\x1b[33m",
  error: "\x1b[31m",
  fatal: "\x1b[35m",
};

/**
 * The formatter for a log format. Text lines look like
 * `2025-01-31 12:00:00.000 +00 WARN  health: Backend is unhealthy backend=127.0.0.1:8081 reason="HTTP 503"`;
 * JSON lines hold `@timestamp`, `level`, `logger`, `message` and the fields at the top level.
 *
 * @param format `"text"` or `"json"`.
 * @param options Colour for text.
 * @returns A LogTape text formatter (one line, ending in a newline).
 */
export function createLogFormatter(
  format: LogFormat,
  options: LogFormatterOptions = {},
): TextFormatter {
  if (format === "json") {
    return getJsonLinesFormatter({ properties: "flatten", categorySeparator: "." });
  }
  const isColored = options.color ?? false;
  return getTextFormatter({
    timestamp: "date-time-tz",
    format: ({ timestamp, message, record }) => {
      const level = LEVEL_LABEL[record.level];
      const module = record.category.slice(record.category[0] === LOG_ROOT ? 1 : 0).join(".");
      const head = isColored
        ? `\x1b[2m${timestamp}\x1b[0m ${LEVEL_COLOR[record.level]}${level}\x1b[0m`
        : `${timestamp} ${level}`;
      const where = module === "" ? "" : `${module}: `;
      return `${head} ${where}${message}${formatFields(record)}`;
    },
  });
}

/** ` key=value` for each property; strings with spaces, quotes or controls are JSON-quoted. */
function formatFields(record: LogRecord): string {
  let text = "";
  for (const [key, value] of Object.entries(record.properties)) {
    text += ` ${key}=${formatValue(value)}`;
  }
  return text;
}

function formatValue(value: unknown): string {
  if (typeof value === "string") return quoteIfNeeded(value);
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") {
    return String(value);
  }
  if (value === null || value === undefined) return String(value);
  if (value instanceof Error) return quoteIfNeeded(`${value.name}: ${value.message}`);
  if (value instanceof URL) return quoteIfNeeded(value.href);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return quoteIfNeeded(String(value));
  }
}

function quoteIfNeeded(text: string): string {
  // deno-lint-ignore no-control-regex
  return text === "" || /[\s"=\\\x00-\x1f\x7f-\x9f]/.test(text) ? JSON.stringify(text) : text;
}

/**
 * Writes a record a data-plane worker posted (`log_relay.ts`) through this isolate's LogTape
 * configuration, with the worker's timestamp and fields.
 *
 * @param record The posted record.
 */
export function logRelayed(record: RelayedRecord): void {
  getLogger([...record.category]).emit({
    level: record.level,
    message: [record.message],
    rawMessage: record.message,
    timestamp: record.timestamp,
    properties: record.properties,
  });
}
