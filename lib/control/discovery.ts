/**
 * DNS discovery: backends from `--backend-dns NAME:PORT` (one per A and AAAA address) and
 * `--backend-srv _SERVICE._tcp.NAME` (each SRV target's addresses, on its port, with its
 * weight). Each name is looked up at start, again when its records' TTL runs out (clamped to
 * `--dns-ttl-min` .. `--dns-ttl-max`) and on every reload; the union of what the names give is
 * handed to the balancer, which owns membership (`control/balancer.ts`: a new backend starts
 * unhealthy until its first probe passes, a vanished one drains, and every data-plane isolate
 * learns of it as of an admin-added backend). A failed lookup keeps the name's last good set,
 * and says so: a warning, `denolb_dns_stale{name}` 1 in `/metrics`, `"stale"` in `/status`.
 *
 * TTLs: `Deno.resolveDns` returns no TTL (Deno 2.9.6), but `node:dns`'s `resolve4` and
 * `resolve6` with `{ ttl: true }` do, so addresses are looked up there. Pointing `node:dns` at
 * `--dns-server` (`Resolver.setServers`) needs `--allow-sys=networkInterfaces` in Deno 2.9.6
 * (the `lb` task and the binary pass it); without that permission lookups through
 * `--dns-server` go to `Deno.resolveDns` with its `nameServer` option, which reports no TTL, so
 * such names are looked up every `--dns-ttl-max`. No API of Deno 2.9.6 gives an SRV record's own
 * TTL, so an SRV name is looked up again after the shortest TTL of its targets' addresses, and
 * at least every `--dns-ttl-max`.
 *
 * @module
 */
import { errorText } from "../shared/error_text.ts";
import type { Logger } from "@logtape/logtape";
import { Resolver } from "node:dns/promises";
import type { BackendConfig, BalancerConfig } from "../config/settings.ts";
import { MAX_WEIGHT } from "../config/kinds.ts";
import { parseBackendUrl } from "../core/backend.ts";
import { getModuleLogger } from "../process/log.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { parseDnsServer, parseDnsTarget, parseSrvName } from "../shared/dns_names.ts";

/** The discovery settings, as `settings.ts` declares them. */
export type DiscoveryConfig = BalancerConfig["discovery"];

/** One name to look up. */
export type DnsSource =
  | { readonly kind: "a"; readonly name: string; readonly port: number }
  | { readonly kind: "srv"; readonly name: string };

/** What one lookup of a name found. */
export interface DnsAnswer {
  /** The backends, one per address (and port). */
  readonly backends: readonly BackendConfig[];
  /** The shortest TTL among the records, in seconds; `undefined` when none was reported. */
  readonly ttlSeconds: number | undefined;
}

/** Looks names up; throws when a lookup fails (including a name with no addresses). */
export interface DnsResolver {
  /** Looks one name up. */
  resolve(source: DnsSource): Promise<DnsAnswer>;
  /** Cancels lookups in flight (they reject). */
  cancel(): void;
}

/** A name's state, for `/status` and the dashboard. */
export interface DnsSourceStatus {
  /** `NAME:PORT` or the SRV name, as configured. */
  readonly name: string;
  /** `"a"` (A and AAAA) or `"srv"`. */
  readonly kind: "a" | "srv";
  /** `pending` before the first answer, `ok`, or `stale` (the last lookup failed). */
  readonly state: "pending" | "ok" | "stale";
  /** The backends it gives now (the last good set), as `host:port`. */
  readonly backends: readonly string[];
  /** The last failure's message while `stale`, else `null`. */
  readonly error: string | null;
  /** Lookups since start that failed. */
  readonly failures: number;
}

/** Options for {@linkcode Discovery}. */
export interface DiscoveryOptions {
  /** Told the union of every name's backends whenever it changes (sorted by URL). */
  readonly onChange: (backends: readonly BackendConfig[]) => void;
  /** Looks names up. Default: {@linkcode systemResolver} with `config.server`. */
  readonly resolver?: DnsResolver;
  /** Times the lookups. Default: {@linkcode systemClock}. */
  readonly clock?: Clock;
  /** Lookup failures and membership changes. Default: the `["denolb", "discovery"]` logger. */
  readonly logger?: Logger;
}

