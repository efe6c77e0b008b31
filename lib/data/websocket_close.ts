/**
 * How close codes cross the WebSocket relay (RFC 6455 section 7.4). Toward the client (a
 * server-side socket) every code a peer may send passes; toward the backend, Deno's client-side
 * socket may only send 1000 and 3000-4999.
 *
 * @module
 */

/**
 * The close a backend's close becomes toward the client: the same code when a peer may send
 * it, 1011 for a backend that vanished (1006) or sent nothing valid, no code for 1005.
 *
 * @param code The backend side's close code.
 * @param reason Its reason.
 * @returns The code (`undefined`: none) and reason for the client.
 *
 * @example
 * ```ts
 * import { toClientClose } from "./websocket_close.ts";
 * if (toClientClose(1006, "")[0] !== 1011 || toClientClose(4001, "x")[0] !== 4001) throw new Error();
 * ```
 */
export function toClientClose(
  code: number,
  reason: string,
): [code: number | undefined, reason: string] {
  if (code === 1005) return [undefined, ""];
  if (isSendable(code)) return [code, reason];
  return [1011, "Backend connection lost"];
}

/**
 * The close a client's close becomes toward the backend. Deno's client side may only send
 * 1000 or 3000-4999: those pass; 1005 passes as no code; any other becomes 1000 with a reason
 * naming it.
 *
 * @param code The client side's close code.
 * @param reason Its reason.
 * @returns The code (`undefined`: none) and reason for the backend.
 *
 * @example
 * ```ts
 * import { toBackendClose } from "./websocket_close.ts";
 * if (toBackendClose(4002, "y")[0] !== 4002 || toBackendClose(1001, "")[1] !== "client closed with 1001") throw new Error();
 * ```
 */
export function toBackendClose(
  code: number,
  reason: string,
): [code: number | undefined, reason: string] {
  if (code === 1005) return [undefined, ""];
  if (code === 1000 || (code >= 3000 && code <= 4999)) return [code, reason];
  return [1000, reason === "" ? `client closed with ${code}` : reason];
}

/** Codes a peer may put in a close frame (RFC 6455 section 7.4). */
function isSendable(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/**
 * Closes a socket that may be closing or closed already; a code the socket may not send falls
 * back to a close without one. Never throws.
 *
 * @param socket The socket.
 * @param code The close code, or `undefined` for none.
 * @param reason The close reason.
 */
export function closeQuietly(socket: WebSocket, code: number | undefined, reason: string): void {
  if (socket.readyState === WebSocket.CLOSING || socket.readyState === WebSocket.CLOSED) return;
  try {
    if (code === undefined) socket.close();
    else socket.close(code, reason);
  } catch {
    try {
      socket.close();
    } catch {
      // Already closed.
    }
  }
}
