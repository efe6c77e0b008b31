import { closeFrame, FrameBoundary } from "../../lib/data/websocket_frames.ts";
import { assert, assertEquals } from "../support/assert.ts";

/** A frame's bytes: FIN + `opcode`, the length in the form its size asks for, payload of 0x61. */
function frame(opcode: number, payloadBytes: number, maskKey?: readonly number[]): Uint8Array {
  const length = payloadBytes < 126
    ? [payloadBytes]
    : payloadBytes < 65_536
    ? [126, payloadBytes >> 8, payloadBytes & 0xff]
    : [127, 0, 0, 0, 0, ...[24, 16, 8, 0].map((shift) => (payloadBytes >>> shift) & 0xff)];
  const maskBit = maskKey === undefined ? 0 : 0x80;
  const head = [0x80 | opcode, (length[0] as number) | maskBit, ...length.slice(1)];
  if (maskKey !== undefined) head.push(...maskKey);
  const out = new Uint8Array(head.length + payloadBytes).fill(0x61);
  out.set(head);
  return out;
}

/** Feeds `bytes` in pieces of `step` and returns where a boundary was seen (after each piece). */
function boundariesAfter(bytes: Uint8Array, step: number): number[] {
  const boundary = new FrameBoundary();
  const seen: number[] = [];
  for (let at = 0; at < bytes.length; at += step) {
    boundary.feed(bytes, at, Math.min(at + step, bytes.length));
    if (boundary.isAtBoundary) seen.push(Math.min(at + step, bytes.length));
  }
  return seen;
}

Deno.test("FrameBoundary: nothing fed is a boundary", () => {
  assert(new FrameBoundary().isAtBoundary);
});

for (const [form, payloadBytes] of [["7-bit", 5], ["16-bit", 300], ["64-bit", 70_000]] as const) {
  for (const maskKey of [undefined, [1, 2, 3, 4]]) {
    const masked = maskKey === undefined ? "an unmasked" : "a masked";
    Deno.test(`FrameBoundary: ${masked} frame with a ${form} length ends where its payload does`, () => {
      const bytes = frame(0x2, payloadBytes, maskKey);
      // Byte by byte: the only boundary is the frame's end.
      assertEquals(boundariesAfter(bytes, 1), [bytes.length]);
      // Whole, and two frames in one chunk.
      assertEquals(boundariesAfter(bytes, bytes.length), [bytes.length]);
      const two = new Uint8Array(bytes.length * 2);
      two.set(bytes);
      two.set(bytes, bytes.length);
      const boundary = new FrameBoundary();
      boundary.feed(two, 0, bytes.length + 1);
      assert(!boundary.isAtBoundary, "one byte into the second frame");
      boundary.feed(two, bytes.length + 1, two.length);
      assert(boundary.isAtBoundary);
    });
  }
}

Deno.test("FrameBoundary: a header split across chunks, at every point, is followed", () => {
  const bytes = frame(0x1, 300, [9, 8, 7, 6]); // 2 + 2 + 4 header bytes
  for (let split = 1; split < 8; split++) {
    const boundary = new FrameBoundary();
    boundary.feed(bytes, 0, split);
    assert(!boundary.isAtBoundary, `split at ${split}`);
    boundary.feed(bytes, split, bytes.length - 1);
    assert(!boundary.isAtBoundary, `split at ${split}, one byte short`);
    boundary.feed(bytes, bytes.length - 1, bytes.length);
    assert(boundary.isAtBoundary, `split at ${split}`);
  }
});

Deno.test("FrameBoundary: a control frame between fragments, and empty frames, are boundaries", () => {
  const first = frame(0x1, 3); // FIN set by frame(); the bit does not matter to the tracker
  first[0] = 0x01; // a first fragment
  const ping = frame(0x9, 0, [1, 1, 1, 1]);
  const last = frame(0x0, 2);
  const bytes = new Uint8Array([...first, ...ping, ...last]);
  assertEquals(boundariesAfter(bytes, 1), [
    first.length,
    first.length + ping.length,
    bytes.length,
  ]);
});

Deno.test("closeFrame: unmasked for a client, masked for a backend, the reason cut at 123 bytes", () => {
  assertEquals([...closeFrame(1001, "")], [0x88, 0x02, 0x03, 0xe9]);
  assertEquals([...closeFrame(1001, "ok")], [0x88, 0x04, 0x03, 0xe9, 0x6f, 0x6b]);
  const masked = closeFrame(1001, "", Uint8Array.of(0xa0, 0xb0, 0xc0, 0xd0));
  assertEquals([...masked], [0x88, 0x82, 0xa0, 0xb0, 0xc0, 0xd0, 0x03 ^ 0xa0, 0xe9 ^ 0xb0]);
  // 1006 may not be sent: it becomes 1001.
  assertEquals([...closeFrame(1006, "")], [0x88, 0x02, 0x03, 0xe9]);
  // 62 two-byte characters are 124 bytes: the last one does not fit and is not cut in two.
  const long = closeFrame(1000, "é".repeat(62));
  assertEquals(long[1], 2 + 122);
  assertEquals(new TextDecoder("utf-8", { fatal: true }).decode(long.subarray(4)), "é".repeat(61));
});
