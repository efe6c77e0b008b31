/**
 * One reload diff: the reload plan alone decides what changed, each part gets its change, and
 * the answer names every change applied and every one that needs a restart. Run with two
 * data-plane isolates, where a change that never reached the workers went unnoticed before
 * (an access log or passive-health change answered success and the workers kept the old one).
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { type RunningBalancer, startBalancer } from "../../lib/control/balancer.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { waitForFileText } from "../support/files.ts";
import { startServer } from "../support/servers.ts";
import { waitUntil } from "../support/wait.ts";

const MAIN = new URL("../../main.ts", import.meta.url);

interface Settings {
  readonly accessLog: string;
  readonly outlierFailures: number;
  readonly logLevel: string;
  readonly workers: string;
}

async function writeConfig(path: string, backends: readonly string[], settings: Settings) {
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      host: "127.0.0.1",
      port: 0,
      workers: settings.workers,
      backends,
      health: { intervalMs: 3_600_000 },
      outlier: { failures: settings.outlierFailures, kinds: ["5xx"] },
      log: { level: settings.logLevel },
      accessLog: { path: settings.accessLog, format: "combined" },
    }),
  );
}

async function postReload(lb: RunningBalancer) {
  assert(lb.adminUrl !== undefined);
  const response = await fetch(new URL("/reload", lb.adminUrl), { method: "POST" });
  return { status: response.status, body: await response.json() };
}

/** Requests over new connections, so both isolates' listeners get their turns. */
async function get(lb: RunningBalancer, path: string, times: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < times; i++) {
    const response = await fetch(new URL(path, lb.url), { headers: { connection: "close" } });
    await response.body?.cancel();
    statuses.push(response.status);
  }
  return statuses;
}

Deno.test("--workers 2: a reload names each setting group it changes, and the data plane uses it", async () => {
  const directory = await Deno.makeTempDir();
  await using good = startServer(() => new Response("ok"));
  // Healthy to the probe, 500 to every request: a failure passive health counts as `5xx`.
  await using failing = startServer((request) =>
    new Response(null, { status: new URL(request.url).pathname === "/health" ? 200 : 500 })
  );
  const dead = failing.url.href;
  const configPath = `${directory}/lb.json`;
  const first: Settings = {
    accessLog: `${directory}/first.log`,
    outlierFailures: 0,
    logLevel: "fatal",
    workers: "2",
  };
  await writeConfig(configPath, [good.url.href, dead], first);
  const args = ["--admin", "127.0.0.1:0", "--config", configPath];
  const load = () => parseBalancerArgs(args, () => undefined);
  await using lb = await startBalancer(await load(), { loadConfig: load, workerEntry: MAIN });
  try {
    assertEquals(lb.isolateCount, 2);

    assertEquals(await get(lb, "/before", 4), [200, 500, 200, 500]);
    assert((await waitForFileText(first.accessLog, "/before")).includes("/before"));

    // The access log moves: the answer says so and both isolates write the new file.
    const second = { ...first, accessLog: `${directory}/second.log` };
    await writeConfig(configPath, [good.url.href, dead], second);
    const moved = await postReload(lb);
    assertEquals(moved, {
      status: 200,
      body: { ok: true, changes: ["access log"], needsRestart: [] },
    });
    assertEquals(await get(lb, "/after", 6), [200, 500, 200, 500, 200, 500]);
    const text = await waitForFileText(second.accessLog, /(\/after.*\n.*){6}/);
    assertEquals(text.split("\n").filter((line) => line.includes("/after")).length, 6);
    assert(!(await Deno.readTextFile(first.accessLog)).includes("/after"));

    // Passive health turns on: the workers relay failures by the new threshold.
    const third = { ...second, outlierFailures: 1 };
    await writeConfig(configPath, [good.url.href, dead], third);
    const passive = await postReload(lb);
    assertEquals(passive.body.changes, ["passive health"]);
    await waitUntil("the dead backend ejected", async () => {
      await get(lb, "/eject", 2);
      const status = await (await fetch(new URL("/status", lb.adminUrl))).json();
      const backend = status.backends.find((b: { url: string }) => b.url === dead);
      return backend?.ejected !== null && backend?.ejected !== undefined;
    });

    // Logging and the isolate count take effect at the next start: the answer says which.
    const fourth = { ...third, logLevel: "error", workers: "1" };
    await writeConfig(configPath, [good.url.href, dead], fourth);
    const restart = await postReload(lb);
    assertEquals(restart.body, { ok: true, changes: [], needsRestart: ["log", "workers"] });
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});
