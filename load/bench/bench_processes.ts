/**
 * Processes the benchmark table and the soak start and watch: three nginx backends, our
 * balancer as a child process, and the memory of a process tree read from `/proc` (Linux only).
 * Benchmarks only; tests never import it.
 *
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };
import { freePorts, type RunningNginx, startNginx, waitForPort } from "./bench_support.ts";

const MAIN = new URL("../../main.ts", import.meta.url);
/** The V8 flags `deno task lb` runs with (the young generation's size): ours runs as shipped. */
const LB_TASK_V8_FLAGS: readonly string[] = lbTaskV8Flags(denoJson.tasks.lb);

function lbTaskV8Flags(task: string | undefined): readonly string[] {
  return task?.match(/--v8-flags=\S+/g) ?? [];
}

/** The V8 flags of another tree's `deno task lb` (next to its `main.ts`), as it shipped. */
function treeV8Flags(mainPath: string): readonly string[] {
  try {
    const config = JSON.parse(
      Deno.readTextFileSync(new URL("deno.json", `file://${mainPath}`)),
    ) as {
      tasks?: { lb?: string };
    };
    return lbTaskV8Flags(config.tasks?.lb);
  } catch {
    return [];
  }
}
const REPO = new URL("../../", import.meta.url);
/** The pseudo-flag that runs another copy of `main.ts` (see `startOurBalancer`). */
const BENCH_MAIN = "--bench-main=";
/** Stderr lines of a balancer kept for the report (the last ones). */
const KEPT_STDERR_LINES = 20;

/** nginx serving the same small static file on several ports (one worker for all). */
export interface NginxBackends {
  /** The ports, one per backend. */
  readonly ports: readonly number[];
  /** The nginx master's process id. */
  readonly pid: number;
  /** Stops nginx and waits for its exit. */
  stop(): Promise<void>;
}

/**
 * Starts one nginx (one worker, no access log) serving `www/index.html` on `count` free ports.
 *
 * @param directory A private folder holding `www/` (see `writeStaticSite`) and nginx's files.
 * @param www The folder served.
 * @param count How many ports (backends).
 * @returns The running backends.
 */
export async function startNginxBackends(
  directory: string,
  www: string,
  count: number,
): Promise<NginxBackends> {
  const ports = freePorts(count);
  const nginx: RunningNginx = await startNginx(
    directory,
    ports.map((p) => `  server { listen 127.0.0.1:${p}; root ${www}; }`).join("\n"),
    ports,
  );
  return { ports, pid: nginx.pid, stop: () => nginx.stop() };
}

/** Our balancer running as a child process (one `deno` process holds all its isolates). */
export type RunningBalancer = WatchedProcess;

/**
 * Starts `main.ts lb` on `port` over the backends, admin off, probing `/index.html`; resolves
 * once it accepts connections. Stdout (the access log at its default `-`) goes to /dev/null;
 * stderr is kept for the report.
 *
 * @param port The proxy port on 127.0.0.1.
 * @param backendPorts The backends' ports on 127.0.0.1.
 * @param extra More `lb` flags (they override the ones here); a `--v8-flags=...` among them goes
 *   to `deno run` instead of those of `deno task lb`, so benchmarks can compare V8 heap settings;
 *   a `--bench-main=PATH` runs that `main.ts` instead of ours (another copy of the tree, to
 *   compare old and new side by side), with the V8 flags of that tree's `deno task lb`.
 * @returns The running balancer.
 * @throws {Error} When it does not listen within about 5 s (with its last stderr line).
 */
export async function startOurBalancer(
  port: number,
  backendPorts: readonly number[],
  extra: readonly string[],
): Promise<RunningBalancer> {
  const ownV8Flags = extra.filter((flag) => flag.startsWith("--v8-flags="));
  const otherMain = extra.findLast((flag) => flag.startsWith(BENCH_MAIN))
    ?.slice(BENCH_MAIN.length);
  const main = otherMain ?? MAIN.pathname;
  const shippedV8Flags = otherMain === undefined ? LB_TASK_V8_FLAGS : treeV8Flags(otherMain);
  const v8Flags = ownV8Flags.length > 0 ? ownV8Flags : shippedV8Flags;
  const lbFlags = extra.filter((flag) =>
    !flag.startsWith("--v8-flags=") && !flag.startsWith(BENCH_MAIN)
  );
  const process = spawnWatched(Deno.execPath(), [
    "run",
    ...v8Flags,
    "--allow-net",
    "--allow-env",
    "--allow-read",
    "--allow-write",
    "--allow-ffi",
    "--unstable-net",
    main,
    "lb",
    "--port",
    String(port),
    "--admin",
    "off",
    "--backend",
    backendPorts.map((p) => `127.0.0.1:${p}`).join(","),
    "--health-path",
    "/index.html",
    "--drain-timeout",
    "1s",
    ...lbFlags,
  ], { cwd: REPO.pathname });
  await process.listening(port, `denolb ${extra.join(" ")}`);
  return process;
}

/** A child process whose stderr is kept and whose exit is noticed. */
export interface WatchedProcess {
  /** Its process id. */
  readonly pid: number;
  /** The exit code when it has exited on its own, else `undefined`. */
  exitCode(): number | undefined;
  /** Lines it wrote on stderr: how many, and the last few. */
  stderr(): { readonly count: number; readonly last: readonly string[] };
  /** Waits until it listens on the port; stops it and throws (with its last line) if not. */
  listening(port: number, what: string): Promise<void>;
  /** Sends SIGTERM and waits for its exit. */
  stop(): Promise<void>;
}

