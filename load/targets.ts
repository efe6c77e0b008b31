/**
 * Mixed traffic from a targets file in vegeta's format: targets separated by blank lines, each a
 * `METHOD URL` line, then header lines (`Name: value`) and an optional `@path` body line; lines
 * starting with `#` are comments. A `# weight: N` comment inside a target (ignored by vegeta)
 * makes it N times as frequent; without weights the targets take turns.
 *
 * Each virtual user keeps one transport (and connection) per target it has used, and every user
 * draws the next target from one shared sequence, so the mix holds exactly over a run.
 *
 * @module
 */
import { isHttpToken } from "../lib/shared/tokens.ts";
import type { Outcome, RequestSpec, Transport, TransportFactory } from "./transport.ts";
import { errorText } from "../lib/shared/error_text.ts";

/** One request of the mix. */
export interface Target {
  /** What it sends. */
  readonly spec: RequestSpec;
  /** How often it is picked relative to the others (a positive integer). */
  readonly weight: number;
}

/** Highest weight a target may have. */
const MAX_TARGET_WEIGHT = 1000;

/** What every target shares, from the command line. */
export interface TargetDefaults {
  /** `-H` headers, sent before each target's own. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** Reuse connections. */
  readonly keepAlive: boolean;
  /** Per-request timeout in ms. */
  readonly timeoutMs: number;
  /** Reads an `@path` body. */
  readonly readFile: (path: string) => Uint8Array;
}

/**
 * Parses a targets file.
 *
 * @param text The file's text.
 * @param defaults Headers, keep-alive, timeout and the body reader.
 * @returns The targets, in file order.
 * @throws {SyntaxError} Naming the line, when a target is malformed (method, URL, header,
 * weight, or an unreadable body file), or when the file has no target.
 *
 * @example
 * ```ts
 * import { parseTargets } from "./targets.ts";
 * const targets = parseTargets("GET http://127.0.0.1/a\n# weight: 3\n\nPOST http://127.0.0.1/b\nX-A: 1\n", {
 *   headers: [], keepAlive: true, timeoutMs: 1000, readFile: () => new Uint8Array(),
 * });
 * if (targets.length !== 2 || targets[0]?.weight !== 3 || targets[1]?.spec.headers[0]?.[0] !== "X-A") {
 *   throw new Error();
 * }
 * ```
 */
export function parseTargets(text: string, defaults: TargetDefaults): Target[] {
  const targets: Target[] = [];
  const lines = text.split(/\r?\n/);
  let index = 0;
  while (index < lines.length) {
    const line = (lines[index] ?? "").trim();
    if (line === "" || line.startsWith("#")) {
      index++;
      continue;
    }
    const at = index + 1;
    const fail = (lineNo: number, rule: string) =>
      new SyntaxError(`Cannot parse target at line ${lineNo}: ${rule}`);
    const [method = "", urlText = "", ...extra] = line.split(/\s+/);
    if (!isHttpToken(method) || urlText === "" || extra.length > 0) {
      throw fail(at, `"${line}" is not "METHOD URL"`);
    }
    let url: URL;
    try {
      url = new URL(urlText);
    } catch (error) {
      throw new SyntaxError(`Cannot parse target at line ${at}: "${urlText}" is not a URL`, {
        cause: error,
      });
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw fail(at, `"${urlText}" must be http or https`);
    }
    const headers: Array<readonly [string, string]> = [...defaults.headers];
    let body: Uint8Array | undefined;
    let weight = 1;
    for (index++; index < lines.length && (lines[index] ?? "").trim() !== ""; index++) {
      const entry = (lines[index] ?? "").trim();
      const lineNo = index + 1;
      const weightMatch = /^#\s*weight\s*:\s*(\S*)$/i.exec(entry);
      if (weightMatch !== null) {
        weight = Number(weightMatch[1]);
        if (!Number.isInteger(weight) || weight < 1 || weight > MAX_TARGET_WEIGHT) {
          throw fail(
            lineNo,
            `weight "${weightMatch[1]}" must be an integer from 1 to ${MAX_TARGET_WEIGHT}`,
          );
        }
      } else if (entry.startsWith("#")) continue;
      else if (entry.startsWith("@")) {
        try {
          body = defaults.readFile(entry.slice(1));
        } catch (error) {
          const reason = errorText(error);
          throw new SyntaxError(
            `Cannot parse target at line ${lineNo}: cannot read body "${
              entry.slice(1)
            }": ${reason}`,
            { cause: error },
          );
        }
      } else {
        const colon = entry.indexOf(":");
        const name = colon < 0 ? "" : entry.slice(0, colon).trim();
        if (!isHttpToken(name)) throw fail(lineNo, `"${entry}" is not a "Name: value" header`);
        headers.push([name, entry.slice(colon + 1).trim()]);
      }
    }
    targets.push({
      spec: {
        url,
        method: method.toUpperCase(),
        headers,
        ...(body === undefined ? {} : { body }),
        keepAlive: defaults.keepAlive,
        timeoutMs: defaults.timeoutMs,
      },
      weight,
    });
  }
  if (targets.length === 0) {
    throw new SyntaxError("Cannot use a targets file with no target: give METHOD URL lines");
  }
  return targets;
}

/**
 * The order targets are picked in over one cycle: smooth weighted round-robin (as nginx), so
 * a weight of 3 against 1 gives `a a b a`, not `a a a b`. Pure.
 *
 * @param weights Each target's weight.
 * @returns Target indexes, `sum(weights)` long.
 *
 * @example
 * ```ts
 * import { pickOrder } from "./targets.ts";
 * if (pickOrder([3, 1]).join() !== "0,0,1,0") throw new Error(pickOrder([3, 1]).join());
 * ```
 */
export function pickOrder(weights: readonly number[]): number[] {
  const total = weights.reduce((sum, weight) => sum + weight, 0);
  const current = weights.map(() => 0);
  const order: number[] = [];
  for (let step = 0; step < total; step++) {
    let best = 0;
    weights.forEach((weight, i) => {
      current[i] = (current[i] ?? 0) + weight;
      if ((current[i] ?? 0) > (current[best] ?? 0)) best = i;
    });
    current[best] = (current[best] ?? 0) - total;
    order.push(best);
  }
  return order;
}

/**
 * A transport factory for a mix: each user's transport sends every request to the next target
 * of a sequence shared by all users of the run.
 *
 * @param targets The mix.
 * @param createTransport Creates the transport of one target (chosen by its URL).
 * @returns A factory whose transports ignore the spec they are given.
 */
export function createTargetsFactory(
  targets: readonly Target[],
  createTransport: TransportFactory,
): TransportFactory {
  const order = pickOrder(targets.map((target) => target.weight));
  let next = 0;
  return () => {
    const transports = new Map<number, Transport>();
    return {
      get resent(): number {
        let sum = 0;
        for (const transport of transports.values()) sum += transport.resent;
        return sum;
      },
      send(signal?: AbortSignal): Promise<Outcome> {
        const index = order[next++ % order.length] ?? 0;
        let transport = transports.get(index);
        if (transport === undefined) {
          const target = targets[index];
          if (target === undefined) throw new RangeError(`No target ${index}`);
          transport = createTransport(target.spec);
          transports.set(index, transport);
        }
        return transport.send(signal);
      },
      async close(): Promise<void> {
        await Promise.all([...transports.values()].map((transport) => transport.close()));
      },
    };
  };
}
