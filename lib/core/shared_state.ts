/**
 * The state one balancer decides on, in one `SharedArrayBuffer` that every isolate of
 * `lb --workers N` maps, read and written with `Atomics`: per backend its health, drain and
 * ejection flags, return count, in-flight count and passive health's failure streak; for the
 * whole balancer the rotation (round-robin's cursor and smooth weights), open client
 * connections, the queue's length and the retry budget's window. Messages carry only what
 * changes rarely (membership, weights, settings).
 *
 * Layout, in 32-bit words from the start: a header ({@linkcode HEADER_WORDS}), then one slot of
 * {@linkcode SLOT_WORDS} words per backend (its 64-bit fields at the slot's end, 8-byte aligned),
 * then the rotation's current weights (one float64 per pool position), then the retry budget's
 * window ({@linkcode RETRY_BUDGET_WORDS}). Slots are handed out by the control plane, one per backend; a reload that adds a
 * backend gets a slot never used (or the one freed longest ago), so a request still in flight to
 * a removed backend cannot count against its successor.
 *
 * Who writes what: health, drain, ejection and the return count are written by the control
 * plane only (one writer, many readers); in-flight counts, streaks and the whole-balancer
 * counters by every isolate, each change one atomic operation; the rotation under a small spin
 * lock (a pick holds it for one pass over the pool).
 *
 * @module
 */

import { SharedRateLimiter } from "./rate_limiter.ts";

/** The most backends one balancer holds at once. */
export const MAX_BACKENDS = 1024;

/** The most pools a route table names at once (each has its rotation). */
export const MAX_POOLS = 64;

/** Header words: locks, cursor and whole-balancer counters. */
const HEADER_WORDS = 16;
const H_ROTATION_LOCK = 0;
const H_CURSOR = 1;
const H_SIGNATURE = 2;
const H_CONNECTIONS = 3;
const H_QUEUED = 4;
const H_ISOLATES = 7;
/** The creating isolate's `performance.timeOrigin`, as a float64 at words 8-9. */
const H_ORIGIN_F64 = 4;

/** Words per backend slot (even, so its float64s stay 8-byte aligned). */
const SLOT_WORDS = 12;
const S_IN_FLIGHT = 0;
const S_FLAGS = 1;
const S_RETURNS = 2;
const S_STREAK = 3;
const S_EJECTIONS = 4;
const S_EJECTION_REASON = 5;
/** The ejection's end (wall-clock ms), a float64 at the slot's words 6-7. */
const S_EJECTION_UNTIL_F64 = 3;
/** When slow start's current ramp began (shared time base), a float64 at words 8-9. */
const S_RAMP_SINCE_F64 = 4;
/** The return count that ramp belongs to. */
const S_RAMP_RETURNS = 10;

const UNHEALTHY = 1;
const DRAINING = 2;
const EJECTED = 4;

/** Words in the retry budget's window (`data/retry_budget.ts` lays them out). */
export const RETRY_BUDGET_WORDS = 24;

/** Spins before a lock is taken anyway: its holder must have died mid-section. */
const MAX_SPINS = 1_000_000;

function bytesFor(capacity: number): number {
  return (HEADER_WORDS + capacity * SLOT_WORDS) * 4 + capacity * 8 + RETRY_BUDGET_WORDS * 4;
}

/** Takes the spin lock at `index`; pair with {@linkcode unlock}. */
function lock(words: Int32Array, index: number): void {
  for (let spins = 0; Atomics.compareExchange(words, index, 0, 1) !== 0; spins++) {
    if (spins > MAX_SPINS) {
      Atomics.store(words, index, 1);
      return;
    }
  }
}

function unlock(words: Int32Array, index: number): void {
  Atomics.store(words, index, 0);
}

/** Why passive health ejected a backend, by code (0 is none). */
const EJECTION_REASONS = ["", "connect", "timeout", "5xx"] as const;

/** Why and until when passive health (the outlier detector) has a backend out of rotation. */
export interface Ejection {
  /** When it returns: milliseconds since the Unix epoch (for display). */
  readonly untilMs: number;
  /** How many times in a row it has been ejected, this one included. */
  readonly count: number;
  /** The kind of the failures that ejected it: `connect`, `timeout` or `5xx`. */
  readonly reason: string;
}

