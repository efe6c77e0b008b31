/**
 * What the data plane does with its listener's events: counts each in the metrics and logs
 * the ones worth a line, floods throttled.
 *
 * @module
 */
import type { Logger } from "../shared/logger.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Clock } from "../shared/clock.ts";
import { LogThrottle } from "../shared/log_throttle.ts";
import { errorText } from "../shared/error_text.ts";
import type { ListenerEvent } from "./listen_options.ts";

/**
 * Turns listener events into metrics and log records; floods (descriptor exhaustion, broken
 * client connections) are logged at most once a second with a count of the rest.
 *
 * @param logger Receives the records.
 * @param metrics Counts every event.
 * @param clock Runs the once-a-second throttle.
 * @returns The listener's `onEvent`.
 */
export function createListenerEventSink(
  logger: Logger,
  metrics: Metrics,
  clock: Clock,
): (event: ListenerEvent) => void {
  const throttle = new LogThrottle({ intervalMs: 1_000, clock });
  return (event) => {
    switch (event.kind) {
      case "accept-error": {
        metrics.recordEvent(event.isFdExhausted ? "accept-fd-exhausted" : "accept-error");
        const suppressed = throttle.take(event.isFdExhausted ? "fd" : "accept");
        if (suppressed === undefined) return;
        logger.warn(
          event.isFdExhausted
            ? "Out of file descriptors accepting connections; retrying"
            : "Accepting a connection failed; retrying",
          { error: messageOf(event.error), suppressed },
        );
        return;
      }
      case "timeout":
        metrics.recordEvent(`${event.timeout}-timeout`);
        return;
      case "handshake-failed": {
        // Scanners and old clients fail handshakes all day: counted, logged at debug level.
        metrics.recordEvent("handshake-failed");
        const suppressed = throttle.take("handshake");
        if (suppressed === undefined) return;
        logger.debug("TLS handshake failed", { error: messageOf(event.error), suppressed });
        return;
      }
      case "connection-error": {
        metrics.recordEvent("connection-error");
        const suppressed = throttle.take("connection");
        if (suppressed === undefined) return;
        // A client that resets or stops reading is routine (load generators do it at the end of
        // every run); malformed framing and the like are worth a line at the default level.
        const isRoutine = event.error instanceof Deno.errors.ConnectionReset ||
          event.error instanceof Deno.errors.BrokenPipe;
        const properties = { error: messageOf(event.error), suppressed };
        if (isRoutine) logger.debug("Client connection failed", properties);
        else logger.info("Client connection failed", properties);
        return;
      }
      case "websocket-unavailable":
        logger.warn("WebSocket upgrades will be answered 501", { detail: event.detail });
        return;
      case "degraded":
        logger.warn("Listener degraded", { detail: event.detail });
        return;
      case "connection-refused": {
        metrics.recordEvent("connection-refused");
        const suppressed = throttle.take("refused");
        if (suppressed === undefined) return;
        logger.warn("Connection limit reached; refusing connections with 503", {
          limit: event.limit,
          suppressed,
        });
        return;
      }
    }
  };
}

function messageOf(error: unknown): string {
  return errorText(error);
}
