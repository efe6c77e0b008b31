import { assertEquals } from "../support/assert.ts";
import { captureLogs } from "../support/capture_logs.ts";
import { createRelayLogger, type RelayedRecord } from "../../lib/process/log_relay.ts";
import { withRequestId } from "../../lib/process/log_context.ts";
import { LOG_ROOT, logRelayed } from "../../lib/process/log.ts";

function relay(level: "debug" | "info" | "warning" | "error" = "info") {
  const posted: RelayedRecord[] = [];
  const logger = createRelayLogger([LOG_ROOT, "proxy"], {
    level,
    post: (record) => posted.push(record),
    now: () => 1_000,
  });
  return { posted, logger };
}

Deno.test("createRelayLogger() posts records at or above its level only", () => {
  const { posted, logger } = relay("warning");
  logger.debug("d");
  logger.info("i");
  logger.warn("w", { backend: "127.0.0.1:8081" });
  logger.error("e");
  assertEquals(posted, [
    {
      category: [LOG_ROOT, "proxy"],
      level: "warning",
      message: "w",
      timestamp: 1_000,
      properties: { backend: "127.0.0.1:8081" },
    },
    {
      category: [LOG_ROOT, "proxy"],
      level: "error",
      message: "e",
      timestamp: 1_000,
      properties: {},
    },
  ]);
});

Deno.test("createRelayLogger() computes lazy fields only for a posted level", () => {
  const { posted, logger } = relay("info");
  let calls = 0;
  logger.debug("d", () => ({ n: ++calls }));
  logger.info("i", () => ({ n: ++calls }));
  assertEquals(calls, 1);
  assertEquals(posted[0]?.properties, { n: 1 });
});

Deno.test("createRelayLogger() puts the request's ID on records logged during it", () => {
  const { posted, logger } = relay();
  withRequestId("req-1", () => logger.warn("Backend failed", { status: 502 }));
  logger.warn("Outside");
  assertEquals(posted.map((r) => r.properties), [{ requestId: "req-1", status: 502 }, {}]);
});

Deno.test("createRelayLogger() sends a URL field as text and one that cannot be cloned as text", () => {
  const channel = new MessageChannel();
  try {
    const posted: RelayedRecord[] = [];
    const logger = createRelayLogger([LOG_ROOT, "server"], {
      level: "info",
      post: (record) => {
        channel.port1.postMessage(record); // throws DataCloneError as a worker's postMessage does
        posted.push(record);
      },
    });
    const error = new RangeError("bad");
    logger.warn("Odd", { url: new URL("http://a/"), error, n: 1 });
    logger.warn("Odder", { url: new URL("http://a/"), s: Symbol("s"), error });
    assertEquals(posted.map((r) => r.properties), [
      { url: "http://a/", error, n: 1 },
      { url: "http://a/", s: "Symbol(s)", error },
    ]);
  } finally {
    channel.port1.close();
    channel.port2.close();
  }
});

Deno.test("logRelayed() writes a posted record through LogTape with its time and fields", async () => {
  await using logs = await captureLogs({ level: "info" });
  logRelayed({
    category: [LOG_ROOT, "proxy"],
    level: "warning",
    message: "Backend failed",
    timestamp: 1_234,
    properties: { requestId: "req-2", backend: "127.0.0.1:8081" },
  });
  const [record] = logs.find("Backend failed", "warning");
  assertEquals(record?.category, [LOG_ROOT, "proxy"]);
  assertEquals(record?.timestamp, 1_234);
  assertEquals(record?.message, ["Backend failed"]);
  assertEquals(record?.properties, { requestId: "req-2", backend: "127.0.0.1:8081" });
});
