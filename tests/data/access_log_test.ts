import { getLogger } from "@logtape/logtape";
import {
  AccessLog,
  accessLogTarget,
  type AccessLogWriter,
  type AccessRecord,
  formatAccessRecord,
} from "../../lib/data/access_log.ts";
import { startDataPlane } from "../../lib/data/data_plane.ts";
import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { type BalancerConfig, DEFAULT_BALANCER_CONFIG } from "../../lib/config/config.ts";
import type { MetricEvent } from "../../lib/core/metrics.ts";
import { Metrics } from "../../lib/core/metrics.ts";
import { Pool } from "../../lib/core/pool.ts";
import { systemClock } from "../../lib/shared/clock.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import type { SignalApi } from "../../lib/process/signals.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { captureLogs } from "../support/capture_logs.ts";
import { waitForFileText } from "../support/files.ts";
import { startServer } from "../support/servers.ts";
import { REPO_ROOT, RUN_PERMISSIONS, startLbProcess } from "../support/subprocess.ts";
import { waitUntil } from "../support/wait.ts";

const logger = getLogger(["denolb", "proxy"]);

function sample(overrides: Partial<AccessRecord> = {}): AccessRecord {
  return {
    time: Date.UTC(2026, 10, 30, 19, 5, 7),
    client: "127.0.0.1",
    method: "GET",
    path: "/a?b=1",
    status: 200,
    bytes: 12,
    referer: null,
    userAgent: 'curl/8 "x"',
    backend: "10.0.0.1:80",
    durationMs: 3.456,
    backendMs: 2.5,
    requestId: "r-1",
    outcome: "forwarded",
    ...overrides,
  };
}

/** A writer whose writes finish when the test says so. */
function gatedWriter() {
  const written: string[] = [];
  const gates: Array<() => void> = [];
  const writer: AccessLogWriter = {
    write: (bytes) =>
      new Promise<number>((resolve) => {
        gates.push(() => {
          written.push(new TextDecoder().decode(bytes));
          resolve(bytes.length);
        });
      }),
    close: () => {},
  };
  return {
    target: { open: () => Promise.resolve(writer) },
    written,
    /** Resolves once a write is pending. */
    async issued(): Promise<void> {
      await waitUntil("a pending write", () => gates.length > 0);
    },
    /** Finishes the oldest pending write; resolves once it has been issued. */
    async release(): Promise<void> {
      await waitUntil("a pending write", () => gates.length > 0);
      gates.shift()?.();
    },
  };
}

Deno.test("formatAccessRecord() writes nginx's combined format, JSON lines and text", () => {
  const combined = formatAccessRecord("combined", sample());
  assertEquals(
    combined,
    '127.0.0.1 - - [30/Nov/2026:19:05:07 +0000] "GET /a?b=1 HTTP/1.1" 200 12 "-" ' +
      '"curl/8 \\"x\\"" rt=0.003 urt=0.003 rid="r-1"\n',
  );
  const hostile = formatAccessRecord("combined", sample({ path: "/x\n\x1b", bytes: undefined }));
  assertEquals(hostile.split("\n").length, 2, "one line, whatever the path holds");
  assertMatch(hostile, /"GET \/x\\x0a\\x1b HTTP\/1.1" 200 0 /);
  const json = JSON.parse(formatAccessRecord("json", sample({ reason: "connect" })));
  assertEquals(json.time, "2026-11-30T19:05:07.000Z");
  assertEquals(json.status, 200);
  assertEquals(json.durationMs, 3.46);
  assertEquals(json.backendMs, 2.5);
  assertEquals(json.requestId, "r-1");
  assertEquals(json.reason, "connect");
  assertMatch(
    formatAccessRecord("text", sample({ backendMs: null })),
    /^2026-11-30T19:05:07.000Z 127.0.0.1 GET "\/a\?b=1" 200 forwarded backend=10.0.0.1:80 durationMs=3.46 backendMs=- requestId=r-1\n$/,
  );
});

Deno.test("AccessLog batches whole lines and makes writers wait only when its buffer is full", async () => {
  const gated = gatedWriter();
  const line = formatAccessRecord("text", sample());
  const log = new AccessLog({
    format: "text",
    target: gated.target,
    logger,
    maxBufferBytes: line.length * 3,
  });
  assertEquals(log.write(sample()), undefined, "the first line goes out at once");
  await gated.issued();
  // While the first write is pending, lines gather in the buffer until it is full.
  assertEquals(log.write(sample()), undefined);
  const full = log.write(sample());
  assert(full !== undefined, "a full buffer makes the writer wait");
  let isReleased = false;
  void full.then(() => isReleased = true);
  await Promise.resolve();
  assertEquals(isReleased, false, "room comes when a batch is written, not before");
  await gated.release();
  await full;
  const closing = log.close();
  await gated.release();
  await closing;
  assertEquals(gated.written, [line, line.repeat(2)]);
});

