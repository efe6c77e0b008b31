/**
 * Routes under `lb --workers 2` as a user runs it (a subprocess): every isolate routes by the
 * same table over the same pools, and a route's rate limit is one limit for the whole balancer
 * (its buckets live in memory the isolates share), so exactly the excess is answered 429.
 */
import { assert, assertEquals } from "../support/assert.ts";
import { startServer, type TestServer } from "../support/servers.ts";
import { startLbProcess } from "../support/subprocess.ts";

const DEADLINE_MS = 20_000;

function named(name: string): TestServer {
  return startServer((request) => new Response(`${name} ${new URL(request.url).pathname}`));
}

async function startLb(config: unknown) {
  const file = await Deno.makeTempFile({ suffix: ".json" });
  await Deno.writeTextFile(file, JSON.stringify(config));
  const lb = startLbProcess(["--workers", "2", "--config", file, "--admin", "off"]);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const [, url] = await Promise.race([
      lb.waitForLine(/Balancer listening url=(http:\/\/[\d.]+:\d+\/)/),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`lb did not start:\n${lb.output}`)), DEADLINE_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    return {
      url: new URL(url ?? ""),
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

/** `n` requests at once, each on a connection of its own (spread over both isolates). */
async function burst(url: URL, n: number): Promise<Response[]> {
  return await Promise.all(Array.from({ length: n }, async () => {
    using client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
    const response = await fetch(url, { client, headers: { connection: "close" } });
    await response.text();
    return response;
  }));
}

const POOL_SETTINGS = { health: { intervalMs: 3_600_000 }, accessLog: { path: "off" } };

Deno.test("--workers 2: each route reaches its own pool with its path rewritten", async () => {
  await using a = named("a");
  await using b = named("b");
  await using lb = await startLb({
    ...POOL_SETTINGS,
    pools: { a: { backends: [a.url.href] }, b: { backends: [b.url.href] } },
    routes: [
      { name: "a", match: { path: "/a" }, pool: "a", rewrite: { stripPrefix: "/a" } },
      { name: "b", match: { path: "/b" }, pool: "b", rewrite: { addPrefix: "/v2" } },
    ],
  });
  const answers = new Set<string>();
  for (const path of ["/a/x", "/b/y", "/a/x", "/b/y", "/a/x", "/b/y"]) {
    const responses = await burst(new URL(path, lb.url), 1);
    for (const response of responses) assertEquals(response.status, 200);
  }
  for (const path of ["/a/x", "/b/y"]) {
    using client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
    answers.add(await (await fetch(new URL(path, lb.url), { client })).text());
  }
  assertEquals([...answers].sort(), ["a /x", "b /v2/b/y"]);
  assertEquals((await burst(new URL("/c", lb.url), 1))[0]?.status, 404);
});

Deno.test("--workers 2: a rate limit of 10/s with burst 5 answers exactly the excess with 429", async () => {
  await using backend = named("a");
  await using lb = await startLb({
    ...POOL_SETTINGS,
    pools: { a: { backends: [backend.url.href] } },
    routes: [
      {
        name: "slow",
        match: { path: "/slow" },
        pool: "a",
        rateLimit: { perSecond: 0.01, burst: 5, key: "route" },
      },
      { name: "limited", pool: "a", rateLimit: { perSecond: 10, burst: 5, key: "client" } },
    ],
  });
  // Next to no refill (one token per 100 s): the burst is all the whole balancer allows, so
  // exactly 5 of 40 pass; a limit per isolate would pass up to 10.
  const slow = await burst(new URL("/slow", lb.url), 40);
  assertEquals(slow.filter((r) => r.status === 200).length, 5);
  assertEquals(slow.filter((r) => r.status === 429).length, 35);
  const refused = slow.find((r) => r.status === 429);
  assertEquals(refused?.headers.get("retry-after"), "100");

  // 10/s, burst 5: what passes is the burst plus the tokens the elapsed time refilled.
  const started = performance.now();
  const limited = await burst(new URL("/r", lb.url), 30);
  const elapsedMs = performance.now() - started;
  const passed = limited.filter((r) => r.status === 200).length;
  const excess = limited.filter((r) => r.status === 429);
  assertEquals(passed + excess.length, 30, "every answer is 200 or 429");
  assert(passed >= 5, `the burst passes (${passed})`);
  assert(
    passed <= 5 + Math.ceil(elapsedMs / 100),
    `${passed} passed in ${elapsedMs.toFixed(0)} ms: at most the burst and one per 100 ms`,
  );
  for (const response of excess) assertEquals(response.headers.get("retry-after"), "1");
});
