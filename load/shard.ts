/**
 * `--shard i/N`: one of N load generators that together make the planned load. Shard `i`
 * (0-based, as a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`) takes its share of every
 * concurrency level, arrival rate, stage rate, request total and in-flight cap; durations stay
 * as they are, since the shards run side by side. `loadtest merge` adds the shares back up.
 *
 * @module
 */
import type { Stage } from "./arrivals.ts";
import type { Stop } from "./scheduler.ts";

/** Which slice of the load this process makes. */
export interface Shard {
  /** 0-based index, below `count`. */
  readonly index: number;
  /** How many shards make the whole load. */
  readonly count: number;
}

/**
 * Parses `i/N`.
 *
 * @param text The value, such as `"0/4"`.
 * @returns The shard.
 * @throws {RangeError} When the text is not `i/N` with integers `0 <= i < N`.
 *
 * @example
 * ```ts
 * import { parseShard } from "./shard.ts";
 * const shard = parseShard("2/4");
 * if (shard.index !== 2 || shard.count !== 4) throw new Error();
 * ```
 */
export function parseShard(text: string): Shard {
  const match = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const index = Number(match?.[1]);
  const count = Number(match?.[2]);
  if (match === null || !Number.isSafeInteger(index) || !Number.isSafeInteger(count)) {
    throw new RangeError("use INDEX/COUNT, such as 0/4 (the index counts from 0)");
  }
  if (count < 1) throw new RangeError("the count must be at least 1");
  if (index >= count) {
    throw new RangeError(`the index counts from 0, so it must be below the count ${count}`);
  }
  return { index, count };
}

/**
 * This shard's part of a whole number: the parts of all shards add up to `whole`, the first
 * `whole % count` shards taking one more.
 *
 * @param whole The whole (a concurrency or a request total).
 * @param shard The shard.
 * @returns Its part, possibly 0.
 *
 * @example
 * ```ts
 * import { integerShare } from "./shard.ts";
 * const parts = [0, 1, 2].map((index) => integerShare(10, { index, count: 3 }));
 * if (parts.join() !== "4,3,3") throw new Error();
 * ```
 */
export function integerShare(whole: number, shard: Shard): number {
  const base = Math.floor(whole / shard.count);
  return base + (shard.index < whole % shard.count ? 1 : 0);
}

/** What a shard divides. */
export interface ShardableLoad {
  /** `closed` (levels are users) or `open` (levels are rates). */
  readonly model: "closed" | "open";
  /** Concurrency levels or rates. */
  readonly levels: readonly number[];
  /** When a run stops. */
  readonly stop: Stop;
  /** A ramping rate. Default: none. */
  readonly stages?: readonly Stage[];
  /** The open model's in-flight cap. Default: derived. */
  readonly maxInFlight?: number;
}

/**
 * This shard's share of a load: users and request totals divided as whole numbers (their parts
 * add up exactly), rates divided evenly.
 *
 * @param load The whole load.
 * @param shard The shard.
 * @returns The same load with this shard's shares.
 * @throws {RangeError} When a concurrency level or the total is smaller than the shard count,
 * so that some shard would have nothing to do.
 */
export function shareOfLoad<T extends ShardableLoad>(load: T, shard: Shard): T {
  if (shard.count === 1) return load;
  if (load.model === "closed") {
    const small = load.levels.find((level) => level < shard.count);
    if (small !== undefined) {
      throw new RangeError(
        `concurrency ${small} is less than ${shard.count} shards: each shard needs a user`,
      );
    }
  }
  if (load.stop.kind === "count" && load.stop.total < shard.count) {
    throw new RangeError(
      `--total ${load.stop.total} is less than ${shard.count} shards: each shard needs a request`,
    );
  }
  const levels = load.levels.map((level) =>
    load.model === "closed" ? integerShare(level, shard) : level / shard.count
  );
  const stop: Stop = load.stop.kind === "count"
    ? { kind: "count", total: integerShare(load.stop.total, shard) }
    : load.stop;
  return {
    ...load,
    levels,
    stop,
    ...(load.stages === undefined ? {} : {
      stages: load.stages.map((stage) => ({
        ...stage,
        targetRate: stage.targetRate / shard.count,
      })),
    }),
    ...(load.maxInFlight === undefined
      ? {}
      : { maxInFlight: Math.max(1, integerShare(load.maxInFlight, shard)) }),
  };
}