Deno.test("AccessLog gathers the lines of a busy spell into one write; after a quiet one, at once", async () => {
  const clock = new FakeClock(1_000);
  const writes: string[] = [];
  const writer: AccessLogWriter = {
    write: (bytes) => {
      writes.push(new TextDecoder().decode(bytes));
      return Promise.resolve(bytes.length);
    },
    close: () => {},
  };
  const log = new AccessLog({
    format: "text",
    target: { open: () => Promise.resolve(writer) },
    logger,
    clock,
    flushIntervalMs: 5,
  });
  const line = (id: string) => formatAccessRecord("text", sample({ requestId: id }));
  log.write(sample({ requestId: "a" }));
  await settle();
  assertEquals(writes, [line("a")], "the first line goes out at once");
  log.write(sample({ requestId: "b" }));
  log.write(sample({ requestId: "c" }));
  await settle();
  assertEquals(writes.length, 1, "lines within the interval wait for it");
  await clock.advance(4);
  assertEquals(writes.length, 1);
  await clock.advance(1);
  assertEquals(writes, [line("a"), line("b") + line("c")], "then go out as one write");
  await clock.advance(100);
  log.write(sample({ requestId: "d" }));
  await settle();
  assertEquals(writes.at(-1), line("d"), "a line after a quiet spell goes out at once");
  log.write(sample({ requestId: "e" }));
  await settle();
  assertEquals(writes.length, 3);
  await log.close();
  assertEquals(writes.at(-1), line("e"), "closing writes what waits without the interval");
  assertEquals(clock.pendingSleeps, 0);
});

Deno.test("AccessLog on /dev/full: one WARN, failures counted, writers never wait", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  await using logs = await captureLogs({ level: "info" });
  const events: MetricEvent[] = [];
  const log = new AccessLog({
    format: "combined",
    target: accessLogTarget("/dev/full"),
    logger,
    onEvent: (event) => events.push(event),
    maxBufferBytes: 1_000,
    retryMs: 5,
  });
  log.write(sample());
  await waitUntil("a failed write", () => events.includes("access-log-write-failed"));
  // Once the file is known to fail, a full buffer loses lines rather than stop serving.
  for (let i = 0; i < 100; i++) assertEquals(log.write(sample()), undefined);
  await waitUntil(
    "three failed writes",
    () => events.filter((e) => e === "access-log-write-failed").length >= 3,
  );
  await log.close();
  assertEquals(
    logs.find("Cannot write the access log; retrying, requests keep being served").length,
    1,
  );
  assert(events.includes("access-log-line-lost"), "lines past the buffer are counted as lost");
});

