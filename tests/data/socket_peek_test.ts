/** The listener's look at a connection's first bytes (FFI, Linux): needs `--allow-ffi`. */
import { openSocketPeek } from "../../lib/data/socket_peek.ts";
import { assert, assertEquals } from "../support/assert.ts";

for (const hostname of ["127.0.0.1", "::1"]) {
  Deno.test(`socket peek over ${hostname}: finds the descriptor, peeks without taking, waits for data`, async () => {
    const opened = openSocketPeek();
    assert(opened.ok, opened.ok ? "" : opened.reason);
    const peek = opened.peek;
    using listener = Deno.listen({ hostname, port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    // Other sockets first: the right one is told apart by its addresses.
    const others = await Promise.all([1, 2, 3].map(() => Deno.connect({ hostname, port })));
    const accepted = await Promise.all(others.map(() => listener.accept()));
    using client = await Deno.connect({ hostname, port });
    using conn = await listener.accept();
    const fd = peek.claim(conn);
    assert(fd !== undefined);
    const buffer = new Uint8Array(64);
    assertEquals(peek.peek(fd, buffer), -1, "nothing sent yet");
    const waiting = peek.waitReadable(fd);
    await client.write(new TextEncoder().encode("GET / HTTP/1.1\r\n"));
    assertEquals(await waiting, "readable");
    assertEquals(peek.peek(fd, buffer), 16);
    // The bytes are still there for whoever reads the connection.
    const read = new Uint8Array(64);
    assertEquals(await conn.read(read), 16);
    assertEquals(new TextDecoder().decode(read.subarray(0, 16)), "GET / HTTP/1.1\r\n");
    // A wait can be called off.
    const cancelled = peek.waitReadable(fd);
    peek.cancelWait(fd);
    assertEquals(await cancelled, "cancelled");
    peek.release(fd);
    peek.close();
    for (const c of [...others, ...accepted]) c.close();
  });
}

Deno.test("socket peek: a wait added as the poll loop ends (same turn of the event loop) is still served", async () => {
  const opened = openSocketPeek();
  assert(opened.ok, opened.ok ? "" : opened.reason);
  const peek = opened.peek;
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  using firstClient = await Deno.connect({ hostname: "127.0.0.1", port });
  using first = await listener.accept();
  using secondClient = await Deno.connect({ hostname: "127.0.0.1", port });
  using second = await listener.accept();
  const firstFd = peek.claim(first);
  const secondFd = peek.claim(second);
  assert(firstFd !== undefined && secondFd !== undefined);
  // The first wait's answer ends the loop (no other waiter); the second wait is added in the
  // microtask that answer wakes, before the loop's own promise has settled.
  const waitingFirst = peek.waitReadable(firstFd);
  await firstClient.write(new Uint8Array([0x47]));
  assertEquals(await waitingFirst, "readable");
  const waitingSecond = peek.waitReadable(secondFd);
  await secondClient.write(new Uint8Array([0x47]));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    waitingSecond,
    new Promise<"stuck">((resolve) => timer = setTimeout(() => resolve("stuck"), 3_000)),
  ]);
  clearTimeout(timer);
  assertEquals(outcome, "readable", "the second wait was left without a poll loop");
  peek.close();
});
