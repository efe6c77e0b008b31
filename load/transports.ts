/**
 * Which {@linkcode Transport} sends a run's requests: the lean HTTP/1.1 client for plain `http:`
 * targets (fetch tops out well below what a load generator needs there), `fetch` for `https:`.
 *
 * @module
 */
import { createFetchTransport } from "./fetch_transport.ts";
import { createHttp1Transport } from "./http1_transport.ts";
import type { TransportFactory } from "./transport.ts";

/** The `--transport` choice. */
export type TransportMode = "auto" | "fetch" | "http1";

/** Every accepted `--transport` value. */
export const TRANSPORT_MODES: readonly TransportMode[] = ["auto", "fetch", "http1"];

/** The lean HTTP/1.1 client's factory (set to `undefined` to fall back to fetch everywhere). */
const DEFAULT_HTTP1_FACTORY: TransportFactory | undefined = createHttp1Transport;

/** Factories to choose from (tests inject fakes). */
export interface TransportFactories {
  /** The `fetch` transport. Default: {@linkcode createFetchTransport}. */
  readonly fetch?: TransportFactory;
  /** The lean HTTP/1.1 transport. Default: the built-in one when available, else fetch. */
  readonly http1?: TransportFactory;
}

/**
 * Picks the transport factory for a target.
 *
 * @param url The target.
 * @param mode `auto` (HTTP/1.1 client for `http:`, fetch otherwise), `fetch` or `http1`.
 * @param factories Overrides of the two factories.
 * @returns The factory to create each virtual user's transport with.
 * @throws {RangeError} When `http1` is asked for an `https:` target.
 */
export function selectTransportFactory(
  url: URL,
  mode: TransportMode,
  factories: TransportFactories = {},
): TransportFactory {
  const viaFetch = factories.fetch ?? ((spec) => createFetchTransport(spec));
  const http1 = factories.http1 ?? DEFAULT_HTTP1_FACTORY;
  if (mode === "fetch") return viaFetch;
  if (url.protocol !== "http:") {
    if (mode === "http1") {
      throw new RangeError(
        `Cannot use --transport http1 with "${url.href}": the HTTP/1.1 client speaks plain http only`,
      );
    }
    return viaFetch;
  }
  return http1 ?? viaFetch;
}

/**
 * A factory that picks the transport for each spec by its own URL (a targets file may mix
 * `http:` and `https:`).
 *
 * @param mode The `--transport` choice.
 * @param factories Overrides of the two factories.
 * @returns The factory.
 */
export function createDispatchingFactory(
  mode: TransportMode,
  factories: TransportFactories = {},
): TransportFactory {
  return (spec) => selectTransportFactory(spec.url, mode, factories)(spec);
}