/**
 * Spawns a command with stdout discarded and stderr kept (the last lines) for the report.
 *
 * @param command The executable.
 * @param args Its arguments.
 * @param options Working folder and environment (default: ours).
 * @returns The running process.
 */
export function spawnWatched(
  command: string,
  args: readonly string[],
  options: { readonly cwd?: string; readonly env?: Record<string, string> } = {},
): WatchedProcess {
  const child = new Deno.Command(command, {
    args: [...args],
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.env === undefined ? {} : { env: options.env }),
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let count = 0;
  const last: string[] = [];
  const reading = (async () => {
    let rest = "";
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + text).split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) {
        count++;
        last.push(line);
        if (last.length > KEPT_STDERR_LINES) last.shift();
      }
    }
  })();
  let code: number | undefined;
  const exited = child.status.then((status) => {
    code = status.code;
  });
  const stop = async (): Promise<void> => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    await exited;
    await reading;
  };
  return {
    pid: child.pid,
    exitCode: () => code,
    stderr: () => ({ count, last: [...last] }),
    async listening(port: number, what: string): Promise<void> {
      try {
        await waitForPort(port, what);
      } catch (error) {
        await stop();
        throw new Error(`${what} did not start: ${last.at(-1) ?? "no output"}`, { cause: error });
      }
    },
    stop,
  };
}

/**
 * A process and its descendants, from the parent ids in `/proc/PID/stat`.
 *
 * @param rootPid The root process.
 * @returns Its id followed by its descendants' (empty when it is gone).
 */
export async function processTree(rootPid: number): Promise<number[]> {
  const parents = new Map<number, number>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`);
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parents.set(Number(entry.name), ppid);
    } catch {
      // The process ended while we looked.
    }
  }
  if (!parents.has(rootPid)) return [];
  const tree = [rootPid];
  for (let i = 0; i < tree.length; i++) {
    for (const [pid, ppid] of parents) if (ppid === tree[i]) tree.push(pid);
  }
  return tree;
}

/**
 * CPU time a process tree has used so far (user and system, from `/proc/PID/stat`), in
 * milliseconds. Read before and after a slice, it gives the CPU a target spent per request,
 * which moves far less than its rate when other work shares the machine.
 *
 * @param rootPid The root process.
 * @returns Milliseconds of CPU over the tree (0 when it is gone).
 */
export async function treeCpuMs(rootPid: number): Promise<number> {
  let ticks = 0;
  for (const pid of await processTree(rootPid)) {
    try {
      const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
      // After "pid (comm) ": state is field 0, utime field 11, stime field 12.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // The process ended while we looked.
    }
  }
  // Linux reports clock ticks of 10 ms (USER_HZ 100).
  return ticks * 10;
}

/** Memory of a process, in kB, from `/proc/PID/status`. */
export interface ProcessMemory {
  /** Resident set now (VmRSS). */
  readonly rssKb: number;
  /** Peak resident set since it started (VmHWM). */
  readonly peakRssKb: number;
}

/**
 * Reads a process's resident and peak resident memory.
 *
 * @param pid The process.
 * @returns Its memory, or `undefined` when it is gone.
 */
export async function processMemory(pid: number): Promise<ProcessMemory | undefined> {
  let status: string;
  try {
    status = await Deno.readTextFile(`/proc/${pid}/status`);
  } catch {
    return undefined;
  }
  const field = (name: string): number =>
    Number(
      new RegExp(`^${name}:\\s+(\\d+) kB`, "m")
        .exec(status)?.[1] ?? Number.NaN,
    );
  return { rssKb: field("VmRSS"), peakRssKb: field("VmHWM") };
}

/**
 * The memory of a process tree: the sum over its processes (shared pages counted in each).
 *
 * @param rootPid The root process.
 * @returns The sums and how many processes were read.
 */
export async function treeMemory(
  rootPid: number,
): Promise<ProcessMemory & { readonly processes: number }> {
  let rssKb = 0;
  let peakRssKb = 0;
  let processes = 0;
  for (const pid of await processTree(rootPid)) {
    const memory = await processMemory(pid);
    if (memory === undefined) continue;
    rssKb += memory.rssKb;
    peakRssKb += memory.peakRssKb;
    processes++;
  }
  return { rssKb, peakRssKb, processes };
}

/**
 * The machine's 1-minute load average (other work sharing the cores shows here).
 *
 * @returns The figure from `/proc/loadavg`, or NaN when unreadable.
 */
export async function loadAverage(): Promise<number> {
  try {
    return Number((await Deno.readTextFile("/proc/loadavg")).split(" ")[0]);
  } catch {
    return Number.NaN;
  }
}

/**
 * Runs Caddy on the Caddyfile in `home`, with its data and config kept there too (nothing of
 * the user's Caddy is read or written).
 *
 * @param home A scratch folder holding `Caddyfile`.
 * @returns The watched process.
 */
export function spawnCaddy(home: string): ReturnType<typeof spawnWatched> {
  return spawnWatched(
    "caddy",
    ["run", "--config", `${home}/Caddyfile`, "--adapter", "caddyfile"],
    {
      cwd: home,
      env: { HOME: home, XDG_DATA_HOME: `${home}/data`, XDG_CONFIG_HOME: `${home}/config` },
    },
  );
}
