/**
 * The relay of one client-backend WebSocket pair, and the registry of open pairs.
 *
 * Messages are passed whole in both directions; backend messages that arrive before the client
 * side has opened are held and sent, in order, when it opens. A close on either side closes the
 * other, with the code mapped by `websocket_close.ts`.
 *
 * WebSockets have no flow control in Deno: `send()` never blocks, and what a slow peer has not
 * read piles up in memory. So a side with more than `maxBufferedBytes` unsent closes the pair:
 * the client with 1008 (Policy Violation), the backend with 1000, both with a reason naming
 * the slow side.
 *
 * @module
 */
import { closeQuietly, toBackendClose, toClientClose } from "./websocket_close.ts";

/** One client-backend pair, as the registry sees it. */
export interface Relay {
  /** Closes both sides (the client with `code`). */
  close(code: number, reason: string): void;
}

/**
 * The open WebSocket relays of one data plane. It outlives reloads: sockets opened under an
 * old configuration stay open and stay here.
 */
export class OpenWebSockets {
  readonly #relays = new Set<Relay>();

  /** How many relays are open. */
  get size(): number {
    return this.#relays.size;
  }

  /** @internal Adds an open relay. */
  add(relay: Relay): void {
    this.#relays.add(relay);
  }

  /** @internal Forgets a closed relay. */
  delete(relay: Relay): void {
    this.#relays.delete(relay);
  }

  /**
   * Closes every open socket: the client side with `code` (1001 Going Away by default), the
   * backend side with 1000 (the only code below 3000 Deno's client may send).
   *
   * @param code The client's close code. Default: 1001.
   * @param reason The close reason. Default: `"Balancer shutting down"`.
   * @returns How many relays were closed.
   */
  closeAll(code = 1001, reason = "Balancer shutting down"): number {
    const relays = [...this.#relays];
    for (const relay of relays) relay.close(code, reason);
    return relays.length;
  }
}

/** The default for {@linkcode RelayOptions.maxBufferedBytes}: 16 MiB. */
export const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

/** Options for {@linkcode relayWebSocket}. */
export interface RelayOptions {
  /**
   * Called once, when the first side closes, with that side and its close code (1008 when the
   * relay closed a slow side).
   */
  readonly onClosed: (closedBy: "client" | "backend", code: number) => void;
  /** Bytes a side may have unsent before the pair is closed. Default: {@linkcode MAX_BUFFERED_BYTES}. */
  readonly maxBufferedBytes?: number;
}

/**
 * Relays messages and closes between an upgraded client socket and an open backend socket.
 *
 * @param client The client side (from `Deno.upgradeWebSocket`; it may not be open yet).
 * @param upstream The backend side, open.
 * @param options Where to report the close, and the buffer bound.
 * @returns The pair, to close both sides at once.
 */
export function relayWebSocket(
  client: WebSocket,
  upstream: WebSocket,
  options: RelayOptions,
): Relay {
  const maxBufferedBytes = options.maxBufferedBytes ?? MAX_BUFFERED_BYTES;
  client.binaryType = "arraybuffer";
  upstream.binaryType = "arraybuffer";
  // Backend messages that arrive before the client side is open wait here.
  let early: Array<string | ArrayBuffer> | undefined = [];
  let isFinished = false;
  const finish = (closedBy: "client" | "backend", code: number) => {
    if (isFinished) return;
    isFinished = true;
    options.onClosed(closedBy, code);
  };
  const send = (to: WebSocket, data: string | ArrayBuffer, side: "client" | "backend") => {
    to.send(data);
    if (to.bufferedAmount <= maxBufferedBytes) return;
    const reason = `${side} too slow: over ${maxBufferedBytes} bytes unsent`;
    closeQuietly(upstream, 1000, reason);
    closeQuietly(client, 1008, reason);
    finish(side, 1008);
  };
  upstream.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
    if (early !== undefined) early.push(event.data);
    else if (client.readyState === WebSocket.OPEN) send(client, event.data, "client");
  };
  client.onopen = () => {
    const queued = early ?? [];
    early = undefined;
    for (const data of queued) send(client, data, "client");
  };
  client.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
    if (upstream.readyState === WebSocket.OPEN) send(upstream, event.data, "backend");
  };
  client.onclose = (event: CloseEvent) => {
    const [code, reason] = toBackendClose(event.code, event.reason);
    closeQuietly(upstream, code, reason);
    finish("client", event.code);
  };
  upstream.onclose = (event: CloseEvent) => {
    const [code, reason] = toClientClose(event.code, event.reason);
    closeQuietly(client, code, reason);
    finish("backend", event.code);
  };
  // An error is followed by a close event, which does the work.
  client.onerror = () => {};
  upstream.onerror = () => {};
  return {
    close(code, reason) {
      closeQuietly(client, code, reason);
      closeQuietly(upstream, 1000, reason);
    },
  };
}
