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
