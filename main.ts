/**
 * denolb: an HTTP load balancer and load tester in one executable.
 *
 * Thin on purpose: picks the subcommand, builds the real I/O and shutdown signal, calls into
 * `lib/`, `load/` or `backend-servers/`, and maps the outcome to an exit code. When started as a
 * Web Worker (the load tester spreads load over workers started from this very module, so the
 * bundle and the compiled binary need no separate worker file) it runs the load worker instead.
 *
 * @module
 */
import denoJson from "./deno.json" with { type: "json" };
import type { WorkerScope } from "./lib/data/worker.ts";
import { DATA_PLANE_WORKER_NAME } from "./lib/data/worker_protocol.ts";
import { listenForShutdown } from "./lib/process/signals.ts";
import { type CommandContext, EXIT, UsageError } from "./lib/shared/command.ts";
import { errorText } from "./lib/shared/error_text.ts";

/** The program's version, from `deno.json`. */
export const VERSION: string = denoJson.version;

/**
 * A command, loaded only when it runs: an isolate (a data-plane worker above all) holds the code
 * of its own command alone, not the load tester, the demo and the balancer together.
 */
interface Command {
  readonly summary: string;
  readonly load: (args: readonly string[]) => Promise<
    (args: readonly string[], ctx: CommandContext) => Promise<number>
  >;
}

const COMMANDS: Readonly<Record<string, Command>> = {
  lb: {
    summary: "Run the load balancer",
    load: async () => (await import("./lib/lb_command.ts")).lbCommand,
  },
  loadtest: {
    summary: "Measure an HTTP endpoint under load (also: loadtest merge a.json b.json)",
    load: async () => (await import("./load/cli.ts")).loadtestCommand,
  },
  backends: {
    summary: "Run the three demo backends",
    load: async () => (await import("./backend-servers/backends_command.ts")).backendsCommand,
  },
  demo: {
    summary: "Run the demo backends and the balancer together",
    load: async () => (await import("./backend-servers/demo_command.ts")).demoCommand,
  },
  kube: {
    summary: "Print Kubernetes manifests: kube lb ... (the balancer), kube loadtest --pods N ...",
    // The Job's half belongs to the load tester, the rest to the balancer.
    load: async (args) =>
      args[0] === "loadtest"
        ? (await import("./load/kube_job.ts")).kubeLoadtestCommand
        : (await import("./lib/deploy/kube_lb.ts")).kubeCommand,
  },
};

/** Help text of the program itself. */
export const MAIN_HELP: string = `denolb ${VERSION}: HTTP load balancer and load tester

Usage: denolb <command> [options]      (from source: deno task <command> [options])

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`).join("\n")}

Options:
  -h, --help       Show this help (or a command's help: denolb lb --help)
  -V, --version    Show the version

Examples:
  denolb demo
  denolb lb 5
  denolb loadtest --url http://127.0.0.1:9090/ --total 800 --concurrency 25 50 100 --rounds 2
`;

/**
 * Runs one command line.
 *
 * @param args The arguments after the program name.
 * @param ctx I/O, environment, shutdown signal and worker module.
 * @returns The exit code: 0 success, 1 runtime failure or breached threshold, 2 usage error.
 */
export async function main(args: readonly string[], ctx: CommandContext): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    ctx.stdout(MAIN_HELP);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === "-V" || name === "--version") {
    ctx.stdout(`denolb ${VERSION}\n`);
    return EXIT.ok;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    ctx.stderr(
      `error: Unknown command "${name}": expected one of ${Object.keys(COMMANDS).join(", ")}\n`,
    );
    return EXIT.usage;
  }
  try {
    const run = await command.load(rest);
    return await run(rest, ctx);
  } catch (error) {
    if (error instanceof UsageError) {
      ctx.stderr(`error: ${error.message}\n`);
      return EXIT.usage;
    }
    const message = errorText(error);
    ctx.stderr(`error: ${message}\n`);
    if (ctx.env("DENOLB_DEBUG") !== undefined && error instanceof Error) {
      ctx.stderr(`${error.stack ?? ""}\n`);
    }
    return EXIT.failure;
  }
}

/** Writes all of `text`: a single `writeSync` may write only part of a large report. */
function writeAll(file: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = new TextEncoder().encode(text);
  for (let offset = 0; offset < bytes.length;) offset += file.writeSync(bytes.subarray(offset));
}

function processContext(signal: AbortSignal): CommandContext {
  return {
    stdout: (text) => writeAll(Deno.stdout, text),
    stderr: (text) => writeAll(Deno.stderr, text),
    isTerminal: Deno.stderr.isTerminal(),
    env: (key) => Deno.env.get(key),
    signal,
    workerUrl: new URL(import.meta.url),
  };
}

if (import.meta.main) {
  if ("WorkerGlobalScope" in globalThis) {
    // One entry module for every worker, so the bundle and the binary need no other file.
    // Each kind of worker loads its own code only: a data plane never holds the load tester.
    // Messages that arrive while that code loads would find no listener: they are held, then
    // handed over in order.
    const early: MessageEvent[] = [];
    const hold = (event: Event) => {
      early.push(event as MessageEvent);
    };
    self.addEventListener("message", hold);
    if (self.name === DATA_PLANE_WORKER_NAME) {
      const { runDataPlaneWorker } = await import("./lib/data/worker.ts");
      runDataPlaneWorker(self as unknown as WorkerScope);
    } else {
      const { runLoadWorker } = await import("./load/worker.ts");
      runLoadWorker(self);
    }
    self.removeEventListener("message", hold);
    for (const event of early) {
      self.dispatchEvent(new MessageEvent("message", { data: event.data }));
    }
  } else {
    // The first SIGINT/SIGTERM starts an orderly stop; a second one exits at once.
    using shutdown = listenForShutdown({ onRepeat: () => Deno.exit(130) });
    Deno.exit(await main(Deno.args, processContext(shutdown.signal)));
  }
}
