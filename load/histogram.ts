/**
 * The latency histogram of the load tester: a typed wrapper over `hdr-histogram-js` (the one
 * place that touches it) recording microseconds with a fixed precision, summarising the usual
 * percentiles and travelling as a compressed base64 encoding, so merged percentiles are exact
 * rather than averaged.
 *
 * @module
 */
import * as hdr from "hdr-histogram-js";

/** Significant decimal digits kept by every latency histogram. */
export const LATENCY_SIGNIFICANT_DIGITS = 3;

/** Percentiles of a latency distribution, in microseconds. */
export interface LatencySummary {
  /** Number of recorded latencies. */
  readonly count: number;
  /** Mean. */
  readonly mean: number;
  /** Smallest value (0 when empty). */
  readonly min: number;
  /** Median. */
  readonly p50: number;
  /** 90th percentile. */
  readonly p90: number;
  /** 95th percentile. */
  readonly p95: number;
  /** 99th percentile. */
  readonly p99: number;
  /** 99.9th percentile. */
  readonly p999: number;
  /** Largest value. */
  readonly max: number;
}

/** A histogram of latencies in microseconds with {@linkcode LATENCY_SIGNIFICANT_DIGITS} digits. */
export class LatencyHistogram {
  #histogram: hdr.Histogram;

  /** Creates an empty histogram. */
  constructor() {
    this.#histogram = hdr.build({ numberOfSignificantValueDigits: LATENCY_SIGNIFICANT_DIGITS });
  }

  /**
   * Decodes a histogram produced by {@linkcode LatencyHistogram.encode}.
   *
   * @param encoded Compressed base64 HdrHistogram encoding.
   * @returns The decoded histogram.
   * @throws {SyntaxError} When the text is not an encoded histogram.
   */
  static decode(encoded: string): LatencyHistogram {
    const result = new LatencyHistogram();
    if (encoded === "") return result;
    try {
      result.#histogram = hdr.decodeFromCompressedBase64(encoded);
    } catch (error) {
      throw new SyntaxError(
        `Cannot decode histogram "${encoded.slice(0, 24)}": not a compressed base64 HdrHistogram`,
        { cause: error },
      );
    }
    return result;
  }

  /** Records one latency. Values are rounded to whole microseconds; negatives count as 0. */
  record(microseconds: number): void {
    this.#histogram.recordValue(microseconds > 0 ? Math.round(microseconds) : 0);
  }

  /** Adds every count of `other` to this histogram. */
  add(other: LatencyHistogram): void {
    this.#histogram.add(other.#histogram);
  }

  /** Number of recorded values. */
  get count(): number {
    return this.#histogram.totalCount;
  }

  /**
   * The value at a percentile.
   *
   * @param percentile Between 0 and 100.
   * @returns The highest value equivalent to that percentile, or 0 when empty.
   */
  percentile(percentile: number): number {
    return this.count === 0 ? 0 : this.#histogram.getValueAtPercentile(percentile);
  }

  /** The usual percentiles, mean, min and max. */
  summary(): LatencySummary {
    const h = this.#histogram;
    if (h.totalCount === 0) {
      return { count: 0, mean: 0, min: 0, p50: 0, p90: 0, p95: 0, p99: 0, p999: 0, max: 0 };
    }
    return {
      count: h.totalCount,
      mean: h.mean,
      min: h.minNonZeroValue === Number.MAX_SAFE_INTEGER ? 0 : h.minNonZeroValue,
      p50: h.getValueAtPercentile(50),
      p90: h.getValueAtPercentile(90),
      p95: h.getValueAtPercentile(95),
      p99: h.getValueAtPercentile(99),
      p999: h.getValueAtPercentile(99.9),
      max: h.maxValue,
    };
  }

  /**
   * Every recorded value with its count, in increasing order: each entry is a bucket of the
   * histogram (values equal within {@linkcode LATENCY_SIGNIFICANT_DIGITS} digits), reported at
   * the highest value it holds.
   *
   * @returns `[microseconds, count]` pairs with a count above zero.
   */
  recordedValues(): Array<readonly [number, number]> {
    const h = this.#histogram;
    if (h.totalCount === 0) return [];
    if (!(h instanceof hdr.JsHistogram)) {
      // Only the WebAssembly build lacks bucket access, and it is never built here.
      throw new TypeError("Cannot list histogram buckets: not a JavaScript HdrHistogram");
    }
    const values: Array<readonly [number, number]> = [];
    for (let index = 0; index < h.countsArrayLength; index++) {
      const count = h.getCountAtIndex(index);
      if (count > 0) values.push([h.highestEquivalentValue(h.valueFromIndex(index)), count]);
    }
    return values;
  }

  /** Compressed base64 encoding (the HdrHistogram V2 format), `""` when empty. */
  encode(): string {
    return this.count === 0 ? "" : hdr.encodeIntoCompressedBase64(this.#histogram);
  }
}
