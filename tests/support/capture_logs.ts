/**
 * Captures LogTape records in memory for assertions: `await using logs = await captureLogs();`
 * configures LogTape with a capturing sink for the `["denolb"]` root (and LogTape's own
 * warnings), and disposing it resets LogTape.
 *
 * @module
 */
import { configure, type LogLevel, type LogRecord, reset } from "@logtape/logtape";
import { LOG_ROOT } from "../../lib/process/log.ts";
import { LOG_CONTEXT_STORAGE } from "../../lib/process/log_context.ts";

/** Options for {@linkcode captureLogs}. */
export interface CaptureLogsOptions {
  /** The lowest level captured. Default: `"trace"` (everything). */
  readonly level?: LogLevel;
}

/** Records captured since configuration (or the last {@linkcode LogCapture.clear}). */
export interface LogCapture extends AsyncDisposable {
  /** The captured records, oldest first. */
  readonly records: readonly LogRecord[];
  /** The records whose message template is `message`, optionally only at `level`. */
  find(message: string, level?: LogLevel): LogRecord[];
  /** Forgets the captured records. */
  clear(): void;
}

/**
 * Configures LogTape to capture records in memory (replacing any configuration).
 *
 * @param options The lowest level captured.
 * @returns The capture; dispose it to reset LogTape.
 */
export async function captureLogs(options: CaptureLogsOptions = {}): Promise<LogCapture> {
  let records: LogRecord[] = [];
  await configure({
    reset: true,
    contextLocalStorage: LOG_CONTEXT_STORAGE,
    sinks: { capture: (record: LogRecord) => void records.push(record) },
    loggers: [
      { category: [LOG_ROOT], sinks: ["capture"], lowestLevel: options.level ?? "trace" },
      { category: ["logtape", "meta"], sinks: ["capture"], lowestLevel: "warning" },
    ],
  });
  return {
    get records(): readonly LogRecord[] {
      return records;
    },
    find(message: string, level?: LogLevel): LogRecord[] {
      return records.filter((record) =>
        record.rawMessage === message && (level === undefined || record.level === level)
      );
    },
    clear(): void {
      records = [];
    },
    [Symbol.asyncDispose]: () => reset(),
  };
}