Deno.test("AccessLog reopens its file: lines after reopen() go to a new file at the path", async () => {
  const directory = await Deno.makeTempDir();
  try {
    const path = `${directory}/access.log`;
    const log = new AccessLog({ format: "text", target: accessLogTarget(path), logger });
    log.write(sample({ requestId: "before" }));
    // Waits for the first batch: reopen() after it, as logrotate does after moving the file.
    await waitForFileText(path, "before", { tries: 5000, intervalMs: 1 });
    await Deno.rename(path, `${path}.1`);
    log.reopen();
    log.write(sample({ requestId: "after" }));
    await log.close();
    assertMatch(await Deno.readTextFile(`${path}.1`), /requestId=before\n$/);
    assertMatch(await Deno.readTextFile(path), /^[^\n]*requestId=after\n$/);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

function balancerConfig(backend: URL, accessLog: BalancerConfig["accessLog"]): BalancerConfig {
  const D = DEFAULT_BALANCER_CONFIG;
  return {
    ...D,
    host: "127.0.0.1",
    port: 0,
    workers: "1",
    backends: [{ url: parseBackendUrl(backend.href), weight: 1 }],
    admin: { listen: "off", insecure: "off" },
    accessLog,
  };
}

Deno.test("a data plane logging to /dev/full keeps serving, with a WARN and a metric", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  await using logs = await captureLogs({ level: "info" });
  await using backend = startServer(() => new Response("ok"));
  const pool = new Pool([new Backend(parseBackendUrl(backend.url.href))]);
  const metrics = new Metrics(pool);
  const plane = startDataPlane(
    balancerConfig(backend.url, { path: "/dev/full", format: "combined" }),
    { pool, metrics, clock: systemClock, logger, proxyLogger: logger },
  );
  try {
    for (let i = 0; i < 20; i++) {
      const response = await fetch(`http://127.0.0.1:${plane.listener.addr.port}/`);
      assertEquals(await response.text(), "ok");
    }
    await waitUntil("a failed write", () => metrics.eventCount("access-log-write-failed") > 0);
    assertEquals(
      logs.find("Cannot write the access log; retrying, requests keep being served").length,
      1,
    );
    assertMatch(metrics.render(), /denolb_access_log_errors_total\{kind="write-failed"\} [1-9]/);
  } finally {
    await plane.shutdown();
    await plane.close();
  }
});

Deno.test("a data plane reopens its access log on SIGUSR1 and on SIGHUP", async () => {
  const directory = await Deno.makeTempDir();
  const handlers = new Map<Deno.Signal, () => void>();
  const signals: SignalApi = {
    addSignalListener: (signal, handler) => handlers.set(signal, handler),
    removeSignalListener: (signal) => handlers.delete(signal),
  };
  await using backend = startServer(() => new Response("ok"));
  const pool = new Pool([new Backend(parseBackendUrl(backend.url.href))]);
  const path = `${directory}/access.log`;
  const config = balancerConfig(backend.url, { path, format: "json" });
  // The test tells its requests apart by the X-Request-Id it sends: trust it.
  const trusted = { ...config, proxy: { ...config.proxy, trustedProxies: ["127.0.0.1"] } };
  const plane = startDataPlane(trusted, {
    pool,
    metrics: new Metrics(pool),
    clock: systemClock,
    logger,
    proxyLogger: logger,
    signals,
  });
  const get = async (id: string) =>
    await (await fetch(`http://127.0.0.1:${plane.listener.addr.port}/`, {
      headers: { "x-request-id": id },
    })).text();
  try {
    await get("one");
    await waitForFileText(path, "one", { tries: 5000, intervalMs: 1 });
    await Deno.rename(path, `${path}.1`);
    const onReopen = handlers.get("SIGUSR1");
    assert(onReopen !== undefined, "SIGUSR1 has a listener");
    onReopen();
    await get("two");
    await waitForFileText(path, "two", { tries: 5000, intervalMs: 1 });
    await Deno.rename(path, `${path}.2`);
    const onHangup = handlers.get("SIGHUP");
    assert(onHangup !== undefined, "SIGHUP has a listener");
    onHangup();
    await get("three");
  } finally {
    await plane.shutdown();
    await plane.close();
  }
  assertEquals(handlers.size, 0, "the listener is removed on shutdown");
  assertEquals(JSON.parse(await Deno.readTextFile(`${path}.1`)).requestId, "one");
  assertEquals(JSON.parse(await Deno.readTextFile(`${path}.2`)).requestId, "two");
  assertEquals(JSON.parse(await Deno.readTextFile(path)).requestId, "three");
  await Deno.remove(directory, { recursive: true });
});

Deno.test(
  "5000 requests from the load tester give exactly 5000 complete access lines, from two isolates",
  {
    ignore: Deno.build.os === "windows",
  },
  async () => {
    const directory = await Deno.makeTempDir();
    try {
      const path = `${directory}/access.log`;
      await using backend = startServer(() => new Response("ok"));
      await using lb = startLbProcess([
        "--admin",
        "off",
        "--backend",
        backend.url.host,
        "--access-log",
        path,
        "--access-log-format",
        "json",
        // Two data-plane isolates append to the same file.
        "--workers",
        "2",
      ]);
      const [, url] = await lb.waitForLine(/Balancer listening.*?url=(http:\/\/[\d.]+:\d+\/)/);
      assert(url !== undefined);
      const total = 5000;
      const run = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          ...RUN_PERMISSIONS,
          "main.ts",
          "loadtest",
          "--url",
          url,
          "--total",
          String(total),
          "--concurrency",
          "50",
          "--workers",
          "1",
          "--quiet",
        ],
        cwd: REPO_ROOT,
        stdout: "null",
        stderr: "piped",
      }).output();
      assertEquals(run.code, 0, new TextDecoder().decode(run.stderr));
      lb.child.kill("SIGTERM");
      assertEquals((await lb.child.status).code, 0, lb.output);
      const text = await Deno.readTextFile(path);
      assert(text.endsWith("\n"), "the log ends with a complete line");
      const lines = text.slice(0, -1).split("\n");
      assertEquals(lines.length, total);
      const ids = new Set<string>();
      for (const line of lines) {
        const record = JSON.parse(line);
        assertEquals(record.status, 200, line);
        ids.add(record.requestId);
      }
      assertEquals(ids.size, total, "every request logged once");
    } finally {
      await Deno.remove(directory, { recursive: true });
    }
  },
);
