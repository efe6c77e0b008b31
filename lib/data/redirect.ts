/**
 * The plain-HTTP side of an HTTPS balancer (`--redirect-http`): every request is answered
 * `308 Permanent Redirect` to the same host, path and query on https (308 keeps the method and
 * body, unlike 301), except ACME HTTP-01 challenges (`/.well-known/acme-challenge/TOKEN`,
 * RFC 8555 section 8.3), which the certificate manager's hook answers.
 *
 * @module
 */
import { isValidHost } from "./request_target.ts";

/** Answers an ACME HTTP-01 challenge token with its key authorization, or `undefined`. */
export type AcmeChallengeHook = (token: string) => string | undefined;

/** Options for {@linkcode createRedirectHandler}. */
export interface RedirectOptions {
  /** The port HTTPS is served on; 443 is left out of the URL. */
  readonly httpsPort: number;
  /** Answers ACME challenges. Default: none, so they are redirected like any request. */
  readonly acmeChallenge?: AcmeChallengeHook;
}

const ACME_PREFIX = "/.well-known/acme-challenge/";

/**
 * Builds the redirecting handler.
 *
 * @param options The HTTPS port and the ACME hook.
 * @returns A handler for the plain-HTTP listener.
 *
 * @example
 * ```ts
 * import { createRedirectHandler } from "./redirect.ts";
 * const handle = createRedirectHandler({ httpsPort: 8443 });
 * const response = handle(new Request("http://shop.example/a?b=1", { headers: { host: "shop.example" } }));
 * if (response.headers.get("location") !== "https://shop.example:8443/a?b=1") throw new Error();
 * ```
 */
export function createRedirectHandler(options: RedirectOptions): (request: Request) => Response {
  const portSuffix = options.httpsPort === 443 ? "" : `:${options.httpsPort}`;
  return (request) => {
    const url = new URL(request.url);
    if (url.pathname.startsWith(ACME_PREFIX) && options.acmeChallenge !== undefined) {
      const answer = options.acmeChallenge(url.pathname.slice(ACME_PREFIX.length));
      if (answer === undefined) return text(404, "No such challenge\n");
      return new Response(answer, { headers: { "content-type": "application/octet-stream" } });
    }
    const host = request.headers.get("host");
    if (host === null || !isValidHost(host)) return text(400, "Bad request: invalid Host\n");
    // The host without its port ("[::1]:80" keeps its brackets).
    const hostname = host.replace(/:\d*$/, "");
    const location = `https://${hostname}${portSuffix}${url.pathname}${url.search}`;
    // A body is not read: the client resends it to the new location.
    return new Response(null, {
      status: 308,
      headers: { location },
    });
  };
}

function text(status: number, body: string): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}
