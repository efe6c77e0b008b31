/**
 * `lb --workers 2` as a user runs it (a subprocess) behaves as one balancer: one rotation for
 * clients on new connections, and in-flight limits and the queue of the whole balancer.
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { startBalancer } from "../../lib/control/balancer.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { startServer, type TestServer } from "../support/servers.ts";
import { type LiveProcess, startLbProcess } from "../support/subprocess.ts";

const MAIN = new URL("../../main.ts", import.meta.url);

/** Every wait in these tests ends by this deadline. */
const DEADLINE_MS = 20_000;

/** Wakes whoever waits for a change; {@linkcode until} re-checks its condition on each. */
class Changes {
  #waiters: Array<() => void> = [];

  notify(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** Resolves once `isDone()` holds; throws naming `what` at the deadline. */
  async until(isDone: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + DEADLINE_MS;
    while (!isDone()) {
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) throw new Error(`Timed out waiting for ${what}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, remainingMs);
      });
      clearTimeout(timer);
    }
  }
}

/** A backend that records which requests reached it, in one order shared by all of them. */
function recordingBackend(name: string, order: string[]): TestServer {
  return startServer((request) => {
    if (new URL(request.url).pathname.startsWith("/r")) order.push(name);
    return new Response(name);
  });
}

async function startLb(config: unknown, flags: readonly string[]): Promise<{
  lb: LiveProcess;
  url: URL;
  [Symbol.asyncDispose](): Promise<void>;
}> {
  const file = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(file, JSON.stringify(config));
  const lb = startLbProcess([
    "--workers",
    "2",
    "--config",
    file,
    "--admin",
    "off",
    ...flags,
  ]);
  try {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const [, url] = await Promise.race([
      lb.waitForLine(/Balancer listening url=(http:\/\/[\d.]+:\d+\/)/),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`lb did not start:\n${lb.output}`)), DEADLINE_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    return {
      lb,
      url: new URL("/r", url),
      async [Symbol.asyncDispose]() {
        await lb[Symbol.asyncDispose]();
        await Deno.remove(file);
      },
    };
  } catch (error) {
    await lb[Symbol.asyncDispose]();
    await Deno.remove(file);
    throw error;
  }
}

/** `n` requests one after another, each on a new connection. */
async function sequential(url: URL, n: number): Promise<void> {
  using client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
  for (let i = 0; i < n; i++) {
    const response = await fetch(url, { client, headers: { connection: "close" } });
    await response.text();
    assertEquals(response.status, 200);
  }
}

/** Longest run of one backend in a row. */
function longestRun(order: readonly string[]): number {
  let longest = 0;
  let run = 0;
  order.forEach((name, i) => {
    run = i > 0 && order[i - 1] === name ? run + 1 : 1;
    longest = Math.max(longest, run);
  });
  return longest;
}

Deno.test("--workers 2: 30 sequential requests on new connections are one strict rotation", async () => {
  const order: string[] = [];
  await using a = recordingBackend("a", order);
  await using b = recordingBackend("b", order);
  await using c = recordingBackend("c", order);
  await using _lb = await startLb({ backends: [a.url.href, b.url.href, c.url.href] }, []);
  await sequential(_lb.url, 30);
  assertEquals(order.join(" "), Array(10).fill("a b c").join(" "));
});

Deno.test("--workers 2: weights 5,1,1 are one smooth sequence, a a b a c a a, 50/10/10 of 70", async () => {
  const order: string[] = [];
  await using a = recordingBackend("a", order);
  await using b = recordingBackend("b", order);
  await using c = recordingBackend("c", order);
  await using lb = await startLb({
    backends: [
      { url: a.url.href, weight: 5 },
      { url: b.url.href, weight: 1 },
      { url: c.url.href, weight: 1 },
    ],
  }, []);
  await sequential(lb.url, 70);
  const count = (name: string) => order.filter((n) => n === name).length;
  assertEquals([count("a"), count("b"), count("c")], [50, 10, 10]);
  // Exactly one isolate's order: runs of 2 within a round, 4 where one round meets the next
  // (per-isolate rotations gave runs of 6).
  assertEquals(order.join(" "), Array(10).fill("a a b a c a a").join(" "));
  assertEquals(longestRun(order), 4);
});

/**
 * 12 concurrent requests, on their own connections, to one slow backend with `maxInFlight: 2`:
 * it never holds more than 2, and exactly those beyond its 2 and the queue are answered 503.
 */
async function overSlowBackend(queueSize: number): Promise<void> {
  const changes = new Changes();
  const release = Promise.withResolvers<void>();
  let active = 0;
  let most = 0;
  await using slow = startServer(async (request) => {
    if (!new URL(request.url).pathname.startsWith("/r")) return new Response("up");
    active++;
    most = Math.max(most, active);
    changes.notify();
    await release.promise;
    active--;
    return new Response("slow");
  });
  await using lb = await startLb(
    { backends: [{ url: slow.url.href, maxInFlight: 2 }] },
    ["--queue-size", String(queueSize), "--queue-timeout", "30s"],
  );
  const statuses: number[] = [];
  const total = 12;
  const excess = total - 2 - queueSize;
  const requests = Array.from({ length: total }, async () => {
    using client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
    const response = await fetch(lb.url, { client });
    await response.text();
    statuses.push(response.status);
    changes.notify();
  });
  try {
    await changes.until(
      () => active === 2 && statuses.filter((s) => s === 503).length >= excess,
      `2 requests at the backend and ${excess} answered 503`,
    );
  } finally {
    release.resolve();
    await Promise.all(requests);
  }
  assertEquals(most, 2, "the backend never held more than its maxInFlight");
  const count = (status: number) => statuses.filter((s) => s === status).length;
  assertEquals([count(200), count(503)], [2 + queueSize, excess]);
  assert(statuses.length === total);
}

Deno.test("--workers 2: a backend with maxInFlight 2 never holds more than 2 of 12 concurrent requests", async () => {
  await overSlowBackend(0);
});

Deno.test("--workers 2: a queue of 1 over it answers exactly the excess with 503", async () => {
  await overSlowBackend(1);
});

Deno.test("--workers 2: a reload that removes one backend and adds another keeps one rotation", async () => {
  const order: string[] = [];
  await using a = recordingBackend("a", order);
  await using b = recordingBackend("b", order);
  await using c = recordingBackend("c", order);
  await using d = recordingBackend("d", order);
  const flags = ["--port", "0", "--admin", "off", "--workers", "2", "--log-level", "error"];
  const parse = (backends: readonly TestServer[]) =>
    parseBalancerArgs(
      [...flags, "--backend", backends.map((s) => s.url.href).join(",")],
      () => undefined,
    );
  let next = await parse([a, b, c]);
  await using lb = await startBalancer(next, {
    workerEntry: MAIN,
    loadConfig: () => Promise.resolve(next),
  });
  const url = new URL("/r", lb.url);
  await sequential(url, 6);
  next = await parse([a, c, d]);
  const outcome = await lb.reload();
  assert(outcome.ok, JSON.stringify(outcome));
  // b drains, then leaves the pool; every isolate hears of it by message.
  const deadline = Date.now() + DEADLINE_MS;
  while (lb.pool.backends.length > 3 || !order.includes("d")) {
    assert(Date.now() < deadline, "b never left, or d never got a request");
    await sequential(url, 1);
  }
  order.length = 0;
  await sequential(url, 12);
  const start = order.indexOf("a");
  assertEquals(
    [...order.slice(start), ...order.slice(0, start)].join(" "),
    Array(4).fill("a c d").join(" "),
    "one strict rotation over the new pool",
  );
});
