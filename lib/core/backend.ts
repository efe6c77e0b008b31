/**
 * One backend, in three parts (Pingora's split): its configuration ({@linkcode BackendSpec},
 * immutable: a reload that reweights it swaps in a new one), its shared state
 * ({@linkcode SharedBackendState}: health, drain, ejection, return count and in-flight count,
 * one slot of the balancer's `SharedArrayBuffer` that every isolate reads), and this isolate's
 * own counters (requests and failures, reported to the control plane by message).
 *
 * Health has two owners in the control plane: the active health checker sets its health state
 * ({@linkcode Backend.setHealth}) and passive health (the outlier detector) ejects it
 * ({@linkcode Backend.setEjection}); it takes traffic when both let it, and it is not draining.
 * Data-plane workers never write these: they read the slot the control plane writes.
 *
 * @module
 */
import { type Ejection, type HealthState, SharedBackendState } from "./shared_state.ts";

export type { Ejection, HealthState } from "./shared_state.ts";

/** A backend's weight when its configuration gives none (a backend's own, not a setting). */
export const DEFAULT_WEIGHT = 1;
/** Options for {@linkcode Backend}. */
export interface BackendOptions {
  /** Relative share of traffic for weighted policies. Default: 1. */
  readonly weight?: number;
  /**
   * Its slot of the balancer's shared state. Default: a slot of its own, reset to
   * `initialHealth` and `returnCount` (a backend outside any balancer: tests, tools).
   */
  readonly shared?: SharedBackendState;
  /** The state before the first probe, for a slot of its own. Default: `"healthy"`. */
  readonly initialHealth?: HealthState;
  /**
   * Its {@linkcode Backend.returnCount} to start from, for a slot of its own: above 0 for a
   * backend joining a pool that is serving, so slow start ramps it up. Default: 0.
   */
  readonly returnCount?: number;
}

/** A backend's configuration: immutable; a reload replaces it whole. */
export interface BackendSpec {
  /** Relative share of traffic for weighted policies. */
  readonly weight: number;
  /** Requests it takes at once over the whole balancer; 0 is no limit. */
  readonly maxInFlight: number;
}

/** A backend's request counts. */
export interface BackendCounts {
  /** Requests forwarded since start. */
  readonly requests: number;
  /** Forwarded requests that failed since start. */
  readonly failures: number;
  /** Responses with a 5xx status the backend sent since start. */
  readonly responses5xx: number;
}

/** A server the balancer forwards to. */
export class Backend {
  /** Base URL: origin plus an optional path prefix, always ending in `/`. */
  readonly url: URL;
  /** Short name for logs and metrics: `host:port` plus the path prefix, if any. */
  readonly name: string;
  /** Its shared state: the same slot in every isolate of the balancer. */
  readonly shared: SharedBackendState;
  #spec: BackendSpec;
  /** This isolate's own counters. */
  #requests = 0;
  #failures = 0;
  #responses5xx = 0;
  /** Counts reported by data-plane isolates, by isolate id (empty in a single isolate). */
  readonly #remote = new Map<string, BackendCounts>();

  /**
   * @param url The backend's base URL, already validated by {@linkcode parseBackendUrl}.
   * @param options Weight, and its shared slot (or the initial state of a slot of its own).
   */
  constructor(url: URL, options: BackendOptions = {}) {
    this.url = url;
    this.name = url.pathname === "/" ? url.host : `${url.host}${url.pathname.slice(0, -1)}`;
    this.#spec = Object.freeze({ weight: options.weight ?? DEFAULT_WEIGHT, maxInFlight: 0 });
    if (options.shared === undefined) {
      this.shared = SharedBackendState.standalone();
      this.shared.reset(options.initialHealth ?? "healthy", options.returnCount ?? 0);
    } else {
      this.shared = options.shared;
    }
  }

  /** Its configuration now. */
  get spec(): BackendSpec {
    return this.#spec;
  }

