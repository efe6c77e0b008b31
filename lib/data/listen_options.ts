/**
 * What `listen()` takes and gives (`listener.ts`): its options, the settings a reload
 * may change in place, the events it reports, and the running listener.
 *
 * @module
 */
import type { ClientSettings, LimitsSettings, TlsSettings } from "../config/settings.ts";
import type { SharedCounter } from "../core/shared_state.ts";
import type { Clock } from "../shared/clock.ts";
import type { TlsCertificate } from "../shared/tls_certificate.ts";
import type { RawUpgrades } from "./upgrade_tunnel.ts";

/** Something that happened on the listener, for logs and metrics. */
export type ListenerEvent =
  /** `accept()` failed; `isFdExhausted` when the process or system ran out of descriptors. */
  | { readonly kind: "accept-error"; readonly isFdExhausted: boolean; readonly error: unknown }
  /** A client connection was closed for want of a complete request head (or handshake) in time. */
  | { readonly kind: "timeout"; readonly timeout: "header" | "keepalive" | "handshake" }
  /** A TLS handshake failed (an old protocol version, no shared cipher, not TLS). */
  | { readonly kind: "handshake-failed"; readonly error: unknown }
  /** A client connection broke with an HTTP error (bad framing, reset). */
  | { readonly kind: "connection-error"; readonly error: unknown }
  /** A client connection beyond `maxConnections` was answered 503 and closed. */
  | { readonly kind: "connection-refused"; readonly limit: number }
  /** WebSocket upgrades cannot be tunnelled here (no FFI, not Linux): they are answered 501. */
  | { readonly kind: "websocket-unavailable"; readonly detail: string }
  /** Serving without per-connection control (see the module docs). */
  | { readonly kind: "degraded"; readonly detail: string };

/** A request handler, as `Deno.serve` takes it. */
export type RequestHandler = (
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

/** TLS for `listen()`. */
export interface ListenTlsOptions {
  /** The certificates, the default first (`shared/tls_certificate.ts`); not empty. */
  readonly certificates: readonly TlsCertificate[];
}

/** Options for `listen()`. */
export interface ListenOptions {
  /** The address to bind. */
  readonly hostname: string;
  /** The port to bind; 0 picks a free one. */
  readonly port: number;
  /**
   * Bind with SO_REUSEPORT so several isolates share the address and the kernel spreads
   * connections over them (needs `--unstable-net`). Default: false.
   */
  readonly reusePort?: boolean;
  /** The connection timeouts and limit, as `settings.ts` declares them. */
  readonly settings: ConnectionSettings;
  /** Called for each {@linkcode ListenerEvent}; must not throw. Default: ignore them. */
  readonly onEvent?: (event: ListenerEvent) => void;
  /** Answers an error that escaped the handler. Default: a plain 500. */
  readonly onError?: (error: unknown) => Response;
  /** Runs the timeouts and the accept back-off. Default: the system clock. */
  readonly clock?: Clock;
  /**
   * Counts the client connections open over every isolate of the balancer (shared memory), so
   * `limits.maxConnections` is the whole balancer's limit. Default: this listener's own count.
   */
  readonly openConnections?: SharedCounter;
  /**
   * Requests whose connection is closed once their response has been sent (a refusal that
   * left the request body unread, which Deno would otherwise wait for). Default: none.
   */
  readonly closeAfterResponse?: WeakSet<Request>;
  /**
   * Requests whose connection is closed a little after their response has been sent (an answer
   * given while the client was still uploading; see `client_connection.ts`): meanwhile nothing more is
   * read from it as a request. Default: none.
   */
  readonly lingerAfterResponse?: WeakSet<Request>;
  /**
   * Tell WebSocket handshakes apart and hand them to the handler registered here, for a tunnel
   * (see the module docs). When this process cannot peek (not Linux, no `--allow-ffi`), the
   * registry says why and upgrades are answered 501. Default: none, every connection goes to
   * Deno's per-connection server.
   */
  readonly rawUpgrades?: RawUpgrades;
  /**
   * Receives every request that came over HTTP/2 (for the access log; absent means HTTP/1.x).
   * Default: none.
   */
  readonly http2Requests?: WeakSet<Request>;
  /** Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with these certificates. Default: plain HTTP. */
  readonly tls?: ListenTlsOptions;
}

/** A listener that is accepting connections. */
export interface Listener {
  /** The bound address. */
  readonly addr: Deno.NetAddr;
  /** Client connections currently open. */
  readonly connectionCount: number;
  /**
   * Stops accepting, closes idle connections and lets each open request finish, then resolves.
   * Idempotent.
   */
  shutdown(): Promise<void>;
  /** Closes every connection at once, mid-request or not. */
  close(): void;
  /**
   * Applies new connection timeouts and connection limit without binding anew (a reload):
   * connections accepted from now on, and deadlines set from now on, use them. The plain
   * `Deno.serve` mode has neither, so there it does nothing.
   *
   * @param settings The new timeouts and limit.
   */
  reconfigure(settings: ConnectionSettings): void;
  /**
   * The half of a certificate change that can fail: binds a TLS socket with the new
   * certificates beside the serving one (SO_REUSEPORT). `commit()` serves new connections from
   * it and closes the old socket (its open connections carry on); `abort()` closes the new one.
   *
   * @param certificates The new certificates, the default first.
   * @returns The change, to commit or abort.
   * @throws {Error} On a plain-HTTP listener, without SO_REUSEPORT, or when binding fails.
   */
  prepareCertificates(certificates: readonly TlsCertificate[]): {
    commit(): void;
    abort(): void;
  };
}

/**
 * What a reload may change on a listener without binding anew, as `settings.ts` declares it:
 * `client.headerTimeoutMs` (from accepting a connection to its first complete request head),
 * `client.keepAliveTimeoutMs` (a kept-alive connection's wait for its next request head; 0
 * closes each connection after its response), `limits.maxConnections` (one more is answered
 * 503 and closed, `connection_limit.ts`; 0 is no limit) and `tls.handshakeTimeoutMs`. A
 * `BalancerConfig` is one.
 */
export interface ConnectionSettings {
  /** The client connection timeouts. */
  readonly client: Pick<ClientSettings, "headerTimeoutMs" | "keepAliveTimeoutMs">;
  /** The connection limit. */
  readonly limits: Pick<LimitsSettings, "maxConnections">;
  /** The TLS handshake timeout (read only when serving TLS). */
  readonly tls: Pick<TlsSettings, "handshakeTimeoutMs">;
}
