/**
 * One backend: where it is, its weight, its health state and its in-flight count.
 *
 * Health has two owners in the control plane: the active health checker sets its health state
 * ({@linkcode Backend.setHealth}) and passive health (the outlier detector) ejects it
 * ({@linkcode Backend.setEjection}); it takes traffic when both let it, and it is not draining.
 *
 * @module
 */

/** Whether a backend takes traffic. */
export type HealthState = "healthy" | "unhealthy";

/** Why and until when passive health (the outlier detector) has a backend out of rotation. */
export interface Ejection {
  /** When it returns: milliseconds since the Unix epoch (for display). */
  readonly untilMs: number;
  /** How many times in a row it has been ejected, this one included. */
  readonly count: number;
  /** The kind of the failures that ejected it: `connect`, `timeout` or `5xx`. */
  readonly reason: string;
}

/** Options for {@linkcode Backend}. */
export interface BackendOptions {
  /** Relative share of traffic for weighted policies. Default: 1. */
  readonly weight?: number;
  /** The state before the first probe. Default: `"healthy"` (traffic flows at start-up). */
  readonly initialHealth?: HealthState;
  /**
   * Its {@linkcode Backend.returnCount} to start from: above 0 for a backend joining a pool
   * that is serving, so slow start ramps it up. Default: 0 (present at start-up).
   */
  readonly returnCount?: number;
}

/** A backend's request counts in one isolate. */
export interface BackendCounts {
  /** Requests forwarded and not finished. */
  readonly inFlight: number;
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
  #weight: number;
  #health: HealthState;
  #isDraining = false;
  #ejection: Ejection | undefined;
  #returnCount: number;
  #inFlight = 0;
  #maxInFlight = 0;
  #requests = 0;
  #failures = 0;
  #responses5xx = 0;
  /** Counts reported by data-plane isolates, by isolate id (empty in a single isolate). */
  readonly #remote = new Map<string, BackendCounts>();

  /**
   * @param url The backend's base URL, already validated by {@linkcode parseBackendUrl}.
   * @param options Weight and initial health.
   */
  constructor(url: URL, options: BackendOptions = {}) {
    this.url = url;
    this.name = url.pathname === "/" ? url.host : `${url.host}${url.pathname.slice(0, -1)}`;
    this.#weight = options.weight ?? 1;
    this.#health = options.initialHealth ?? "healthy";
    this.#returnCount = options.returnCount ?? 0;
  }

  /** Relative share of traffic for weighted policies. */
  get weight(): number {
    return this.#weight;
  }

  /**
   * Changes the weight (a reload). Called only by the control plane.
   *
   * @param weight The new weight, already validated as positive.
   */
  setWeight(weight: number): void {
    this.#weight = weight;
  }

  /** The current health state. */
  get health(): HealthState {
    return this.#health;
  }

  /** Whether the backend passes its health checks. */
  get isHealthy(): boolean {
    return this.#health === "healthy";
  }

  /** Whether an operator is draining it: no new requests; in-flight ones finish. */
  get isDraining(): boolean {
    return this.#isDraining;
  }

  /** Whether policies may pick it: healthy (active), not ejected (passive), not draining. */
  get isAvailable(): boolean {
    return this.#health === "healthy" && !this.#isDraining && this.#ejection === undefined;
  }

  /** Why and until when the outlier detector has it out; `undefined` when it does not. */
  get ejection(): Ejection | undefined {
    return this.#ejection;
  }

  /** Whether the outlier detector has it out of rotation. */
  get isEjected(): boolean {
    return this.#ejection !== undefined;
  }

  /**
   * How many times it has come (back) into rotation: each change of health, drain or ejection
   * that makes it available adds one. Slow start ramps a backend up when this changes.
   */
  get returnCount(): number {
    return this.#returnCount;
  }

  /**
   * Ejects it or lets it return. Called only by passive health (and the worker's mirror).
   *
   * @param ejection Why and until when, or `undefined` to return it.
   * @returns Whether it changed between ejected and not.
   */
  setEjection(ejection: Ejection | undefined): boolean {
    const wasEjected = this.#ejection !== undefined;
    const wasAvailable = this.isAvailable;
    this.#ejection = ejection;
    this.#countReturn(wasAvailable);
    return wasEjected !== (ejection !== undefined);
  }

  #countReturn(wasAvailable: boolean): void {
    if (!wasAvailable && this.isAvailable) this.#returnCount++;
  }

  /**
   * Starts or stops draining. Called only by the control plane (the admin API).
   *
   * @param isDraining Whether new requests must avoid the backend.
   * @returns Whether the state changed.
   */
  setDraining(isDraining: boolean): boolean {
    if (isDraining === this.#isDraining) return false;
    const wasAvailable = this.isAvailable;
    this.#isDraining = isDraining;
    this.#countReturn(wasAvailable);
    return true;
  }

  /** Requests forwarded to this backend whose response has not finished, in every isolate. */
  get inFlight(): number {
    return this.#remote.size === 0 ? this.#inFlight : this.#inFlight + this.#sum("inFlight");
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
      inFlight: this.#inFlight,
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

  /**
   * Sets the health state. Called only by health checking.
   *
   * @param next The new state.
   * @returns Whether the state changed.
   */
  setHealth(next: HealthState): boolean {
    if (next === this.#health) return false;
    const wasAvailable = this.isAvailable;
    this.#health = next;
    this.#countReturn(wasAvailable);
    return true;
  }

  /** Requests this isolate may have in flight to it at once; 0 is no limit. */
  get maxInFlight(): number {
    return this.#maxInFlight;
  }

  /**
   * Sets the in-flight limit (`--max-in-flight` or the backend's own `maxInFlight`); the data
   * plane applies it (`data/admission.ts`).
   *
   * @param limit Requests at once, per isolate; 0 is no limit.
   */
  setMaxInFlight(limit: number): void {
    this.#maxInFlight = limit;
  }

  /** Whether this isolate's in-flight requests to it have reached its limit: policies skip it. */
  get isFull(): boolean {
    return this.#maxInFlight > 0 && this.#inFlight >= this.#maxInFlight;
  }

  /** Marks a forwarded request as started. Pair every call with {@linkcode end}. */
  begin(): void {
    this.#inFlight++;
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
   * Marks a forwarded request as finished.
   *
   * @param isFailure Whether the backend failed it (no response or a timeout).
   */
  end(isFailure: boolean): void {
    this.#inFlight--;
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
