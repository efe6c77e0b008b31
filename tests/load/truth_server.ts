/**
 * A keep-alive HTTP/1.1 server on 127.0.0.1 port 0 whose own counts are the truth the load
 * tester's figures are checked against: requests received, resets and closes sent, and the
 * time it held each request (server-side latency).
 *
 * @module
 */
import { readRequest, writeText } from "./test_servers.ts";

/**
 * What the server does with its n-th request (from 1, counted across connections):
 * answer 200 (after `delayMs`, default 0), answer with another status, reset the connection
 * (RST: it closes with the rest of the request unread), close it without answering, or never
 * answer.
 */
export type TruthAction =
  | { readonly kind: "answer"; readonly status?: number; readonly delayMs?: number }
  | { readonly kind: "reset" }
  | { readonly kind: "close" }
  | { readonly kind: "hang" };

/** The server and its counts. */
export interface TruthServer extends AsyncDisposable {
  /** Its URL. */
  readonly url: URL;
  /** Requests whose first byte arrived. */
  readonly received: () => number;
  /** Connections reset after a request arrived (`reset`). */
  readonly resets: () => number;
  /** Connections closed with a request unanswered (`close`). */
  readonly closes: () => number;
  /** Connections accepted. */
  readonly connections: () => number;
  /** Milliseconds from each answered request's arrival to its response, in answer order. */
  readonly heldMs: () => readonly number[];
}

/** Options of {@linkcode startTruthServer}. */
export interface TruthServerOptions {
  /**
   * Closes each connection right after its response, without saying so (no `Connection:
   * close`), as a server whose keep-alive timeout ran out does. Default: false.
   */
  readonly closeAfterResponse?: boolean;
}

const ANSWER: TruthAction = { kind: "answer" };

/**
 * Starts the server.
 *
 * @param action What to do with the n-th request. Default: answer 200 at once.
 * @param options Closing after each response.
 * @returns The server; `await using` closes it and every connection.
 */
export function startTruthServer(
  action: (n: number) => TruthAction = () => ANSWER,
  options: TruthServerOptions = {},
): TruthServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const handlers: Promise<void>[] = [];
  const held: number[] = [];
  let received = 0;
  let resets = 0;
  let closes = 0;
  let connections = 0;
  const timers = new Set<ReturnType<typeof setTimeout>>();

  const serveConnection = async (conn: Deno.Conn): Promise<void> => {
    const first = new Uint8Array(1);
    for (;;) {
      // One byte first: the request has arrived, and a reset can leave the rest unread.
      const count = await conn.read(first).catch(() => null);
      if (count === null) return;
      const arrivedMs = performance.now();
      const n = ++received;
      const todo = action(n);
      if (todo.kind === "reset") {
        resets++;
        return; // the caller closes the connection with the request's rest unread: RST
      }
      if (await readRequest(conn) === null) return;
      if (todo.kind === "close") {
        closes++;
        return;
      }
      if (todo.kind === "hang") {
        await untilClosed(conn);
        return;
      }
      if ((todo.delayMs ?? 0) > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            timers.delete(timer);
            resolve();
          }, todo.delayMs);
          timers.add(timer);
        });
      }
      const status = todo.status ?? 200;
      await writeText(conn, `HTTP/1.1 ${status} X\r\nContent-Length: 2\r\n\r\nok`);
      held.push(performance.now() - arrivedMs);
      if (options.closeAfterResponse === true) return;
    }
  };

  const accepting = (async () => {
    for await (const conn of listener) {
      connections++;
      conns.add(conn);
      handlers.push(
        serveConnection(conn).catch(() => {}).finally(() => {
          conns.delete(conn);
          close(conn);
        }),
      );
    }
  })().catch(() => {});

  return {
    url: new URL(`http://127.0.0.1:${listener.addr.port}/truth`),
    received: () => received,
    resets: () => resets,
    closes: () => closes,
    connections: () => connections,
    heldMs: () => held,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const timer of timers) clearTimeout(timer);
      for (const conn of conns) close(conn);
      await accepting;
      await Promise.all(handlers);
    },
  };
}

function close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

async function untilClosed(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(1024);
  try {
    while (await conn.read(buffer) !== null) { /* discard */ }
  } catch {
    // Closed by the server's teardown.
  }
}
