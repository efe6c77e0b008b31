/**
 * The outlier detector (passive health) on a fake clock: consecutive counting, reset on
 * success, growing ejection times, the ejected-share cap, and return after the ejection time.
 */
import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { OutlierRelay } from "../../lib/data/outlier_relay.ts";
import {
  OutlierDetector,
  type OutlierSettings,
  type OutlierVerdict,
} from "../../lib/core/outlier.ts";
import { UsageError } from "../../lib/shared/command.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";

const SETTINGS: OutlierSettings = {
  failures: 3,
  kinds: ["connect", "timeout"],
  baseEjectionMs: 30_000,
  maxEjectionMs: 300_000,
  maxEjectedPercent: 50,
};

interface Key {
  readonly name: string;
}
const a: Key = { name: "a" };
const b: Key = { name: "b" };
const c: Key = { name: "c" };
const d: Key = { name: "d" };

function detector(settings: Partial<OutlierSettings> = {}) {
  const clock = new FakeClock();
  return { clock, detector: new OutlierDetector<Key>({ ...SETTINGS, ...settings }, { clock }) };
}

/** Records `count` connect failures; returns the verdicts that were not `undefined`. */
function fail(
  on: OutlierDetector<Key>,
  key: Key,
  count: number,
  poolSize = 4,
): OutlierVerdict[] {
  const verdicts: OutlierVerdict[] = [];
  for (let i = 0; i < count; i++) {
    const verdict = on.record(key, "connect", poolSize);
    if (verdict !== undefined) verdicts.push(verdict);
  }
  return verdicts;
}

Deno.test("outlier: the failures-th consecutive failure ejects, not one before", () => {
  const { detector: on } = detector();
  assertEquals(fail(on, a, 2), []);
  const [verdict] = fail(on, a, 1);
  assertEquals(verdict, {
    kind: "ejected",
    reason: "connect",
    failures: 3,
    ejections: 1,
    durationMs: 30_000,
    untilMs: 30_000,
  });
  assertEquals(on.ejectedCount, 1);
  // Attempts that were in flight when it was ejected count for nothing.
  assertEquals(fail(on, a, 10), []);
});

Deno.test("outlier: a success resets the count; 5xx is a success unless counted", () => {
  const { detector: on } = detector();
  fail(on, a, 2);
  assertEquals(on.record(a, 200, 4), undefined);
  assertEquals(fail(on, a, 2), [], "2 + 2 failures with a success between eject nothing");
  assertEquals(on.record(a, 503, 4), undefined, "a 503 proves the connection works");
  assertEquals(fail(on, a, 2), []);
  assertEquals(on.ejectedCount, 0);

  const counting5xx = detector({ kinds: ["5xx"] }).detector;
  assertEquals(counting5xx.record(a, 500, 4), undefined);
  assertEquals(counting5xx.record(a, "response-timeout", 4), undefined, "not counted: a success");
  assertEquals(counting5xx.record(a, 502, 4), undefined);
  assertEquals(counting5xx.record(a, 502, 4), undefined);
  assertEquals(counting5xx.record(a, 504, 4)?.kind, "ejected");
});

Deno.test("outlier: failures that are not the backend's neither count nor reset", () => {
  const { detector: on } = detector();
  fail(on, a, 2);
  assertEquals(on.record(a, "client-abort", 4), undefined);
  assertEquals(on.record(a, "fd-exhausted", 4), undefined);
  assertEquals(on.record(a, "response-timeout", 4)?.kind, "ejected", "2 connects + 1 timeout");
});

Deno.test("outlier: each ejection in a row lasts longer, up to the maximum", async () => {
  const { clock, detector: on } = detector({ maxEjectionMs: 70_000 });
  const durations: number[] = [];
  for (let round = 0; round < 4; round++) {
    const [verdict] = fail(on, a, 3);
    assert(verdict?.kind === "ejected", `round ${round}: ${JSON.stringify(verdict)}`);
    durations.push(verdict.durationMs);
    assertEquals(on.nextReturnMs(), clock.now() + verdict.durationMs);
    await clock.advance(verdict.durationMs - 1);
    assertEquals(on.returnDue(), [], "not a millisecond early");
    await clock.advance(1);
    assertEquals(on.returnDue(), [a]);
    assertEquals(on.ejectedCount, 0);
  }
  assertEquals(durations, [30_000, 60_000, 70_000, 70_000]);
});

Deno.test("outlier: time back in rotation forgives one ejection per base time", async () => {
  const { clock, detector: on } = detector();
  fail(on, a, 3);
  await clock.advance(30_000);
  on.returnDue();
  fail(on, a, 3); // second in a row: 60s
  await clock.advance(60_000);
  on.returnDue();
  await clock.advance(30_000); // one base time in rotation: back to one ejection
  const [verdict] = fail(on, a, 3);
  assertEquals(verdict?.kind === "ejected" ? verdict.ejections : undefined, 2);
});

