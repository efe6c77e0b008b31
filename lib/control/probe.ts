/**
 * One health probe: `GET` a backend's health URL and judge it by the status within a timeout,
 * never throwing, and leaving no request, body or timer running once it returns. The
 * `HealthChecker` in `health.ts` schedules probes and applies their results.
 *
 * @module
 */
import type { Clock } from "../shared/clock.ts";
import { formatDuration } from "../shared/duration.ts";

/** The outcome of one probe. */
export type ProbeResult =
  | {
    readonly ok: true;
    /** The 2xx status. */
    readonly status: number;
    /** Time to the response headers. */
    readonly latencyMs: number;
  }
  | {
    readonly ok: false;
    /** Why it failed: `HTTP 503`, `timed out after 2.0s`, `connection refused`. */
    readonly reason: string;
    /** The status, when a non-2xx response arrived. */
    readonly status?: number;
    /** Time until the failure. */
    readonly latencyMs: number;
  };

/**
 * Fetches a probe URL. It must honour `init.signal` (reject soon after it aborts), as `fetch`
 * does.
 */
export type ProbeFetch = (url: URL, init: RequestInit) => Promise<Response>;

/** Options for {@linkcode runProbe}. */
export interface ProbeOptions {
  /** Fetches the URL. */
  readonly fetch: ProbeFetch;
  /** Measures latency and runs the timeout. */
  readonly clock: Clock;
  /** A probe without a response within this time fails. */
  readonly timeoutMs: number;
  /** Aborts the probe (the health checker stopping). Default: none. */
  readonly signal?: AbortSignal;
}

type FetchOutcome = { readonly response: Response } | { readonly error: unknown };

/**
 * Probes one URL with `GET`: healthy iff a 2xx response arrives within the timeout. Redirects
 * are not followed (a 3xx fails). The body is never read: it is cancelled. Never throws.
 *
 * @param url The URL to probe.
 * @param options The fetch, clock, timeout and abort signal.
 * @returns The outcome, after the request has fully settled (nothing left running).
 */
export async function runProbe(url: URL, options: ProbeOptions): Promise<ProbeResult> {
  const { clock, timeoutMs, signal } = options;
  const startedAt = clock.now();
  const elapsed = () => clock.now() - startedAt;
  if (signal?.aborted) return { ok: false, reason: "stopped", latencyMs: 0 };

  const request = new AbortController();
  const stopRequest = () => request.abort(signal?.reason);
  signal?.addEventListener("abort", stopRequest, { once: true });
  const timer = new AbortController();
  try {
    let fetched: Promise<FetchOutcome>;
    try {
      fetched = options.fetch(url, { signal: request.signal, redirect: "manual" }).then(
        (response) => ({ response }),
        (error: unknown) => ({ error }),
      );
    } catch (error) {
      fetched = Promise.resolve({ error });
    }
    const timedOut = clock.sleep(timeoutMs, timer.signal).then(() => true, () => false);
    const first = await Promise.race([fetched, timedOut]);
    if (first === true || first === false) {
      request.abort(new DOMException("Health probe timed out", "TimeoutError"));
      // Wait for the aborted request to settle so no socket or body outlives the probe.
      const late = await fetched;
      if ("response" in late) await cancelBody(late.response);
      return {
        ok: false,
        reason: `timed out after ${formatDuration(timeoutMs)}`,
        latencyMs: elapsed(),
      };
    }
    const latencyMs = elapsed();
    if ("error" in first) return { ok: false, reason: describeError(first.error), latencyMs };
    const { response } = first;
    await cancelBody(response);
    if (response.status >= 200 && response.status < 300) {
      return { ok: true, status: response.status, latencyMs };
    }
    return { ok: false, reason: `HTTP ${response.status}`, status: response.status, latencyMs };
  } finally {
    timer.abort();
    signal?.removeEventListener("abort", stopRequest);
  }
}

async function cancelBody(response: Response): Promise<void> {
  try {
    await response.body?.cancel();
  } catch {
    // An aborted or failed body has nothing left to release.
  }
}

/**
 * A short reason from an error and its causes (Deno's fetch says only "fetch failed").
 *
 * @param error Anything thrown or rejected.
 * @returns Such as `connection refused`, `host not found`, `aborted` or the innermost message.
 *
 * @example
 * ```ts
 * import { describeError } from "./probe.ts";
 * const cause = new Error("Connection refused (os error 111)");
 * const reason = describeError(new TypeError("fetch failed", { cause }));
 * if (reason !== "connection refused") throw new Error(reason);
 * ```
 */
export function describeError(error: unknown): string {
  const messages: string[] = [];
  let name = "";
  for (let current = error, depth = 0; current !== undefined && depth < 5; depth++) {
    if (!(current instanceof Error)) {
      messages.push(String(current));
      break;
    }
    if (depth === 0) name = current.name;
    messages.push(current.message);
    current = current.cause;
  }
  const text = messages.join(": ");
  if (/connection refused/i.test(text)) return "connection refused";
  if (/connection reset/i.test(text)) return "connection reset";
  if (/dns error|failed to lookup|name or service not known/i.test(text)) return "host not found";
  if (name === "AbortError") return "aborted";
  // The innermost message is the most specific; drop Deno's "error sending request for url".
  const innermost = messages[messages.length - 1] ?? text;
  return innermost.replace(/^error sending request for url \([^)]*\): /, "");
}