/** Whether a backend passes its health checks. */
export type HealthState = "healthy" | "unhealthy";

/**
 * One backend's shared state: a view of its slot. Every isolate's `Backend` for the same
 * backend reads the same slot, so a health flip, drain or ejection written by the control plane
 * is seen by every isolate at its next read, and `inFlight` counts the whole balancer.
 */
export class SharedBackendState {
  readonly #words: Int32Array;
  readonly #floats: Float64Array;
  readonly #base: number;
  /** The slot's number in its buffer (what the worker protocol sends). */
  readonly index: number;

  /**
   * @param buffer The balancer's buffer, or a private one (a backend outside any balancer).
   * @param index The slot's number.
   */
  constructor(buffer: SharedArrayBuffer, index: number) {
    this.#words = new Int32Array(buffer);
    this.#floats = new Float64Array(buffer);
    this.#base = HEADER_WORDS + index * SLOT_WORDS;
    this.index = index;
  }

  /** A slot in a buffer of its own: a backend that belongs to no balancer (tests, tools). */
  static standalone(): SharedBackendState {
    return new SharedBackendState(new SharedArrayBuffer(bytesFor(1)), 0);
  }

  #load(field: number): number {
    return Atomics.load(this.#words, this.#base + field);
  }

  /** Whether policies may pick it: healthy, not draining, not ejected. */
  get isAvailable(): boolean {
    return Atomics.load(this.#words, this.#base + S_FLAGS) === 0;
  }

  /** The health state, as active health checking last set it. */
  get health(): HealthState {
    return (this.#load(S_FLAGS) & UNHEALTHY) === 0 ? "healthy" : "unhealthy";
  }

  /** Whether an operator (or a reload removing it) is draining it. */
  get isDraining(): boolean {
    return (this.#load(S_FLAGS) & DRAINING) !== 0;
  }

  /** Whether passive health has it out of rotation. */
  get isEjected(): boolean {
    return (this.#load(S_FLAGS) & EJECTED) !== 0;
  }

  /** The ejection's details; `undefined` when it is in rotation. */
  get ejection(): Ejection | undefined {
    if (!this.isEjected) return undefined;
    return {
      untilMs: this.#floats[(this.#base >> 1) + S_EJECTION_UNTIL_F64] ?? 0,
      count: this.#load(S_EJECTIONS),
      reason: EJECTION_REASONS[this.#load(S_EJECTION_REASON)] ?? "",
    };
  }

  /** How many times it has come (back) into rotation; slow start ramps on a change. */
  get returnCount(): number {
    return this.#load(S_RETURNS);
  }

  /** Requests forwarded to it and not finished, over every isolate. */
  get inFlight(): number {
    // A request that outlived its backend's removal may end after the slot was reused.
    return Math.max(0, this.#load(S_IN_FLIGHT));
  }

  /**
   * Resets the slot for a new backend. Control plane only, before any isolate sees the slot.
   *
   * @param health The state before the first probe.
   * @param returnCount Its return count to start from (above 0 ramps it up).
   */
  reset(health: HealthState, returnCount: number): void {
    for (let field = 0; field < SLOT_WORDS; field++) {
      Atomics.store(this.#words, this.#base + field, 0);
    }
    Atomics.store(this.#words, this.#base + S_FLAGS, health === "healthy" ? 0 : UNHEALTHY);
    Atomics.store(this.#words, this.#base + S_RETURNS, returnCount);
  }

  /**
   * Sets or clears one flag, counting a return into rotation. Control plane only: flags have
   * one writer, so a load and a store suffice.
   */
  #setFlag(flag: number, isSet: boolean): boolean {
    const flags = this.#load(S_FLAGS);
    const next = isSet ? flags | flag : flags & ~flag;
    if (next === flags) return false;
    Atomics.store(this.#words, this.#base + S_FLAGS, next);
    if (next === 0) Atomics.add(this.#words, this.#base + S_RETURNS, 1);
    return true;
  }

  /**
   * Sets the health state. Control plane only (active health checking).
   *
   * @param next The new state.
   * @returns Whether it changed.
   */
  setHealth(next: HealthState): boolean {
    return this.#setFlag(UNHEALTHY, next === "unhealthy");
  }

  /**
   * Starts or stops draining. Control plane only (the admin API, a reload).
   *
   * @param isDraining Whether new requests must avoid it.
   * @returns Whether it changed.
   */
  setDraining(isDraining: boolean): boolean {
    return this.#setFlag(DRAINING, isDraining);
  }

  /**
   * Ejects it or lets it return; either way its failure streak starts over. Control plane only
   * (passive health).
   *
   * @param ejection Why and until when, or `undefined` to return it.
   * @returns Whether it changed between ejected and not.
   */
  setEjection(ejection: Ejection | undefined): boolean {
    if (ejection !== undefined) {
      this.#floats[(this.#base >> 1) + S_EJECTION_UNTIL_F64] = ejection.untilMs;
      Atomics.store(this.#words, this.#base + S_EJECTIONS, ejection.count);
      const reason = EJECTION_REASONS.indexOf(ejection.reason as typeof EJECTION_REASONS[number]);
      Atomics.store(this.#words, this.#base + S_EJECTION_REASON, Math.max(0, reason));
    }
    Atomics.store(this.#words, this.#base + S_STREAK, 0);
    return this.#setFlag(EJECTED, ejection !== undefined);
  }

  /**
   * When slow start's ramp for return number `returnCount` began: the first isolate to ask
   * sets it, so every isolate ramps the backend on the same time. (Two asking at once both set
   * it, to times a moment apart.)
   *
   * @param returnCount The backend's return count now.
   * @param nowMs The time now, on the shared time base ({@linkcode SharedState.timeDeltaMs}).
   * @returns The ramp's start, on the shared time base.
   */
  rampSince(returnCount: number, nowMs: number): number {
    const floatIndex = (this.#base >> 1) + S_RAMP_SINCE_F64;
    if (Atomics.load(this.#words, this.#base + S_RAMP_RETURNS) !== returnCount) {
      this.#floats[floatIndex] = nowMs;
      Atomics.store(this.#words, this.#base + S_RAMP_RETURNS, returnCount);
    }
    return this.#floats[floatIndex] ?? nowMs;
  }

  /** Counts a request started; pair with {@linkcode end}. */
  begin(): void {
    Atomics.add(this.#words, this.#base + S_IN_FLIGHT, 1);
  }

  /**
   * Counts a request started if fewer than `limit` are in flight over the whole balancer.
   *
   * @param limit Requests at once; 0 is no limit.
   * @returns Whether it was counted (then pair it with {@linkcode end}).
   */
  tryBegin(limit: number): boolean {
    if (limit <= 0) {
      this.begin();
      return true;
    }
    const index = this.#base + S_IN_FLIGHT;
    for (;;) {
      const count = Atomics.load(this.#words, index);
      if (count >= limit) return false;
      if (Atomics.compareExchange(this.#words, index, count, count + 1) === count) return true;
    }
  }

  /** Counts a request finished. */
  end(): void {
    Atomics.sub(this.#words, this.#base + S_IN_FLIGHT, 1);
  }

  /**
   * Counts one more consecutive failure, over every isolate.
   *
   * @returns The streak, this failure included.
   */
  addFailure(): number {
    return Atomics.add(this.#words, this.#base + S_STREAK, 1) + 1;
  }

  /** Ends the failure streak (a success); costs one read when there is none. */
  clearStreak(): void {
    const index = this.#base + S_STREAK;
    if (Atomics.load(this.#words, index) !== 0) Atomics.store(this.#words, index, 0);
  }
}

/**
 * The rotation of round-robin (and least-in-flight's tie-break): a cursor, a signature of the
 * available set it was computed for, and each pool position's current weight (nginx's smooth
 * weighted round-robin), behind a lock so that the picks of every isolate are one sequence.
 */
export class Rotation {
  #words: Int32Array;
  #weights: Float64Array;
  readonly #isShared: boolean;

  /**
   * @param buffer The balancer's buffer. Default: a private rotation (one isolate, tests).
   * @param region Where in `buffer` this rotation lives, when it is not the balancer's own
   *   (a named pool's, `routing_state.ts`): {@linkcode ROTATION_REGION_HEADER_BYTES} bytes of
   *   lock, cursor and signature, then `capacity` float64 weights. Default: the balancer's.
   */
  constructor(
    buffer?: SharedArrayBuffer,
    region?: { readonly byteOffset: number; readonly capacity: number },
  ) {
    if (buffer === undefined) {
      this.#words = new Int32Array(HEADER_WORDS);
      this.#weights = new Float64Array(8);
      this.#isShared = false;
      return;
    }
    if (region !== undefined) {
      this.#words = new Int32Array(buffer, region.byteOffset, ROTATION_REGION_HEADER_BYTES / 4);
      this.#weights = new Float64Array(
        buffer,
        region.byteOffset + ROTATION_REGION_HEADER_BYTES,
        region.capacity,
      );
      this.#isShared = true;
      return;
    }
    const capacity = capacityOf(buffer);
    this.#words = new Int32Array(buffer, 0, HEADER_WORDS);
    this.#weights = new Float64Array(buffer, (HEADER_WORDS + capacity * SLOT_WORDS) * 4, capacity);
    this.#isShared = true;
  }

  /** Takes the rotation for one pick; pair with {@linkcode release} in a `finally`. */
  acquire(): void {
    if (this.#isShared) lock(this.#words, H_ROTATION_LOCK);
  }

  /** Gives the rotation back. */
  release(): void {
    if (this.#isShared) unlock(this.#words, H_ROTATION_LOCK);
  }

  /** The position the next pick starts from (held lock). */
  get cursor(): number {
    return this.#words[H_CURSOR] ?? 0;
  }

  set cursor(position: number) {
    this.#words[H_CURSOR] = position;
  }

  /**
   * Makes the current weights belong to `signature` (held lock): when the available set or
   * its weights changed, they restart from zero for positions below `count`.
   *
   * @param signature A hash of the available positions and their configured weights.
   * @param count The pool's size.
   * @throws {RangeError} When a shared rotation's pool is larger than the buffer holds.
   */
  adopt(signature: number, count: number): void {
    if (count > this.#weights.length) {
      if (this.#isShared) {
        throw new RangeError(`Cannot rotate over ${count} backends: at most ${MAX_BACKENDS}`);
      }
      this.#weights = new Float64Array(Math.max(count, this.#weights.length * 2));
      this.#words[H_SIGNATURE] = signature + 1; // force the reset below
    }
    if (this.#words[H_SIGNATURE] === signature) return;
    this.#words[H_SIGNATURE] = signature;
    this.#weights.fill(0, 0, count);
  }

  /** The current weight of pool position `index` (held lock). */
  weightAt(index: number): number {
    return this.#weights[index] ?? 0;
  }

  /** Sets the current weight of pool position `index` (held lock). */
  setWeightAt(index: number, weight: number): void {
    this.#weights[index] = weight;
  }
}

/** Bytes before a rotation region's weights: lock, cursor, signature and a pad. */
export const ROTATION_REGION_HEADER_BYTES = 16;

/** A whole-balancer count bounded by a limit: open connections, requests queued. */
export class SharedCounter {
  readonly #words: Int32Array;
  readonly #index: number;

  /**
   * @param words The buffer's words.
   * @param index The counter's word.
   */
  constructor(words: Int32Array, index: number) {
    this.#words = words;
    this.#index = index;
  }

  /** A counter of its own (one isolate, tests). */
  static standalone(): SharedCounter {
    return new SharedCounter(new Int32Array(new SharedArrayBuffer(4)), 0);
  }

  /** The count now. */
  get value(): number {
    return Atomics.load(this.#words, this.#index);
  }

  /**
   * Adds one unless that would pass `limit`.
   *
   * @param limit The bound; 0 or less is no limit.
   * @returns Whether it was added (then pair it with {@linkcode release}).
   */
  tryAcquire(limit: number): boolean {
    for (;;) {
      const count = Atomics.load(this.#words, this.#index);
      if (limit > 0 && count >= limit) return false;
      if (Atomics.compareExchange(this.#words, this.#index, count, count + 1) === count) {
        return true;
      }
    }
  }

  /** Takes one off. */
  release(): void {
    Atomics.sub(this.#words, this.#index, 1);
  }
}

/**
 * The admission queue's whole-balancer side: how many requests wait, in every isolate. An
 * isolate with waiters looks for a freed slot every few milliseconds while other isolates
 * serve too, as their requests end where it cannot see. (`Atomics.waitAsync` exists in Deno
 * 2.9.6, but its wake-up arrived 170-270 ms after the `notify` in a measurement here, and only
 * when the event loop woke for something else: it is not a usable wake-up.)
 */
export class SharedQueue {
  readonly #words: Int32Array;
  /** Requests waiting, in every isolate. */
  readonly waiting: SharedCounter;

  /** @param buffer The balancer's buffer. Default: a private one (one isolate, tests). */
  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(HEADER_WORDS * 4)) {
    this.#words = new Int32Array(buffer, 0, HEADER_WORDS);
    this.waiting = new SharedCounter(this.#words, H_QUEUED);
  }

  /** Whether other isolates serve requests too (so slots may free where this one cannot see). */
  get isShared(): boolean {
    return Atomics.load(this.#words, H_ISOLATES) > 1;
  }
}

/** A retry budget window's storage (`data/retry_budget.ts`). */
export interface RetryBudgetStorage {
  /** Words laid out by the budget (its lock among them). */
  readonly words: Int32Array;
  /** Milliseconds to add to this isolate's clock to reach the window's time base. */
  readonly timeDeltaMs: number;
}

function capacityOf(buffer: SharedArrayBuffer): number {
  return (buffer.byteLength - RETRY_BUDGET_WORDS * 4 - HEADER_WORDS * 4) / (SLOT_WORDS * 4 + 8);
}

/** The routes' shared buffers, sent to each worker beside the balancer's own. */
export interface RoutingBuffers {
  /** One rotation per named pool. */
  readonly rotations: SharedArrayBuffer;
  /** The rate limits' buckets. */
  readonly limiter: SharedArrayBuffer;
}

/** Bytes of one named pool's rotation: its header, then a weight per possible backend. */
const POOL_ROTATION_BYTES = ROTATION_REGION_HEADER_BYTES + MAX_BACKENDS * 8;

function newRoutingBuffers(): RoutingBuffers {
  return {
    rotations: new SharedArrayBuffer(POOL_ROTATION_BYTES * MAX_POOLS),
    limiter: SharedRateLimiter.create().buffer,
  };
}

/**
 * One balancer's shared state: the buffer and its views. The control plane creates it and
 * hands out slots; each data-plane worker attaches to the same buffer.
 */
export class SharedState {
  /** The memory every isolate maps; sent to workers in their `start` message. */
  readonly buffer: SharedArrayBuffer;
  /** Round-robin's rotation. */
  readonly rotation: Rotation;
  /** Client connections open over every isolate (`--max-connections`). */
  readonly connections: SharedCounter;
  /** The admission queue over every isolate (`--queue-size`). */
  readonly queue: SharedQueue;
  /** The retry budget's window, counted once for the whole balancer. */
  readonly retryBudget: RetryBudgetStorage;
  /**
   * Milliseconds to add to this isolate's clock (`performance.now()`) to reach the balancer's
   * time base: the creating isolate's clock. Workers start later, so their clocks start later.
   */
  readonly timeDeltaMs: number;
  /**
   * The routes' part, in buffers of its own: one rotation per named pool, and the rate limits'
   * buckets (`rate_limiter.ts`).
   */
  readonly routing: RoutingBuffers;
  /** The rate limits' buckets, for the whole balancer. */
  readonly limiter: SharedRateLimiter;
  readonly #poolRotations: (Rotation | undefined)[] = [];
  readonly #words: Int32Array;
  readonly #capacity: number;
  /** Slots never handed out start here. */
  #fresh = 0;
  /** Slots freed, oldest first. */
  readonly #freed: number[] = [];

  private constructor(buffer: SharedArrayBuffer, routing: RoutingBuffers) {
    this.buffer = buffer;
    this.routing = routing;
    this.limiter = new SharedRateLimiter(routing.limiter);
    this.#capacity = capacityOf(buffer);
    this.#words = new Int32Array(buffer, 0, HEADER_WORDS);
    this.rotation = new Rotation(buffer);
    this.connections = new SharedCounter(this.#words, H_CONNECTIONS);
    this.queue = new SharedQueue(buffer);
    const origin = new Float64Array(buffer, 0, HEADER_WORDS / 2)[H_ORIGIN_F64] ?? 0;
    this.timeDeltaMs = performance.timeOrigin - origin;
    this.retryBudget = {
      words: new Int32Array(buffer, buffer.byteLength - RETRY_BUDGET_WORDS * 4, RETRY_BUDGET_WORDS),
      timeDeltaMs: this.timeDeltaMs,
    };
  }

  /**
   * Creates the state of a new balancer (the control plane).
   *
   * @param capacity The most backends at once. Default: {@linkcode MAX_BACKENDS}.
   * @returns The state, with no slot handed out.
   */
  static create(capacity: number = MAX_BACKENDS): SharedState {
    const buffer = new SharedArrayBuffer(bytesFor(capacity));
    // Every isolate's clock starts at its own time origin; the budget's seconds are the creator's.
    new Float64Array(buffer, 0, HEADER_WORDS / 2)[H_ORIGIN_F64] = performance.timeOrigin;
    Atomics.store(new Int32Array(buffer, 0, HEADER_WORDS), H_ISOLATES, 1);
    return new SharedState(buffer, newRoutingBuffers());
  }

  /**
   * Maps the state a control plane created (a data-plane worker).
   *
   * @param buffer The buffer from the `start` message.
   * @param routing The routes' buffers from the same message. Default: routes' state of its
   *   own (tests that share only the balancer's buffer).
   * @returns Views of it; this side never hands out slots.
   */
  static attach(buffer: SharedArrayBuffer, routing?: RoutingBuffers): SharedState {
    return new SharedState(buffer, routing ?? newRoutingBuffers());
  }

  /**
   * The rotation of the named pool at `index` in the configuration's pool order.
   *
   * @param index The pool's position.
   * @returns Its rotation, the same memory in every isolate.
   * @throws {RangeError} When `index` is {@linkcode MAX_POOLS} or more.
   */
  poolRotation(index: number): Rotation {
    if (!(Number.isInteger(index) && index >= 0 && index < MAX_POOLS)) {
      throw new RangeError(`Cannot route over pool number ${index}: at most ${MAX_POOLS} pools`);
    }
    return this.#poolRotations[index] ??= new Rotation(this.routing.rotations, {
      byteOffset: index * POOL_ROTATION_BYTES,
      capacity: MAX_BACKENDS,
    });
  }

  /**
   * Says how many isolates serve requests (the queue polls for others' freed slots when
   * there is more than one).
   *
   * @param count Isolates serving.
   */
  setIsolateCount(count: number): void {
    Atomics.store(this.#words, H_ISOLATES, count);
  }

  /**
   * A backend slot by number (a worker mirroring the control plane's pool).
   *
   * @param index The number {@linkcode SharedBackendState.index} gave.
   * @returns A view of it.
   * @throws {RangeError} When the number is outside the buffer.
   */
  slot(index: number): SharedBackendState {
    if (!(Number.isInteger(index) && index >= 0 && index < this.#capacity)) {
      throw new RangeError(`Invalid backend slot "${index}": must be 0 to ${this.#capacity - 1}`);
    }
    return new SharedBackendState(this.buffer, index);
  }

  /**
   * Hands out a slot for a new backend, reset (control plane only).
   *
   * @param health The state before the first probe. Default: healthy.
   * @param returnCount Its return count to start from. Default: 0.
   * @returns The slot.
   * @throws {RangeError} When every slot is taken.
   */
  allocate(health: HealthState = "healthy", returnCount = 0): SharedBackendState {
    let index: number | undefined;
    if (this.#fresh < this.#capacity) index = this.#fresh++;
    else index = this.#freed.shift();
    if (index === undefined) {
      throw new RangeError(`Cannot add a backend: one balancer holds at most ${this.#capacity}`);
    }
    const slot = this.slot(index);
    slot.reset(health, returnCount);
    return slot;
  }

  /**
   * Gives back a removed backend's slot; it is reused last.
   *
   * @param slot The slot {@linkcode allocate} gave.
   */
  free(slot: SharedBackendState): void {
    this.#freed.push(slot.index);
  }
}
