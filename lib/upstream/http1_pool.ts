/**
 * The idle keep-alive connections of the `http1` upstream, per backend: bounded in number,
 * closed after an idle timeout, and dropped the moment their backend closes them.
 *
 * @module
 */
import { type Clock, systemClock } from "../shared/clock.ts";
import type { Http1Connection } from "./http1_connection.ts";
import type { ProxySettings } from "../config/settings.ts";

/**
 * Options for {@linkcode ConnectionPool}: its bounds as `settings.ts` declares them
 * (`proxy.maxIdlePerHost` idle connections kept per backend, oldest closed first;
 * `proxy.keepAliveTimeoutMs` before an idle one is closed).
 */
export interface ConnectionPoolOptions
  extends Pick<ProxySettings, "maxIdlePerHost" | "keepAliveTimeoutMs"> {
  /** Runs the idle timeout. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
}

/** Idle connections by backend, most recently used last. */
export class ConnectionPool {
  readonly #maxIdle: number;
  readonly #idleTimeoutMs: number;
  readonly #clock: Clock;
  readonly #idle = new Map<string, Http1Connection[]>();
  readonly #stop = new AbortController();
  #isSweepScheduled = false;

  /** @param options Bounds and clock. */
  constructor(options: ConnectionPoolOptions) {
    this.#maxIdle = options.maxIdlePerHost;
    this.#idleTimeoutMs = options.keepAliveTimeoutMs;
    this.#clock = options.clock ?? systemClock;
  }

  /** Whether {@linkcode close} was called. */
  get isClosed(): boolean {
    return this.#stop.signal.aborted;
  }

  /** How many idle connections the pool holds for `key` (all backends without one). */
  idleCount(key?: string): number {
    if (key !== undefined) return this.#idle.get(key)?.length ?? 0;
    let count = 0;
    for (const list of this.#idle.values()) count += list.length;
    return count;
  }

  /**
   * Takes the most recently used idle connection to a backend, if one is still fresh.
   *
   * @param key The backend's `host:port`.
   * @returns A connection that has carried a response before, or `undefined`.
   */
  take(key: string): Http1Connection | undefined {
    const list = this.#idle.get(key);
    if (list === undefined) return undefined;
    const now = this.#clock.now();
    for (let conn = list.pop(); conn !== undefined; conn = list.pop()) {
      if (now - conn.idleSinceMs < this.#idleTimeoutMs) return conn;
      conn.close();
    }
    return undefined;
  }

  /**
   * Keeps a connection whose last response was read in full for the next request to its
   * backend; closes it instead when the pool is closed or full.
   *
   * @param conn The connection, with nothing unread and no read in progress.
   */
  put(conn: Http1Connection): void {
    if (this.isClosed || this.#maxIdle <= 0) {
      conn.close();
      return;
    }
    let list = this.#idle.get(conn.key);
    if (list === undefined) {
      list = [];
      this.#idle.set(conn.key, list);
    }
    if (list.length >= this.#maxIdle) list.shift()?.close();
    conn.isReused = true;
    conn.idleSinceMs = this.#clock.now();
    list.push(conn);
    // Any read result while idle (EOF, reset, or bytes nobody asked for) makes it unusable; the
    // request that takes the connection first shares this same read instead.
    const evict = () => this.#evict(conn);
    conn.fill().then(evict, evict);
    this.#scheduleSweep();
  }

  /** Closes every idle connection and stops the idle timer; later `put`s close theirs. */
  close(): void {
    this.#stop.abort();
    for (const list of this.#idle.values()) {
      for (const conn of list) conn.close();
    }
    this.#idle.clear();
  }

  #evict(conn: Http1Connection): void {
    const list = this.#idle.get(conn.key);
    const index = list?.indexOf(conn) ?? -1;
    if (list === undefined || index < 0) return; // taken by a request, which reads the result
    list.splice(index, 1);
    conn.close();
  }

  /** One timer for the whole pool, due when the oldest idle connection expires. */
  #scheduleSweep(): void {
    if (this.#isSweepScheduled || this.isClosed) return;
    let oldest = Infinity;
    for (const list of this.#idle.values()) {
      const first = list[0];
      if (first !== undefined) oldest = Math.min(oldest, first.idleSinceMs);
    }
    if (oldest === Infinity) return;
    this.#isSweepScheduled = true;
    const delayMs = oldest + this.#idleTimeoutMs - this.#clock.now();
    this.#clock.sleep(delayMs, this.#stop.signal).then(() => {
      this.#isSweepScheduled = false;
      this.#sweep();
      this.#scheduleSweep();
    }, () => {}); // rejected only by close()
  }

  #sweep(): void {
    const now = this.#clock.now();
    for (const [key, list] of this.#idle) {
      while (list[0] !== undefined && now - list[0].idleSinceMs >= this.#idleTimeoutMs) {
        list.shift()?.close();
      }
      if (list.length === 0) this.#idle.delete(key);
    }
  }
}
