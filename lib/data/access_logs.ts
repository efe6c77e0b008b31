/**
 * The data plane's access log across reloads: the one `accessLog` configures, rebuilt when a
 * reload changes its path or format, reopened on SIGHUP or SIGUSR1.
 *
 * @module
 */
import type { Logger } from "../shared/logger.ts";
import { AccessLog, type AccessLogSink, accessLogTarget, NO_ACCESS_LOG } from "./access_log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { BalancerConfig } from "../config/settings.ts";
import type { Clock } from "../shared/clock.ts";
import { listenForReopen, type SignalApi } from "../process/signals.ts";

/** What {@linkcode AccessLogs} takes from the data plane's dependencies. */
export interface AccessLogsDeps {
  /** Receives the records instead of the configured log. Default: the configured one. */
  readonly accessLog?: AccessLogSink;
  /** Where the logs' write failures go. */
  readonly proxyLogger: Logger;
  /** Where the SIGHUP and SIGUSR1 listeners go. Default: `Deno`. */
  readonly signals?: SignalApi;
}

/**
 * The data plane's access log: the one `accessLog` configures (rebuilt when a reload changes
 * its path or format), reopened on SIGHUP or SIGUSR1. Every isolate listens for both itself, so
 * with `--workers N` each reopens its own file handle (signals reach every isolate of the
 * process).
 */
export class AccessLogs {
  readonly #deps: AccessLogsDeps;
  readonly #metrics: Metrics;
  readonly #clock: Clock;
  #log: AccessLog | undefined;
  #sink: AccessLogSink = NO_ACCESS_LOG;
  #key = "";
  readonly #retired = new Set<Promise<void>>();
  #reopen: Disposable | undefined;

  /**
   * @param deps The capturing sink, if any, the proxy logger and where signals come from.
   * @param metrics Counts the log's write failures and drops.
   * @param clock Times its flushes.
   */
  constructor(deps: AccessLogsDeps, metrics: Metrics, clock: Clock) {
    this.#deps = deps;
    this.#metrics = metrics;
    this.#clock = clock;
  }

  /** The sink the handler writes to now. */
  get sink(): AccessLogSink {
    return this.#sink;
  }

  /** Builds the log `config` asks for, unless it is the one already open. */
  configure(config: BalancerConfig): void {
    if (this.#deps.accessLog !== undefined) {
      this.#sink = this.#deps.accessLog;
      return;
    }
    const { path, format } = config.accessLog;
    const key = `${format} ${path}`;
    if (key === this.#key) return;
    this.#key = key;
    this.#retire();
    if (path === "off") {
      this.#sink = NO_ACCESS_LOG;
      return;
    }
    const log = new AccessLog({
      format,
      target: accessLogTarget(path),
      logger: this.#deps.proxyLogger,
      onEvent: (event) => this.#metrics.recordEvent(event),
      clock: this.#clock,
    });
    this.#log = log;
    this.#sink = log;
    if (path !== "-") {
      this.#reopen = listenForReopen(
        () => log.reopen(),
        this.#deps.signals === undefined ? {} : { api: this.#deps.signals },
      );
    }
  }

  /** Writes what is buffered and closes every log. */
  async close(): Promise<void> {
    this.#retire();
    this.#sink = NO_ACCESS_LOG;
    await Promise.all(this.#retired);
  }

  /** Closes the current log in the background (a reload replaced it, or the plane stops). */
  #retire(): void {
    this.#reopen?.[Symbol.dispose]();
    this.#reopen = undefined;
    const old = this.#log;
    this.#log = undefined;
    if (old === undefined) return;
    const closing = old.close();
    this.#retired.add(closing);
    void closing.finally(() => this.#retired.delete(closing));
  }
}
