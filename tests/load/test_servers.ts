/**
 * Servers on port 0 for transport tests: `Deno.serve` for ordinary responses and a raw
 * `Deno.listen` server for the edge cases a well-behaved server never produces.
 *
 * @module
 */
const encoder = new TextEncoder();

/** A `Deno.serve` server that remembers the client ports it saw (one per connection). */
export interface TestServer extends AsyncDisposable {
  readonly url: URL;
  readonly clientPorts: Set<number>;
}

/**
 * Starts `Deno.serve` on 127.0.0.1 port 0; its URL has a path and a query.
 *
 * @param handler Answers each request.
 * @returns The server; `await using` shuts it down.
 */
export function serve(handler: (request: Request) => Response | Promise<Response>): TestServer {
  const clientPorts = new Set<number>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request, info) => {
      clientPorts.add(info.remoteAddr.port);
      return handler(request);
    },
  );
  return {
    url: new URL(`http://127.0.0.1:${server.addr.port}/path?query=1`),
    clientPorts,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A raw TCP server running `handle` on every accepted connection. */
export interface RawServer extends AsyncDisposable {
  readonly url: URL;
  /** How many connections were accepted. */
  readonly connectionCount: () => number;
}

/**
 * Starts a raw TCP server on 127.0.0.1 port 0. Each connection is closed when its handler ends
 * (handler errors are ignored: peers resetting is part of the cases tested).
 *
 * @param handle Serves one connection; `index` counts connections from 0.
 * @returns The server; `await using` closes it and every connection, and awaits the handlers.
 */
export function serveRaw(handle: (conn: Deno.Conn, index: number) => Promise<void>): RawServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const handlers: Promise<void>[] = [];
  let count = 0;
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      const index = count++;
      handlers.push(
        handle(conn, index).catch(() => {}).finally(() => {
          conns.delete(conn);
          closeQuietly(conn);
        }),
      );
    }
  })().catch(() => {});
  return {
    url: new URL(`http://127.0.0.1:${listener.addr.port}/raw`),
    connectionCount: () => count,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) closeQuietly(conn);
      await accepting;
      await Promise.all(handlers);
    },
  };
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed by the handler.
  }
}

/**
 * Reads one request from `conn`: its head and `bodyBytes` after it.
 *
 * @returns The bytes read, or null when the peer closed first.
 */
export async function readRequest(conn: Deno.Conn, bodyBytes = 0): Promise<Uint8Array | null> {
  const chunks: number[] = [];
  const buffer = new Uint8Array(4096);
  for (;;) {
    const headEnd = indexOfHeadEnd(chunks);
    if (headEnd >= 0 && chunks.length >= headEnd + bodyBytes) return Uint8Array.from(chunks);
    const read = await conn.read(buffer);
    if (read === null) return null;
    chunks.push(...buffer.subarray(0, read));
  }
}

function indexOfHeadEnd(bytes: readonly number[]): number {
  for (let at = 3; at < bytes.length; at++) {
    if (bytes[at - 3] === 13 && bytes[at - 2] === 10 && bytes[at - 1] === 13 && bytes[at] === 10) {
      return at + 1;
    }
  }
  return -1;
}

/** Writes all of `text` to `conn`. */
export async function writeText(conn: Deno.Conn, text: string): Promise<void> {
  const bytes = encoder.encode(text);
  for (let written = 0; written < bytes.length;) {
    written += await conn.write(bytes.subarray(written));
  }
}

/** Resolves when the peer closes `conn`, discarding what it sends. */
export async function untilClosed(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(1024);
  try {
    while (await conn.read(buffer) !== null) { /* discard */ }
  } catch {
    // A reset is a close too.
  }
}
