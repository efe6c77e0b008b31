/**
 * Token buckets for the routes' rate limits, in a `SharedArrayBuffer` every isolate maps, so a
 * limit is the whole balancer's (as nginx's `limit_req` zone and HAProxy's stick tables are),
 * whatever `--workers` says.
 *
 * Memory is bounded: a fixed table of {@linkcode DEFAULT_ENTRIES} buckets, set-associative
 * ({@linkcode WAYS} buckets per set, each set behind its own spin lock, so two isolates contend
 * only on the same set). A key hashes (two independent 32-bit hashes) to one set; a new key
 * takes a free bucket of its set or evicts the least recently used one, and each eviction is
 * counted. An evicted key comes back with a full bucket, which is what nginx does when its zone
 * is full too, less strictly (nginx refuses the request).
 *
 * Layout, in 32-bit words: a header ({@linkcode HEADER_WORDS}: the eviction count), one lock
 * word per set, then the buckets, {@linkcode ENTRY_WORDS} words each: two hash words, an in-use
 * flag, a pad, the tokens (float64) and when they were last refilled (float64, on the
 * balancer's time base, also the bucket's recency).
 *
 * @module
 */

/** Buckets in a table made without a size. */
export const DEFAULT_ENTRIES = 16_384;
/** Buckets per set. */
export const WAYS = 8;
const HEADER_WORDS = 4;
const H_EVICTIONS = 0;
const ENTRY_WORDS = 8;
const E_HASH_A = 0;
const E_HASH_B = 1;
const E_USED = 2;
/** Float64 indexes within an entry (pairs of words). */
const E_TOKENS_F64 = 2;
const E_LAST_F64 = 3;
const MAX_SPINS = 1_000_000;

/** The outcome of {@linkcode SharedRateLimiter.take}. */
export type RateDecision =
  | { readonly ok: true }
  | { readonly ok: false; readonly retryAfterSeconds: number };

/** A token bucket's parameters. */
export interface BucketRule {
  /** Tokens added a second. */
  readonly perSecond: number;
  /** The most tokens a bucket holds. */
  readonly burst: number;
}

/** The balancer's rate-limit buckets, shared by every isolate. */
export class SharedRateLimiter {
  /** The memory every isolate maps. */
  readonly buffer: SharedArrayBuffer;
  readonly #words: Int32Array;
  readonly #floats: Float64Array;
  readonly #sets: number;
  readonly #entriesBase: number;

  /**
   * @param buffer A buffer from {@linkcode SharedRateLimiter.create}, or another isolate's.
   */
  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.#words = new Int32Array(buffer);
    this.#floats = new Float64Array(buffer);
    // bytes = (HEADER + sets + sets * WAYS * ENTRY) * 4, with sets even so entries stay aligned.
    this.#sets = (buffer.byteLength / 4 - HEADER_WORDS) / (1 + WAYS * ENTRY_WORDS);
    this.#entriesBase = HEADER_WORDS + this.#sets;
  }

  /**
   * A new table.
   *
   * @param entries How many buckets at most (rounded up to whole, even sets). Default:
   *   {@linkcode DEFAULT_ENTRIES}.
   * @returns The table, every bucket free.
   */
  static create(entries: number = DEFAULT_ENTRIES): SharedRateLimiter {
    let sets = Math.max(2, Math.ceil(entries / WAYS));
    if (sets % 2 === 1) sets++;
    return new SharedRateLimiter(
      new SharedArrayBuffer((HEADER_WORDS + sets + sets * WAYS * ENTRY_WORDS) * 4),
    );
  }

  /** Buckets in the table. */
  get capacity(): number {
    return this.#sets * WAYS;
  }

  /** Buckets evicted for a new key since the table was made (every isolate's). */
  get evictions(): number {
    return Atomics.load(this.#words, H_EVICTIONS);
  }

  /**
   * Takes one token from the key's bucket.
   *
   * @param key The bucket's key (the route's name and what the limit counts apart).
   * @param rule Rate and burst.
   * @param nowMs Now, on the balancer's time base (the same in every isolate).
   * @returns Allowed, or refused with the seconds until a token is there.
   */
  take(key: string, rule: BucketRule, nowMs: number): RateDecision & { evicted?: boolean } {
    const hashA = hash(key, 0x811c9dc5);
    const hashB = hash(key, 0x01000193) | 1; // never 0: a free bucket's hash is 0
    const set = (hashA >>> 0) % this.#sets;
    const lockIndex = HEADER_WORDS + set;
    lock(this.#words, lockIndex);
    try {
      const first = this.#entriesBase + set * WAYS * ENTRY_WORDS;
      let free = -1;
      let oldest = -1;
      let oldestLast = Number.POSITIVE_INFINITY;
      for (let way = 0; way < WAYS; way++) {
        const base = first + way * ENTRY_WORDS;
        const words = this.#words;
        if (words[base + E_USED] === 0) {
          if (free < 0) free = base;
          continue;
        }
        if (words[base + E_HASH_A] === hashA && words[base + E_HASH_B] === hashB) {
          return this.#spend(base, rule, nowMs);
        }
        const last = this.#floats[(base >> 1) + E_LAST_F64] ?? 0;
        if (last < oldestLast) {
          oldestLast = last;
          oldest = base;
        }
      }
      const evicted = free < 0;
      const base = evicted ? oldest : free;
      if (evicted) Atomics.add(this.#words, H_EVICTIONS, 1);
      this.#words[base + E_HASH_A] = hashA;
      this.#words[base + E_HASH_B] = hashB;
      this.#words[base + E_USED] = 1;
      this.#floats[(base >> 1) + E_TOKENS_F64] = rule.burst;
      this.#floats[(base >> 1) + E_LAST_F64] = nowMs;
      const decision = this.#spend(base, rule, nowMs);
      return evicted ? { ...decision, evicted } : decision;
    } finally {
      Atomics.store(this.#words, lockIndex, 0);
    }
  }

  /** Refills the bucket at `base` to now and takes a token if there is one (held lock). */
  #spend(base: number, rule: BucketRule, nowMs: number): RateDecision {
    const tokensAt = (base >> 1) + E_TOKENS_F64;
    const lastAt = (base >> 1) + E_LAST_F64;
    const last = this.#floats[lastAt] ?? nowMs;
    const elapsedMs = Math.max(0, nowMs - last);
    let tokens = Math.min(
      rule.burst,
      (this.#floats[tokensAt] ?? 0) + elapsedMs * rule.perSecond / 1000,
    );
    this.#floats[lastAt] = Math.max(last, nowMs);
    if (tokens >= 1) {
      tokens -= 1;
      this.#floats[tokensAt] = tokens;
      return { ok: true };
    }
    this.#floats[tokensAt] = tokens;
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - tokens) / rule.perSecond)) };
  }
}

/** FNV-1a over the string's UTF-16 code units, from a seed. */
function hash(text: string, seed: number): number {
  let h = seed | 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // A second mix so the two seeds give independent values for short keys.
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h | 0;
}

function lock(words: Int32Array, index: number): void {
  for (let spins = 0; Atomics.compareExchange(words, index, 0, 1) !== 0; spins++) {
    // A holder that died mid-section must not stop the balancer: take the lock anyway.
    if (spins > MAX_SPINS) {
      Atomics.store(words, index, 1);
      return;
    }
  }
}
