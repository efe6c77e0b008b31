/**
 * The access log: one line per request, apart from the diagnostic log (LogTape), as nginx and
 * HAProxy keep it. Each isolate's data plane owns one {@linkcode AccessLog}.
 *
 * Built for speed and for never losing a record: a request's line is formatted once and
 * appended to an in-memory batch; one write at a time sends the whole batch (whole lines only)
 * to a file opened in append mode. Writes start at most every `flushIntervalMs` (5 ms) while
 * lines keep coming, so under load a write carries tens of lines instead of a few (each write
 * is a trip through Deno's blocking thread pool); a line after a quiet spell is written at
 * once. With `O_APPEND` each `write(2)` lands at the end of the file as one piece, so several
 * isolates (`--workers N`) appending batches of whole lines to the same file never tear or
 * interleave a line. When the disk cannot keep up, the batch grows to
 * `maxBufferBytes` and then {@linkcode AccessLog.write} returns a promise the request path
 * awaits (backpressure). When the file cannot be written at all (a deleted directory, a full
 * disk) there is one WARN, every failed attempt is counted (`access-log-write-failed`), the
 * write is retried, and requests keep being served: lines beyond the buffer are then counted
 * as lost (`access-log-line-lost`) rather than held without bound or blocking every request.
 *
 * @module
 */
import type { Logger } from "../shared/logger.ts";
import type { AccessLogFormat } from "../config/settings.ts";
import type { MetricEvent } from "../core/metrics.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { errorText } from "../shared/error_text.ts";

/** One request as the access log sees it. */
export interface AccessRecord {
  /** When it ended, in ms since the epoch. */
  readonly time: number;
  /** The client's address. */
  readonly client: string;
  readonly method: string;
  /** The path forwarded (or the raw target of a refused request). */
  readonly path: string;
  /** The query forwarded, with its `?`, when there was one (nginx's `$request` has it). */
  readonly query?: string;
  /** The status the client got. */
  readonly status: number;
  /** The response body's length when known (`Content-Length`), else `undefined`. */
  readonly bytes: number | undefined;
  readonly referer: string | null;
  readonly userAgent: string | null;
  /** The backend that answered or failed last; `null` when none was picked. */
  readonly backend: string | null;
  /** The request's total time in the balancer, in ms. */
  readonly durationMs: number;
  /** Time to the backend's response headers (upstream time), in ms, when it answered. */
  readonly backendMs: number | null;
  readonly requestId: string;
  /** How the request ended: `forwarded`, `failed`, `refused`, `client-abort`, `no-backend`. */
  readonly outcome: string;
  /** Why it failed or was refused, when it was. */
  readonly reason?: string;
  /** The route that took it, when the balancer routes (`routes` is set). */
  readonly route?: string;
  /** `HTTP/2.0` for a request that came over HTTP/2; absent for HTTP/1.1. */
  readonly protocol?: "HTTP/2.0";
}

/** Where the request path sends its access records. */
export interface AccessLogSink {
  /** False when nothing is logged, so the caller need not build records. */
  readonly isEnabled: boolean;
  /**
   * Takes one record. Returns a promise only when the buffer is full: the caller awaits it.
   *
   * @param record The request's record.
   * @returns `undefined`, or a promise resolved when there is room again.
   */
  write(record: AccessRecord): Promise<void> | undefined;
}

/** A sink that logs nothing: the handler's default and `--access-log off`. */
export const NO_ACCESS_LOG: AccessLogSink = { isEnabled: false, write: () => undefined };

/** Where an access log's bytes go: a file (reopenable) or a stream such as stdout. */
export interface AccessLogTarget {
  /** Opens (or reopens) the destination; called before the first write and after reopen. */
  open(): Promise<AccessLogWriter>;
}

/** An open destination. */
export interface AccessLogWriter {
  /** Writes some of `bytes`, returning how many (as `Deno.FsFile.write`). */
  write(bytes: Uint8Array): Promise<number>;
  /** Releases it. */
  close(): void;
}

// Not settings (no flag or file key sets them); tests pass smaller ones to reach the edges.
/** Buffered bytes past which writers wait for the file. */
const MAX_BUFFER_BYTES = 4 * 1024 * 1024;
/** Wait between attempts while writing the file fails, in ms. */
const RETRY_MS = 1_000;
/** Shortest time between the starts of two writes, in ms. */
const FLUSH_INTERVAL_MS = 5;

