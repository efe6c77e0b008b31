/**
 * The memory and start-up figures of the benchmark table: how long a balancer takes from its
 * start to its first answered request, and what idle keep-alive client connections cost it in
 * resident memory. Benchmarks only; tests never import it.
 *
 * @module
 */
import { treeMemory } from "./bench_processes.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Connections opened at once while building the idle set (a burst, not a flood). */
const OPEN_BATCH = 50;
/** How long the idle set sits before its memory is read, so lazy allocations have happened. */
const IDLE_SETTLE_MS = 1_000;

/**
 * Sends GET requests to `url` every few milliseconds until one is answered with a 2xx, and
 * says when: the end of a balancer's start-up as a client sees it.
 *
 * @param url Where to send them.
 * @param timeoutMs How long to keep trying.
 * @returns `performance.now()` when the first 2xx arrived.
 * @throws {Error} When none arrives within `timeoutMs`.
 */
export async function firstAnswerAt(url: string, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await response.body?.cancel();
      if (response.ok) return performance.now();
    } catch {
      // Not listening yet.
    }
    if (performance.now() > deadline) throw new Error(`No 2xx from ${url} in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Reads one HTTP/1.1 response with a Content-Length off a connection; returns its status. */
async function readResponse(conn: Deno.Conn): Promise<number> {
  const buffer = new Uint8Array(64 * 1024);
  let text = "";
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) throw new Error("connection closed before the response ended");
    text += decoder.decode(buffer.subarray(0, n));
    const headEnd = text.indexOf("\r\n\r\n");
    if (headEnd < 0) continue;
    const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1] ?? "0");
    // The body is ASCII in every benchmark (a file of "a"), so characters count bytes.
    if (text.length >= headEnd + 4 + length) return Number(text.slice(9, 12));
  }
}

/** Client connections left open after one request each. */
export interface IdleConnections {
  /** How many are open. */
  readonly count: number;
  /** Closes them all. */
  close(): void;
}

/**
 * Opens `count` client connections to `url`, sends one GET on each and reads its response,
 * then leaves them open and idle (HTTP/1.1 keep-alive), as a browser or a pooling client does.
 *
 * @param url The target (http only).
 * @param count How many connections.
 * @returns The open connections.
 * @throws {Error} When a connection fails or a response is not 2xx (the opened ones are closed).
 */
export async function openIdleConnections(url: string, count: number): Promise<IdleConnections> {
  const target = new URL(url);
  const request = encoder.encode(
    `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\n\r\n`,
  );
  const conns: Deno.Conn[] = [];
  const close = () => {
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // Already closed by the peer.
      }
    }
  };
  try {
    for (let opened = 0; opened < count; opened += OPEN_BATCH) {
      const batch = Math.min(OPEN_BATCH, count - opened);
      await Promise.all(Array.from({ length: batch }, async () => {
        const conn = await Deno.connect({ hostname: target.hostname, port: Number(target.port) });
        conns.push(conn);
        await conn.write(request);
        const status = await readResponse(conn);
        if (status < 200 || status > 299) throw new Error(`idle connection got status ${status}`);
      }));
    }
  } catch (error) {
    close();
    throw error;
  }
  return { count, close };
}

/** What idle keep-alive connections cost a process tree. */
export interface IdleCost {
  /** Resident memory before, kB. */
  readonly beforeKb: number;
  /** Resident memory with the first `count` connections open and idle, kB. */
  readonly withIdleKb: number;
  /** What the first `count` added, per connection, kB. */
  readonly perConnectionKb: number;
  /**
   * What `count` more added, per connection, kB: the cost of one more connection, without the
   * one-off growth the first ones cause (heap grown for their requests, code compiled).
   */
  readonly marginalKb: number;
}

/**
 * Measures the resident memory idle keep-alive connections add to a process tree: RSS before,
 * with `count` connections that each made one request (a second after they went idle), and
 * with `count` more.
 *
 * @param pid The target's root process.
 * @param url The target.
 * @param count How many connections per step (1000 in the table).
 * @returns The figures.
 */
export async function measureIdleCost(pid: number, url: string, count: number): Promise<IdleCost> {
  const settle = () => new Promise((resolve) => setTimeout(resolve, IDLE_SETTLE_MS));
  const before = await treeMemory(pid);
  const open: IdleConnections[] = [];
  try {
    open.push(await openIdleConnections(url, count));
    await settle();
    const first = await treeMemory(pid);
    open.push(await openIdleConnections(url, count));
    await settle();
    const second = await treeMemory(pid);
    return {
      beforeKb: before.rssKb,
      withIdleKb: first.rssKb,
      perConnectionKb: (first.rssKb - before.rssKb) / count,
      marginalKb: (second.rssKb - first.rssKb) / count,
    };
  } finally {
    for (const connections of open) connections.close();
  }
}

/**
 * How many isolates an `lb` command line runs: one with `--workers 1`, else the control plane
 * and N data planes (`auto` is one per core).
 *
 * @param flags The `lb` flags, later ones winning.
 * @returns The isolate count.
 *
 * @example
 * ```ts
 * import { isolatesOf } from "./bench_memory.ts";
 * if (isolatesOf(["--workers", "1", "--workers", "2"]) !== 3) throw new Error();
 * ```
 */
export function isolatesOf(flags: readonly string[]): number {
  const at = flags.lastIndexOf("--workers");
  const value = at < 0 ? "auto" : flags[at + 1] ?? "auto";
  const workers = value === "auto" ? navigator.hardwareConcurrency : Number(value);
  return workers > 1 ? workers + 1 : 1;
}
