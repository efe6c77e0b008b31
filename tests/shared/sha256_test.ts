import { createHash, createHmac } from "node:crypto";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import { hmacSha256, sha256, toBase64Url, toHex } from "../../lib/shared/sha256.ts";
import { assertEquals } from "../support/assert.ts";

Deno.test("sha256() matches the FIPS 180-4 examples and node:crypto at every padding boundary", () => {
  assertEquals(
    toHex(sha256("")),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
  assertEquals(
    toHex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  );
  // 55, 56 and 64 bytes straddle the length field's room in the last block.
  for (const length of [1, 55, 56, 63, 64, 65, 119, 120, 1000]) {
    const text = "x".repeat(length);
    assertEquals(toHex(sha256(text)), createHash("sha256").update(text).digest("hex"), `${length}`);
  }
});

Deno.test("hmacSha256() matches RFC 4231 and node:crypto for short, block-long and long keys", () => {
  const key = new Uint8Array(20).fill(0x0b);
  assertEquals(
    toHex(hmacSha256(key, "Hi There")),
    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 150 }), fc.string({ maxLength: 200 }), (k, message) => {
      const expected = createHmac("sha256", k).update(message).digest("hex");
      assertEquals(toHex(hmacSha256(k, message)), expected);
    }),
    { numRuns: 300 },
  );
});

Deno.test("toBase64Url() is Buffer's base64url: no padding, - and _", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      assertEquals(toBase64Url(bytes), Buffer.from(bytes).toString("base64url"));
    }),
  );
});
