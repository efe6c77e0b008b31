/**
 * Process signals as the balancer understands them: SIGINT and SIGTERM ask for a graceful stop
 * (an `AbortSignal`), SIGHUP is handed to a callback instead of ending the process (its
 * default action) so that it can become a reload.
 *
 * @module
 */

/** The part of the `Deno` namespace that (un)registers signal listeners. */
export interface SignalApi {
  /** Registers `handler` for `signal` (as `Deno.addSignalListener`). */
  addSignalListener(signal: Deno.Signal, handler: () => void): void;
  /** Unregisters it (as `Deno.removeSignalListener`). */
  removeSignalListener(signal: Deno.Signal, handler: () => void): void;
}

/** Options shared by {@linkcode listenForShutdown} and {@linkcode listenForHangup}. */
export interface SignalOptions {
  /** Where listeners are registered. Default: `Deno`. */
  readonly api?: SignalApi;
  /** The platform, which decides the signals that exist. Default: `Deno.build.os`. */
  readonly os?: typeof Deno.build.os;
}

/** Options for {@linkcode listenForShutdown}. */
export interface ShutdownOptions extends SignalOptions {
  /**
   * Called on every SIGINT/SIGTERM after the first, when the graceful stop is already under
   * way (`main.ts` exits at once). Default: none.
   */
  readonly onRepeat?: () => void;
}

/** The shutdown request: aborted on the first SIGINT or SIGTERM. */
export interface ShutdownSignals extends Disposable {
  /** Aborted on the first SIGINT or SIGTERM. */
  readonly signal: AbortSignal;
}

/**
 * Turns SIGINT and SIGTERM (SIGINT alone on Windows) into an `AbortSignal`.
 *
 * @param options Where to listen and what a repeated signal does.
 * @returns The signal; disposing removes the listeners.
 */
export function listenForShutdown(options: ShutdownOptions = {}): ShutdownSignals {
  const controller = new AbortController();
  const onSignal = (): void => {
    if (controller.signal.aborted) options.onRepeat?.();
    else controller.abort();
  };
  const signals: Deno.Signal[] = (options.os ?? Deno.build.os) === "windows"
    ? ["SIGINT"]
    : ["SIGINT", "SIGTERM"];
  const listening = listen(signals, onSignal, options.api ?? Deno);
  return {
    signal: controller.signal,
    [Symbol.dispose]: () => listening[Symbol.dispose](),
  };
}

/**
 * Calls `onHangup` on each SIGHUP instead of letting it end the process. Does nothing on
 * Windows, which has no SIGHUP.
 *
 * @param onHangup Called on each SIGHUP.
 * @param options Where to listen.
 * @returns A handle whose disposal removes the listener.
 */
export function listenForHangup(onHangup: () => void, options: SignalOptions = {}): Disposable {
  const signals: Deno.Signal[] = (options.os ?? Deno.build.os) === "windows" ? [] : ["SIGHUP"];
  return listen(signals, onHangup, options.api ?? Deno);
}

/**
 * Calls `onReopen` on each SIGUSR1 and SIGHUP: reopen log files, as after logrotate moved them.
 * nginx reopens on SIGUSR1, and so does the balancer; but on Deno 2.9.2 and later SIGUSR1 also
 * starts the V8 inspector on 127.0.0.1:9229 (denoland/deno#35738, no opt-out), which any local
 * user could attach to. SIGHUP (a reload, which also reopens) is the signal to give logrotate.
 * Does nothing on Windows, which has neither signal.
 *
 * @param onReopen Called on each SIGUSR1 or SIGHUP.
 * @param options Where to listen.
 * @returns A handle whose disposal removes the listeners.
 */
export function listenForReopen(onReopen: () => void, options: SignalOptions = {}): Disposable {
  const signals: Deno.Signal[] = (options.os ?? Deno.build.os) === "windows"
    ? []
    : ["SIGUSR1", "SIGHUP"];
  return listen(signals, onReopen, options.api ?? Deno);
}

function listen(signals: readonly Deno.Signal[], handler: () => void, api: SignalApi): Disposable {
  for (const signal of signals) api.addSignalListener(signal, handler);
  let isDisposed = false;
  return {
    [Symbol.dispose](): void {
      if (isDisposed) return;
      isDisposed = true;
      for (const signal of signals) api.removeSignalListener(signal, handler);
    },
  };
}
