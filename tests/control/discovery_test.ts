/**
 * DNS discovery's schedule and failure handling on a fake clock with a scripted resolver: the
 * next lookup comes after the TTL (clamped), a failed lookup keeps the last good set and backs
 * off, a reload looks every name up again and drops the names it no longer lists.
 */
import type { BackendConfig } from "../../lib/config/settings.ts";
import { DEFAULT_BALANCER_CONFIG } from "../../lib/config/config.ts";
import { parseBackendUrl } from "../../lib/core/backend.ts";
import {
  Discovery,
  type DiscoveryConfig,
  type DnsAnswer,
  type DnsResolver,
  type DnsSource,
} from "../../lib/control/discovery.ts";
import { assertEquals } from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";

/** Answers from a script: an answer, or an error to throw; records each lookup's time. */
class ScriptedResolver implements DnsResolver {
  answer: DnsAnswer | Error = { backends: [], ttlSeconds: 5 };
  readonly lookups: Array<{ name: string; atMs: number }> = [];
  constructor(readonly clock: FakeClock) {}
  resolve(source: DnsSource): Promise<DnsAnswer> {
    this.lookups.push({ name: source.name, atMs: this.clock.now() });
    return this.answer instanceof Error
      ? Promise.reject(this.answer)
      : Promise.resolve(this.answer);
  }
  cancel(): void {}
}

const backend = (host: string): BackendConfig => ({ url: parseBackendUrl(host), weight: 1 });

function config(extra: Partial<DiscoveryConfig> = {}): DiscoveryConfig {
  return {
    ...DEFAULT_BALANCER_CONFIG.discovery,
    dns: ["web.test:80"],
    minTtlMs: 1_000,
    maxTtlMs: 30_000,
    ...extra,
  };
}

Deno.test("Discovery looks a name up again after its TTL, clamped to the floor and ceiling", async () => {
  const clock = new FakeClock();
  const resolver = new ScriptedResolver(clock);
  resolver.answer = { backends: [backend("10.0.0.1:80")], ttlSeconds: 5 };
  const changes: string[][] = [];
  const discovery = new Discovery(config(), {
    resolver,
    clock,
    onChange: (backends) => changes.push(backends.map((b) => b.url.host)),
  });
  await discovery.start();
  assertEquals(changes, [["10.0.0.1"]]);
  await clock.advance(4_999);
  assertEquals(resolver.lookups.length, 1);
  resolver.answer = { backends: [backend("10.0.0.2:80")], ttlSeconds: 0 };
  await clock.advance(1);
  assertEquals(resolver.lookups.length, 2);
  assertEquals(changes.at(-1), ["10.0.0.2"]);
  // TTL 0: the floor (1 s), not a busy loop.
  await clock.advance(999);
  assertEquals(resolver.lookups.length, 2);
  resolver.answer = { backends: [backend("10.0.0.2:80")], ttlSeconds: 86_400 };
  await clock.advance(1);
  assertEquals(resolver.lookups.length, 3);
  // A day's TTL: the ceiling (30 s).
  await clock.advance(30_000);
  assertEquals(resolver.lookups.map((l) => l.atMs), [0, 5_000, 6_000, 36_000]);
  assertEquals(changes.length, 2, "an unchanged answer tells the balancer nothing");
  await discovery.stop();
});

Deno.test("Discovery keeps the last good set when a lookup fails, says so, and backs off", async () => {
  const clock = new FakeClock();
  const resolver = new ScriptedResolver(clock);
  resolver.answer = { backends: [backend("10.0.0.1:80"), backend("10.0.0.2:80")], ttlSeconds: 2 };
  const changes: string[][] = [];
  const discovery = new Discovery(config(), {
    resolver,
    clock,
    onChange: (backends) => changes.push(backends.map((b) => b.url.host)),
  });
  await discovery.start();
  resolver.answer = new Error('Cannot look up "web.test": ETIMEOUT');
  await clock.advance(2_000);
  assertEquals(discovery.status()[0]?.state, "stale");
  assertEquals(discovery.status()[0]?.backends, ["10.0.0.1", "10.0.0.2"]);
  assertEquals(discovery.status()[0]?.error, 'Cannot look up "web.test": ETIMEOUT');
  assertEquals(changes.length, 1, "the failure changed no membership");
  // Retries after 1 s, 2 s, 4 s: the floor doubling.
  await clock.advance(7_000);
  assertEquals(resolver.lookups.map((l) => l.atMs), [0, 2_000, 3_000, 5_000, 9_000]);
  const metrics = discovery.renderMetrics();
  assertEquals(metrics.includes('denolb_dns_stale{name="web.test:80"} 1'), true);
  assertEquals(metrics.includes('denolb_dns_lookup_failures_total{name="web.test:80"} 4'), true);
  resolver.answer = { backends: [backend("10.0.0.2:80")], ttlSeconds: 2 };
  await clock.advance(8_000);
  assertEquals(discovery.status()[0]?.state, "ok");
  assertEquals(changes.at(-1), ["10.0.0.2"]);
  await discovery.stop();
});

Deno.test("Discovery looks every name up again on reconfigure and drops names no longer listed", async () => {
  const clock = new FakeClock();
  const resolver = new ScriptedResolver(clock);
  resolver.answer = { backends: [backend("10.0.0.1:80")], ttlSeconds: 60 };
  const changes: string[][] = [];
  const discovery = new Discovery(config(), {
    resolver,
    clock,
    onChange: (backends) => changes.push(backends.map((b) => b.url.host)),
  });
  await discovery.start();
  await clock.advance(1_000);
  await discovery.reconfigure(config());
  assertEquals(resolver.lookups.map((l) => l.atMs), [0, 1_000], "a reload looks it up at once");
  await discovery.reconfigure(config({ dns: [] }));
  assertEquals(changes.at(-1), []);
  assertEquals(discovery.status(), []);
  await discovery.stop();
});
