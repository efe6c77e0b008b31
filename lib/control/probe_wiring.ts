/**
 * What the health checker's probes use under the configuration in force: each backend's probe
 * path (a named pool may set its own) and the client that verifies https: backends with
 * `--backend-ca`, as the data plane does. A reload swaps both.
 *
 * @module
 */
import type { BalancerConfig } from "../config/config.ts";
import type { Backend } from "../core/backend.ts";
import { loadBackendCa } from "./certificates.ts";

/** A reload's probe change, prepared: a new client is made already. */
export interface PreparedProbes {
  /** Uses the new paths and client from now on; closes a replaced client. */
  commit(): void;
  /** Drops it: closes the client it made, if any. */
  abort(): void;
}

/** The probes' paths and client, across reloads. */
export class ProbeWiring {
  #paths: ReadonlyMap<string, string>;
  #client: Deno.HttpClient | undefined;

  private constructor(config: BalancerConfig, client: Deno.HttpClient | undefined) {
    this.#paths = healthPathsOf(config);
    this.#client = client;
  }

  /**
   * Reads `--backend-ca`, if set, for the probes' client.
   *
   * @param config The configuration in force.
   * @returns The wiring; close it when the balancer stops.
   * @throws {Error} When the CA file cannot be read or parsed, naming it.
   */
  static async open(config: BalancerConfig): Promise<ProbeWiring> {
    return new ProbeWiring(config, await createProbeClient(config));
  }

  /**
   * The probe path of a backend whose pool sets its own.
   *
   * @param backend The backend probed.
   * @returns The path; `undefined` for the health checker's own.
   */
  pathOf(backend: Backend): string | undefined {
    return this.#paths.get(backend.url.href);
  }

  /**
   * Fetches a probe URL with the client in force.
   *
   * @param url The probe URL.
   * @param init The request (its signal included).
   * @returns The response.
   */
  fetch(url: URL, init: RequestInit): Promise<Response> {
    const client = this.#client;
    return client === undefined ? fetch(url, init) : fetch(url, { ...init, client });
  }

  /**
   * The part of a reload that can fail: a changed `--backend-ca` is read now.
   *
   * @param current The configuration in force.
   * @param next The new configuration.
   * @returns The change, ready to commit or abort.
   * @throws {Error} When the new CA file cannot be read or parsed; nothing changed then.
   */
  async prepare(current: BalancerConfig, next: BalancerConfig): Promise<PreparedProbes> {
    const isClientChanged = next.proxy.backendCaFile !== current.proxy.backendCaFile;
    const client = isClientChanged ? await createProbeClient(next) : this.#client;
    return {
      commit: () => {
        if (client !== this.#client) {
          this.#client?.close();
          this.#client = client;
        }
        this.#paths = healthPathsOf(next);
      },
      abort: () => {
        if (client !== this.#client) client?.close();
      },
    };
  }

  /** Closes the client. */
  close(): void {
    this.#client?.close();
  }
}

/** The probe path of each backend whose pool sets its own (by base URL). */
function healthPathsOf(config: BalancerConfig): ReadonlyMap<string, string> {
  const paths = new Map<string, string>();
  for (const pool of Object.values(config.pools)) {
    const path = pool.health?.path;
    if (path === undefined) continue;
    for (const backend of pool.backends) paths.set(backend.url.href, path);
  }
  return paths;
}

/**
 * The health probes' client when `--backend-ca` is set (checked here first, so a bad file is a
 * clear error at start or a rejected reload); `undefined` uses the system's authorities.
 */
async function createProbeClient(config: BalancerConfig): Promise<Deno.HttpClient | undefined> {
  const path = config.proxy.backendCaFile;
  if (path === undefined) return undefined;
  return Deno.createHttpClient({ caCerts: [await loadBackendCa(path)] });
}
