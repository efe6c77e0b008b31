/**
 * Signals: the wiring in `lib/signals.ts` over a fake signal API, and the real balancer in a
 * subprocess reloading on SIGHUP and exiting promptly on SIGTERM.
 */
import {
  listenForHangup,
  listenForReopen,
  listenForShutdown,
  type SignalApi,
} from "../../lib/process/signals.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../support/assert.ts";
import { waitForFileText } from "../support/files.ts";
import { startServer } from "../support/servers.ts";
import { startLbProcess } from "../support/subprocess.ts";

/** A signal API that records listeners and lets a test raise signals. */
function fakeSignalApi(): SignalApi & {
  raise(signal: Deno.Signal): void;
  count(signal: Deno.Signal): number;
} {
  const listeners = new Map<Deno.Signal, Array<() => void>>();
  return {
    addSignalListener(signal, handler) {
      listeners.set(signal, [...(listeners.get(signal) ?? []), handler]);
    },
    removeSignalListener(signal, handler) {
      listeners.set(signal, (listeners.get(signal) ?? []).filter((h) => h !== handler));
    },
    raise(signal) {
      for (const handler of listeners.get(signal) ?? []) handler();
    },
    count(signal) {
      return listeners.get(signal)?.length ?? 0;
    },
  };
}

Deno.test("listenForShutdown() aborts on the first SIGTERM and reports repeats", () => {
  const api = fakeSignalApi();
  let repeats = 0;
  using shutdown = listenForShutdown({ api, os: "linux", onRepeat: () => repeats++ });
  assertEquals(shutdown.signal.aborted, false);
  api.raise("SIGTERM");
  assertEquals(shutdown.signal.aborted, true);
  assertEquals(repeats, 0);
  api.raise("SIGINT");
  api.raise("SIGTERM");
  assertEquals(repeats, 2);
});

Deno.test("listenForShutdown() aborts on SIGINT and listens to SIGINT alone on Windows", () => {
  const api = fakeSignalApi();
  using shutdown = listenForShutdown({ api, os: "windows" });
  assertEquals(api.count("SIGTERM"), 0);
  api.raise("SIGINT");
  assertEquals(shutdown.signal.aborted, true);
});

Deno.test("listenForShutdown() removes its listeners once disposed, idempotently", () => {
  const api = fakeSignalApi();
  const shutdown = listenForShutdown({ api, os: "linux" });
  assertEquals([api.count("SIGINT"), api.count("SIGTERM")], [1, 1]);
  shutdown[Symbol.dispose]();
  shutdown[Symbol.dispose]();
  assertEquals([api.count("SIGINT"), api.count("SIGTERM")], [0, 0]);
  api.raise("SIGTERM");
  assertEquals(shutdown.signal.aborted, false);
});

Deno.test("listenForHangup() calls back on each SIGHUP and does not abort the shutdown signal", () => {
  const api = fakeSignalApi();
  let hangups = 0;
  using shutdown = listenForShutdown({ api, os: "linux" });
  const hangup = listenForHangup(() => hangups++, { api, os: "linux" });
  api.raise("SIGHUP");
  api.raise("SIGHUP");
  assertEquals(hangups, 2);
  assertEquals(shutdown.signal.aborted, false);
  hangup[Symbol.dispose]();
  assertEquals(api.count("SIGHUP"), 0);
});

Deno.test("listenForHangup() registers nothing on Windows, which has no SIGHUP", () => {
  const api = fakeSignalApi();
  using _hangup = listenForHangup(() => {}, { api, os: "windows" });
  assertEquals(api.count("SIGHUP"), 0);
});

// --- The real balancer in a subprocess. ---

/** Bounds a wait without sleeping: rejects after `ms` unless `promise` settles first. */
Deno.test("listenForReopen() calls back on SIGUSR1 and on SIGHUP, until disposed", () => {
  const api = fakeSignalApi();
  let reopens = 0;
  const handle = listenForReopen(() => reopens++, { api, os: "linux" });
  api.raise("SIGUSR1");
  api.raise("SIGHUP");
  assertEquals(reopens, 2);
  handle[Symbol.dispose]();
  api.raise("SIGUSR1");
  api.raise("SIGHUP");
  assertEquals(reopens, 2);
  assertEquals(api.count("SIGUSR1") + api.count("SIGHUP"), 0);
  listenForReopen(() => reopens++, { api, os: "windows" });
  assertEquals(api.count("SIGUSR1") + api.count("SIGHUP"), 0, "Windows has neither signal");
});

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** A port on 127.0.0.1 that nothing listens on (bound, then released). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

