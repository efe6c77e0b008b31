/**
 * Checks the output files of `loadtest` (`--json`, `--csv`, `--chart`, `--html`) before any
 * request is sent, so a typo in a path fails in a second with a clear message instead of after
 * the whole run with a raw OS error. `-` means stdout and is not a file.
 *
 * @module
 */
import { UsageError } from "../lib/shared/command.ts";

/** The file system calls {@linkcode checkOutputPath} makes (tests may replace them). */
export interface OutputPathDeps {
  /** Opens a file. Default: `Deno.open`. */
  readonly open?: (path: string, options: Deno.OpenOptions) => Promise<Deno.FsFile>;
  /** Removes a file. Default: `Deno.remove`. */
  readonly remove?: (path: string) => Promise<void>;
  /** Describes a path. Default: `Deno.stat`. */
  readonly stat?: (path: string) => Promise<Deno.FileInfo>;
}

/**
 * Checks that `path` can be written: an existing file is opened for writing (not truncated), a
 * new one is created and removed again.
 *
 * @param flag The flag, such as `"--json"`, for the message.
 * @param path The path given.
 * @param deps File system overrides.
 * @throws {UsageError} When the path is a directory, its directory is missing, or it cannot be
 * written, naming the flag, the path and the reason.
 */
export async function checkOutputPath(
  flag: string,
  path: string,
  deps: OutputPathDeps = {},
): Promise<void> {
  const open = deps.open ?? Deno.open;
  const remove = deps.remove ?? Deno.remove;
  const stat = deps.stat ?? Deno.stat;
  let isExisting = false;
  try {
    const info = await stat(path);
    if (info.isDirectory) {
      throw new UsageError(`Invalid ${flag} "${path}": it is a directory, give a file path`);
    }
    isExisting = true;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    if (!(error instanceof Deno.errors.NotFound)) throw cannotWrite(flag, path, error);
  }
  try {
    const file = await open(path, isExisting ? { write: true } : { write: true, createNew: true });
    file.close();
    if (!isExisting) await remove(path);
  } catch (error) {
    throw cannotWrite(flag, path, error);
  }
}

function cannotWrite(flag: string, path: string, error: unknown): UsageError {
  const reason = error instanceof Deno.errors.NotFound
    ? "its directory does not exist"
    : error instanceof Deno.errors.PermissionDenied
    ? "permission denied"
    : error instanceof Error
    ? error.message
    : String(error);
  return new UsageError(`Invalid ${flag} "${path}": cannot write there (${reason})`, {
    cause: error,
  });
}
