/**
 * Typed assertions over `@std/assert` (mapped to the untyped `deno-std` npm package): the one
 * place tests touch that import.
 *
 * @module
 */
import * as std from "@std/assert";

/** Asserts deep equality. */
export const assertEquals: <T>(actual: T, expected: T, msg?: string) => void = std.assertEquals;
/** Asserts deep inequality. */
export const assertNotEquals: <T>(actual: T, expected: T, msg?: string) => void =
  std.assertNotEquals;
/** Asserts strict (`===`) equality. */
export const assertStrictEquals: <T>(actual: unknown, expected: T, msg?: string) => void =
  std.assertStrictEquals;
/** Asserts a value is truthy. */
export const assert: (expr: unknown, msg?: string) => asserts expr = std.assert;
/** Asserts a value is neither null nor undefined. */
export const assertExists: <T>(actual: T, msg?: string) => asserts actual is NonNullable<T> =
  std.assertExists;
/** Asserts `actual` contains `expected`. */
export const assertStringIncludes: (actual: string, expected: string, msg?: string) => void =
  std.assertStringIncludes;
/** Asserts `actual` matches `expected`. */
export const assertMatch: (actual: string, expected: RegExp, msg?: string) => void =
  std.assertMatch;
/** Asserts `actual > expected`. */
export const assertGreater: (actual: number, expected: number, msg?: string) => void =
  std.assertGreater;
/** Asserts `actual >= expected`. */
export const assertGreaterOrEqual: (actual: number, expected: number, msg?: string) => void =
  std.assertGreaterOrEqual;
/** Asserts `actual < expected`. */
export const assertLess: (actual: number, expected: number, msg?: string) => void = std.assertLess;
/** Asserts `actual <= expected`. */
export const assertLessOrEqual: (actual: number, expected: number, msg?: string) => void =
  std.assertLessOrEqual;
/** Asserts two numbers are within `tolerance` of each other. */
export const assertAlmostEquals: (
  actual: number,
  expected: number,
  tolerance?: number,
  msg?: string,
) => void = std.assertAlmostEquals;
/** Asserts an array includes the given values. */
export const assertArrayIncludes: <T>(
  actual: ArrayLike<T>,
  expected: ArrayLike<T>,
  msg?: string,
) => void = std.assertArrayIncludes;
/** Asserts `fn` throws an error of class `ErrorClass` whose message includes `msgIncludes`. */
export const assertThrows: <E extends Error = Error>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  ErrorClass: abstract new (...args: any[]) => E,
  msgIncludes?: string,
  msg?: string,
) => E = std.assertThrows;
/** Asserts `fn` rejects with an error of class `ErrorClass` whose message includes `msgIncludes`. */
export const assertRejects: <E extends Error = Error>(
  fn: () => PromiseLike<unknown>,
  // deno-lint-ignore no-explicit-any
  ErrorClass: abstract new (...args: any[]) => E,
  msgIncludes?: string,
  msg?: string,
) => Promise<E> = std.assertRejects;
/** Asserts an object is an instance of a class. */
export const assertInstanceOf: <T>(
  actual: unknown,
  // deno-lint-ignore no-explicit-any
  expectedType: abstract new (...args: any[]) => T,
  msg?: string,
) => asserts actual is T = std.assertInstanceOf;
/** Fails the test. */
export const fail: (msg?: string) => never = std.fail;
