/**
 * The balancer's admin listener and its wiring: what the admin API (`admin.ts`) and the
 * dashboard read and act on, and how a reload moves the listener or changes its token without a
 * moment with no admin API on a new address.
 *
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { BalancerConfig } from "../config/config.ts";
import { parseAdminAddress } from "../config/settings.ts";
import type { Metrics } from "../core/metrics.ts";
import type { Pool } from "../core/pool.ts";
import { errorText } from "../shared/error_text.ts";
import { type AdminControl, type AdminDeps, createAdminHandler, statusReport } from "./admin.ts";
import type { BackendSet } from "./backend_set.ts";
import { DASHBOARD_HTML, statusEventStream } from "./dashboard.ts";
import type { Discovery } from "./discovery.ts";
import type { Serving } from "./serving.ts";

/** How often the dashboard gets a new snapshot, in milliseconds. */
const DASHBOARD_INTERVAL_MS = 1_000;

/** What the admin API reads and acts on, from the balancer. */
export interface AdminWiring {
  /** The backends. */
  readonly pool: Pool;
  /** The counters and histograms. */
  readonly metrics: Metrics;
  /** Membership: each backend's named pool, adding and removing backends. */
  readonly backends: BackendSet;
  /** DNS discovery, for `/status` and `/metrics`. */
  readonly discovery: Discovery;
  /** The serving isolates, for `/status`. */
  readonly serving: Pick<Serving, "isolates">;
  /** Whether the balancer is draining (`/health` answers 503). */
  readonly isDraining: () => boolean;
  /** The balancer's reload. */
  readonly reload: AdminControl["reload"];
  /** Aborted when the balancer stops: open dashboard streams end then. */
  readonly stopping: AbortSignal;
  /** Receives operators' drain and undrain records. */
  readonly logger: Logger;
}

/** A reload's admin change, prepared: a listener on a new address is bound already. */
export interface PreparedAdmin {
  /**
   * Serves the new configuration's admin API; the old listener on another address finishes
   * its requests in the background.
   *
   * @throws {Error} When the same address cannot be bound again (a new token).
   */
  commit(): Promise<void>;
  /** Drops it: closes the listener it bound, if any. */
  abort(): Promise<void>;
}

/** The admin listener (none with `--admin off`), across reloads. */
export class AdminEndpoint {
  readonly #wiring: AdminWiring;
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  /** Listeners a reload replaced, finishing their requests. */
  readonly #closing = new Set<Promise<void>>();

  /** @param wiring What the admin API reads and acts on. */
  constructor(wiring: AdminWiring) {
    this.#wiring = wiring;
  }

  /** Where it listens; `undefined` with `--admin off`. */
  get addr(): Deno.NetAddr | undefined {
    return this.#server?.addr;
  }

  /**
   * Starts listening, unless `--admin off`.
   *
   * @param config The configuration in force.
   * @throws {Error} When its address cannot be bound, naming it.
   */
  open(config: BalancerConfig): void {
    this.#server = this.#start(config);
  }

  /**
   * The part of a reload that can fail: a new address is bound now, beside the old one.
   *
   * @param current The configuration in force.
   * @param next The new configuration.
   * @param isChanged Whether the reload plan found an admin change.
   * @returns The change, ready to commit or abort.
   * @throws {Error} When the new address cannot be bound; nothing changed then.
   */
  prepare(current: BalancerConfig, next: BalancerConfig, isChanged: boolean): PreparedAdmin {
    const moved = isChanged && next.admin.listen !== current.admin.listen
      ? this.#start(next)
      : undefined;
    return {
      commit: async () => {
        if (!isChanged) return;
        const old = this.#server;
        if (moved === undefined) {
          // Same address, new token: the old listener must close before the new one binds.
          await old?.shutdown();
          this.#server = this.#start(next);
          return;
        }
        // A new address: the old one closes only once the new one is bound.
        this.#server = moved;
        if (old !== undefined) this.#own(old.shutdown());
      },
      abort: async () => {
        await moved?.shutdown();
      },
    };
  }

  /** Stops listening; resolves once every admin listener has closed. */
  async shutdown(): Promise<void> {
    await Promise.all([this.#server?.shutdown(), ...this.#closing]);
  }

  #own(task: Promise<void>): void {
    this.#closing.add(task);
    void task.finally(() => this.#closing.delete(task));
  }

  /**
   * Starts an admin listener for `config`, unless `--admin off`.
   *
   * @throws {Error} When its address cannot be bound, naming it.
   */
  #start(config: BalancerConfig): Deno.HttpServer<Deno.NetAddr> | undefined {
    if (config.admin.listen === "off") return undefined;
    const address = parseAdminAddress(config.admin.listen);
    if (address === undefined) throw new Error(`Invalid admin address "${config.admin.listen}"`);
    try {
      return Deno.serve(
        { hostname: address.hostname, port: address.port, onListen: () => {} },
        createAdminHandler(this.#deps(config)),
      );
    } catch (cause) {
      const detail = errorText(cause);
      throw new Error(`Cannot listen on admin address ${config.admin.listen}: ${detail}`, {
        cause,
      });
    }
  }

  /** The admin API's view of the balancer under `config` (its token and host). */
  #deps(config: BalancerConfig): AdminDeps {
    const { pool, metrics, backends, discovery, serving, isDraining, logger } = this.#wiring;
    const poolOf = (href: string) => backends.poolOf(href);
    const report = () => ({
      ...statusReport(pool, metrics, isDraining(), poolOf),
      ...(discovery.isActive ? { discovery: discovery.status() } : {}),
    });
    return {
      pool,
      metrics,
      poolOf,
      isDraining,
      token: config.admin.token,
      hostname: parseAdminAddress(config.admin.listen)?.hostname,
      onDrainChange: (backend, isDrainingBackend) => {
        logger.info(isDrainingBackend ? "Backend draining" : "Backend undrained", {
          backend: backend.name,
          inFlight: backend.inFlight,
        });
      },
      isolates: () => serving.isolates(),
      discovery,
      dashboard: {
        html: DASHBOARD_HTML,
        // Streams end with their client, or when the balancer stops (a shutdown waits for them).
        events: (signal) =>
          statusEventStream(report, {
            intervalMs: DASHBOARD_INTERVAL_MS,
            signal: AbortSignal.any([signal, this.#wiring.stopping]),
          }),
      },
      control: {
        reload: () => this.#wiring.reload(),
        addBackend: (backendConfig) => backends.add(backendConfig),
        removeBackend: (backend) => backends.remove(backend),
      },
    };
  }
}
