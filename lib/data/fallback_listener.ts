/**
 * The degraded listener (see `listener.ts`): plain `Deno.serve`, used when this Deno has no
 * per-connection server. It has no connection timeouts or limit; a failed accept loop is
 * restarted after a growing pause.
 *
 * @module
 */
import { isFdExhaustion } from "../shared/fd_exhaustion.ts";
import { systemClock } from "../shared/clock.ts";
import { pickCertificate, type TlsCertificate } from "../shared/tls_certificate.ts";
import { ACCEPT_BACKOFF_MAX_MS, ACCEPT_BACKOFF_MIN_MS, SNI_RESOLVER } from "./accept_loop.ts";
import type {
  Listener,
  ListenerEvent,
  ListenOptions,
  ListenTlsOptions,
  RequestHandler,
} from "./listen_options.ts";

/**
 * Serves with plain `Deno.serve`, restarted when its accept loop fails: no connection timeouts
 * or limit, and certificates change only with a restart.
 *
 * @param options Address, TLS, clock.
 * @param handler Answers each request.
 * @param onEvent Told of accept failures.
 * @param onError Answers an error that escaped the handler.
 * @returns The listener, already accepting.
 */
export function fallbackListen(
  options: ListenOptions,
  handler: RequestHandler,
  onEvent: (event: ListenerEvent) => void,
  onError: (error: unknown) => Response,
): Listener {
  const clock = options.clock ?? systemClock;
  let isClosing = false;
  const http2Requests = options.http2Requests;
  if (options.tls !== undefined && http2Requests !== undefined) {
    // Deno's own server does not say which protocol a request came over. HTTP/2 sends no
    // `Host` (its `:authority` is in the URL), and HTTP/1.1 requires one: a request over TLS
    // without it is taken for HTTP/2 (an HTTP/1.1 one then gets its URL's authority, which
    // Deno fills from the SNI, instead of a 400).
    const inner = handler;
    handler = (request, info) => {
      if (!request.headers.has("host")) http2Requests.add(request);
      return inner(request, info);
    };
  }
  const start = (port: number): Deno.HttpServer<Deno.NetAddr> => {
    const server = Deno.serve(
      {
        hostname: options.hostname,
        port,
        onListen: noop,
        onError,
        ...(options.reusePort === true ? { reusePort: true } : {}),
        ...nativeTls(options.tls),
      },
      handler,
    );
    server.finished.catch(async (error) => {
      if (isClosing) return;
      onEvent({ kind: "accept-error", isFdExhausted: isFdExhaustion(error), error });
      for (let delay = ACCEPT_BACKOFF_MIN_MS; !isClosing;) {
        await clock.sleep(delay);
        try {
          current = start(port);
          return;
        } catch (retryError) {
          onEvent({ kind: "accept-error", isFdExhausted: isFdExhaustion(retryError), error });
          delay = Math.min(delay * 2, ACCEPT_BACKOFF_MAX_MS);
        }
      }
    });
    return server;
  };
  let current = start(options.port);
  const addr = current.addr;
  return {
    addr,
    connectionCount: 0,
    shutdown() {
      isClosing = true;
      return current.shutdown();
    },
    close() {
      isClosing = true;
      current.shutdown().catch(noop);
    },
    reconfigure() {
      // Deno's own server has no connection timeouts or limit to change.
    },
    prepareCertificates() {
      throw new Error(
        "Cannot change certificates of Deno's own server (--websocket on) without a restart",
      );
    },
  };
}

/** `Deno.serve`'s TLS options: the default certificate, and SNI as in {@linkcode bindSocket}. */
function nativeTls(tls: ListenTlsOptions | undefined): Record<string | symbol, unknown> {
  const first = tls?.certificates[0];
  if (tls === undefined || first === undefined) return {};
  const resolve = (serverName: string) => {
    const chosen = pickCertificate(tls.certificates, serverName) as TlsCertificate;
    return { cert: chosen.certPem, key: chosen.keyPem };
  };
  return { cert: first.certPem, key: first.keyPem, [SNI_RESOLVER]: resolve };
}

function noop(): void {}
