import { DeadlineQueue } from "../../lib/shared/deadlines.ts";
import { assertEquals } from "../support/assert.ts";
import { FakeClock } from "../support/fake_clock.ts";

function record(fired: string[]): (name: string) => void {
  return (name) => fired.push(name);
}

Deno.test("DeadlineQueue fires a deadline once its time has passed, never before", async () => {
  const clock = new FakeClock(1_000);
  const deadlines = new DeadlineQueue({ clock });
  const fired: string[] = [];
  deadlines.add(clock.now() + 500, record(fired), "a");
  await clock.advance(499);
  assertEquals(fired, []);
  await clock.advance(1);
  assertEquals(fired, ["a"]);
  await clock.advance(10_000);
  assertEquals(fired, ["a"]);
  assertEquals(deadlines.pendingCount, 0);
  assertEquals(clock.pendingSleeps, 0);
});

Deno.test("DeadlineQueue never fires a cancelled deadline and holds no timer when idle", async () => {
  const clock = new FakeClock();
  const deadlines = new DeadlineQueue({ clock });
  const fired: string[] = [];
  const first = deadlines.add(100, record(fired), "first");
  const second = deadlines.add(200, record(fired), "second");
  assertEquals(clock.pendingSleeps, 1);
  deadlines.cancel(first);
  assertEquals(deadlines.pendingCount, 1);
  deadlines.cancel(second);
  deadlines.cancel(second); // twice is harmless
  assertEquals(deadlines.pendingCount, 0);
  assertEquals(clock.pendingSleeps, 0);
  await clock.advance(1_000);
  assertEquals(fired, []);
});

Deno.test("DeadlineQueue keeps firing in deadline order around cancellations", async () => {
  const clock = new FakeClock();
  const deadlines = new DeadlineQueue({ clock });
  const fired: string[] = [];
  const a = deadlines.add(100, record(fired), "a");
  deadlines.add(200, record(fired), "b");
  deadlines.add(150, record(fired), "c"); // shorter than an earlier one
  const d = deadlines.add(300, record(fired), "d");
  deadlines.add(400, record(fired), "e");
  deadlines.cancel(a);
  deadlines.cancel(d);
  await clock.advance(160);
  assertEquals(fired, ["c"]);
  await clock.advance(1_000);
  assertEquals(fired, ["c", "b", "e"]);
  assertEquals(clock.pendingSleeps, 0);
});

Deno.test("DeadlineQueue fires a slow request's deadline after many later ones finished", async () => {
  const clock = new FakeClock();
  const deadlines = new DeadlineQueue({ clock });
  const fired: string[] = [];
  deadlines.add(1_000, record(fired), "slow");
  // Enough out-of-order cancellations to make the queue compact itself.
  for (let i = 0; i < 5_000; i++) {
    const deadline = deadlines.add(1_000 + i / 10, record(fired), `fast ${i}`);
    deadlines.cancel(deadline);
  }
  const last = deadlines.add(2_000, record(fired), "last");
  assertEquals(deadlines.pendingCount, 2);
  await clock.advance(1_000);
  assertEquals(fired, ["slow"]);
  deadlines.cancel(last);
  assertEquals(clock.pendingSleeps, 0);
  await clock.advance(5_000);
  assertEquals(fired, ["slow"]);
});

Deno.test("DeadlineQueue lets a callback add a deadline", async () => {
  const clock = new FakeClock();
  const deadlines = new DeadlineQueue({ clock });
  const fired: string[] = [];
  deadlines.add(100, (name: string) => {
    fired.push(name);
    deadlines.add(clock.now() + 100, record(fired), "added");
  }, "first");
  deadlines.add(150, record(fired), "second");
  await clock.advance(100);
  assertEquals(fired, ["first"]);
  await clock.advance(100);
  assertEquals(fired, ["first", "second", "added"]);
  assertEquals(clock.pendingSleeps, 0);
});

Deno.test("DeadlineQueue.clear() cancels every deadline and the timer", async () => {
  const clock = new FakeClock();
  const deadlines = new DeadlineQueue({ clock });
  const fired: string[] = [];
  for (let i = 1; i <= 3; i++) deadlines.add(i * 100, record(fired), String(i));
  deadlines.clear();
  assertEquals(deadlines.pendingCount, 0);
  assertEquals(clock.pendingSleeps, 0);
  await clock.advance(1_000);
  assertEquals(fired, []);
});

Deno.test("DeadlineQueue fires on the real clock and leaves no timer behind", async () => {
  const deadlines = new DeadlineQueue();
  const { promise, resolve } = Promise.withResolvers<string>();
  deadlines.add(performance.now() + 5, resolve, "fired");
  assertEquals(await promise, "fired");
  assertEquals(deadlines.pendingCount, 0);
});