/** Options for {@linkcode AccessLog}. */
export interface AccessLogOptions {
  /** Line format. */
  readonly format: AccessLogFormat;
  /** Where lines go. */
  readonly target: AccessLogTarget;
  /** Receives the one WARN when writing fails, and the INFO when it recovers. */
  readonly logger: Logger;
  /** Counts failed writes and lost lines. Default: none. */
  readonly onEvent?: (event: MetricEvent) => void;
  /** Buffered bytes past which writers wait. Default: {@linkcode MAX_BUFFER_BYTES}. */
  readonly maxBufferBytes?: number;
  /** Wait between attempts while writing fails, in ms. Default: {@linkcode RETRY_MS}. */
  readonly retryMs?: number;
  /**
   * Shortest time between the starts of two writes, in ms, while lines keep coming: the batch
   * gathers meanwhile. A batch of 64 KiB (or a full buffer, or closing) is written at once.
   * Default: {@linkcode FLUSH_INTERVAL_MS}.
   */
  readonly flushIntervalMs?: number;
  /** Runs the retry wait and the flush interval. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
}

/** A batch this large is written without waiting for the flush interval. */
const EAGER_BATCH_CHARS = 64 * 1024;

const encoder = new TextEncoder();

/**
 * An isolate's access log: formats records into a batch and writes batches in the background.
 * `close()` (or `await using`) writes what is left.
 */
export class AccessLog implements AccessLogSink, AsyncDisposable {
  readonly isEnabled = true;
  readonly #format: (record: AccessRecord) => string;
  readonly #target: AccessLogTarget;
  readonly #logger: Logger;
  readonly #onEvent: (event: MetricEvent) => void;
  readonly #maxBufferBytes: number;
  readonly #retryMs: number;
  readonly #flushIntervalMs: number;
  readonly #eagerBatchChars: number;
  readonly #clock: Clock;
  /** When the last write started, on the clock. */
  #lastWriteAt = Number.NEGATIVE_INFINITY;
  #batch: string[] = [];
  /** Characters in the batch (a cheap stand-in for bytes). */
  #batchLength = 0;
  #writer: AccessLogWriter | undefined;
  #isReopenAsked = false;
  #isFailing = false;
  #isClosed = false;
  /** The running write loop, if any. */
  #flushing: Promise<void> | undefined;
  /** Writers waiting for room, released when a batch has been written. */
  #room: { promise: Promise<void>; resolve: () => void } | undefined;
  readonly #stop = new AbortController();

  /** @param options Format, target, logger and limits. */
  constructor(options: AccessLogOptions) {
    this.#format = FORMATTERS[options.format];
    this.#target = options.target;
    this.#logger = options.logger;
    this.#onEvent = options.onEvent ?? (() => {});
    this.#maxBufferBytes = options.maxBufferBytes ?? MAX_BUFFER_BYTES;
    this.#retryMs = options.retryMs ?? RETRY_MS;
    this.#flushIntervalMs = options.flushIntervalMs ?? FLUSH_INTERVAL_MS;
    this.#eagerBatchChars = Math.min(EAGER_BATCH_CHARS, this.#maxBufferBytes);
    this.#clock = options.clock ?? systemClock;
  }

