/**
 * The balancer's listener: its own accept loop over `Deno.listen` (`accept_loop.ts`), with each
 * connection served by the HTTP server `Deno.serve` is built on (`serveHttpOnConnection`, one
 * per connection). Its options and events are `listen_options.ts`; the connection deadlines
 * `client_connection.ts`; the WebSocket handshake sniffing `connection_sniffer.ts`; the
 * degraded `Deno.serve` mode `fallback_listener.ts`.
 *
 * `Deno.serve` alone hides connections from the program, so it cannot do what a proxy facing
 * the internet must:
 * - survive running out of file descriptors: its native accept loop rejects `finished` with
 *   `Too many open files` and stops serving for good, and the unhandled rejection ends the
 *   process. Here a failed `accept()` is reported, waited out with a growing pause (50 ms up to
 *   1 s) and retried: serving resumes by itself when descriptors free up, and connections the
 *   kernel queued meanwhile are still accepted (nginx does the same);
 * - cut slow clients: a connection must deliver its first complete request head within the
 *   header timeout, and a kept-alive connection its next one within the keep-alive timeout,
 *   or it is closed (nginx's `client_header_timeout` and `keepalive_timeout`, HAProxy's
 *   `timeout http-request` and `timeout http-keep-alive`);
 * - report a connection that broke on bad framing (an invalid chunk size), which `Deno.serve`
 *   closes without a response or a word.
 *
 * WebSocket (`rawUpgrades`): Deno 2.9.6 closes a socket upgraded (`Deno.upgradeWebSocket`) on a
 * per-connection server as soon as the server hands the connection over, so the listener tells
 * handshakes apart before Deno's server sees a connection. It looks at the first bytes without
 * taking them (`socket_peek.ts`: `recv(MSG_PEEK)` through FFI, Linux with `--allow-ffi`); a
 * connection whose first request is a WebSocket handshake (`GET`, HTTP/1.1, `Upgrade:
 * websocket`, strictly parsed by `shared/request_head.ts`) has its head read here and goes to the
 * handler as a `Request` registered in {@linkcode RawUpgrades}, whose WebSocket path tunnels the
 * connection (`upgrade_tunnel.ts`); every other connection goes to Deno's server with its bytes
 * untouched. Either way the header timeout runs from the accept, and the connection counts
 * toward `limits.maxConnections` until it closes, tunnel included. Without FFI the listener keeps its
 * protections and reports `websocket-unavailable`: upgrades are answered 501 naming why.
 * Over TLS there is no such look (the bytes are ciphertext), so an HTTP/1.1 connection (ALPN
 * `http/1.1` or none) has its first request head read by the listener from the decrypted
 * `TlsConn` (`tls_sniffer.ts`, same parser, same header timeout, no FFI needed): a handshake
 * goes on as above (the bytes read replayed, `replay_conn.ts`); anything else reaches Deno's
 * server through a per-listener local pipe (`local_pipe.ts`: Deno's server takes only a native
 * connection, a JS wrapper is refused with `TypeError: expected i32`), the handler still seeing
 * the client's address and an `https://` URL. An `h2` connection goes to Deno's server directly
 * (browsers open HTTP/1.1 for a WebSocket; Deno offers no RFC 8441). Measured with `wrk -c20`
 * and `-c50` over TLS (one isolate, 2 shared cores): the pipe costs HTTP/1.1 13 to 24% of its
 * requests per second against `--websocket off`, which serves TLS HTTP/1.1 directly as before.
 *
 * `serveHttpOnConnection` is internal to Deno (`Deno[Deno.internal]`); Deno 2.9.6 is pinned and
 * a test fails if it goes away. Without it the listener falls back to plain `Deno.serve` and
 * reports `degraded` once: no connection timeouts, and a failed accept loop is restarted.
 *
 * With `tls`, the socket is `Deno.listenTls` offering ALPN `h2` and `http/1.1` (rustls: TLS 1.2
 * and 1.3 only), and the same per-connection server speaks whichever the client chose. Each
 * connection must finish its handshake within the handshake timeout before the header timeout
 * starts. The certificate is chosen per handshake by SNI through Deno's internal resolver
 * (`Symbol.for("unstableSniResolver")`); Deno caches its answer per server name for the
 * socket's life, so new certificates take a new socket: {@linkcode Listener.prepareCertificates}
 * binds one beside the old (SO_REUSEPORT) and the old one is closed, its open connections kept.
 *
 * @module
 */

import { AcceptLoop, findServeOnConnection } from "./accept_loop.ts";
import { fallbackListen } from "./fallback_listener.ts";
import type { Listener, ListenOptions, RequestHandler } from "./listen_options.ts";

/**
 * Binds `hostname:port` and serves `handler` on every connection until shut down.
 *
 * @param options Address, connection settings, event sink and clock.
 * @param handler Answers each request.
 * @returns The listener, already accepting.
 * @throws {Deno.errors.AddrInUse} And the other errors of `Deno.listen` when binding fails.
 */
export function listen(options: ListenOptions, handler: RequestHandler): Listener {
  const serveOnConnection = findServeOnConnection();
  if (serveOnConnection !== undefined) return new AcceptLoop(options, handler, serveOnConnection);
  const onEvent = options.onEvent ?? (() => {});
  onEvent({
    kind: "degraded",
    detail: "Deno.serve has no per-connection server: serving without connection timeouts",
  });
  return fallbackListen(options, handler, onEvent, options.onError ?? defaultOnError);
}

function defaultOnError(): Response {
  return new Response("Internal error\n", { status: 500 });
}
