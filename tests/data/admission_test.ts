import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { Admission, type Admitted, inFlightLimitsOf } from "../../lib/data/admission.ts";
import { createRoundRobin } from "../../lib/policies/round_robin.ts";
import { Pool } from "../../lib/core/pool.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";

const REQUEST = new Request("http://lb/");

function setup(
  options: { maxInFlight?: number; own?: Record<string, number>; queueSize?: number } = {},
) {
  const a = new Backend(parseBackendUrl("http://a:1"));
  const b = new Backend(parseBackendUrl("http://b:1"));
  const pool = new Pool([a, b]);
  const clock = new FakeClock();
  const limits = inFlightLimitsOf({
    limits: {
      maxInFlight: options.maxInFlight ?? 1,
      queueSize: options.queueSize ?? 2,
      queueTimeoutMs: 1_000,
    },
    backends: pool.backends.map((backend) => {
      const own = options.own?.[backend.url.host];
      return own === undefined ? { url: backend.url } : { url: backend.url, maxInFlight: own };
    }),
  });
  const admission = new Admission({ pool, policy: createRoundRobin(), limits, clock });
  const signal = new AbortController().signal;
  const admit = (abort: AbortSignal = signal) => admission.admit(REQUEST, {}, abort);
  return { a, b, pool, clock, admission, admit };
}

/** Names what an admission gave: the backend's host or the refusal. */
function nameOf(admitted: Admitted): string {
  return typeof admitted === "string" ? admitted : admitted.url.host;
}

Deno.test("admit() skips a full backend and begins the one it picks", () => {
  const { a, b, admit } = setup({ maxInFlight: 2 });
  const names = [admit(), admit(), admit(), admit()].map((x) => nameOf(x as Admitted));
  assertEquals(names, ["a:1", "b:1", "a:1", "b:1"]);
  assertEquals([a.inFlight, b.inFlight], [2, 2]);
  assert(a.isFull && b.isFull);
});

Deno.test("a backend's own maxInFlight overrides the global one; 0 is no limit", () => {
  const { a, b, admit } = setup({ maxInFlight: 1, own: { "b:1": 0 } });
  const names = Array.from({ length: 5 }, () => nameOf(admit() as Admitted));
  assertEquals(names, ["a:1", "b:1", "b:1", "b:1", "b:1"]);
  assertEquals([a.maxInFlight, b.maxInFlight], [1, 0]);
});

Deno.test("when every backend is full, requests wait and are admitted in order as slots free", async () => {
  const { a, b, admission, admit } = setup();
  admit();
  admit();
  const first = admit();
  const second = admit();
  assert(first instanceof Promise && second instanceof Promise, "both queued");
  assertEquals(admission.queuedCount, 2);
  // A newcomer does not overtake them, and the queue (2) is full.
  assertEquals(admit(), "queue-full");
  b.end(false);
  admission.release();
  assertEquals(nameOf(await first), "b:1");
  assertEquals(admission.queuedCount, 1);
  a.end(false);
  admission.release();
  assertEquals(nameOf(await second), "a:1");
  assertEquals([a.inFlight, b.inFlight], [1, 1]);
});

Deno.test("a queued request is refused after the queue timeout, on the clock", async () => {
  const { clock, admission, admit } = setup();
  admit();
  admit();
  const waiting = admit();
  assert(waiting instanceof Promise);
  await clock.advance(999);
  assertEquals(admission.queuedCount, 1);
  await clock.advance(1);
  assertEquals(await waiting, "queue-timeout");
  assertEquals(admission.queuedCount, 0);
});

Deno.test("a queued request leaves when its client goes away", async () => {
  const { admission, admit } = setup();
  admit();
  admit();
  const client = new AbortController();
  const waiting = admit(client.signal);
  client.abort();
  assertEquals(await waiting, "client-abort");
  assertEquals(admission.queuedCount, 0);
});

Deno.test("queue size 0 refuses at once; no backend available is no-backend, not a wait", () => {
  const none = setup({ queueSize: 0 });
  none.admit();
  none.admit();
  assertEquals(none.admit(), "queue-full");
  const down = setup();
  down.a.setHealth("unhealthy");
  down.b.setHealth("unhealthy");
  assertEquals(down.admit(), "no-backend");
});

Deno.test("waiting requests are refused no-backend when the full backends become unavailable", async () => {
  const { a, b, admission, admit } = setup();
  admit();
  admit();
  const waiting = admit();
  a.setHealth("unhealthy");
  b.setHealth("unhealthy");
  a.end(false);
  admission.release();
  assertEquals(await waiting, "no-backend");
});

Deno.test("limits follow the pool: a backend added later gets the global limit", () => {
  const { pool, admit } = setup({ maxInFlight: 3 });
  const c = new Backend(parseBackendUrl("http://c:1"));
  pool.add(c);
  admit();
  assertEquals(c.maxInFlight, 3);
});
