/**
 * Settings for tests that build a component directly: the defaults `settings.ts` declares,
 * with a test's own values over them, so no test restates a default.
 *
 * @module
 */
import { DEFAULT_BALANCER_CONFIG, mergeLayers } from "../../lib/config/layers.ts";
import type { BalancerConfig, ConfigLayer } from "../../lib/config/settings.ts";

/** Every setting at its default, derived from the table in `settings.ts` (frozen). */
export const DEFAULTS: BalancerConfig = DEFAULT_BALANCER_CONFIG;

/**
 * The defaults with some settings changed, as layers of the configuration give them.
 *
 * @param layers The settings to change, lowest precedence first: `{ proxy: { retries: 0 } }`.
 * @returns A whole configuration; its groups go to components as they are.
 */
export function settingsWith(...layers: readonly ConfigLayer[]): BalancerConfig {
  return mergeLayers(layers);
}
