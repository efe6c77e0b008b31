/**
 * Reads a TLS connection's first request head, so that the listener can tell a WebSocket
 * handshake from any other request over TLS. A plain connection is looked at without taking its
 * bytes (`recv(MSG_PEEK)`, `socket_peek.ts`); a TLS one shows only ciphertext, so its decrypted
 * bytes are read here and handed on with the connection: to the tunnel (`replay_conn.ts`) or,
 * written first, to Deno's server through a local pipe (`local_pipe.ts`).
 *
 * Reading stops as soon as the bytes cannot be a handshake (the parser the plain path uses,
 * `shared/request_head.ts`): anything but `GET ` after four bytes, an invalid head, or a head
 * longer than {@linkcode MAX_HEAD_BYTES} (Deno's server then answers it as it would). The header
 * timeout bounds the wait: it aborts `signal`, which closes the connection.
 *
 * @module
 */
import { MAX_HEAD_BYTES } from "../shared/http1_parser.ts";
import {
  canBeHandshake,
  isWebSocketHandshake,
  parseRequestHead,
  type RequestHead,
} from "../shared/request_head.ts";

/** What a connection's first bytes turned out to be. */
export type FirstBytes =
  /** A WebSocket handshake: its head, and every byte read (the head, then any early frames). */
  | { readonly kind: "handshake"; readonly head: RequestHead; readonly bytes: Uint8Array }
  /** Anything else (not empty: the client sent something). */
  | { readonly kind: "other"; readonly bytes: Uint8Array }
  /** The connection ended, failed or was aborted before saying anything useful. */
  | { readonly kind: "closed" };

/** The first read's buffer: one TLS record holds at most 16 KiB of plaintext. */
const FIRST_READ_BYTES = 16_384;

/**
 * Reads from `conn` until its first bytes show whether they are a WebSocket handshake. Never
 * throws. The connection is closed only when `signal` aborts during the read.
 *
 * @param conn The client connection, its TLS handshake done.
 * @param signal Aborted by the header timeout or a shutdown: the connection is closed.
 * @returns The handshake, other bytes, or `closed`.
 */
export async function readFirstBytes(conn: Deno.Conn, signal: AbortSignal): Promise<FirstBytes> {
  if (signal.aborted) return closeOn(conn);
  const onAbort = () => closeQuietly(conn);
  signal.addEventListener("abort", onAbort, { once: true });
  let buffer = new Uint8Array(FIRST_READ_BYTES);
  let end = 0;
  try {
    for (;;) {
      if (end === buffer.length) {
        const grown = new Uint8Array(Math.min(buffer.length * 2, MAX_HEAD_BYTES));
        grown.set(buffer);
        buffer = grown;
      }
      const n = await conn.read(buffer.subarray(end));
      if (signal.aborted) return { kind: "closed" };
      if (n === null) return end === 0 ? { kind: "closed" } : other(buffer, end);
      end += n;
      if (!canBeHandshake(buffer, end)) return other(buffer, end);
      if (end < 4) continue;
      const parsed = parseRequestHead(buffer, end);
      if (parsed.ok) {
        if (!isWebSocketHandshake(parsed.head)) return other(buffer, end);
        return { kind: "handshake", head: parsed.head, bytes: buffer.subarray(0, end) };
      }
      if (parsed.reason === "invalid" || end >= MAX_HEAD_BYTES) return other(buffer, end);
    }
  } catch {
    closeQuietly(conn);
    return { kind: "closed" };
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

function other(buffer: Uint8Array, end: number): FirstBytes {
  return { kind: "other", bytes: buffer.subarray(0, end) };
}

function closeOn(conn: Deno.Conn): FirstBytes {
  closeQuietly(conn);
  return { kind: "closed" };
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
