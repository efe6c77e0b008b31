/**
 * Slow start on a fake clock: a backend that comes back ramps its share of picks up over the
 * window, under every weighted policy; backends present at start-up do not ramp.
 */
import { DEFAULT_BALANCER_CONFIG } from "../../lib/config/config.ts";
import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { startBalancer } from "../../lib/control/balancer.ts";
import { createPolicy, type PolicyName } from "../../lib/policies/registry.ts";
import { SlowStart } from "../../lib/policies/slow_start.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { seededRandom } from "./seeded_random.ts";
import { startServer } from "../support/servers.ts";

const REQUEST = new Request("http://127.0.0.1:9090/");
const WINDOW_MS = 10_000;

function pool(): Backend[] {
  return [1, 2, 3].map((i) => new Backend(parseBackendUrl(`10.0.0.${i}:80`)));
}

/**
 * Picks 100 times per 100 ms of fake time from `fromMs` to `toMs` after the ramp began;
 * returns the returning backend's share of the picks relative to its fair share (1 = fair).
 */
async function shareOf(
  pick: () => Backend | undefined,
  target: Backend,
  clock: FakeClock,
  durationMs: number,
  backendCount: number,
): Promise<number> {
  let hits = 0;
  let total = 0;
  for (let elapsed = 0; elapsed < durationMs; elapsed += 100) {
    for (let i = 0; i < 100; i++) {
      if (pick() === target) hits++;
      total++;
    }
    await clock.advance(100);
  }
  return (hits / total) * backendCount;
}

for (const name of ["round-robin", "random", "p2c"] as const satisfies readonly PolicyName[]) {
  Deno.test(`slow start: ${name} gives a recovered backend a share that grows over the window`, async () => {
    const clock = new FakeClock();
    const backends = pool();
    const [, , returning] = backends;
    assert(returning !== undefined);
    const slowStart = new SlowStart(clock);
    const policy = createPolicy(name, DEFAULT_BALANCER_CONFIG, {
      random: seededRandom(7),
      weightOf: slowStart.weigher(WINDOW_MS),
    });
    const pick = () => policy.pick(backends, REQUEST);

    // Present at start-up: full share at once.
    const atStart = await shareOf(pick, returning, clock, 1_000, 3);
    assert(atStart > 0.9 && atStart < 1.1, `start-up share ${atStart}`);

    returning.setHealth("unhealthy");
    assertEquals(await shareOf(pick, returning, clock, 1_000, 3), 0);
    returning.setHealth("healthy");

    const first = await shareOf(pick, returning, clock, 1_000, 3); // 0-1 s
    await clock.advance(3_000);
    const middle = await shareOf(pick, returning, clock, 1_000, 3); // 4-5 s
    await clock.advance(4_000);
    const late = await shareOf(pick, returning, clock, 1_000, 3); // 9-10 s
    const after = await shareOf(pick, returning, clock, 1_000, 3); // 10-11 s
    const shares = `0-1s ${first}, 4-5s ${middle}, 9-10s ${late}, 10-11s ${after}`;
    assert(first < 0.3, shares);
    assert(middle > first && middle < late, shares);
    assert(after > 0.9 && after < 1.1, shares);
  });
}

Deno.test("slow start: a backend added to a running pool ramps; an undrained one too", async () => {
  const clock = new FakeClock();
  const slowStart = new SlowStart(clock);
  const old = new Backend(parseBackendUrl("10.0.0.1:80"), { weight: 4 });
  const added = new Backend(parseBackendUrl("10.0.0.2:80"), { weight: 4, returnCount: 1 });
  assertEquals(slowStart.effectiveWeight(old, WINDOW_MS), 4);
  assertEquals(slowStart.effectiveWeight(added, WINDOW_MS), 0.4, "the floor: 10%");
  await clock.advance(5_000);
  assertEquals(slowStart.effectiveWeight(added, WINDOW_MS), 2);
  old.setDraining(true);
  old.setDraining(false);
  assertEquals(slowStart.effectiveWeight(old, WINDOW_MS), 0.4);
  await clock.advance(10_000);
  assertEquals(slowStart.effectiveWeight(old, WINDOW_MS), 4);
  assertEquals(slowStart.weigher(0)(added), 4, "0 turns slow start off");
});

Deno.test("slow start: returning from ejection counts as coming back", () => {
  const backend = new Backend(parseBackendUrl("10.0.0.1:80"));
  backend.setEjection({ untilMs: 0, count: 1, reason: "connect" });
  assertEquals([backend.isAvailable, backend.returnCount], [false, 0]);
  backend.setHealth("unhealthy");
  backend.setEjection(undefined);
  assertEquals([backend.isAvailable, backend.returnCount], [false, 0], "still unhealthy");
  backend.setHealth("healthy");
  assertEquals([backend.isAvailable, backend.returnCount], [true, 1]);
});

Deno.test("slow start end to end: a backend that recovers gets a small share, then its full one", async () => {
  let isCUp = true;
  const serve = (name: string, isUp: () => boolean) =>
    startServer((request) =>
      new URL(request.url).pathname === "/health"
        ? new Response(null, { status: isUp() ? 200 : 503 })
        : new Response(name)
    );
  await using a = serve("a", () => true);
  await using b = serve("b", () => true);
  await using c = serve("c", () => isCUp);
  const clock = new FakeClock();
  const config = await parseBalancerArgs([
    "--port",
    "0",
    "--admin",
    "off",
    "--access-log",
    "off",
    "--log-level",
    "error",
    "--health-interval",
    "1h",
    "--rise",
    "1",
    "--fall",
    "1",
    "--slow-start",
    "10s",
    "--backend",
    [a, b, c].map((server) => server.url.href).join(","),
  ], () => undefined);
  await using lb = await startBalancer(config, { clock });
  await lb.health.firstRound;
  const send = async (count: number): Promise<Record<string, number>> => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < count; i++) {
      const name = await (await fetch(lb.url)).text();
      counts[name] = (counts[name] ?? 0) + 1;
    }
    return counts;
  };
  assertEquals(await send(30), { a: 10, b: 10, c: 10 }, "present at start-up: no ramp");

  isCUp = false;
  await lb.health.checkNow();
  isCUp = true;
  await lb.health.checkNow();
  const ramping = await send(42);
  assert((ramping.c ?? 0) <= 4, `fair would be 14: ${JSON.stringify(ramping)}`);
  await clock.advance(10_000);
  assertEquals(await send(30), { a: 10, b: 10, c: 10 }, "full share after the window");
});
