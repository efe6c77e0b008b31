/**
 * SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104), synchronous, in plain TypeScript. The cookie
 * policy signs its cookies while picking, which must be synchronous, and `crypto.subtle` is
 * not; `node:crypto` is, but importing it loads Deno's Node compatibility layer into every
 * isolate that holds the policy registry (about 2 MB of heap, 8 MB of resident memory and
 * 100 ms of start-up per isolate, measured on Deno 2.9.6). The policy hashes a few short
 * strings per backend, once per pool change, so speed does not matter here.
 *
 * @module
 */

const encoder = new TextEncoder();

/** The first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
const K = new Uint32Array([
  0x428a2f98,
  0x71374491,
  0xb5c0fbcf,
  0xe9b5dba5,
  0x3956c25b,
  0x59f111f1,
  0x923f82a4,
  0xab1c5ed5,
  0xd807aa98,
  0x12835b01,
  0x243185be,
  0x550c7dc3,
  0x72be5d74,
  0x80deb1fe,
  0x9bdc06a7,
  0xc19bf174,
  0xe49b69c1,
  0xefbe4786,
  0x0fc19dc6,
  0x240ca1cc,
  0x2de92c6f,
  0x4a7484aa,
  0x5cb0a9dc,
  0x76f988da,
  0x983e5152,
  0xa831c66d,
  0xb00327c8,
  0xbf597fc7,
  0xc6e00bf3,
  0xd5a79147,
  0x06ca6351,
  0x14292967,
  0x27b70a85,
  0x2e1b2138,
  0x4d2c6dfc,
  0x53380d13,
  0x650a7354,
  0x766a0abb,
  0x81c2c92e,
  0x92722c85,
  0xa2bfe8a1,
  0xa81a664b,
  0xc24b8b70,
  0xc76c51a3,
  0xd192e819,
  0xd6990624,
  0xf40e3585,
  0x106aa070,
  0x19a4c116,
  0x1e376c08,
  0x2748774c,
  0x34b0bcb5,
  0x391c0cb3,
  0x4ed8aa4a,
  0x5b9cca4f,
  0x682e6ff3,
  0x748f82ee,
  0x78a5636f,
  0x84c87814,
  0x8cc70208,
  0x90befffa,
  0xa4506ceb,
  0xbef9a3f7,
  0xc67178f2,
]);

/** The initial hash value: fractional parts of the square roots of the first 8 primes. */
const H0 = [
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
];

const BLOCK_BYTES = 64;

function rotr(x: number, n: number): number {
  return (x >>> n) | (x << (32 - n));
}

function bytesOf(data: Uint8Array | string): Uint8Array {
  return typeof data === "string" ? encoder.encode(data) : data;
}

/**
 * The SHA-256 digest of some bytes (a string is hashed as its UTF-8 bytes).
 *
 * @param data What to hash.
 * @returns The 32-byte digest.
 *
 * @example
 * ```ts
 * import { sha256, toHex } from "./sha256.ts";
 * const abc = toHex(sha256("abc"));
 * if (abc !== "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") throw new Error();
 * ```
 */
