/**
 * `--acme-https`: HTTPS with the ACME certificate, in front of the proxy port. Each TLS
 * connection is terminated here and its bytes are relayed to the proxy port over loopback, so
 * the request path (limits, timeouts, logs) is the proxy port's own; the price is that backends
 * see the client as 127.0.0.1 and the scheme as `http`. A new certificate list applies to new
 * connections: the listener is bound anew on the same port, and open connections carry on.
 * Deno's `listenTls` takes one certificate, so the first of the list is served to every name.
 *
 * No TLS handshake timeout: in Deno 2.9.6 closing an accepted `TlsConn` whose handshake has not
 * completed leaves its TCP socket open (a silent client's read was still pending 8 s after the
 * server's `close()`), so a timer could not cut a client that never speaks anyway. A silent
 * client holds one socket here, and no connection to the proxy port: the relay starts after the
 * handshake.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { CertificatePair } from "./certificate_store.ts";

/** A TLS listener relaying to the proxy port. */
export class TlsFront {
  readonly #hostname: string;
  readonly #port: number;
  readonly #target: () => Deno.NetAddr | undefined;
  readonly #logger: Logger;
  readonly #connections = new Set<Deno.Conn>();
  readonly #relays = new Set<Promise<void>>();
  #listener: Deno.TlsListener | undefined;
  #accepting: Promise<void> | undefined;
  #isClosed = false;

  /**
   * Prepares the listener; it binds with the first certificate list.
   *
   * @param address Where to listen; the port is already checked free (port 0 resolved).
   * @param target The proxy port to relay to, read at each connection.
   * @param logger Records binds and failures.
   */
  constructor(
    address: { readonly hostname: string; readonly port: number },
    target: () => Deno.NetAddr | undefined,
    logger: Logger,
  ) {
    this.#hostname = address.hostname;
    this.#port = address.port;
    this.#target = target;
    this.#logger = logger;
  }

  /** Where it listens, once it has a certificate (the port stays when it changes). */
  get addr(): Deno.NetAddr | undefined {
    return this.#listener?.addr;
  }

  /**
   * Serves new connections with the first certificate of `certificates`. Never throws: a
   * failure to bind is logged, and the previous listener, if any, is gone.
   *
   * @param certificates The list (the first one is served).
   */
  setCertificates(certificates: readonly CertificatePair[]): void {
    const first = certificates[0];
    if (this.#isClosed || first === undefined) return;
    // The port is ours: the old socket closes first, and frees the port only once its accept
    // loop has ended, so the bind waits for that (connections in between are refused).
    this.#listener?.close();
    this.#listener = undefined;
    this.#accepting = (this.#accepting ?? Promise.resolve()).then(() => this.#serve(first));
  }

  async #serve(certificate: CertificatePair): Promise<void> {
    if (this.#isClosed) return;
    let listener: Deno.TlsListener;
    try {
      listener = Deno.listenTls({
        hostname: this.#hostname,
        port: this.#port,
        cert: certificate.certPem,
        key: certificate.keyPem,
        alpnProtocols: ["http/1.1"],
      });
    } catch (error) {
      this.#logger.error("Cannot serve HTTPS with the new certificate", {
        address: `${this.#hostname}:${this.#port}`,
        error: error instanceof Error ? error.message : String(error),
      });
      return;
    }
    this.#listener = listener;
    this.#logger.info("HTTPS listening", {
      url: `https://${this.#hostname}:${listener.addr.port}/`,
      names: certificate.names ?? [],
    });
    await this.#accept(listener);
  }

  /** Stops listening and cuts the open connections. Idempotent. */
  async close(): Promise<void> {
    this.#isClosed = true;
    this.#listener?.close();
    this.#listener = undefined;
    for (const connection of this.#connections) tryClose(connection);
    await this.#accepting;
    await Promise.all(this.#relays);
  }

  async #accept(listener: Deno.TlsListener): Promise<void> {
    try {
      for await (const connection of listener) {
        const relay = this.#relay(connection);
        this.#relays.add(relay);
        void relay.finally(() => this.#relays.delete(relay));
      }
    } catch {
      // Closed for a new certificate, or for good.
    }
  }

  async #relay(client: Deno.TlsConn): Promise<void> {
    this.#connections.add(client);
    let upstream: Deno.TcpConn | undefined;
    try {
      await client.handshake();
      const target = this.#target();
      if (target === undefined) return;
      upstream = await Deno.connect({ hostname: target.hostname, port: target.port });
      this.#connections.add(upstream);
      await Promise.all([
        client.readable.pipeTo(upstream.writable).catch(() => {}),
        upstream.readable.pipeTo(client.writable).catch(() => {}),
      ]);
    } catch {
      // A failed handshake or a refused relay: the client's connection just closes.
    } finally {
      this.#connections.delete(client);
      tryClose(client);
      if (upstream !== undefined) {
        this.#connections.delete(upstream);
        tryClose(upstream);
      }
    }
  }
}

function tryClose(connection: Deno.Conn): void {
  try {
    connection.close();
  } catch {
    // Already closed (pipeTo closes what it finished writing).
  }
}
