/**
 * Settings from several sources (file, environment, positional, flags) as layers over the
 * defaults: reading and writing a setting by its path, merging the layers setting by setting,
 * and the defaults themselves, all walked from {@linkcode SETTINGS}.
 *
 * @module
 */
import { type BalancerConfig, type ConfigLayer, settingEntries } from "./settings.ts";

/** The value at `path` in a layer or configuration, `undefined` when absent. */
export function valueAt(root: object, path: readonly string[]): unknown {
  let node: unknown = root;
  for (const key of path) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/**
 * Sets the value at `path`, creating the groups on the way; an `undefined` value creates only
 * the groups.
 */
export function setAt(
  root: Record<string, unknown>,
  path: readonly string[],
  value: unknown,
): void {
  let group = root;
  for (const key of path.slice(0, -1)) group = (group[key] ??= {}) as Record<string, unknown>;
  const key = path.at(-1);
  if (key !== undefined && value !== undefined) group[key] = value;
}

/**
 * Builds a configuration from layers over the defaults: for each setting, the last layer that
 * sets it wins. Cross-setting rules are the caller's (`config.ts`).
 *
 * @param layers The sources, lowest precedence first.
 * @returns The merged configuration.
 */
export function mergeLayers(layers: readonly ConfigLayer[]): BalancerConfig {
  const config: Record<string, unknown> = {};
  for (const { path, setting } of settingEntries()) {
    let value = "default" in setting ? setting.default : undefined;
    for (const layer of layers) value = valueAt(layer, path) ?? value;
    setAt(config, path, value);
  }
  // The walk above visits every setting of the table, so every required key is present.
  return config as BalancerConfig;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !(value instanceof URL)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/** A plain `lb` with no arguments: the original Python balancer's behaviour. */
export const DEFAULT_BALANCER_CONFIG: BalancerConfig = deepFreeze(mergeLayers([]));
