/**
 * Several balancers, one pool: two real balancer instances that list the same backends in a
 * different order send each of 1000 keys to the same backend, and after a backend joins (at the
 * end on one, in front on the other) only the keys it takes over move.
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { type RunningBalancer, startBalancer } from "../../lib/control/balancer.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { startServer, type TestServer } from "../support/servers.ts";

const KEYS = 1000;

function named(name: string): TestServer {
  return startServer(() => new Response(name));
}

async function start(backends: readonly TestServer[]): Promise<RunningBalancer> {
  const config = await parseBalancerArgs([
    "--port=0",
    "--admin=127.0.0.1:0",
    "--log-level=fatal",
    "--access-log=off",
    "--workers=1",
    "--policy=hash",
    "--hash-key=header:x-key",
    "--health-interval=1h",
    `--backend=${backends.map((b) => b.url.href).join(",")}`,
  ], () => undefined);
  return await startBalancer(config);
}

/** Which backend answers each key, 16 requests at a time. */
async function mapping(lb: RunningBalancer): Promise<string[]> {
  const answers = new Array<string>(KEYS);
  let next = 0;
  const worker = async () => {
    while (next < KEYS) {
      const key = next++;
      const response = await fetch(lb.url, { headers: { "x-key": `user-${key}` } });
      answers[key] = await response.text();
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return answers;
}

async function addBackend(lb: RunningBalancer, server: TestServer): Promise<void> {
  assert(lb.adminUrl !== undefined);
  const response = await fetch(new URL("/backends", lb.adminUrl), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ url: server.url.href }),
  });
  assertEquals(response.status, 201, await response.text());
}

Deno.test("hash: two instances map 1000 keys alike, and a joining backend moves only its share", async () => {
  await using a = named("a");
  await using b = named("b");
  await using c = named("c");
  await using d = named("d");
  await using one = await start([a, b, c]);
  await using two = await start([c, a, b]);
  const before = await mapping(one);
  assertEquals(await mapping(two), before, "both instances send every key to the same backend");
  assertEquals(new Set(before).size, 3);

  await addBackend(one, d);
  // The other instance learns of it in another order: it is in front of its pool instead.
  await addBackend(two, d);
  const after = await mapping(one);
  assertEquals(await mapping(two), after, "still the same mapping after the join");
  let moved = 0;
  for (let key = 0; key < KEYS; key++) {
    if (after[key] === before[key]) continue;
    moved++;
    assertEquals(
      after[key],
      "d",
      `key ${key} moved from ${before[key]} to ${after[key]}, not to d`,
    );
  }
  // About a quarter of the keys: the new backend's share of four.
  assert(moved > KEYS * 0.15 && moved < KEYS * 0.35, `${moved} of ${KEYS} keys moved`);
});
