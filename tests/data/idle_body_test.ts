import { IDLE_BODY_TIMEOUT, watchIdleBody } from "../../lib/data/idle_body.ts";
import { DeadlineQueue } from "../../lib/shared/deadlines.ts";
import { assertEquals, assertRejects, assertStrictEquals } from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";

const encoder = new TextEncoder();

/** A body the test feeds by hand, and whether (and why) it was cancelled. */
function controlledBody() {
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  const state: { cancelReason: unknown; isCancelled: boolean } = {
    cancelReason: undefined,
    isCancelled: false,
  };
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    cancel(reason) {
      state.isCancelled = true;
      state.cancelReason = reason;
    },
  });
  return {
    stream,
    state,
    send: (text: string) => controller?.enqueue(encoder.encode(text)),
    end: () => controller?.close(),
  };
}

function watchOn(clock: FakeClock, timeouts: string[]) {
  const deadlines = new DeadlineQueue({ clock });
  return {
    deadlines,
    watch: {
      timeoutMs: 1_000,
      deadlines,
      now: () => clock.now(),
      onTimeout: (context: string) => void timeouts.push(context),
    },
  };
}

Deno.test("watchIdleBody() cuts a body that pauses longer than the timeout", async () => {
  const clock = new FakeClock();
  const timeouts: string[] = [];
  const { watch, deadlines } = watchOn(clock, timeouts);
  const body = controlledBody();
  const reader = watchIdleBody(body.stream, watch, "backend-a").getReader();
  body.send("one");
  assertEquals((await reader.read()).value, encoder.encode("one"));
  const next = reader.read();
  let isSettled = false;
  next.then(() => isSettled = true, () => isSettled = true);
  await clock.advance(999);
  assertEquals(isSettled, false);
  await clock.advance(1);
  const error = await assertRejects(() => next, DOMException);
  assertStrictEquals(error, IDLE_BODY_TIMEOUT);
  assertEquals(timeouts, ["backend-a"]);
  assertEquals(body.state.isCancelled, true);
  assertStrictEquals(body.state.cancelReason, IDLE_BODY_TIMEOUT);
  assertEquals(deadlines.pendingCount, 0);
});

Deno.test("watchIdleBody() times only the wait for the backend, not a slow reader", async () => {
  const clock = new FakeClock();
  const timeouts: string[] = [];
  const { watch, deadlines } = watchOn(clock, timeouts);
  const body = controlledBody();
  const reader = watchIdleBody(body.stream, watch, "backend-a").getReader();
  body.send("one");
  assertEquals((await reader.read()).value, encoder.encode("one"));
  // Nobody asks for the next chunk for a long time: no deadline runs meanwhile.
  await clock.advance(5_000);
  assertEquals(deadlines.pendingCount, 0);
  const next = reader.read();
  await clock.advance(900);
  body.send("two");
  assertEquals((await next).value, encoder.encode("two"));
  const last = reader.read();
  await clock.advance(900);
  body.end();
  assertEquals((await last).done, true);
  assertEquals(timeouts, []);
  assertEquals(deadlines.pendingCount, 0);
});

Deno.test("watchIdleBody() passes a cancel on to the backend's body", async () => {
  const clock = new FakeClock();
  const { watch, deadlines } = watchOn(clock, []);
  const body = controlledBody();
  const stream = watchIdleBody(body.stream, watch, "backend-a");
  const reader = stream.getReader();
  const pending = reader.read();
  await reader.cancel("client left");
  assertEquals((await pending).done, true);
  assertEquals(body.state.cancelReason, "client left");
  assertEquals(deadlines.pendingCount, 0);
});
