/**
 * The ACME HTTP-01 challenge on the plain-HTTP listener (RFC 8555 §8.3): a `GET` (or `HEAD`) of
 * `/.well-known/acme-challenge/TOKEN` for a token the control plane is proving is answered here
 * with the key authorization, before any backend is chosen. Any other token goes to a backend as
 * usual, so a backend running its own ACME client keeps working.
 *
 * @module
 */
import type { RequestHandler } from "./listen_options.ts";

/** The HTTP-01 answers an isolate knows: token to key authorization. */
export type ChallengeLookup = (token: string) => string | undefined;

const CHALLENGE_PATH = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/;

/**
 * The answer to an HTTP-01 challenge request, if `request` is one this isolate knows.
 *
 * @param request The client's request.
 * @param lookup The key authorization for a token, or `undefined`.
 * @returns A `200 text/plain` response with the key authorization, or `undefined` when the
 *   request is not such a challenge.
 *
 * @example
 * ```ts
 * import { answerChallenge } from "./acme_challenge.ts";
 * const lookup = (token: string) => token === "abc" ? "abc.thumb" : undefined;
 * const url = "http://example.com/.well-known/acme-challenge/";
 * const answer = answerChallenge(new Request(url + "abc"), lookup);
 * if (answer?.status !== 200 || await answer.text() !== "abc.thumb") throw new Error();
 * if (answerChallenge(new Request(url + "other"), lookup) !== undefined) throw new Error();
 * ```
 */
export function answerChallenge(request: Request, lookup: ChallengeLookup): Response | undefined {
  if (request.method !== "GET" && request.method !== "HEAD") return undefined;
  const pathStart = request.url.indexOf("/", request.url.indexOf("//") + 2);
  const token = CHALLENGE_PATH.exec(pathStart < 0 ? "" : request.url.slice(pathStart))?.[1];
  if (token === undefined) return undefined;
  const keyAuthorization = lookup(token);
  if (keyAuthorization === undefined) return undefined;
  return new Response(request.method === "HEAD" ? null : keyAuthorization, {
    headers: { "content-type": "text/plain", "cache-control": "no-store" },
  });
}

/**
 * Puts the challenge answers in front of a request handler.
 *
 * @param handler The proxy's handler.
 * @param lookup The key authorization for a token, or `undefined`.
 * @returns A handler that answers known challenges and passes everything else on.
 */
export function withChallenges(handler: RequestHandler, lookup: ChallengeLookup): RequestHandler {
  return (request, info) => answerChallenge(request, lookup) ?? handler(request, info);
}
