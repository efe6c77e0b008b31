import { getConfig, getLogger, type LogRecord } from "@logtape/logtape";
import { configureLogging, createLogFormatter, getModuleLogger } from "../../lib/process/log.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "../support/assert.ts";
import { captureLogs } from "../support/capture_logs.ts";
import { waitForFileText } from "../support/files.ts";

/** Polling bounds for a sink that flushes every millisecond: 1000 reads 2 ms apart. */
const FAST = { tries: 1000, intervalMs: 2 } as const;

function record(overrides: Partial<LogRecord> = {}): LogRecord {
  return {
    category: ["denolb", "health"],
    level: "warning",
    message: ["Backend is unhealthy"],
    rawMessage: "Backend is unhealthy",
    timestamp: Date.UTC(2025, 0, 31, 12, 0, 0, 250),
    properties: { backend: "127.0.0.1:8081", reason: "HTTP 503", failures: 3, isFirstProbe: false },
    ...overrides,
  };
}

/** A stream that collects what is written to it. */
function collectingStream(): { stream: WritableStream<Uint8Array>; text: () => string } {
  const chunks: Uint8Array[] = [];
  const decoder = new TextDecoder();
  return {
    stream: new WritableStream<Uint8Array>({ write: (chunk) => void chunks.push(chunk) }),
    text: () => chunks.map((chunk) => decoder.decode(chunk)).join(""),
  };
}

Deno.test("createLogFormatter() writes text lines with time, level, module, message and fields", () => {
  const line = createLogFormatter("text")(record());
  assertEquals(
    line,
    '2025-01-31 12:00:00.250 +00 WARN  health: Backend is unhealthy backend=127.0.0.1:8081 reason="HTTP 503" failures=3 isFirstProbe=false\n',
  );
});

Deno.test("createLogFormatter() quotes field values that would break a text line", () => {
  const line = createLogFormatter("text")(record({
    level: "info",
    properties: {
      empty: "",
      newline: "a\nb",
      equals: "a=b",
      error: new TypeError("bad thing"),
      url: new URL("http://a:1/x"),
      list: [1, 2],
      missing: undefined,
    },
  }));
  assertEquals(line.split("\n").length, 2, "one line");
  assertStringIncludes(line, "INFO  health: Backend is unhealthy");
  assertStringIncludes(
    line,
    ' empty="" newline="a\\nb" equals="a=b" error="TypeError: bad thing" url=http://a:1/x list=[1,2] missing=undefined',
  );
});

Deno.test("createLogFormatter() colours the text level only when asked", () => {
  assert(!createLogFormatter("text")(record()).includes("\x1b["));
  assertStringIncludes(createLogFormatter("text", { color: true })(record()), "\x1b[33mWARN");
});

Deno.test("createLogFormatter() writes JSON lines with the fields at the top level", () => {
  const line = createLogFormatter("json")(record());
  assert(line.endsWith("\n"));
  const json: unknown = JSON.parse(line);
  assertEquals(json, {
    "@timestamp": "2025-01-31T12:00:00.250Z",
    level: "WARN",
    message: "Backend is unhealthy",
    logger: "denolb.health",
    backend: "127.0.0.1:8081",
    reason: "HTTP 503",
    failures: 3,
    isFirstProbe: false,
  });
});

Deno.test("configureLogging() writes at the level and above without blocking the caller", async () => {
  const output = collectingStream();
  const extra: LogRecord[] = [];
  const logging = await configureLogging({
    level: "info",
    format: "text",
    stream: output.stream,
    sinks: { extra: (r: LogRecord) => void extra.push(r) },
  });
  try {
    const logger = getModuleLogger("proxy");
    logger.debug("Hidden detail");
    logger.info("Request forwarded", { status: 200 });
    logger.error("Request failed", { status: 502 });
    getLogger(["other"]).error("Not ours");
    assertEquals(output.text(), "", "records are buffered, not written in the logging call");
    assertEquals(extra.map((r) => r.rawMessage), ["Request forwarded", "Request failed"]);
  } finally {
    await logging[Symbol.asyncDispose]();
  }
  const lines = output.text().trimEnd().split("\n");
  assertEquals(lines.length, 2);
  assertMatch(lines[0] ?? "", / INFO {2}proxy: Request forwarded status=200$/);
  assertMatch(lines[1] ?? "", / ERROR proxy: Request failed status=502$/);
  assertEquals(getConfig(), null, "disposal resets LogTape");
});

