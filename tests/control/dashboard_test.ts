import { DASHBOARD_HTML, SSE_HEADERS, statusEventStream } from "../../lib/control/dashboard.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "../support/assert.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";

const INTERVAL_MS = 1000;

/** A snapshot source that counts its calls and stamps each with the fake time. */
function counter(clock: FakeClock): { snapshot: () => unknown; calls: () => number } {
  let calls = 0;
  return {
    snapshot: () => ({ n: calls++, atMs: clock.now() }),
    calls: () => calls,
  };
}

/** Decodes one SSE event: exactly `data: <JSON>\n\n`. */
function decodeEvent(chunk: Uint8Array): unknown {
  const text = new TextDecoder().decode(chunk);
  assert(text.startsWith("data: ") && text.endsWith("\n\n"), `one SSE event: ${text}`);
  assertEquals(text.slice(0, -2).includes("\n"), false, "a single data line");
  return JSON.parse(text.slice("data: ".length));
}

/** Starts a read and reports whether it has finished, without waiting for it. */
function pendingRead(
  reader: ReadableStreamDefaultReader<Uint8Array>,
): { done: () => boolean; result: Promise<ReadableStreamReadResult<Uint8Array>> } {
  let isDone = false;
  const result = reader.read().finally(() => isDone = true);
  return { done: () => isDone, result };
}

Deno.test("statusEventStream sends a snapshot at once, then one per interval", async () => {
  const clock = new FakeClock(5_000);
  const source = counter(clock);
  const controller = new AbortController();
  const reader = statusEventStream(source.snapshot, {
    intervalMs: INTERVAL_MS,
    clock,
    signal: controller.signal,
  }).getReader();

  const first = await reader.read();
  assert(first.value !== undefined);
  assertEquals(decodeEvent(first.value), { n: 0, atMs: 5_000 });

  for (let n = 1; n <= 3; n++) {
    const next = pendingRead(reader);
    await clock.advance(INTERVAL_MS - 1);
    assertEquals(next.done(), false, `event ${n} waits for the full interval`);
    await clock.advance(1);
    const { value } = await next.result;
    assert(value !== undefined);
    assertEquals(decodeEvent(value), { n, atMs: 5_000 + n * INTERVAL_MS });
  }
  assertEquals(source.calls(), 4, "no snapshot taken before the client asked for it");
  controller.abort();
  await reader.closed;
});

Deno.test("statusEventStream ends on abort and leaves no sleep pending", async () => {
  const clock = new FakeClock();
  const source = counter(clock);
  const controller = new AbortController();
  const reader = statusEventStream(source.snapshot, {
    intervalMs: INTERVAL_MS,
    clock,
    signal: controller.signal,
  }).getReader();
  await reader.read();
  const next = pendingRead(reader);
  await settle();
  assertEquals(clock.pendingSleeps, 1);

  controller.abort();
  assertEquals((await next.result).done, true);
  assertEquals(clock.pendingSleeps, 0);
  await clock.advance(10 * INTERVAL_MS);
  assertEquals(source.calls(), 1, "no snapshot after the end");
});

Deno.test("statusEventStream delivers an unread event, then ends, when aborted between reads", async () => {
  const clock = new FakeClock();
  const source = counter(clock);
  const controller = new AbortController();
  const reader = statusEventStream(source.snapshot, {
    intervalMs: INTERVAL_MS,
    clock,
    signal: controller.signal,
  }).getReader();
  await settle();
  assertEquals(source.calls(), 1, "the first event is queued before any read");
  controller.abort();
  const first = await reader.read();
  assert(first.value !== undefined);
  assertEquals(decodeEvent(first.value), { n: 0, atMs: 0 });
  assertEquals((await reader.read()).done, true);
  assertEquals(clock.pendingSleeps, 0);
});

Deno.test("statusEventStream ends when the reader cancels and leaves no sleep pending", async () => {
  const clock = new FakeClock();
  const source = counter(clock);
  const reader = statusEventStream(source.snapshot, { intervalMs: INTERVAL_MS, clock })
    .getReader();
  await reader.read();
  const next = pendingRead(reader);
  await settle();
  assertEquals(clock.pendingSleeps, 1);

  await reader.cancel();
  assertEquals((await next.result).done, true);
  assertEquals(clock.pendingSleeps, 0);
  await clock.advance(10 * INTERVAL_MS);
  assertEquals(source.calls(), 1);
});

Deno.test("statusEventStream on an already aborted signal ends without a snapshot", async () => {
  const clock = new FakeClock();
  const source = counter(clock);
  const reader = statusEventStream(source.snapshot, {
    intervalMs: INTERVAL_MS,
    clock,
    signal: AbortSignal.abort(),
  }).getReader();
  assertEquals((await reader.read()).done, true);
  assertEquals(source.calls(), 0);
  assertEquals(clock.pendingSleeps, 0);
});

Deno.test("statusEventStream errors the stream when the snapshot throws", async () => {
  const clock = new FakeClock();
  const reader = statusEventStream(() => {
    throw new Error("pool gone");
  }, { intervalMs: INTERVAL_MS, clock }).getReader();
  await assertRejects(() => reader.read(), Error, "pool gone");
  assertEquals(clock.pendingSleeps, 0);
});

Deno.test("statusEventStream rejects an interval that is not a positive number", () => {
  for (const intervalMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
    assertThrows(
      () => statusEventStream(() => ({}), { intervalMs }),
      RangeError,
      `Invalid event interval "${intervalMs}": must be a positive number of milliseconds`,
    );
  }
});

Deno.test("SSE_HEADERS name the event-stream type and forbid caching", () => {
  assertStringIncludes(SSE_HEADERS["content-type"] ?? "", "text/event-stream");
  assertEquals(SSE_HEADERS["cache-control"], "no-store");
});

Deno.test("DASHBOARD_HTML is one self-contained page that inserts data as text only", () => {
  // The one link is an empty inline icon, so the browser does not ask for /favicon.ico.
  const page = DASHBOARD_HTML.replace('<link rel="icon" href="data:,">', "");
  for (const external of [" src=", " href=", "url(", "@import", "http://", "https://"]) {
    assert(!page.includes(external), `no external asset (${external})`);
  }
  for (const unsafe of ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"]) {
    assert(!DASHBOARD_HTML.includes(unsafe), `no HTML built from data (${unsafe})`);
  }
  assertStringIncludes(DASHBOARD_HTML, 'new EventSource("events" + tokenQuery)');
  assertStringIncludes(DASHBOARD_HTML, '<meta name="viewport"');
  assertStringIncludes(DASHBOARD_HTML, "@media (max-width:");
});
