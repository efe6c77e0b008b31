/**
 * Servers and a capturing command context for the load tester's tests. Everything binds
 * 127.0.0.1 port 0 and is torn down with `await using`.
 *
 * @module
 */
import type { CommandContext } from "../../lib/shared/command.ts";

/** A running `Deno.serve` backend. */
export interface Backend extends AsyncDisposable {
  /** Its URL. */
  readonly url: URL;
  /** Requests it has answered. */
  readonly requests: () => number;
}

/**
 * A backend answering every request with `handler(n)`, n counting from 1.
 *
 * @param handler Builds the n-th response.
 * @returns The backend.
 */
export function startBackend(handler: (n: number) => Response = () => new Response("ok")): Backend {
  let count = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => handler(++count),
  );
  return {
    url: new URL(`http://127.0.0.1:${server.addr.port}/`),
    requests: () => count,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A backend whose every 4th request fails with 500 (a deterministic 25% error rate). */
export function startQuarterFailingBackend(): Backend {
  return startBackend((n) =>
    n % 4 === 0 ? new Response("fail", { status: 500 }) : new Response("ok")
  );
}

/** A TCP server that accepts connections and reads requests but never answers. */
export interface SilentServer extends AsyncDisposable {
  /** Its URL. */
  readonly url: URL;
  /** Resolves once `count` connections were accepted. */
  readonly accepted: (count: number) => Promise<void>;
}

/** Starts a server that never answers. */
export function startSilentServer(): SilentServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        conns.push(conn);
        for (const waiter of waiters.filter((w) => conns.length >= w.count)) waiter.resolve();
      }
    } catch {
      // The listener was closed.
    }
  })();
  return {
    url: new URL(`http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`),
    accepted: (count) =>
      conns.length >= count
        ? Promise.resolve()
        : new Promise((resolve) => waiters.push({ count, resolve })),
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // Already closed by the peer.
        }
      }
      await accepting;
    },
  };
}

/**
 * A URL on which nothing listens: bind port 0, note the port, close it.
 *
 * @returns The URL.
 */
export function refusedUrl(): URL {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return new URL(`http://127.0.0.1:${port}/`);
}

/** A command context that records its output. */
export interface CapturedContext {
  /** The context to pass in. */
  readonly ctx: CommandContext;
  /** Everything written to stdout. */
  readonly stdout: () => string;
  /** Everything written to stderr. */
  readonly stderr: () => string;
}

/**
 * A capturing context whose workers start from `load/worker_entry.ts`.
 *
 * @param signal Cancellation. Default: never aborts.
 * @returns The context and its captured output.
 */
export function captureContext(
  signal: AbortSignal = new AbortController().signal,
): CapturedContext {
  let out = "";
  let err = "";
  return {
    ctx: {
      stdout: (text) => {
        out += text;
      },
      stderr: (text) => {
        err += text;
      },
      isTerminal: false,
      env: () => undefined,
      signal,
      workerUrl: new URL("../../load/worker_entry.ts", import.meta.url),
    },
    stdout: () => out,
    stderr: () => err,
  };
}
