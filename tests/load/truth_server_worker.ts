/**
 * A Web Worker hosting a {@linkcode startTruthServer} on its own thread, so its timing does not
 * share the load generator's event loop (a blocked or busy generator must not block the
 * target). {@linkcode startTruthServerInWorker} starts it from a test.
 *
 * @module
 */
import { startTruthServer, type TruthServer } from "./truth_server.ts";

/** The worker's settings: every request is answered 200 after `delayMs`, or `slowDelayMs` for the `slowRequest`-th. */
export interface TruthWorkerSettings {
  /** Milliseconds before each answer. */
  readonly delayMs: number;
  /** One request (from 1) held longer. Default: none. */
  readonly slowRequest?: number;
  /** How long that one is held, in ms. */
  readonly slowDelayMs?: number;
}

/** The counts a worker-hosted truth server reports. */
export interface TruthCounts {
  readonly received: number;
  readonly heldMs: readonly number[];
}

/** A truth server on another thread. */
export interface TruthServerInWorker extends AsyncDisposable {
  /** Its URL. */
  readonly url: URL;
  /** Asks the server for its counts. */
  readonly counts: () => Promise<TruthCounts>;
}

/**
 * Starts the server in a worker.
 *
 * @param settings Delays.
 * @returns The server; `await using` stops it and its worker.
 */
export async function startTruthServerInWorker(
  settings: TruthWorkerSettings,
): Promise<TruthServerInWorker> {
  const worker = new Worker(import.meta.url, { type: "module" });
  const replies: Array<(data: unknown) => void> = [];
  worker.onmessage = (event: MessageEvent) => replies.shift()?.(event.data);
  const ask = (message: unknown): Promise<unknown> =>
    new Promise((resolve) => {
      replies.push(resolve);
      worker.postMessage(message);
    });
  const url = new URL(String(await ask({ type: "start", settings })));
  return {
    url,
    counts: async () => await ask({ type: "counts" }) as TruthCounts,
    async [Symbol.asyncDispose]() {
      await ask({ type: "stop" });
      worker.terminate();
    },
  };
}

// Inside the worker: serve until told to stop.
if (
  !("document" in globalThis) &&
  typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== "undefined"
) {
  let server: TruthServer | undefined;
  const scope = globalThis as unknown as {
    onmessage: ((event: MessageEvent) => void) | null;
    postMessage: (message: unknown) => void;
  };
  scope.onmessage = async (event: MessageEvent) => {
    const message = event.data as { type: string; settings?: TruthWorkerSettings };
    if (message.type === "start" && message.settings !== undefined) {
      const { delayMs, slowRequest, slowDelayMs } = message.settings;
      server = startTruthServer((n) => ({
        kind: "answer",
        delayMs: n === slowRequest ? slowDelayMs ?? delayMs : delayMs,
      }));
      scope.postMessage(server.url.href);
    } else if (message.type === "counts") {
      scope.postMessage({ received: server?.received() ?? 0, heldMs: server?.heldMs() ?? [] });
    } else if (message.type === "stop") {
      await server?.[Symbol.asyncDispose]();
      scope.postMessage("stopped");
    }
  };
}
