/**
 * OpenTelemetry traces through Deno's built-in exporter (`OTEL_DENO=true`, with the standard
 * `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL` and `OTEL_SERVICE_NAME`): a span
 * per proxied request and, inside it, one per forwarding attempt, naming the backend, the
 * attempt number, the status (or the failure), and the reason an attempt is a retry. The
 * attempt's `traceparent` goes to the backend (Deno's `fetch` puts its own client span's there;
 * the `http1` upstream sends the attempt's), so the backend's spans join the trace.
 *
 * Off (no `OTEL_DENO=true`) there is no tracing object at all: the request path pays one
 * `undefined` check per request and per attempt.
 *
 * @module
 */
import type { ForwardOutcome } from "./proxy.ts";

/** The part of an OpenTelemetry span this module uses (Deno's `Deno.telemetry` is untyped). */
interface Span {
  setAttribute(key: string, value: string | number): void;
  setStatus(status: { code: number; message?: string }): void;
  spanContext(): { traceId: string; spanId: string; traceFlags: number };
  end(): void;
}

/** The part of an OpenTelemetry tracer this module uses. */
interface Tracer {
  startActiveSpan<T>(
    name: string,
    options: { kind: number; attributes: Record<string, string | number> },
    run: (span: Span) => T,
  ): T;
}

/** OpenTelemetry's span kinds and status codes (`@opentelemetry/api`). */
const SPAN_KIND = { server: 1, client: 2 } as const;
const STATUS_ERROR = 2;

/** One attempt to trace. */
export interface TracedAttempt {
  /** The backend's name. */
  readonly backend: string;
  /** 1 for the first attempt, 2 for the first retry, ... */
  readonly attempt: number;
  /** Why the attempt before this one failed, for a retry. */
  readonly retryReason: string | undefined;
  /** The request's ID. */
  readonly requestId: string;
}

/** Spans for requests and their attempts. */
export interface RequestTracing {
  /**
   * Runs one proxied request in its span, which ends with the response's status.
   *
   * @param request The client's request.
   * @param requestId Its ID.
   * @param run Proxies it.
   * @returns The response.
   */
  request(request: Request, requestId: string, run: () => Promise<Response>): Promise<Response>;
  /**
   * Runs one forwarding attempt in its span, which ends with the outcome.
   *
   * @param attempt What the attempt is.
   * @param run Forwards, sending the given `traceparent` to the backend.
   * @returns The outcome.
   */
  attempt(
    attempt: TracedAttempt,
    run: (traceparent: string) => Promise<ForwardOutcome>,
  ): Promise<ForwardOutcome>;
}

/**
 * The tracing the environment asks for: on with `OTEL_DENO=true`, as Deno's exporter.
 *
 * @param env Reads an environment variable. Default: `Deno.env`, unset without permission.
 * @param telemetry Deno's telemetry API. Default: `Deno.telemetry`.
 * @returns The tracing, or `undefined` when it is off.
 */
export function createRequestTracing(
  env: (name: string) => string | undefined = readEnv,
  telemetry: { readonly tracerProvider: unknown } | undefined = Deno.telemetry,
): RequestTracing | undefined {
  if (env("OTEL_DENO")?.toLowerCase() !== "true" || telemetry === undefined) return undefined;
  // Deno declares the provider `any`; it implements OpenTelemetry.js's TracerProvider.
  const provider = telemetry.tracerProvider as { getTracer(name: string): Tracer };
  const tracer = provider.getTracer("denolb");
  return {
    request(request, requestId, run) {
      const attributes = {
        "http.request.method": request.method,
        "url.full": request.url,
        "denolb.request_id": requestId,
      };
      return tracer.startActiveSpan(
        "denolb request",
        { kind: SPAN_KIND.server, attributes },
        async (span) => {
          try {
            const response = await run();
            span.setAttribute("http.response.status_code", response.status);
            if (response.status >= 500) span.setStatus({ code: STATUS_ERROR });
            return response;
          } finally {
            span.end();
          }
        },
      );
    },
    attempt(attempt, run) {
      const attributes: Record<string, string | number> = {
        "denolb.backend": attempt.backend,
        "denolb.attempt": attempt.attempt,
        "denolb.request_id": attempt.requestId,
      };
      if (attempt.retryReason !== undefined) {
        attributes["denolb.retry_reason"] = attempt.retryReason;
      }
      return tracer.startActiveSpan(
        "denolb attempt",
        { kind: SPAN_KIND.client, attributes },
        async (span) => {
          try {
            const outcome = await run(traceparentOf(span));
            if (outcome.ok) {
              span.setAttribute("http.response.status_code", outcome.response.status);
            } else {
              span.setAttribute("error.type", outcome.reason);
              span.setStatus({ code: STATUS_ERROR, message: outcome.message });
            }
            return outcome;
          } finally {
            span.end();
          }
        },
      );
    },
  };
}

/**
 * The W3C `traceparent` of a span: `00-TRACE-SPAN-FLAGS`.
 *
 * @example
 * ```ts
 * // 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
 * ```
 */
function traceparentOf(span: Span): string {
  const { traceId, spanId, traceFlags } = span.spanContext();
  return `00-${traceId}-${spanId}-${(traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    // Without --allow-env the variable is as good as unset.
    return undefined;
  }
}
