import { assertEquals } from "@std/assert";
import { SharedRateLimiter, WAYS } from "../../lib/core/rate_limiter.ts";

const RULE = { perSecond: 10, burst: 5 };

function allowed(limiter: SharedRateLimiter, key: string, count: number, nowMs: number): number {
  let ok = 0;
  for (let i = 0; i < count; i++) if (limiter.take(key, RULE, nowMs).ok) ok++;
  return ok;
}

Deno.test("take() allows the burst at once, then the rate", () => {
  const limiter = SharedRateLimiter.create(64);
  assertEquals(allowed(limiter, "a", 20, 1_000), 5);
  assertEquals(allowed(limiter, "a", 20, 1_100), 1);
  assertEquals(allowed(limiter, "a", 20, 1_350), 2);
  assertEquals(allowed(limiter, "a", 20, 10_000), 5, "a bucket holds at most the burst");
});

Deno.test("take() says when a token will be there", () => {
  const limiter = SharedRateLimiter.create(64);
  allowed(limiter, "a", 5, 0);
  assertEquals(limiter.take("a", RULE, 0), { ok: false, retryAfterSeconds: 1 });
  const slow = { perSecond: 0.2, burst: 1 };
  limiter.take("b", slow, 0);
  assertEquals(limiter.take("b", slow, 0), { ok: false, retryAfterSeconds: 5 });
});

Deno.test("keys have buckets of their own", () => {
  const limiter = SharedRateLimiter.create(64);
  assertEquals(allowed(limiter, "a", 10, 0), 5);
  assertEquals(allowed(limiter, "b", 10, 0), 5);
});

Deno.test("two views of one buffer are one limit (as two isolates are)", () => {
  const one = SharedRateLimiter.create(64);
  const other = new SharedRateLimiter(one.buffer);
  assertEquals(allowed(one, "a", 3, 0) + allowed(other, "a", 10, 0), 5);
});

Deno.test("memory is bounded: many keys evict the least recently used, counted", () => {
  const limiter = SharedRateLimiter.create(64);
  assertEquals(limiter.capacity, 64);
  for (let i = 0; i < 1_000; i++) limiter.take(`key-${i}`, RULE, i);
  assertEquals(limiter.evictions, 1_000 - 64);
  assertEquals(limiter.buffer.byteLength < 64 * 40, true);
});

Deno.test("eviction takes the least recently used bucket of the set", () => {
  // A table of two sets: WAYS + 1 keys that land in set 0 overflow it by one.
  const keys: string[] = [];
  for (let i = 0; keys.length < WAYS + 1; i++) if (setOf(`k${i}`) === 0) keys.push(`k${i}`);
  const key = (i: number) => keys[i] ?? "";
  const limiter = SharedRateLimiter.create(WAYS * 2);
  for (let i = 0; i < WAYS; i++) assertEquals(allowed(limiter, key(i), 5, i), 5);
  // key 0 is used again last: key 1 is now the least recently used.
  assertEquals(limiter.take(key(0), RULE, 50).ok, false);
  limiter.take(key(WAYS), RULE, 60);
  assertEquals(limiter.evictions, 1);
  // key 0 kept its (nearly) empty bucket; key 1 was evicted and comes back with a full one.
  assertEquals(limiter.take(key(0), RULE, 60).ok, false);
  assertEquals(allowed(limiter, key(1), 10, 60), 5);
});

/** The set (0 or 1) a key lands in within a two-set table: where its bucket sits in memory. */
function setOf(key: string): number {
  const table = SharedRateLimiter.create(WAYS * 2);
  table.take(key, RULE, 0);
  const words = new Int32Array(table.buffer);
  // Header (4 words), one lock word per set (2), then set 0's WAYS buckets of 8 words.
  const firstBucket = 4 + 2;
  const used = words.findIndex((word, index) => index >= firstBucket && word !== 0);
  return used < firstBucket + WAYS * 8 ? 0 : 1;
}