  /** Appends the record's line; see {@linkcode AccessLogSink.write}. */
  write(record: AccessRecord): Promise<void> | undefined {
    const line = this.#format(record);
    if (this.#batchLength >= this.#maxBufferBytes) {
      // The file cannot be written at all: serving goes on, the line is counted as lost.
      if (this.#isFailing) {
        this.#onEvent("access-log-line-lost");
        return undefined;
      }
    }
    this.#batch.push(line);
    this.#batchLength += line.length;
    this.#flushing ??= this.#flushLoop();
    if (this.#batchLength < this.#maxBufferBytes || this.#isFailing) return undefined;
    this.#room ??= Promise.withResolvers<void>();
    return this.#room.promise;
  }

  /** Reopens the file before the next write (SIGHUP or SIGUSR1, after logrotate moved it). */
  reopen(): void {
    this.#isReopenAsked = true;
    this.#flushing ??= this.#flushLoop();
  }

  /** Writes what is buffered (one attempt when writing fails) and closes the file. */
  async close(): Promise<void> {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#stop.abort();
    while (this.#flushing !== undefined) await this.#flushing;
    this.#writer?.close();
    this.#writer = undefined;
    this.#releaseRoom();
  }

  /** Same as {@linkcode AccessLog.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #flushLoop(): Promise<void> {
    try {
      while (this.#batch.length > 0 || this.#isReopenAsked) {
        await this.#gather();
        const isWritten = await this.#writeBatch();
        if (isWritten) continue;
        if (this.#isClosed) return;
        try {
          await this.#clock.sleep(this.#retryMs, this.#stop.signal);
        } catch {
          // Closing: one more attempt, then give up on what is left.
          await this.#writeBatch();
          return;
        }
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  /** Waits out the rest of the flush interval, unless the batch should go now. */
  async #gather(): Promise<void> {
    const wait = this.#lastWriteAt + this.#flushIntervalMs - this.#clock.now();
    // A full buffer (writers waiting) is past the eager size too: it never waits.
    if (wait <= 0 || this.#isClosed || this.#isReopenAsked) return;
    if (this.#batchLength >= this.#eagerBatchChars) return;
    try {
      await this.#clock.sleep(wait, this.#stop.signal);
    } catch {
      // Closing: write now.
    }
  }

  /** One attempt to (re)open and write the whole batch; false when it failed. */
  async #writeBatch(): Promise<boolean> {
    try {
      if (this.#isReopenAsked) {
        this.#isReopenAsked = false;
        this.#writer?.close();
        this.#writer = undefined;
      }
      this.#writer ??= await this.#target.open();
      if (this.#batch.length === 0) return true;
      this.#lastWriteAt = this.#clock.now();
      // Only whole lines go into one write, so a write of another isolate lands between lines.
      const bytes = encoder.encode(this.#batch.join(""));
      const lines = this.#batch.length;
      await writeAll(this.#writer, bytes);
      this.#batch = this.#batch.slice(lines);
      this.#batchLength = this.#batch.reduce((sum, line) => sum + line.length, 0);
      if (this.#isFailing) {
        this.#isFailing = false;
        this.#logger.info("Access log writable again");
      }
      this.#releaseRoom();
      return true;
    } catch (error) {
      this.#onEvent("access-log-write-failed");
      // The handle may be the problem (a full disk, a broken pipe): open anew next time.
      try {
        this.#writer?.close();
      } catch {
        // Already unusable.
      }
      this.#writer = undefined;
      if (!this.#isFailing) {
        this.#isFailing = true;
        this.#logger.warn(
          "Cannot write the access log; retrying, requests keep being served",
          { error: errorText(error) },
        );
      }
      // Writers waiting for room are let go: a log that cannot be written must not stop serving.
      this.#releaseRoom();
      return false;
    }
  }

  #releaseRoom(): void {
    this.#room?.resolve();
    this.#room = undefined;
  }
}

async function writeAll(writer: AccessLogWriter, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await writer.write(bytes.subarray(offset));
}

/**
 * The destination for `--access-log`: `-` is stdout, anything else a file opened for append
 * (created when missing).
 *
 * @param path A file path or `-`.
 * @returns The target.
 */
export function accessLogTarget(path: string): AccessLogTarget {
  if (path === "-") {
    return {
      open: () => Promise.resolve({ write: (bytes) => Deno.stdout.write(bytes), close: () => {} }),
    };
  }
  return {
    async open() {
      const file = await Deno.open(path, { append: true, create: true });
      return { write: (bytes) => file.write(bytes), close: () => file.close() };
    },
  };
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

// deno-lint-ignore no-control-regex
const NEEDS_ESCAPE = /["\\\x00-\x1f\x7f]/;

function pad(value: number): string {
  return value < 10 ? `0${value}` : String(value);
}

/**
 * The last second formatted, so a busy log formats a date once a second, not per line. A pure
 * memo: the text depends only on the second, never on who asked.
 */
const lastTimeLocal = { second: Number.NaN, text: "" };

/** nginx's `$time_local`, in UTC: `10/Oct/2000:13:55:36 +0000`. */
function timeLocal(time: number): string {
  const second = Math.floor(time / 1000);
  if (second === lastTimeLocal.second) return lastTimeLocal.text;
  const d = new Date(time);
  lastTimeLocal.second = second;
  lastTimeLocal.text = `${pad(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
  return lastTimeLocal.text;
}

/** A quoted field of the combined format: `"` and `\` escaped, control bytes as `\xHH`. */
function quoted(value: string | null): string {
  if (value === null || value === "") return '"-"';
  // Most fields need no escaping; testing first saves the replace.
  if (!NEEDS_ESCAPE.test(value)) return `"${value}"`;
  const escaped = value.replace(
    // deno-lint-ignore no-control-regex
    /["\\\x00-\x1f\x7f]/g,
    (c) =>
      c === '"' || c === "\\" ? `\\${c}` : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
  return `"${escaped}"`;
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/**
 * nginx's combined format, plus the request time, upstream time and request ID at the end
 * (log tools read the combined prefix and ignore the rest).
 */
function formatCombined(r: AccessRecord): string {
  const target = r.query === undefined ? r.path : r.path + r.query;
  return `${r.client} - - [${timeLocal(r.time)}] ${
    quoted(`${r.method} ${target} ${r.protocol ?? "HTTP/1.1"}`)
  } ` +
    `${r.status} ${r.bytes ?? 0} ${quoted(r.referer)} ${quoted(r.userAgent)} ` +
    `rt=${(r.durationMs / 1000).toFixed(3)} ` +
    `urt=${r.backendMs === null ? "-" : (r.backendMs / 1000).toFixed(3)} ` +
    `rid=${quoted(r.requestId)}${r.route === undefined ? "" : ` route=${quoted(r.route)}`}\n`;
}

function formatJson(r: AccessRecord): string {
  return JSON.stringify({
    time: new Date(r.time).toISOString(),
    client: r.client,
    method: r.method,
    path: r.path,
    ...(r.query === undefined ? {} : { query: r.query }),
    protocol: r.protocol ?? "HTTP/1.1",
    status: r.status,
    bytes: r.bytes ?? null,
    backend: r.backend,
    durationMs: round(r.durationMs),
    backendMs: r.backendMs === null ? null : round(r.backendMs),
    requestId: r.requestId,
    outcome: r.outcome,
    ...(r.reason === undefined ? {} : { reason: r.reason }),
    ...(r.route === undefined ? {} : { route: r.route }),
    referer: r.referer,
    userAgent: r.userAgent,
  }) + "\n";
}

function formatText(r: AccessRecord): string {
  const target = r.query === undefined ? r.path : r.path + r.query;
  return `${new Date(r.time).toISOString()} ${r.client} ${r.method} ${quoted(target)} ` +
    `${r.status} ${r.outcome} backend=${r.backend ?? "-"} durationMs=${round(r.durationMs)} ` +
    `backendMs=${r.backendMs === null ? "-" : round(r.backendMs)} requestId=${r.requestId}` +
    `${r.reason === undefined ? "" : ` reason=${quoted(r.reason)}`}` +
    `${r.route === undefined ? "" : ` route=${quoted(r.route)}`}` +
    `${r.protocol === undefined ? "" : ` protocol=${r.protocol}`}\n`;
}

const FORMATTERS: Readonly<Record<AccessLogFormat, (record: AccessRecord) => string>> = {
  combined: formatCombined,
  json: formatJson,
  text: formatText,
};

/**
 * Formats one record as a line (with its newline).
 *
 * @param format The format.
 * @param record The record.
 * @returns The line.
 *
 * @example
 * ```ts
 * import { formatAccessRecord } from "./access_log.ts";
 * const line = formatAccessRecord("combined", {
 *   time: 0, client: "127.0.0.1", method: "GET", path: "/", status: 200, bytes: 5,
 *   referer: null, userAgent: "curl", backend: "b", durationMs: 1.5, backendMs: 1,
 *   requestId: "r1", outcome: "forwarded",
 * });
 * if (!line.startsWith('127.0.0.1 - - [01/Jan/1970:00:00:00 +0000] "GET / HTTP/1.1" 200 5')) {
 *   throw new Error(line);
 * }
 * ```
 */
export function formatAccessRecord(format: AccessLogFormat, record: AccessRecord): string {
  return FORMATTERS[format](record);
}
