/**
 * The running byte tunnel of one WebSocket: two pumps, client to backend and backend to client,
 * each reading a chunk and writing it whole before the next read (TCP's flow control, at most
 * one chunk held per direction).
 *
 * A drain ends a tunnel as Caddy (2.7+) ends a hijacked WebSocket on shutdown: with a close
 * frame, 1001 Going Away, to each side, so a browser reports 1001 rather than 1006 (connection
 * lost). nginx and HAProxy only close the TCP connections. Each pump feeds what it writes to a
 * {@linkcode FrameBoundary}, so the close frame goes between two frames and never inside one;
 * a direction stopped in the middle of a frame (or whose write is stuck on a peer that stopped
 * reading) is closed without one. The frame to the client is unmasked (a server's); the one to
 * the backend is masked with a random key (a client's, RFC 6455 section 5.3).
 *
 * @module
 */
import type { Clock } from "../shared/clock.ts";
import { type BackendTunnel, writeAll } from "./upgrade_tunnel.ts";
import { closeFrame, FrameBoundary } from "./websocket_frames.ts";

/** A running tunnel. */
export interface RunningTunnel {
  /** Resolves once both connections are closed, naming who ended it first. */
  readonly finished: Promise<"client" | "backend">;
  /** Closes both connections at once. */
  close(): void;
  /**
   * Ends the tunnel with a close frame to each side: stops forwarding, and for each direction,
   * once its write in flight is done and it is at a frame boundary, writes the frame, ends its
   * side of the connection and waits for the peer to end its own; a direction in the middle of
   * a frame is closed without one. Whatever is left after the grace is closed at once. Never
   * throws; a second call, or one after the tunnel ended, does nothing.
   *
   * @param code The close code. Default: 1001 (Going Away).
   * @param reason The close reason. Default: none.
   */
  closeGracefully(code?: number, reason?: string): void;
}

/** Options for {@linkcode runTunnel}. */
export interface TunnelOptions {
  /** Header fields for the client (request ID, the policy's), appended to the backend's head. */
  readonly added: ReadonlyArray<readonly [string, string]>;
  /** Runs the close grace. */
  readonly clock: Clock;
  /**
   * How long {@linkcode RunningTunnel.closeGracefully} waits for the close frames to be written
   * and the peers to end their sides, in milliseconds. Default: 1000.
   */
  readonly closeGraceMs?: number;
  /** Fills the backend close frame's mask key. Default: `crypto.getRandomValues`. */
  readonly fillRandom?: (bytes: Uint8Array) => void;
}

const CHUNK_BYTES = 65_536;
const DEFAULT_CLOSE_GRACE_MS = 1_000;
const encoder = new TextEncoder();

/** One direction: what it writes to, and how far through a frame that output is. */
class Direction {
  readonly boundary = new FrameBoundary();
  /** The write in flight, if any. */
  writing: Promise<void> | undefined;
  /** Resolves once this direction's pump has stopped reading its source. */
  readonly ended = Promise.withResolvers<void>();

  constructor(readonly from: Deno.Conn, readonly to: Deno.Conn) {}
}

/**
 * Joins the client and the backend: writes the backend's head to the client (with the `added`
 * fields before its blank line) and its early bytes, then copies bytes both ways until both
 * directions end. A direction that ends (EOF) half-closes the other side; an error on either
 * closes both.
 *
 * @param client The client connection, its handshake read.
 * @param backend The backend side, its `101` read.
 * @param options Added header fields, the clock and the close grace.
 * @returns The running tunnel.
 */
export function runTunnel(
  client: Deno.Conn,
  backend: BackendTunnel,
  options: TunnelOptions,
): RunningTunnel {
  const toBackend = new Direction(client, backend.conn);
  const toClient = new Direction(backend.conn, client);
  let firstEnd: "client" | "backend" | undefined;
  let isClosed = false;
  let isStopping = false;
  const close = () => {
    if (isClosed) return;
    isClosed = true;
    closeQuietly(client);
    closeQuietly(backend.conn);
  };
  const pump = async (direction: Direction, side: "client" | "backend") => {
    const { from, to, boundary } = direction;
    const buffer = new Uint8Array(CHUNK_BYTES);
    try {
      for (;;) {
        const n = await from.read(buffer);
        if (n === null) break;
        // Draining: what arrives now is read (so the peer's close reply and EOF are seen) but
        // no longer forwarded.
        if (isStopping) continue;
        boundary.feed(buffer, 0, n);
        direction.writing = writeAll(to, buffer.subarray(0, n));
        await direction.writing;
        direction.writing = undefined;
      }
      firstEnd ??= side;
      if (!isStopping) await to.closeWrite();
    } catch {
      firstEnd ??= side;
      if (!isStopping) close();
    } finally {
      direction.ended.resolve();
    }
  };
  /** Writes a direction's close frame when it may have one, then ends that connection. */
  const finish = async (direction: Direction, frame: Uint8Array) => {
    try {
      await direction.writing;
      if (!direction.boundary.isAtBoundary) return;
      await writeAll(direction.to, frame);
      await direction.to.closeWrite();
      // The peer answers with its own close frame and ends its side; reading it to the end
      // before closing keeps the kernel from resetting the connection over unread bytes,
      // which could drop the close frame just written.
      const reader = direction === toClient ? toBackend : toClient;
      await reader.ended.promise;
    } catch {
      // The peer went away: its connection closes below.
    } finally {
      closeQuietly(direction.to);
    }
  };
  let graceful: Promise<void> | undefined;
  const closeGracefully = (code = 1001, reason = "") => {
    if (isClosed || graceful !== undefined) return;
    isStopping = true;
    const maskKey = new Uint8Array(4);
    (options.fillRandom ?? ((bytes) => crypto.getRandomValues(bytes)))(maskKey);
    const timer = new AbortController();
    const grace = options.clock.sleep(options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS, timer.signal)
      .catch(() => {});
    const finishing = Promise.all([
      finish(toClient, closeFrame(code, reason)),
      finish(toBackend, closeFrame(code, reason, maskKey)),
    ]);
    graceful = Promise.race([finishing, grace]).then(() => {
      timer.abort();
      close();
    });
  };
  const start = async (): Promise<"client" | "backend"> => {
    toClient.boundary.feed(backend.early, 0, backend.early.length);
    // A drain this early waits for the head (and early frames) like any write in flight.
    toClient.writing = (async () => {
      await writeAll(client, withFields(backend.head, options.added));
      if (backend.early.length > 0) await writeAll(client, backend.early);
    })();
    try {
      await toClient.writing;
      toClient.writing = undefined;
    } catch {
      close();
      return "client";
    }
    await Promise.all([pump(toBackend, "client"), pump(toClient, "backend")]);
    // Draining: both sides may have ended before their close frames were through.
    await graceful;
    close();
    return firstEnd ?? "client";
  };
  return { finished: start(), close, closeGracefully };
}

/** The head with `added` fields inserted before its blank line. */
function withFields(head: Uint8Array, added: ReadonlyArray<readonly [string, string]>): Uint8Array {
  if (added.length === 0) return head;
  let text = "";
  for (const [name, value] of added) text += `${name}: ${value}\r\n`;
  const extra = encoder.encode(text);
  const out = new Uint8Array(head.length + extra.length);
  out.set(head.subarray(0, head.length - 2));
  out.set(extra, head.length - 2);
  out.set(head.subarray(head.length - 2), head.length - 2 + extra.length);
  return out;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