  /**
   * Replaces its configuration (a reload, or a worker mirroring one). Requests in flight keep
   * the counts they began with.
   *
   * @param spec What changes.
   */
  reconfigure(spec: Partial<BackendSpec>): void {
    const next = { ...this.#spec, ...spec };
    if (next.weight === this.#spec.weight && next.maxInFlight === this.#spec.maxInFlight) return;
    this.#spec = Object.freeze(next);
  }

  /** Relative share of traffic for weighted policies. */
  get weight(): number {
    return this.#spec.weight;
  }

  /**
   * Changes the weight (a reload).
   *
   * @param weight The new weight, already validated as positive.
   */
  setWeight(weight: number): void {
    this.reconfigure({ weight });
  }

  /** The current health state. */
  get health(): HealthState {
    return this.shared.health;
  }

  /** Whether the backend passes its health checks. */
  get isHealthy(): boolean {
    return this.shared.health === "healthy";
  }

  /** Whether an operator is draining it: no new requests; in-flight ones finish. */
  get isDraining(): boolean {
    return this.shared.isDraining;
  }

  /** Whether policies may pick it: healthy (active), not ejected (passive), not draining. */
  get isAvailable(): boolean {
    return this.shared.isAvailable;
  }

  /** Why and until when the outlier detector has it out; `undefined` when it does not. */
  get ejection(): Ejection | undefined {
    return this.shared.ejection;
  }

  /** Whether the outlier detector has it out of rotation. */
  get isEjected(): boolean {
    return this.shared.isEjected;
  }

  /**
   * How many times it has come (back) into rotation: each change of health, drain or ejection
   * that makes it available adds one. Slow start ramps a backend up when this changes.
   */
  get returnCount(): number {
    return this.shared.returnCount;
  }

  /**
   * Ejects it or lets it return. Called only by passive health, in the control plane.
   *
   * @param ejection Why and until when, or `undefined` to return it.
   * @returns Whether it changed between ejected and not.
   */
  setEjection(ejection: Ejection | undefined): boolean {
    return this.shared.setEjection(ejection);
  }

  /**
   * Starts or stops draining. Called only by the control plane (the admin API, a reload).
   *
   * @param isDraining Whether new requests must avoid the backend.
   * @returns Whether the state changed.
   */
  setDraining(isDraining: boolean): boolean {
    return this.shared.setDraining(isDraining);
  }

  /**
   * Sets the health state. Called only by health checking, in the control plane.
   *
   * @param next The new state.
   * @returns Whether the state changed.
   */
  setHealth(next: HealthState): boolean {
    return this.shared.setHealth(next);
  }

  /** Requests forwarded to this backend whose response has not finished, in every isolate. */
  get inFlight(): number {
    return this.shared.inFlight;
  }

  /** Requests forwarded to this backend since start, in every isolate. */
  get requests(): number {
    return this.#remote.size === 0 ? this.#requests : this.#requests + this.#sum("requests");
  }

  /**
   * Forwarded requests that failed (no response, or timed out) since start, in every isolate:
   * the balancer answered them itself (502, 504) or retried them elsewhere.
   */
  get failures(): number {
    return this.#remote.size === 0 ? this.#failures : this.#failures + this.#sum("failures");
  }

  /**
   * Responses with a 5xx status the backend itself sent since start, in every isolate: errors
   * it answered, beside the {@linkcode failures} it did not answer at all.
   */
  get responses5xx(): number {
    return this.#remote.size === 0
      ? this.#responses5xx
      : this.#responses5xx + this.#sum("responses5xx");
  }

  /** This isolate's own counts, to report to the control plane. */
  get localCounts(): BackendCounts {
    return {
      requests: this.#requests,
      failures: this.#failures,
      responses5xx: this.#responses5xx,
    };
  }

  /**
   * Records the latest counts a data-plane isolate reported for this backend.
   *
   * @param source The isolate's id.
   * @param counts Its cumulative counts, or `undefined` when the isolate is gone.
   */
  setRemoteCounts(source: string, counts: BackendCounts | undefined): void {
    if (counts === undefined) this.#remote.delete(source);
    else this.#remote.set(source, counts);
  }

  #sum(key: keyof BackendCounts): number {
    let total = 0;
    for (const counts of this.#remote.values()) total += counts[key];
    return total;
  }

  /** Requests the whole balancer may have in flight to it at once; 0 is no limit. */
  get maxInFlight(): number {
    return this.#spec.maxInFlight;
  }

  /**
   * Sets the in-flight limit (`--max-in-flight` or the backend's own `maxInFlight`); the data
   * plane applies it (`data/admission.ts`).
   *
   * @param limit Requests at once over the whole balancer; 0 is no limit.
   */
  setMaxInFlight(limit: number): void {
    this.reconfigure({ maxInFlight: limit });
  }

  /** Whether the whole balancer's in-flight requests to it have reached its limit. */
  get isFull(): boolean {
    const limit = this.#spec.maxInFlight;
    return limit > 0 && this.shared.inFlight >= limit;
  }

  /** Marks a forwarded request as started, whatever the limit. Pair with {@linkcode end}. */
  begin(): void {
    this.shared.begin();
    this.#requests++;
  }

  /**
   * Counts a response the backend sent (its status), for {@linkcode responses5xx}.
   *
   * @param status The response's status code.
   */
  recordResponse(status: number): void {
    if (status >= 500 && status <= 599) this.#responses5xx++;
  }

  /**
   * Marks a forwarded request as started if the whole balancer has room under its limit: the
   * check and the count are one atomic step, so two isolates cannot both take the last slot.
   *
   * @returns Whether it started (then pair it with {@linkcode end}).
   */
  tryBegin(): boolean {
    if (!this.shared.tryBegin(this.#spec.maxInFlight)) return false;
    this.#requests++;
    return true;
  }

  /**
   * Marks a forwarded request as finished.
   *
   * @param isFailure Whether the backend failed it (no response or a timeout).
   */
  end(isFailure: boolean): void {
    this.shared.end();
    if (isFailure) this.#failures++;
  }
}

/**
 * Parses and validates a backend address. A bare `host:port` means `http://host:port`.
 *
 * @param text The address, such as `http://127.0.0.1:8080` or `127.0.0.1:8081`.
 * @returns The base URL, with a path ending in `/`.
 * @throws {SyntaxError} When the text is not a URL.
 * @throws {TypeError} When the protocol is not http or https, or it has a query, fragment or
 *   credentials.
 *
 * @example
 * ```ts
 * import { parseBackendUrl } from "./backend.ts";
 * if (parseBackendUrl("127.0.0.1:8080").href !== "http://127.0.0.1:8080/") throw new Error();
 * ```
 */
export function parseBackendUrl(text: string): URL {
  const trimmed = text.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) ? trimmed : `http://${trimmed}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch (cause) {
    throw new SyntaxError(`Cannot parse backend "${text}": not a URL`, { cause });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`Cannot parse backend "${text}": protocol must be http or https`);
  }
  if (url.search !== "" || url.hash !== "") {
    throw new TypeError(`Cannot parse backend "${text}": a backend has no query or fragment`);
  }
  if (url.username !== "" || url.password !== "") {
    throw new TypeError(`Cannot parse backend "${text}": credentials in the URL are not supported`);
  }
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return url;
}
