/**
 * The process's open-file limit (`RLIMIT_NOFILE`): read it, and raise the soft limit toward the
 * hard one at start so a flood of connections meets the largest descriptor budget the
 * platform allows.
 *
 * Deno has no `setrlimit` API, so this calls libc through FFI (`Deno.dlopen`, stable in Deno
 * 2.9.6, needs `--allow-ffi`). `deno run` (source and bundle) already raises the soft limit to
 * the hard one before any script runs (`raise_fd_limit` in Deno's CLI); the `deno compile`
 * runtime (`denort`) does not, so there this module is what raises it. Without `--allow-ffi`
 * the outcome says so instead of prompting.
 *
 * @module
 */
import { errorText } from "../shared/error_text.ts";

/** An open-file limit; `Infinity` stands for unlimited (`RLIM_INFINITY`). */
export interface FileLimit {
  /** The limit the process is held to, which it may raise up to `hard`. */
  readonly soft: number;
  /** The ceiling of `soft`; only a privileged process may raise it. */
  readonly hard: number;
}

/**
 * What {@linkcode raiseFileLimit} did. `raised: true` means the soft limit now is as high as
 * it can go, including when it already was (`previousSoft === soft`); `raised: false` is a
 * failure worth a warning, and `soft`/`hard` are `undefined` when the limit could not be read.
 */
export type RaiseFileLimitOutcome =
  | {
    readonly raised: true;
    readonly soft: number;
    readonly hard: number;
    readonly previousSoft: number;
  }
  | {
    readonly raised: false;
    readonly soft: number | undefined;
    readonly hard: number | undefined;
    readonly reason: string;
  };

/** What {@linkcode readFileLimit} found. */
export type ReadFileLimitOutcome =
  | { readonly ok: true; readonly soft: number; readonly hard: number }
  | { readonly ok: false; readonly reason: string };

/** The two system calls, over an open handle that must be disposed. */
export interface FileLimitSyscalls extends Disposable {
  /**
   * @returns The current limit.
   * @throws {Error} When the call fails.
   */
  getLimit(): FileLimit;
  /**
   * @param limit The limit to set.
   * @throws {Error} When the call fails (a soft limit above what the platform accepts).
   */
  setLimit(limit: FileLimit): void;
}

/** Dependencies of {@linkcode readFileLimit} and {@linkcode raiseFileLimit}. */
export interface FileLimitDeps {
  /**
   * Opens the system calls; throws an `Error` saying why they are unavailable.
   * Default: {@linkcode openLibcFileLimit}.
   */
  readonly open?: () => FileLimitSyscalls;
  /**
   * Reads the limit without FFI, or returns `undefined` when it cannot; when it shows nothing to
   * raise, {@linkcode raiseFileLimit} never opens the system calls (loading libc through FFI
   * costs about 3.5 MB of resident memory, and `deno run` has already raised the limit).
   * Default: {@linkcode readProcFileLimit} when `open` is not given either, else none.
   */
  readonly peek?: () => FileLimit | undefined;
}

/**
 * Reads the open-file limit from Linux's `/proc/self/limits`, without FFI.
 *
 * @param text The file's text. Default: read now (`undefined` without read permission or
 *   off Linux).
 * @returns The limit, or `undefined` when it cannot be read or parsed.
 *
 * @example
 * ```ts
 * import { readProcFileLimit } from "./fd_limit.ts";
 * const text = "Limit  Soft Limit  Hard Limit  Units\nMax open files  1024  unlimited  files\n";
 * const limit = readProcFileLimit(text);
 * if (limit?.soft !== 1024 || limit.hard !== Infinity) throw new Error("unexpected");
 * ```
 */
export function readProcFileLimit(text?: string): FileLimit | undefined {
  let source = text;
  if (source === undefined) {
    if (Deno.build.os !== "linux") return undefined;
    const path = "/proc/self/limits";
    if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return undefined;
    try {
      source = Deno.readTextFileSync(path);
    } catch {
      return undefined;
    }
  }
  const match = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(source);
  if (match === null) return undefined;
  const toNumber = (value: string | undefined) =>
    value === "unlimited" ? Number.POSITIVE_INFINITY : Number(value);
  return { soft: toNumber(match[1]), hard: toNumber(match[2]) };
}

/**
 * The highest soft limit Linux accepts when the hard limit is unlimited: the kernel's default
 * `fs.nr_open`. (Linux never reports an unlimited hard `RLIMIT_NOFILE` in practice.)
 */
const LINUX_NR_OPEN = 1_048_576;

/**
 * macOS's `OPEN_MAX`: its `setrlimit(2)` rejects a larger soft `RLIMIT_NOFILE` than
 * `kern.maxfilesperproc`, and documents `min(OPEN_MAX, rlim_max)` as the portable choice.
 */
const DARWIN_OPEN_MAX = 10_240;

/**
 * The soft limits worth trying, best first: the hard limit (or the Linux ceiling when it is
 * unlimited), then `OPEN_MAX` for macOS, which refuses soft limits above
 * `kern.maxfilesperproc`. Empty when the soft limit is already as high as these.
 *
 * @param limit The current limit.
 * @returns Candidate soft limits, each above `limit.soft` and at most `limit.hard`, descending.
 *
 * @example
 * ```ts
 * import { fileLimitTargets } from "./fd_limit.ts";
 * if (fileLimitTargets({ soft: 256, hard: 4096 }).join() !== "4096") throw new Error("to hard");
 * if (fileLimitTargets({ soft: 4096, hard: 4096 }).length !== 0) throw new Error("nothing to do");
 * ```
 */
