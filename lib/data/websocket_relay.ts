/**
 * The relay of one client-backend WebSocket pair, and the registry of open pairs.
 *
 * Messages are passed whole in both directions; backend messages that arrive before the client
 * side has opened are held and sent, in order, when it opens. A close on either side closes the
 * other, with the code mapped by `websocket_close.ts`.
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

/**
 * Relays messages and closes between an upgraded client socket and an open backend socket.
 *
 * @param client The client side (from `Deno.upgradeWebSocket`; it may not be open yet).
 * @param upstream The backend side, open.
 * @param onClosed Called once, when the first side closes, with that side and its close code.
 * @returns The pair, to close both sides at once.
 */
export function relayWebSocket(
  client: WebSocket,
  upstream: WebSocket,
  onClosed: (closedBy: "client" | "backend", code: number) => void,
): Relay {
  client.binaryType = "arraybuffer";
  upstream.binaryType = "arraybuffer";
  // Backend messages that arrive before the client side is open wait here.
  let early: Array<string | ArrayBuffer> | undefined = [];
  let isFinished = false;
  const finish = (closedBy: "client" | "backend", code: number) => {
    if (isFinished) return;
    isFinished = true;
    onClosed(closedBy, code);
  };
  upstream.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
    if (early !== undefined) early.push(event.data);
    else if (client.readyState === WebSocket.OPEN) client.send(event.data);
  };
  client.onopen = () => {
    const queued = early ?? [];
    early = undefined;
    for (const data of queued) client.send(data);
  };
  client.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
    if (upstream.readyState === WebSocket.OPEN) upstream.send(event.data);
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