/** One name's lookups. */
class Watched {
  readonly key: string;
  readonly source: DnsSource;
  readonly stop = new AbortController();
  backends: readonly BackendConfig[] = [];
  state: "pending" | "ok" | "stale" = "pending";
  error: string | null = null;
  lookups = 0;
  failures = 0;
  /** Failures in a row: the wait before the next try doubles with each. */
  streak = 0;
  /** Set to look up again at once (a reload). */
  wake = Promise.withResolvers<void>();
  /** Counts requests to look up again; a lookup serves the requests made before it began. */
  generation = 0;
  /** Who waits for a lookup that begins at or after a generation. */
  waiters: Array<{ readonly generation: number; readonly resolve: () => void }> = [];

  constructor(key: string, source: DnsSource) {
    this.key = key;
    this.source = source;
  }
}

/**
 * The names the configuration lists, in order.
 *
 * @param config The discovery settings (already validated).
 * @returns One source per name, keyed as configured.
 */
export function dnsSources(config: DiscoveryConfig): Array<[string, DnsSource]> {
  const sources: Array<[string, DnsSource]> = [];
  for (const entry of config.dns) {
    const target = parseDnsTarget(entry);
    if (target !== undefined) sources.push([entry, { kind: "a", ...target }]);
  }
  for (const entry of config.srv) {
    const name = parseSrvName(entry);
    if (name !== undefined) sources.push([entry, { kind: "srv", name }]);
  }
  return sources;
}

/**
 * How long to wait before the next lookup of a name.
 *
 * @param ttlSeconds The answer's TTL, or `undefined` when none was reported (or it failed).
 * @param streak Failed lookups in a row (0 after a success).
 * @param bounds `minTtlMs` and `maxTtlMs`.
 * @returns The wait in milliseconds: the TTL clamped to the bounds; after failures the floor,
 *   doubling with each, up to the ceiling.
 *
 * @example
 * ```ts
 * import { nextLookupMs } from "./discovery.ts";
 * const bounds = { minTtlMs: 1000, maxTtlMs: 30000 };
 * if (nextLookupMs(5, 0, bounds) !== 5000 || nextLookupMs(0, 0, bounds) !== 1000) throw new Error();
 * if (nextLookupMs(undefined, 0, bounds) !== 30000) throw new Error();
 * if (nextLookupMs(undefined, 3, bounds) !== 4000) throw new Error();
 * ```
 */
export function nextLookupMs(
  ttlSeconds: number | undefined,
  streak: number,
  bounds: { readonly minTtlMs: number; readonly maxTtlMs: number },
): number {
  const { minTtlMs, maxTtlMs } = bounds;
  if (streak > 0) return Math.min(maxTtlMs, minTtlMs * 2 ** Math.min(streak - 1, 30));
  if (ttlSeconds === undefined) return maxTtlMs;
  return Math.min(maxTtlMs, Math.max(minTtlMs, ttlSeconds * 1000));
}

/**
 * Backend weights from SRV weights (RFC 2782: relative, 0 to 65535, 0 meaning "very rarely"):
 * scaled so the largest is at most {@linkcode MAX_WEIGHT}; a 0 gets 1/100 of the smallest
 * positive weight (all zero: all 1).
 *
 * @param weights The records' weights.
 * @returns One backend weight per record, each positive.
 *
 * @example
 * ```ts
 * import { srvWeights } from "./discovery.ts";
 * const [a, b, c] = srvWeights([10, 20, 0]);
 * if (a !== 10 || b !== 20 || c !== 0.1) throw new Error();
 * if (srvWeights([65535, 1])[0] !== 256) throw new Error();
 * ```
 */
