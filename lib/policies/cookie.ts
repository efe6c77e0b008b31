/**
 * Cookie affinity: a client that carries a valid signed affinity cookie naming an available
 * backend goes back to that backend; any other request goes round-robin (smooth weighted), and
 * its response sets the cookie for the backend that answered.
 *
 * The cookie's value is `<backend-id>.<signature>`: the id is the first 64 bits of SHA-256 of
 * the backend's URL (so it stays the same across restarts and reloads, and does not spell out
 * the backend's address), the signature the first 128 bits of HMAC-SHA256 of the id under the
 * secret, base64url. A policy must be synchronous while `crypto.subtle` is not, so the HMAC is
 * computed in plain TypeScript (`shared/sha256.ts`; `node:crypto` would load Deno's Node layer
 * into every isolate), and only once per backend: each pool's cookie values are kept in a map from value to backend, rebuilt when the
 * pool changes. Per request the policy reads the `Cookie` header and does one map lookup; a
 * forged or stale value simply matches nothing.
 *
 * @module
 */
import { hmacSha256, sha256, toBase64Url, toHex } from "../shared/sha256.ts";
import type { Backend } from "../core/backend.ts";
import { isCandidate, type Policy } from "./policy.ts";
import { createRoundRobin } from "./round_robin.ts";
import type { Rotation } from "../core/shared_state.ts";

/**
 * Options of {@linkcode createCookieAffinity}: `name`, `secret` and `maxAgeMs` are the
 * `affinityCookie` settings as `config/settings.ts` declares them (this layer cannot import
 * it; `registry.ts` passes the group as it is).
 */
export interface CookieAffinityOptions {
  /** The cookie's name. */
  readonly name: string;
  /** The signing key. Default: 32 random bytes, this policy's own. */
  readonly secret?: string | undefined;
  /** The cookie's `Max-Age` in milliseconds; 0 makes it a session cookie. */
  readonly maxAgeMs: number;
  /** The rotation clients without a valid cookie take turns in. Default: a private one. */
  readonly rotation?: Rotation;
}

/** One backend's cookie: its value and the whole `Set-Cookie` field that sets it. */
interface SignedCookie {
  readonly value: string;
  readonly setCookie: ReadonlyArray<readonly [string, string]>;
}

/**
 * Creates a cookie affinity policy.
 *
 * @param options The cookie's name, secret and max age.
 * @returns A policy whose `responseHeaders` sets the cookie whenever the client did not send
 *   the valid one for the backend that answered.
 */
export function createCookieAffinity(options: CookieAffinityOptions): Policy {
  const name = options.name;
  const secret = options.secret ?? randomSecret();
  const maxAgeSeconds = Math.floor(options.maxAgeMs / 1000);
  const attributes = "; Path=/; HttpOnly; SameSite=Lax" +
    (maxAgeSeconds > 0 ? `; Max-Age=${maxAgeSeconds}` : "");
  const fallback = createRoundRobin(
    options.rotation === undefined ? {} : { rotation: options.rotation },
  );
  // Signed once per backend URL; kept for the backends of the latest pool only.
  let signed = new Map<string, SignedCookie>();
  let byValue = new Map<string, Backend>();
  let built: readonly Backend[] = [];

  const sign = (backend: Backend): SignedCookie => {
    const href = backend.url.href;
    const known = signed.get(href);
    if (known !== undefined) return known;
    const value = signCookieValue(backendId(href), secret);
    const cookie: SignedCookie = {
      value,
      setCookie: [["set-cookie", `${name}=${value}${attributes}`]],
    };
    signed.set(href, cookie);
    return cookie;
  };
  const refresh = (backends: readonly Backend[]): void => {
    if (built.length === backends.length && built.every((b, i) => backends[i] === b)) return;
    const previous = signed;
    signed = new Map();
    byValue = new Map();
    for (const backend of backends) {
      const known = previous.get(backend.url.href);
      if (known !== undefined) signed.set(backend.url.href, known);
      byValue.set(sign(backend).value, backend);
    }
    built = backends.slice();
  };

  return {
    name: "cookie",
    pick(
      backends: readonly Backend[],
      request: Request,
      exclude?: ReadonlySet<Backend>,
    ): Backend | undefined {
      refresh(backends);
      const header = request.headers.get("cookie");
      if (header !== null) {
        for (const value of cookieValues(header, name)) {
          const backend = byValue.get(value);
          if (backend !== undefined && isCandidate(backend, exclude)) return backend;
        }
      }
      return fallback.pick(backends, request, exclude);
    },
    responseHeaders(backend: Backend, request: Request) {
      const cookie = sign(backend);
      const header = request.headers.get("cookie");
      if (header !== null && cookieValues(header, name).includes(cookie.value)) return undefined;
      return cookie.setCookie;
    },
  };
}

/**
 * A backend's id in the cookie: the first 64 bits of SHA-256 of its URL, in hex.
 *
 * @param href The backend's URL.
 * @returns 16 hex digits.
 *
 * @example
 * ```ts
 * import { backendId } from "./cookie.ts";
 * if (!/^[0-9a-f]{16}$/.test(backendId("http://10.0.0.1:80/"))) throw new Error();
 * ```
 */
export function backendId(href: string): string {
  return toHex(sha256(href).subarray(0, 8));
}

/**
 * The signed cookie value for a backend id: `<id>.<signature>`, the signature being the first
 * 128 bits of HMAC-SHA256 of the id under `secret`, base64url (22 characters).
 *
 * @param id The backend's id.
 * @param secret The signing key.
 * @returns The cookie value.
 *
 * @example
 * ```ts
 * import { signCookieValue } from "./cookie.ts";
 * const value = signCookieValue("0123456789abcdef", "a secret of some length");
 * if (!/^0123456789abcdef\.[\w-]{22}$/.test(value)) throw new Error(value);
 * ```
 */
export function signCookieValue(id: string, secret: string): string {
  return `${id}.${toBase64Url(hmacSha256(secret, id).subarray(0, 16))}`;
}

/** Every value of the cookies called `name` in a `Cookie` header (a client may send several). */
function cookieValues(header: string, name: string): string[] {
  const values: string[] = [];
  for (const pair of header.split(";")) {
    const equals = pair.indexOf("=");
    if (equals > 0 && pair.slice(0, equals).trim() === name) {
      values.push(pair.slice(equals + 1).trim());
    }
  }
  return values;
}

/** A fresh random signing key: 32 bytes in hex. */
function randomSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}
