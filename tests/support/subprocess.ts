/**
 * Runs the program as users do, in a subprocess, for CLI and artifact tests.
 *
 * @module
 */

/** The repository root. */
export const REPO_ROOT: URL = new URL("../../", import.meta.url);

/**
 * The permissions the `lb` task grants (`--allow-ffi`: the listener peeks at connections to
 * tunnel WebSocket, and the binary raises its file limit); `loadtest` needs fewer.
 */
export const RUN_PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--allow-ffi",
];

/** What a finished subprocess printed and returned. */
export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `deno <args>` in the repository root and waits for it.
 *
 * @param args The arguments to `deno`.
 * @returns Exit code and output.
 */
export async function runDeno(args: readonly string[]): Promise<RunResult> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [...args],
    cwd: REPO_ROOT,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** A long-running subprocess whose output is read line by line. */
export interface LiveProcess extends AsyncDisposable {
  /** The child. */
  readonly child: Deno.ChildProcess;
  /** Resolves with the first line (stdout or stderr) matching `pattern`. */
  waitForLine(pattern: RegExp): Promise<RegExpMatchArray>;
  /** Everything printed so far. */
  readonly output: string;
}

/**
 * Starts a command and follows its output.
 *
 * @param command The executable.
 * @param args Its arguments.
 * @param env More environment variables. Default: only `NO_COLOR=1`.
 * @returns The live process; disposing it kills the child if still running.
 */
export function startProcess(
  command: string,
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): LiveProcess {
  const child = new Deno.Command(command, {
    args: [...args],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).spawn();
  let output = "";
  const waiters: Array<{ pattern: RegExp; resolve: (m: RegExpMatchArray) => void }> = [];
  const check = () => {
    for (const waiter of [...waiters]) {
      const match = output.match(waiter.pattern);
      if (match !== null) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(match);
      }
    }
  };
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      output += text;
      check();
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  return {
    child,
    get output() {
      return output;
    },
    waitForLine(pattern: RegExp): Promise<RegExpMatchArray> {
      return new Promise((resolve, reject) => {
        waiters.push({ pattern, resolve });
        check();
        pumps.then(() => reject(new Error(`Process ended before printing ${pattern}:\n${output}`)));
      });
    },
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      await child.status;
      await pumps;
    },
  };
}

/**
 * Starts the balancer as a user does, `deno run main.ts lb --port 0` with `args` after, and
 * follows its output.
 *
 * @param args More `lb` flags.
 * @param env More environment variables. Default: none.
 * @returns The live process; disposing it kills the child if still running.
 */
export function startLbProcess(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): LiveProcess {
  return startProcess(Deno.execPath(), [
    "run",
    ...RUN_PERMISSIONS,
    "main.ts",
    "lb",
    "--port",
    "0",
    ...args,
  ], env);
}