export function srvWeights(weights: readonly number[]): number[] {
  const positive = weights.filter((weight) => weight > 0);
  if (positive.length === 0) return weights.map(() => 1);
  const smallest = Math.min(...positive);
  const scale = Math.min(1, MAX_WEIGHT / Math.max(...positive));
  return weights.map((weight) => (weight > 0 ? weight : smallest / 100) * scale);
}

/** Keeps discovered backends in step with DNS. */
export class Discovery {
  #config: DiscoveryConfig;
  #resolver: DnsResolver;
  readonly #isOwnResolver: boolean;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #onChange: (backends: readonly BackendConfig[]) => void;
  #watched = new Map<string, Watched>();
  readonly #loops = new Set<Promise<void>>();
  #emitted = "[]";
  #isStarted = false;
  #isStopped = false;

  /**
   * @param config The discovery settings.
   * @param options Where changes go; resolver, clock and logger.
   */
  constructor(config: DiscoveryConfig, options: DiscoveryOptions) {
    this.#config = config;
    this.#resolver = options.resolver ?? systemResolver(config.server);
    this.#isOwnResolver = options.resolver === undefined;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? getModuleLogger("discovery");
    this.#onChange = options.onChange;
  }

  /** Whether any name is configured. */
  get isActive(): boolean {
    return this.#watched.size > 0 || dnsSources(this.#config).length > 0;
  }

