/**
 * The affinity cookie's signing key when `--cookie-secret` is not given: one random key per
 * process, made by the control plane and written into the configuration every data-plane
 * isolate receives, so with `--workers N` every isolate signs and checks cookies alike, and a
 * reload keeps the cookies already handed out valid.
 *
 * @module
 */
import type { BalancerConfig } from "../config/settings.ts";

/**
 * Makes a random signing key: 32 bytes in hex.
 *
 * @returns The key.
 */
export function createCookieSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * The configuration with `secret` as the affinity cookie's key, unless it sets one itself.
 *
 * @param config A validated configuration.
 * @param secret The process's key.
 * @returns `config`, or a copy with the key filled in.
 *
 * @example
 * ```ts
 * import { withCookieSecret } from "./cookie_secret.ts";
 * import { DEFAULT_BALANCER_CONFIG } from "../config/config.ts";
 * const config = withCookieSecret(DEFAULT_BALANCER_CONFIG, "0123456789abcdef");
 * if (config.affinityCookie.secret !== "0123456789abcdef") throw new Error();
 * ```
 */
export function withCookieSecret(config: BalancerConfig, secret: string): BalancerConfig {
  if (config.affinityCookie.secret !== undefined) return config;
  return { ...config, affinityCookie: { ...config.affinityCookie, secret } };
}