export function fileLimitTargets(limit: FileLimit): number[] {
  const first = Number.isFinite(limit.hard) ? limit.hard : LINUX_NR_OPEN;
  const targets: number[] = [];
  for (const target of [first, DARWIN_OPEN_MAX]) {
    if (target > limit.soft && target <= limit.hard && !targets.includes(target)) {
      targets.push(target);
    }
  }
  return targets;
}

/**
 * Reads the process's open-file limit. Never throws.
 *
 * @param deps How to reach the system calls.
 * @returns The limit, or why it could not be read.
 */
export function readFileLimit(deps: FileLimitDeps = {}): ReadFileLimitOutcome {
  try {
    using syscalls = (deps.open ?? openLibcFileLimit)();
    return { ok: true, ...syscalls.getLimit() };
  } catch (error) {
    return { ok: false, reason: errorText(error) };
  }
}

/**
 * Raises the soft open-file limit as far toward the hard limit as the platform accepts, then
 * reads back what the process runs with. Never throws: the caller logs `raised: false` as a
 * warning.
 *
 * @param deps How to reach the system calls.
 * @returns The limit now in force and the one before, or why it could not be raised.
 */
export function raiseFileLimit(deps: FileLimitDeps = {}): RaiseFileLimitOutcome {
  const peek = deps.peek ?? (deps.open === undefined ? readProcFileLimit : undefined);
  const known = peek?.();
  if (known !== undefined && fileLimitTargets(known).length === 0) {
    return { raised: true, ...known, previousSoft: known.soft };
  }
  let syscalls: FileLimitSyscalls;
  try {
    syscalls = (deps.open ?? openLibcFileLimit)();
  } catch (error) {
    return { raised: false, soft: undefined, hard: undefined, reason: errorText(error) };
  }
  using _syscalls = syscalls;
  let before: FileLimit;
  try {
    before = syscalls.getLimit();
  } catch (error) {
    return { raised: false, soft: undefined, hard: undefined, reason: errorText(error) };
  }
  const targets = fileLimitTargets(before);
  if (targets.length === 0) return { raised: true, ...before, previousSoft: before.soft };
  const refusals: string[] = [];
  for (const soft of targets) {
    try {
      syscalls.setLimit({ soft, hard: before.hard });
      break;
    } catch (error) {
      refusals.push(errorText(error));
    }
  }
  let after: FileLimit;
  try {
    after = syscalls.getLimit();
  } catch (error) {
    return { raised: false, ...before, reason: errorText(error) };
  }
  if (refusals.length === targets.length) {
    return { raised: false, ...after, reason: refusals.join("; ") };
  }
  return { raised: true, ...after, previousSoft: before.soft };
}

/** `RLIMIT_NOFILE` and `RLIM_INFINITY` of the platforms Deno ships for, with the libc to open. */
interface LibcConstants {
  readonly library: string;
  readonly resource: number;
  readonly infinity: bigint;
}

function libcConstants(os: typeof Deno.build.os): LibcConstants | undefined {
  switch (os) {
    case "linux":
      // x86_64 and aarch64 (Deno's Linux targets): RLIMIT_NOFILE 7, rlim_t a u64.
      return { library: "libc.so.6", resource: 7, infinity: 0xffff_ffff_ffff_ffffn };
    case "darwin":
      return {
        library: "/usr/lib/libSystem.B.dylib",
        resource: 8,
        infinity: 0x7fff_ffff_ffff_ffffn,
      };
    default:
      return undefined;
  }
}

const SYMBOLS = {
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
} as const;

/**
 * Opens libc's `getrlimit`/`setrlimit` through FFI: the production
 * {@linkcode FileLimitDeps.open}. Checks the permission first, so it never prompts.
 *
 * @param os The platform. Default: `Deno.build.os`.
 * @returns The system calls; dispose them to close the library.
 * @throws {Error} On a platform without them, without `--allow-ffi`, or when libc cannot be
 *   opened.
 */
export function openLibcFileLimit(os: typeof Deno.build.os = Deno.build.os): FileLimitSyscalls {
  const libc = libcConstants(os);
  if (libc === undefined) throw new Error(`Cannot change the open file limit on ${os}`);
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    throw new Error("Cannot read or raise the open file limit without --allow-ffi");
  }
  const library = Deno.dlopen(libc.library, SYMBOLS);
  // struct rlimit { rlim_t rlim_cur; rlim_t rlim_max; } with a 64-bit rlim_t on both platforms.
  const toNumber = (value: bigint): number =>
    value >= libc.infinity ? Number.POSITIVE_INFINITY : Number(value);
  const toRlim = (value: number): bigint => Number.isFinite(value) ? BigInt(value) : libc.infinity;
  return {
    getLimit(): FileLimit {
      const buffer = new BigUint64Array(2);
      if (library.symbols.getrlimit(libc.resource, buffer) !== 0) {
        throw new Error("getrlimit(RLIMIT_NOFILE) failed");
      }
      return { soft: toNumber(buffer[0] ?? 0n), hard: toNumber(buffer[1] ?? 0n) };
    },
    setLimit(limit: FileLimit): void {
      const buffer = new BigUint64Array([toRlim(limit.soft), toRlim(limit.hard)]);
      if (library.symbols.setrlimit(libc.resource, buffer) !== 0) {
        throw new Error(`setrlimit(RLIMIT_NOFILE) refused soft limit ${limit.soft}`);
      }
    },
    [Symbol.dispose](): void {
      library.close();
    },
  };
}
