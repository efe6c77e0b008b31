/**
 * What the byte tunnel knows of RFC 6455 framing (section 5.2): where frames end, so that a
 * drain can put a close frame between two frames, never inside one, and the close frame itself.
 *
 * The tracker reads frame headers only: the second byte (mask bit, 7-bit length), the 16- or
 * 64-bit extended length and the 4-byte mask key, which it skips. It never unmasks, checks
 * UTF-8 or looks at extensions (RSV bits pass as they are). Control frames may come between the
 * fragments of a message (section 5.4), so a frame boundary is a place a close frame may go.
 *
 * @module
 */

/**
 * Follows one direction's bytes and tells whether they end at a frame boundary. Allocates
 * nothing per chunk.
 *
 * @example
 * ```ts
 * import { FrameBoundary } from "./websocket_frames.ts";
 * const boundary = new FrameBoundary();
 * boundary.feed(Uint8Array.of(0x81, 0x03, 0x61), 0, 3); // a text frame, 1 of 3 payload bytes
 * if (boundary.isAtBoundary) throw new Error();
 * boundary.feed(Uint8Array.of(0x62, 0x63), 0, 2);
 * if (!boundary.isAtBoundary) throw new Error();
 * ```
 */
export class FrameBoundary {
  /** Header bytes of the current frame seen so far (0: none, between frames or in payload). */
  #headerAt = 0;
  /** The current header's whole length, once its second byte is known. */
  #headerLength = 2;
  /** Where the extended length ends in the header (2 when there is none). */
  #lengthEnd = 2;
  /** The payload length being read from the header. */
  #length = 0;
  /** Payload bytes of the current frame still to come. */
  #remaining = 0;

  /** Whether every frame fed so far is whole (nothing fed counts as a boundary). */
  get isAtBoundary(): boolean {
    return this.#headerAt === 0 && this.#remaining === 0;
  }

  /**
   * Takes the next bytes of the direction, as written.
   *
   * @param bytes A buffer holding them.
   * @param start Where they start in `bytes`.
   * @param end Where they end in `bytes` (exclusive).
   */
  feed(bytes: Uint8Array, start: number, end: number): void {
    let at = start;
    while (at < end) {
      if (this.#remaining > 0) {
        const taken = Math.min(this.#remaining, end - at);
        this.#remaining -= taken;
        at += taken;
        continue;
      }
      const byte = bytes[at++] as number;
      const headerAt = this.#headerAt++;
      if (headerAt === 1) {
        const length7 = byte & 0x7f;
        this.#lengthEnd = length7 === 126 ? 4 : length7 === 127 ? 10 : 2;
        this.#headerLength = this.#lengthEnd + ((byte & 0x80) === 0 ? 0 : 4);
        this.#length = length7 < 126 ? length7 : 0;
      } else if (headerAt > 1 && headerAt < this.#lengthEnd) {
        // A 64-bit length past 2^53 loses precision: no frame that long ever ends anyway.
        this.#length = this.#length * 256 + byte;
      }
      if (headerAt >= 1 && this.#headerAt === this.#headerLength) {
        this.#remaining = this.#length;
        this.#headerAt = 0;
        this.#headerLength = 2;
      }
    }
  }
}

/** The close codes an endpoint may send (RFC 6455 section 7.4): 1000-1003, 1007-1014, 3000-4999. */
function isSendableCode(code: number): boolean {
  return Number.isInteger(code) &&
    ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
      (code >= 3000 && code <= 4999));
}

/** A close frame's payload is at most 125 bytes: the code's 2 and 123 of reason. */
const MAX_REASON_BYTES = 123;
const encoder = new TextEncoder();

/**
 * A close frame (RFC 6455 section 5.5.1): FIN, opcode 8, the code and the reason; masked with
 * `maskKey` when given (a client's frame must be, a server's must not be).
 *
 * @param code The close code; one an endpoint may not send (such as 1005, 1006) becomes 1001.
 * @param reason The reason, cut to 123 bytes at a character boundary.
 * @param maskKey Four bytes to mask the payload with; omit for a server's frame.
 * @returns The frame's bytes.
 *
 * @example
 * ```ts
 * import { closeFrame } from "./websocket_frames.ts";
 * const frame = closeFrame(1001, "");
 * if (frame.join() !== "136,2,3,233") throw new Error(frame.join());
 * ```
 */
export function closeFrame(code: number, reason: string, maskKey?: Uint8Array): Uint8Array {
  const sent = isSendableCode(code) ? code : 1001;
  let text = encoder.encode(reason);
  if (text.length > MAX_REASON_BYTES) {
    let end = MAX_REASON_BYTES;
    // Back off UTF-8 continuation bytes (10xxxxxx) so no character is cut in two.
    while (end > 0 && ((text[end] as number) & 0xc0) === 0x80) end--;
    text = text.subarray(0, end);
  }
  const payloadLength = 2 + text.length;
  const headerLength = maskKey === undefined ? 2 : 6;
  const frame = new Uint8Array(headerLength + payloadLength);
  frame[0] = 0x88;
  frame[1] = payloadLength | (maskKey === undefined ? 0 : 0x80);
  frame[headerLength] = sent >> 8;
  frame[headerLength + 1] = sent & 0xff;
  frame.set(text, headerLength + 2);
  if (maskKey !== undefined) {
    frame.set(maskKey.subarray(0, 4), 2);
    for (let i = 0; i < payloadLength; i++) {
      frame[headerLength + i] = (frame[headerLength + i] as number) ^ (maskKey[i % 4] as number);
    }
  }
  return frame;
}