export function sha256(data: Uint8Array | string): Uint8Array {
  const message = bytesOf(data);
  // Padding: a 1 bit, zeros, then the length in bits as a 64-bit big-endian number.
  const padded = new Uint8Array(Math.ceil((message.length + 9) / BLOCK_BYTES) * BLOCK_BYTES);
  padded.set(message);
  padded[message.length] = 0x80;
  const view = new DataView(padded.buffer);
  const bits = message.length * 8;
  view.setUint32(padded.length - 8, Math.floor(bits / 0x1_0000_0000));
  view.setUint32(padded.length - 4, bits >>> 0);
  const h = [...H0];
  const w = new Uint32Array(64);
  for (let offset = 0; offset < padded.length; offset += BLOCK_BYTES) {
    for (let t = 0; t < 16; t++) w[t] = view.getUint32(offset + t * 4);
    for (let t = 16; t < 64; t++) {
      const w15 = w[t - 15] ?? 0;
      const w2 = w[t - 2] ?? 0;
      const s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >>> 3);
      const s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >>> 10);
      w[t] = (w[t - 16] ?? 0) + s0 + (w[t - 7] ?? 0) + s1;
    }
    let [a, b, c, d, e, f, g, hh] = h as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    for (let t = 0; t < 64; t++) {
      const s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const choice = (e & f) ^ (~e & g);
      const temp1 = (hh + s1 + choice + (K[t] ?? 0) + (w[t] ?? 0)) | 0;
      const s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const majority = (a & b) ^ (a & c) ^ (b & c);
      const temp2 = (s0 + majority) | 0;
      hh = g;
      g = f;
      f = e;
      e = (d + temp1) | 0;
      d = c;
      c = b;
      b = a;
      a = (temp1 + temp2) | 0;
    }
    const next = [a, b, c, d, e, f, g, hh];
    for (let i = 0; i < 8; i++) h[i] = ((h[i] ?? 0) + (next[i] ?? 0)) | 0;
  }
  const digest = new Uint8Array(32);
  const out = new DataView(digest.buffer);
  for (let i = 0; i < 8; i++) out.setUint32(i * 4, (h[i] ?? 0) >>> 0);
  return digest;
}

/**
 * HMAC-SHA256 (RFC 2104) of a message under a key (strings as their UTF-8 bytes).
 *
 * @param key The key.
 * @param message The message.
 * @returns The 32-byte MAC.
 *
 * @example
 * ```ts
 * import { hmacSha256, toHex } from "./sha256.ts";
 * // RFC 4231 test case 2.
 * const mac = toHex(hmacSha256("Jefe", "what do ya want for nothing?"));
 * if (mac !== "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843") throw new Error();
 * ```
 */
export function hmacSha256(key: Uint8Array | string, message: Uint8Array | string): Uint8Array {
  let keyBytes = bytesOf(key);
  if (keyBytes.length > BLOCK_BYTES) keyBytes = sha256(keyBytes);
  const inner = new Uint8Array(BLOCK_BYTES);
  const outer = new Uint8Array(BLOCK_BYTES);
  inner.set(keyBytes);
  outer.set(keyBytes);
  for (let i = 0; i < BLOCK_BYTES; i++) {
    inner[i] = (inner[i] ?? 0) ^ 0x36;
    outer[i] = (outer[i] ?? 0) ^ 0x5c;
  }
  const messageBytes = bytesOf(message);
  const innerInput = new Uint8Array(BLOCK_BYTES + messageBytes.length);
  innerInput.set(inner);
  innerInput.set(messageBytes, BLOCK_BYTES);
  const outerInput = new Uint8Array(BLOCK_BYTES + 32);
  outerInput.set(outer);
  outerInput.set(sha256(innerInput), BLOCK_BYTES);
  return sha256(outerInput);
}

/**
 * Bytes as lower-case hex.
 *
 * @param bytes The bytes.
 * @returns Two hex digits per byte.
 *
 * @example
 * ```ts
 * import { toHex } from "./sha256.ts";
 * if (toHex(new Uint8Array([0, 171])) !== "00ab") throw new Error();
 * ```
 */
export function toHex(bytes: Uint8Array): string {
  let hex = "";
  for (const byte of bytes) hex += byte.toString(16).padStart(2, "0");
  return hex;
}

/**
 * Bytes as base64url without padding (RFC 4648 section 5), as `Buffer`'s `"base64url"`.
 *
 * @param bytes The bytes.
 * @returns The text.
 *
 * @example
 * ```ts
 * import { toBase64Url } from "./sha256.ts";
 * if (toBase64Url(new Uint8Array([251, 255])) !== "-_8") throw new Error();
 * ```
 */
export function toBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}