/** Starts `main.ts lb` with the default health interval, as a user would. */
function startLb() {
  return startLbProcess([
    "--backend",
    `127.0.0.1:${closedPort()}`,
    "--admin",
    "127.0.0.1:0",
  ]);
}

const EXIT_BOUND_MS = 5_000;
const isPosix = Deno.build.os !== "windows";

Deno.test({
  name: "lb reloads on SIGHUP, keeps serving, then exits 0 on SIGTERM",
  ignore: !isPosix,
  fn: async () => {
    await using lb = startLb();
    const [, admin] = await lb.waitForLine(
      /Balancer listening.*?admin=\S*?(http:\/\/[\d.]+:\d+\/)/,
    );
    assert(admin !== undefined);
    lb.child.kill("SIGHUP");
    const [line] = await lb.waitForLine(/^.*SIGHUP.*$/m);
    assertMatch(line, /INFO .*SIGHUP: reloading the configuration/);
    await lb.waitForLine(/Configuration reloaded/);
    const response = await fetch(new URL("/health", admin));
    await response.body?.cancel();
    assertEquals(response.status, 200, "still serving after SIGHUP");
    lb.child.kill("SIGTERM");
    const status = await within(lb.child.status, EXIT_BOUND_MS, "Exit after SIGTERM");
    assertEquals(status.code, 0, lb.output);
    assertStringIncludes(lb.output, "Balancer stopped");
  },
});

Deno.test({
  name: "lb exits 0 promptly on SIGTERM while its health timer is pending",
  ignore: !isPosix,
  fn: async () => {
    await using lb = startLb();
    // The first probe has run (and failed), so the next one is a timer 10 s away.
    await lb.waitForLine(/Backend is unhealthy/);
    const start = performance.now();
    lb.child.kill("SIGTERM");
    const status = await within(lb.child.status, EXIT_BOUND_MS, "Exit after SIGTERM");
    const elapsedMs = performance.now() - start;
    assertEquals(status.code, 0, lb.output);
    assert(elapsedMs < EXIT_BOUND_MS, `exited after ${elapsedMs.toFixed(0)} ms`);
  },
});

Deno.test({
  name: "lb --workers 2 reopens both log files on SIGHUP after logrotate moved them",
  ignore: !isPosix,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const log = `${dir}/lb.log`;
    const access = `${dir}/access.log`;
    await using backend = startServer(() => new Response("ok"));
    await using lb = startLbProcess([
      "--admin",
      "off",
      "--workers",
      "2",
      "--backend",
      backend.url.host,
      "--log-file",
      log,
      "--access-log",
      access,
      "--access-log-format",
      "json",
      // Requests are told apart by the X-Request-Id they send: trust it.
      "--trusted-proxies",
      "127.0.0.1",
    ]);
    try {
      const [, url] = (await waitForFileText(log, /Balancer listening url=(\S+)/)).match(
        /Balancer listening url=(\S+)/,
      ) ?? [];
      assert(url !== undefined, await Deno.readTextFile(log).catch(() => "no log file"));
      const get = async (id: string) => {
        const response = await fetch(url, { headers: { "x-request-id": id } });
        assertEquals(await response.text(), "ok");
      };
      await get("before");
      await waitForFileText(access, /"before"/);
      await Deno.rename(log, `${log}.1`);
      await Deno.rename(access, `${access}.1`);
      lb.child.kill("SIGHUP");
      assertMatch(await waitForFileText(log, /Configuration reloaded/), /SIGHUP: reloading/);
      // Both isolates reopen; a few requests reach each of them.
      for (let index = 0; index < 8; index++) await get(`after-${index}`);
      const lines = (await waitForFileText(access, /after-7/)).trimEnd().split("\n");
      assertEquals(
        lines.map((line) => JSON.parse(line).requestId).sort(),
        Array.from({ length: 8 }, (_, index) => `after-${index}`),
      );
      const rotated = await Deno.readTextFile(`${access}.1`);
      assertEquals(rotated.trimEnd().split("\n").map((line) => JSON.parse(line).requestId), [
        "before",
      ]);
      assertStringIncludes(await Deno.readTextFile(`${log}.1`), "Balancer listening");
    } finally {
      lb.child.kill("SIGTERM");
      const status = await within(lb.child.status, EXIT_BOUND_MS, "Exit after SIGTERM");
      assertEquals(status.code, 0, lb.output);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
