/**
 * A raw TCP backend driven by a script per connection, for tests of the `http1` upstream that
 * need the backend to pause mid-response, send malformed bytes, or close at an exact moment.
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One accepted connection, read and written by the script. */
export class ScriptedConn {
  readonly #conn: Deno.Conn;
  #pending = "";

  /** @param conn The accepted socket. */
  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /**
   * Reads until `marker` has arrived and returns everything up to and including it; bytes
   * after it are kept for the next read. Returns what came when the peer closes first.
   */
  async readUntil(marker: string): Promise<string> {
    const buffer = new Uint8Array(65_536);
    for (;;) {
      const at = this.#pending.indexOf(marker);
      if (at >= 0) {
        const text = this.#pending.slice(0, at + marker.length);
        this.#pending = this.#pending.slice(at + marker.length);
        return text;
      }
      const n = await this.#conn.read(buffer);
      if (n === null) {
        const text = this.#pending;
        this.#pending = "";
        return text;
      }
      this.#pending += decoder.decode(buffer.subarray(0, n));
    }
  }

  /** Reads one request head (through the empty line). */
  readHead(): Promise<string> {
    return this.readUntil("\r\n\r\n");
  }

  /** Writes all of `data`. */
  async write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    let written = 0;
    while (written < bytes.length) written += await this.#conn.write(bytes.subarray(written));
  }

  /** Closes the socket; idempotent. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** A running scripted backend. */
export interface ScriptedBackend extends AsyncDisposable {
  /** `http://127.0.0.1:<port>/`. */
  readonly url: string;
  /** The port on 127.0.0.1. */
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Stops listening, closes every connection, waits for the scripts. Idempotent. */
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1, port 0, and runs `script` on each accepted connection (closing it
 * when the script returns or throws).
 *
 * @param script What to do with connection number `index` (from 0).
 * @returns The running backend.
 */
export function startScriptedBackend(
  script: (conn: ScriptedConn, index: number) => Promise<void>,
): ScriptedBackend {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<ScriptedConn>();
  const running = new Set<Promise<void>>();
  let accepted = 0;
  let closed: Promise<void> | undefined;
  const accepting = (async () => {
    try {
      for await (const socket of listener) {
        const conn = new ScriptedConn(socket);
        const index = accepted++;
        open.add(conn);
        const task = script(conn, index).catch(() => {}).finally(() => {
          open.delete(conn);
          conn.close();
        });
        running.add(task);
        task.finally(() => running.delete(task));
      }
    } catch {
      // The listener was closed.
    }
  })();
  const close = () =>
    closed ??= (async () => {
      listener.close();
      for (const conn of open) conn.close();
      await accepting;
      await Promise.all(running);
    })();
  const port = listener.addr.port;
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    get accepted() {
      return accepted;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