Deno.test("configureLogging() honours a debug level and JSON format", async () => {
  const output = collectingStream();
  const logging = await configureLogging({ level: "debug", format: "json", stream: output.stream });
  getModuleLogger("health").debug("Probe finished", { ok: true });
  await logging[Symbol.asyncDispose]();
  const json: unknown = JSON.parse(output.text());
  assertEquals((json as Record<string, unknown>).message, "Probe finished");
  assertEquals((json as Record<string, unknown>).logger, "denolb.health");
  assertEquals((json as Record<string, unknown>).ok, true);
});

Deno.test("configureLogging() appends to --log-file", async () => {
  const path = await Deno.makeTempFile({ suffix: ".log" });
  try {
    await Deno.writeTextFile(path, "earlier line\n");
    const logging = await configureLogging({ level: "info", format: "text", file: path });
    getModuleLogger("server").info("Listening", { port: 9090 });
    await logging[Symbol.asyncDispose]();
    const lines = (await Deno.readTextFile(path)).trimEnd().split("\n");
    assertEquals(lines[0], "earlier line");
    assertMatch(lines[1] ?? "", / INFO {2}server: Listening port=9090$/);
    assertEquals(lines.length, 2);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("configureLogging() writes to --log-file while running, not only at exit", async () => {
  const path = await Deno.makeTempFile({ suffix: ".log" });
  const logging = await configureLogging({
    level: "info",
    format: "json",
    file: path,
    flushIntervalMs: 1,
  });
  try {
    getModuleLogger("server").info("Listening", { port: 9090 });
    // Wait for the condition (the record on disk), bounded: the flush runs every 1 ms.
    const text = await waitForFileText(path, `"message":"Listening"`, { intervalMs: 2 });
    assertStringIncludes(text, `"message":"Listening"`);
  } finally {
    await logging[Symbol.asyncDispose]();
    await Deno.remove(path);
  }
});

Deno.test("configureLogging() reopens --log-file by its path after logrotate moved it", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/lb.log`;
  const logging = await configureLogging({
    level: "info",
    format: "text",
    file: path,
    flushIntervalMs: 1,
  });
  try {
    const logger = getModuleLogger("server");
    logger.info("Before rotation");
    assertStringIncludes(await waitForFileText(path, "Before rotation", FAST), "Before rotation");
    await Deno.rename(path, `${path}.1`);
    logging.reopen();
    logger.info("After rotation");
    assertStringIncludes(await waitForFileText(path, "After rotation", FAST), "After rotation");
  } finally {
    await logging[Symbol.asyncDispose]();
  }
  const rotated = await Deno.readTextFile(`${path}.1`);
  const current = await Deno.readTextFile(path);
  assertStringIncludes(rotated, "Before rotation");
  assert(!rotated.includes("After rotation"), rotated);
  assert(!current.includes("Before rotation"), current);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("configureLogging() keeps the old file and warns when a reopen fails", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/logs/lb.log`;
  await Deno.mkdir(`${dir}/logs`);
  const logging = await configureLogging({
    level: "info",
    format: "text",
    file: path,
    flushIntervalMs: 1,
  });
  const moved = `${dir}/moved/lb.log`;
  try {
    const logger = getModuleLogger("server");
    logger.info("First");
    await waitForFileText(path, "First", FAST);
    // The whole directory goes: the path cannot be opened again.
    await Deno.rename(`${dir}/logs`, `${dir}/moved`);
    logging.reopen();
    logger.info("Second");
    const text = await waitForFileText(moved, "Log file not reopened", FAST);
    assertStringIncludes(text, "Second");
    assertMatch(text, /WARN {2}log: Log file not reopened; still writing to the old one error=/);
    logger.info("Third");
    assertStringIncludes(await waitForFileText(moved, "Third", FAST), "Third");
  } finally {
    await logging[Symbol.asyncDispose]();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("configureLogging() names a log file it cannot open", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/missing/lb.log`;
    await assertRejects(
      () => configureLogging({ level: "info", format: "text", file: path }),
      Error,
      `Cannot open log file "${path}": `,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("captureLogs() records the balancer's logs and resets on dispose", async () => {
  {
    await using logs = await captureLogs({ level: "info" });
    getModuleLogger("health").debug("Probe finished");
    getModuleLogger("health").warn("Backend is unhealthy", { backend: "a:1" });
    assertEquals(logs.records.length, 1);
    assertEquals(logs.find("Backend is unhealthy", "warning")[0]?.properties.backend, "a:1");
    assertEquals(logs.find("Backend is unhealthy", "info"), []);
    logs.clear();
    assertEquals(logs.records, []);
  }
  assertEquals(getConfig(), null);
});