  /**
   * Looks every name up, then keeps doing so on their TTLs.
   *
   * @returns Once every name's first lookup has finished (found or failed).
   */
  async start(): Promise<void> {
    if (this.#isStarted || this.#isStopped) return;
    this.#isStarted = true;
    await this.#watch(dnsSources(this.#config));
  }

  /**
   * Applies new settings (a reload): names no longer listed stop and their backends leave;
   * every listed name is looked up again at once.
   *
   * @param config The new discovery settings.
   * @returns Once every name's lookup has finished.
   */
  async reconfigure(config: DiscoveryConfig): Promise<void> {
    if (this.#isStopped) return;
    // A new resolver address needs a new resolver: the lookups restart with it.
    const isServerChanged = config.server !== this.#config.server;
    this.#config = config;
    // Lookups in flight finish on the old resolver; stop() cancels only the current one.
    if (isServerChanged && this.#isOwnResolver) this.#resolver = systemResolver(config.server);
    const sources = dnsSources(config);
    const keep = new Set(sources.map(([key]) => key));
    for (const [key, watched] of this.#watched) {
      if (keep.has(key)) continue;
      watched.stop.abort();
      this.#watched.delete(key);
    }
    this.#emit();
    if (!this.#isStarted) return;
    const fresh = sources.filter(([key]) => !this.#watched.has(key));
    const again = [...this.#watched.values()].map((watched) => this.#lookupNow(watched));
    await Promise.all([this.#watch(fresh), ...again]);
  }

  /** Every name's state, in configuration order. */
  status(): DnsSourceStatus[] {
    return [...this.#watched.values()].map((watched) => ({
      name: watched.key,
      kind: watched.source.kind,
      state: watched.state,
      backends: watched.backends.map((backend) => backend.url.host),
      error: watched.state === "stale" ? watched.error : null,
      failures: watched.failures,
    }));
  }

  /** The discovery metrics in Prometheus text (empty without names). */
  renderMetrics(): string {
    if (this.#watched.size === 0) return "";
    const rows = [...this.#watched.values()];
    const label = (watched: Watched) => `{name="${watched.key.replace(/["\\\n]/g, "_")}"}`;
    return [
      "# HELP denolb_dns_lookups_total DNS discovery lookups since start, by name.",
      "# TYPE denolb_dns_lookups_total counter",
      ...rows.map((w) => `denolb_dns_lookups_total${label(w)} ${w.lookups}`),
      "# HELP denolb_dns_lookup_failures_total DNS discovery lookups that failed, by name.",
      "# TYPE denolb_dns_lookup_failures_total counter",
      ...rows.map((w) => `denolb_dns_lookup_failures_total${label(w)} ${w.failures}`),
      "# HELP denolb_dns_stale 1 while a name's last lookup failed and its last good set is used.",
      "# TYPE denolb_dns_stale gauge",
      ...rows.map((w) => `denolb_dns_stale${label(w)} ${w.state === "stale" ? 1 : 0}`),
      "# HELP denolb_dns_backends Backends a name gives now.",
      "# TYPE denolb_dns_backends gauge",
      ...rows.map((w) => `denolb_dns_backends${label(w)} ${w.backends.length}`),
      "",
    ].join("\n");
  }

  /** Stops every lookup and waits for the loops to end. Idempotent. */
  async stop(): Promise<void> {
    this.#isStopped = true;
    for (const watched of this.#watched.values()) watched.stop.abort();
    this.#resolver.cancel();
    await Promise.all(this.#loops);
  }

  async #watch(sources: ReadonlyArray<readonly [string, DnsSource]>): Promise<void> {
    const firsts: Promise<void>[] = [];
    for (const [key, source] of sources) {
      const watched = new Watched(key, source);
      this.#watched.set(key, watched);
      const first = Promise.withResolvers<void>();
      firsts.push(first.promise);
      const loop = this.#loop(watched, first.resolve);
      this.#loops.add(loop);
      void loop.finally(() => this.#loops.delete(loop));
    }
    await Promise.all(firsts);
  }

  /**
   * Looks a watched name up at once (after the lookup in flight, if any), and resolves when that
   * lookup has finished or the name has stopped.
   */
  #lookupNow(watched: Watched): Promise<void> {
    const done = Promise.withResolvers<void>();
    watched.generation++;
    watched.waiters.push({ generation: watched.generation, resolve: done.resolve });
    watched.wake.resolve();
    return done.promise;
  }

  async #loop(watched: Watched, onFirst: () => void): Promise<void> {
    const signal = watched.stop.signal;
    const release = (generation: number) => {
      const ready = watched.waiters.filter((waiter) => waiter.generation <= generation);
      watched.waiters = watched.waiters.filter((waiter) => waiter.generation > generation);
      for (const waiter of ready) waiter.resolve();
    };
    signal.addEventListener("abort", () => release(Number.POSITIVE_INFINITY), { once: true });
    while (!signal.aborted) {
      const generation = watched.generation;
      const ttlSeconds = await this.#lookup(watched);
      release(generation);
      onFirst();
      if (signal.aborted) return;
      const waitMs = nextLookupMs(ttlSeconds, watched.streak, this.#config);
      const sleeping = new AbortController();
      const wake = watched.wake.promise.then(() => sleeping.abort());
      try {
        await this.#clock.sleep(waitMs, AbortSignal.any([signal, sleeping.signal]));
      } catch {
        // Woken for a reload, or stopped: the loop's condition tells which.
      }
      void wake;
      watched.wake = Promise.withResolvers<void>();
    }
  }

  /** One lookup; applies its answer. Returns the TTL to wait on (undefined after a failure). */
  async #lookup(watched: Watched): Promise<number | undefined> {
    try {
      const answer = await this.#resolver.resolve(watched.source);
      if (watched.stop.signal.aborted) return undefined;
      watched.lookups++;
      const wasStale = watched.state === "stale";
      watched.state = "ok";
      watched.error = null;
      watched.streak = 0;
      if (wasStale) {
        this.#logger.info("DNS lookup succeeded again", {
          name: watched.key,
          backends: answer.backends.map((backend) => backend.url.host),
        });
      }
      if (!isSameSet(watched.backends, answer.backends)) {
        this.#logger.info("DNS answer changed", {
          name: watched.key,
          backends: answer.backends.map((backend) => backend.url.host),
          ttlSeconds: answer.ttlSeconds ?? null,
        });
        watched.backends = answer.backends;
        this.#emit();
      }
      return answer.ttlSeconds;
    } catch (error) {
      if (watched.stop.signal.aborted) return undefined;
      watched.lookups++;
      watched.failures++;
      watched.streak++;
      watched.state = "stale";
      watched.error = errorText(error);
      this.#logger.warn("DNS lookup failed; keeping the last good set", {
        name: watched.key,
        error: watched.error,
        backends: watched.backends.map((backend) => backend.url.host),
        retryInMs: nextLookupMs(undefined, watched.streak, this.#config),
      });
      return undefined;
    }
  }

  /** Tells the balancer the union of every name's backends, when it changed. */
  #emit(): void {
    const union = new Map<string, BackendConfig>();
    for (const watched of this.#watched.values()) {
      for (const backend of watched.backends) {
        const seen = union.get(backend.url.href);
        // One address under two names: one backend, with the larger weight.
        if (seen === undefined || seen.weight < backend.weight) {
          union.set(backend.url.href, backend);
        }
      }
    }
    const backends = [...union.values()].sort((a, b) => compare(a.url.href, b.url.href));
    const text = JSON.stringify(backends.map((b) => [b.url.href, b.weight]));
    if (text === this.#emitted) return;
    this.#emitted = text;
    this.#onChange(backends);
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isSameSet(a: readonly BackendConfig[], b: readonly BackendConfig[]): boolean {
  const key = (list: readonly BackendConfig[]) =>
    JSON.stringify(list.map((backend) => [backend.url.href, backend.weight]).sort());
  return key(a) === key(b);
}

/** Error codes of `node:dns` that mean "no such records" rather than "no answer". */
const NO_RECORDS = new Set(["ENODATA", "ENOTFOUND"]);

/**
 * The production resolver: `node:dns` (it reports TTLs), asking `server` or the system's
 * resolvers. A lookup times out after 2 s and is tried twice.
 *
 * @param server `IP:PORT` of the DNS server to ask. Default: the system's resolvers.
 * @returns The resolver.
 */
export function systemResolver(server?: string): DnsResolver {
  const address = server === undefined ? undefined : parseDnsServer(server);
  const lookups = address === undefined || canSetServers()
    ? nodeLookups(address)
    : denoLookups(address);
  const addresses = async (name: string, port: number, weight: number) => {
    const [v4, v6] = await Promise.allSettled([lookups.a(name), lookups.aaaa(name)]);
    const found: Array<{ address: string; ttl?: number }> = [];
    let failure: unknown;
    let isAnyFound = false;
    for (const result of [v4, v6]) {
      if (result.status === "fulfilled") {
        found.push(...result.value);
        isAnyFound = true;
      } else if (!NO_RECORDS.has(errorCode(result.reason))) {
        failure ??= result.reason;
      }
    }
    // A partial answer (A found, AAAA timed out) would drop live backends: it is a failure.
    if (failure !== undefined) throw lookupError(name, failure);
    if (!isAnyFound || found.length === 0) throw new Error(`No A or AAAA records for "${name}"`);
    const ttls = found.flatMap(({ ttl }) => ttl === undefined ? [] : [ttl]);
    return {
      backends: found.map(({ address }) => ({ url: addressUrl(address, port), weight })),
      ttlSeconds: ttls.length === 0 ? undefined : Math.min(...ttls),
    };
  };
  return {
    async resolve(source) {
      if (source.kind === "a") return await addresses(source.name, source.port, 1);
      let records;
      try {
        records = await lookups.srv(source.name);
      } catch (error) {
        throw lookupError(source.name, error);
      }
      // RFC 2782: a single record with target "." means the service is not offered here.
      const offered = records.filter((record) => record.name !== "" && record.name !== ".");
      if (offered.length === 0) throw new Error(`No SRV records for "${source.name}"`);
      const priority = Math.min(...offered.map((record) => record.priority));
      const chosen = offered.filter((record) => record.priority === priority);
      const weights = srvWeights(chosen.map((record) => record.weight));
      const answers = await Promise.all(
        chosen.map((record, i) => addresses(record.name, record.port, weights[i] ?? 1)),
      );
      const merged = new Map<string, BackendConfig>();
      for (const backend of answers.flatMap((answer) => answer.backends)) {
        const seen = merged.get(backend.url.href);
        const weight = Math.min(MAX_WEIGHT, (seen?.weight ?? 0) + backend.weight);
        merged.set(backend.url.href, { url: backend.url, weight });
      }
      const ttls = answers.flatMap((a) => a.ttlSeconds === undefined ? [] : [a.ttlSeconds]);
      return {
        backends: [...merged.values()],
        // The SRV records' own TTL is not reported: nextLookupMs caps the wait at the ceiling.
        ttlSeconds: ttls.length === 0 ? undefined : Math.min(...ttls),
      };
    },
    cancel: () => lookups.cancel(),
  };
}

/** One lookup per record type, whichever API does it. */
interface Lookups {
  a(name: string): Promise<Array<{ address: string; ttl?: number }>>;
  aaaa(name: string): Promise<Array<{ address: string; ttl?: number }>>;
  srv(
    name: string,
  ): Promise<Array<{ name: string; port: number; priority: number; weight: number }>>;
  cancel(): void;
}

/** Whether `node:dns` may be pointed at a server of our own (it reads the interfaces first). */
function canSetServers(): boolean {
  return Deno.permissions.querySync({ name: "sys", kind: "networkInterfaces" }).state ===
    "granted";
}

/** `node:dns`: TTLs for addresses. A lookup times out after 2 s and is tried twice. */
function nodeLookups(address: { ipAddr: string; port: number } | undefined): Lookups {
  const resolver = new Resolver({ timeout: 2_000, tries: 2 });
  if (address !== undefined) {
    const host = address.ipAddr.includes(":") ? `[${address.ipAddr}]` : address.ipAddr;
    resolver.setServers([`${host}:${address.port}`]);
  }
  return {
    a: (name) => resolver.resolve4(name, { ttl: true }),
    aaaa: (name) => resolver.resolve6(name, { ttl: true }),
    srv: (name) => resolver.resolveSrv(name),
    cancel: () => resolver.cancel(),
  };
}

/** `Deno.resolveDns` with `nameServer`: no TTLs. Each lookup is cancelled after 4 s. */
function denoLookups(nameServer: { ipAddr: string; port: number }): Lookups {
  const stop = new AbortController();
  const options = () => ({
    nameServer,
    signal: AbortSignal.any([stop.signal, AbortSignal.timeout(4_000)]),
  });
  // The same "no such records" meaning node:dns gives with ENOTFOUND.
  const notFound = (error: unknown): never => {
    if (error instanceof Deno.errors.NotFound) throw Object.assign(error, { code: "ENOTFOUND" });
    throw error;
  };
  return {
    a: async (name) =>
      (await Deno.resolveDns(name, "A", options()).catch(notFound)).map((address) => ({
        address,
      })),
    aaaa: async (name) =>
      (await Deno.resolveDns(name, "AAAA", options()).catch(notFound)).map((address) => ({
        address,
      })),
    srv: async (name) =>
      (await Deno.resolveDns(name, "SRV", options()).catch(notFound)).map((record) => ({
        name: record.target.replace(/\.$/, ""),
        port: record.port,
        priority: record.priority,
        weight: record.weight,
      })),
    cancel: () => stop.abort(),
  };
}

function addressUrl(address: string, port: number): URL {
  return parseBackendUrl(`http://${address.includes(":") ? `[${address}]` : address}:${port}`);
}

function errorCode(error: unknown): string {
  const code = typeof error === "object" && error !== null
    ? (error as { code?: unknown }).code
    : undefined;
  return typeof code === "string" ? code : "";
}

function lookupError(name: string, cause: unknown): Error {
  const code = errorCode(cause);
  const detail = code === "" ? (errorText(cause)) : code;
  return new Error(`Cannot look up "${name}": ${detail}`, { cause });
}