Deno.test("outlier: never more than the max share of the pool is ejected", () => {
  const { detector: on } = detector({ maxEjectedPercent: 50 });
  assertEquals(fail(on, a, 3, 4)[0]?.kind, "ejected");
  assertEquals(fail(on, b, 3, 4)[0]?.kind, "ejected");
  // A third of four would be 75%: spared, reported once per streak.
  assertEquals(fail(on, c, 3, 4), [{ kind: "spared", reason: "connect", failures: 3, ejected: 2 }]);
  assertEquals(fail(on, c, 9, 4), [], "the refusal is reported once");
  assertEquals(on.ejectedCount, 2);

  // One backend of a pool of one is never ejected at 50%; 100% allows it.
  assertEquals(fail(detector().detector, d, 3, 1)[0]?.kind, "spared");
  assertEquals(fail(detector({ maxEjectedPercent: 100 }).detector, d, 3, 1)[0]?.kind, "ejected");
});

Deno.test("outlier: returnAll and forget free the ejected share; failures 0 is off", () => {
  const { detector: on } = detector({ maxEjectedPercent: 25 });
  fail(on, a, 3, 4);
  assertEquals(fail(on, b, 3, 4)[0]?.kind, "spared");
  on.forget(a);
  assertEquals(on.ejectedCount, 0);
  assertEquals(fail(on, b, 3, 4)[0]?.kind, "ejected");
  assertEquals(on.returnAll(), [b]);
  on.reconfigure({ ...SETTINGS, failures: 0 });
  assertEquals(fail(on, c, 50, 4), []);
  assertEquals(on.isEnabled, false);
});

Deno.test("outlier settings: flags, defaults and rejections", async () => {
  const defaults = await parseBalancerArgs([], () => undefined);
  assertEquals(defaults.outlier, {
    failures: 5,
    kinds: ["connect", "timeout"],
    baseEjectionMs: 30_000,
    maxEjectionMs: 300_000,
    maxEjectedPercent: 50,
  });
  assertEquals(defaults.slowStartMs, 0);
  const set = await parseBalancerArgs([
    "--outlier-failures",
    "3",
    "--outlier-on",
    "connect,5xx",
    "--outlier-ejection",
    "10s",
    "--outlier-max-time",
    "1m",
    "--outlier-max-ejected",
    "30",
    "--slow-start",
    "20s",
  ], () => undefined);
  assertEquals(set.outlier, {
    failures: 3,
    kinds: ["connect", "5xx"],
    baseEjectionMs: 10_000,
    maxEjectionMs: 60_000,
    maxEjectedPercent: 30,
  });
  assertEquals(set.slowStartMs, 20_000);
  for (
    const [args, message] of [
      [["--outlier-on", "connect,reset"], 'Invalid --outlier-on "connect,reset": must be a comma'],
      [["--outlier-on", "5xx,5xx"], "each once"],
      [["--outlier-max-ejected", "101"], "must be a whole number from 0 to 100"],
      [["--outlier-failures", "-1"], "must be a whole number, 0 or more"],
      [["--outlier-ejection", "0"], "must be more than 0"],
    ] as const
  ) {
    const error = await assertRejects(() => parseBalancerArgs(args, () => undefined), UsageError);
    assertStringIncludes(error.message, message);
  }
});

Deno.test("outlier relay: isolates count one shared streak and tell only its threshold", () => {
  const sent: string[] = [];
  const send = (href: string, result: unknown) => sent.push(`${href} ${result}`);
  // Two isolates' relays over two objects for the same backend: one slot of shared state.
  const first = new OutlierRelay({ failures: 3, kinds: ["connect"] }, send);
  const second = new OutlierRelay({ failures: 3, kinds: ["connect"] }, send);
  const backend = new Backend(parseBackendUrl("10.0.0.1:8080"));
  const mirror = new Backend(backend.url, { shared: backend.shared });
  first.observe(backend, 200);
  first.observe(backend, 500);
  first.observe(backend, "client-abort");
  first.observe(backend, "connect");
  second.observe(mirror, "protocol");
  assertEquals(sent, [], "two failures in a row: below the threshold, nothing said");
  second.observe(mirror, 200);
  first.observe(backend, "connect");
  second.observe(mirror, "connect");
  assertEquals(sent, [], "a success in either isolate ended the streak");
  first.observe(backend, "connect");
  assertEquals(sent, ["http://10.0.0.1:8080/ connect"], "the third in a row, over both isolates");
  first.configure({ failures: 0, kinds: ["connect"] });
  for (let i = 0; i < 6; i++) first.observe(backend, "connect");
  assertEquals(sent.length, 1, "off: nothing relayed");
});
