/**
 * Turning away a client connection beyond `--max-connections`: it is accepted, answered a raw
 * `503` with `Connection: close`, and closed, in bounded time and without HTTP machinery.
 *
 * Closing a socket whose peer's request is still unread makes the kernel send a reset, which
 * can destroy the answer before the client reads it. So after the answer the write side is
 * shut (FIN) and what the client sends is read and dropped until it closes too or the linger
 * time runs out (nginx's lingering close). How many connections may linger at once is bounded;
 * past that they are closed right after the answer.
 *
 * @module
 */
import { type Deadline, DeadlineQueue } from "../shared/deadlines.ts";
import { type Clock, systemClock } from "../shared/clock.ts";

// Not settings: how a refusal is delivered, which no operator has a reason to tune.
/** The longest a refused connection is kept, answer and lingering included, in ms. */
const REFUSED_LINGER_MS = 2_000;
/** Refused connections kept lingering at once; more are closed after the answer. */
const MAX_LINGERING = 256;

/** The one-line body of the refusal. */
export const CONNECTION_LIMIT_BODY =
  "Service unavailable: the balancer is at its connection limit\n";

const ANSWER = new TextEncoder().encode(
  "HTTP/1.1 503 Service Unavailable\r\n" +
    "content-type: text/plain; charset=utf-8\r\n" +
    `content-length: ${CONNECTION_LIMIT_BODY.length}\r\n` +
    "retry-after: 1\r\n" +
    "connection: close\r\n\r\n" +
    CONNECTION_LIMIT_BODY,
);

/** Options for {@linkcode ConnectionRefuser}. */
export interface ConnectionRefuserOptions {
  /** Runs the linger deadlines. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
}

/** Answers and closes connections beyond the limit. */
export class ConnectionRefuser {
  readonly #lingerMs: number;
  readonly #maxLingering: number;
  readonly #clock: Clock;
  readonly #deadlines: DeadlineQueue;
  readonly #open = new Set<Deno.Conn>();

  /** @param options The clock. */
  constructor(options: ConnectionRefuserOptions = {}) {
    this.#lingerMs = REFUSED_LINGER_MS;
    this.#maxLingering = MAX_LINGERING;
    this.#clock = options.clock ?? systemClock;
    this.#deadlines = new DeadlineQueue({ clock: this.#clock });
  }

  /** Refused connections not closed yet. */
  get openCount(): number {
    return this.#open.size;
  }

  /**
   * Answers `conn` 503 and closes it, within the linger time. Never throws.
   *
   * @param conn A connection just accepted.
   * @returns Resolves when the connection is closed.
   */
  async refuse(conn: Deno.Conn): Promise<void> {
    const isLingering = this.#open.size < this.#maxLingering;
    this.#open.add(conn);
    const deadline: Deadline = this.#deadlines.add(
      this.#clock.now() + this.#lingerMs,
      closeQuietly,
      conn,
    );
    try {
      await conn.write(ANSWER);
      if (isLingering) {
        await conn.closeWrite();
        const scratch = new Uint8Array(4096);
        while (await conn.read(scratch) !== null) {
          // The client's request, dropped.
        }
      }
    } catch {
      // Reset by the client, or closed by the deadline.
    } finally {
      this.#deadlines.cancel(deadline);
      this.#open.delete(conn);
      closeQuietly(conn);
    }
  }

  /** Closes every refused connection still open. */
  close(): void {
    for (const conn of this.#open) closeQuietly(conn);
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
