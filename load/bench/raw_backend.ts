/**
 * A backend on raw TCP that records exactly the bytes it receives, for tests and benchmarks
 * that must prove what a proxy forwarded: header names in their original case and order, the
 * request target as sent, and body framing, none of which a `Deno.serve` handler can see.
 *
 * It parses just enough HTTP/1.1 to know where each request ends (Content-Length, chunked,
 * pipelined requests, `Expect: 100-continue`), then answers as told: a canned response, an
 * unrequested `101 Switching Protocols`, or closing without a word, each optionally delayed.
 *
 * @module
 */
import { type Clock, systemClock } from "../../lib/shared/clock.ts";
import { concat, findHeadEnd, parseFieldLines, scanChunked } from "./raw_http.ts";

const encoder = new TextEncoder();

/** The default canned response. */
export const OK_RESPONSE = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/** One request as it arrived. */
export interface RecordedRequest {
  /** Which connection it came on: an index into {@linkcode RawBackend.connections}. */
  readonly connection: number;
  /** The method, as sent. */
  readonly method: string;
  /** The request target, as sent (not normalized, not decoded). */
  readonly target: string;
  /** The HTTP version, as sent (`HTTP/1.1`). */
  readonly version: string;
  /** Header fields in order, names in their original case, values trimmed. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** The body, de-chunked when it was chunked. */
  readonly body: Uint8Array;
  /** The body's length in bytes. */
  readonly bodyBytes: number;
  /** Every byte of the request (head, body framing, trailers) exactly as received. */
  readonly raw: Uint8Array;
  /**
   * Why the framing was invalid (the backend then answered 400 and closed), or `undefined`.
   * `raw` then holds the head and whatever body bytes had arrived.
   */
  readonly framingError: string | undefined;
}

/** Everything that arrived on one connection. */
export interface RecordedConnection {
  /** Every byte received, in order, requests and anything after an upgrade. */
  readonly bytes: Uint8Array;
  /** Whether the connection has ended (either side closed it). */
  readonly isClosed: boolean;
  /**
   * Bytes of a request that never completed (the connection ended mid-head or mid-body);
   * empty while the connection is open and after an upgrade.
   */
  readonly incomplete: Uint8Array;
  /** Resolves when the connection has ended and its record is final. */
  readonly ended: Promise<void>;
}

/** How the backend answers a request. Every kind may wait `delayMs` first (default 0). */
export type RawBackendAnswer =
  /** Sends `response` (default {@linkcode OK_RESPONSE}) and keeps the connection if allowed. */
  | { readonly kind: "respond"; readonly response?: string | Uint8Array; readonly delayMs?: number }
  /** Sends `101 Switching Protocols` (`Upgrade: websocket`) whatever was asked, stops parsing. */
  | { readonly kind: "switch-protocols"; readonly delayMs?: number }
  /** Closes the connection without answering. */
  | { readonly kind: "close"; readonly delayMs?: number };

/** Options for {@linkcode startRawBackend}. */
export interface RawBackendOptions {
  /**
   * How to answer, fixed or chosen per request. Can be changed later through
   * {@linkcode RawBackend.answer}. Default: `{ kind: "respond" }`.
   */
  readonly answer?: RawBackendAnswer | ((request: RecordedRequest) => RawBackendAnswer);
  /** Answers `100 Continue` to `Expect: 100-continue` before reading the body. Default: true. */
  readonly isContinueSent?: boolean;
  /** Runs the answer delays. Default: the system clock. */
  readonly clock?: Clock;
}

/** A running raw backend. */
export interface RawBackend extends AsyncDisposable {
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** Every complete request (or invalidly framed one), in arrival order. */
  readonly received: readonly RecordedRequest[];
  /** Every accepted connection, in accept order. */
  readonly connections: readonly RecordedConnection[];
  /** How the next requests are answered. */
  answer: RawBackendAnswer | ((request: RecordedRequest) => RawBackendAnswer);
  /**
   * Resolves once `count` requests in total have been received.
   *
   * @param count The number of requests, counted from the start.
   * @param signal Rejects the wait with the signal's reason when it aborts.
   */
  waitFor(count: number, signal?: AbortSignal): Promise<void>;
  /** Stops listening, closes every connection and waits for them. Idempotent. */
  close(): Promise<void>;
}

class ConnectionRecord implements RecordedConnection {
  #chunks: Uint8Array[] = [];
  isClosed = false;
  incomplete: Uint8Array = new Uint8Array(0);
  readonly #ended: PromiseWithResolvers<void> = Promise.withResolvers();
  readonly ended: Promise<void> = this.#ended.promise;

  end(incomplete: Uint8Array): void {
    this.incomplete = incomplete;
    this.isClosed = true;
    this.#ended.resolve();
  }

  get bytes(): Uint8Array {
    return concat(this.#chunks);
  }

  append(chunk: Uint8Array): void {
    this.#chunks.push(chunk.slice());
  }
}

interface Waiter {
  readonly count: number;
  readonly resolve: () => void;
}

/** A request parse: complete, waiting for more bytes (head maybe known), or invalid. */
type ParseOutcome =
  | { readonly kind: "complete"; readonly request: Omit<RecordedRequest, "connection"> }
  | { readonly kind: "incomplete"; readonly isExpectingContinue: boolean }
  | { readonly kind: "invalid"; readonly request: Omit<RecordedRequest, "connection"> };

/**
 * Starts a raw backend on 127.0.0.1, port 0.
 *
 * @param options How it answers (default: 200 `ok`), `100 Continue` handling, the clock.
 * @returns The running backend; dispose it to stop it.
 */
export function startRawBackend(options: RawBackendOptions = {}): RawBackend {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const clock = options.clock ?? systemClock;
  const isContinueSent = options.isContinueSent ?? true;
  const stopping = new AbortController();
  const received: RecordedRequest[] = [];
  const connections: ConnectionRecord[] = [];
  const open = new Set<Deno.Conn>();
  const serving = new Set<Promise<void>>();
  let waiters: Waiter[] = [];
  let closed: Promise<void> | undefined;

  const backend: RawBackend = {
    port: listener.addr.port,
    received,
    connections,
    answer: options.answer ?? { kind: "respond" },
    waitFor(count: number, signal?: AbortSignal): Promise<void> {
      if (received.length >= count) return Promise.resolve();
      if (signal?.aborted) return Promise.reject(signal.reason);
      return new Promise((resolve, reject) => {
        const waiter: Waiter = {
          count,
          resolve: () => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
          },
        };
        const onAbort = () => {
          waiters = waiters.filter((w) => w !== waiter);
          reject(signal?.reason);
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        waiters.push(waiter);
      });
    },
    close(): Promise<void> {
      closed ??= (async () => {
        stopping.abort();
        try {
          listener.close();
        } catch {
          // Already closed.
        }
        for (const conn of open) closeQuietly(conn);
        await accepting;
        await Promise.all(serving);
      })();
      return closed;
    },
    [Symbol.asyncDispose](): Promise<void> {
      return backend.close();
    },
  };

  const record = (request: RecordedRequest) => {
    received.push(request);
    const due = waiters.filter((w) => w.count <= received.length);
    waiters = waiters.filter((w) => w.count > received.length);
    for (const waiter of due) waiter.resolve();
  };

  const serve = async (conn: Deno.Conn, id: number, connection: ConnectionRecord) => {
    let buffer: Uint8Array = new Uint8Array(0);
    let start = 0;
    let isContinueDue = isContinueSent;
    let isUpgraded = false;
    const chunk = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await conn.read(chunk);
        if (n === null) return;
        connection.append(chunk.subarray(0, n));
        if (isUpgraded) continue;
        buffer = concat([buffer.subarray(start), chunk.subarray(0, n)]);
        start = 0;
        for (;;) {
          const parsed = parseRequest(buffer, start);
          if (parsed.kind === "incomplete") {
            if (parsed.isExpectingContinue && isContinueDue) {
              isContinueDue = false;
              await writeAll(conn, encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
            }
            break;
          }
          const request = { ...parsed.request, connection: id };
          record(request);
          if (parsed.kind === "invalid") {
            start = buffer.length;
            await writeAll(
              conn,
              encoder.encode(
                "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
              ),
            );
            return;
          }
          start += request.raw.length;
          isContinueDue = isContinueSent;
          const answer = typeof backend.answer === "function"
            ? backend.answer(request)
            : backend.answer;
          if ((answer.delayMs ?? 0) > 0) await clock.sleep(answer.delayMs ?? 0, stopping.signal);
          if (answer.kind === "close") return;
          if (answer.kind === "switch-protocols") {
            await writeAll(
              conn,
              encoder.encode(
                "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
              ),
            );
            isUpgraded = true;
            break;
          }
          const response = answer.response ?? OK_RESPONSE;
          const bytes = typeof response === "string" ? encoder.encode(response) : response;
          await writeAll(conn, bytes);
          if (isLastOnConnection(request, bytes)) return;
        }
      }
    } catch {
      // A reset, a write to a closed peer, or our own close(): the connection is over.
    } finally {
      open.delete(conn);
      closeQuietly(conn);
      connection.end(isUpgraded ? new Uint8Array(0) : buffer.slice(start));
    }
  };

  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        const connection = new ConnectionRecord();
        connections.push(connection);
        open.add(conn);
        const task = serve(conn, connections.length - 1, connection);
        serving.add(task);
        task.finally(() => serving.delete(task));
      }
    } catch {
      // The listener was closed.
    }
  })();

  return backend;
}

/** Parses one request at `start`; bodies are framed by Transfer-Encoding, then Content-Length. */
function parseRequest(bytes: Uint8Array, start: number): ParseOutcome {
  const head = findHeadEnd(bytes, start);
  if (head === undefined) return { kind: "incomplete", isExpectingContinue: false };
  const fields = parseFieldLines(bytes.subarray(start, head.contentEnd));
  const [method = "", target = "", version = ""] = fields.ok ? fields.startLine.split(" ") : [];
  const headers = fields.ok ? fields.fields : [];
  const base = { method, target, version, headers };
  const invalid = (reason: string, end: number): ParseOutcome => ({
    kind: "invalid",
    request: {
      ...base,
      body: new Uint8Array(0),
      bodyBytes: 0,
      raw: bytes.slice(start, end),
      framingError: reason,
    },
  });
  if (!fields.ok) return invalid(fields.reason, head.end);
  if (fields.startLine.split(" ").length !== 3) {
    return invalid(`invalid request line "${fields.startLine}"`, head.end);
  }
  const values = (name: string) =>
    headers.filter(([key]) => key.toLowerCase() === name).map(([, value]) => value);
  const complete = (body: Uint8Array, end: number): ParseOutcome => ({
    kind: "complete",
    request: {
      ...base,
      body: body.slice(),
      bodyBytes: body.length,
      raw: bytes.slice(start, end),
      framingError: undefined,
    },
  });
  const isExpectingContinue = values("expect").some((v) => v.toLowerCase() === "100-continue");
  const codings = values("transfer-encoding").join(",").split(",").map((c) => c.trim())
    .filter((c) => c !== "");
  if (codings.length > 0) {
    if (codings.at(-1)?.toLowerCase() !== "chunked") {
      return invalid(`transfer-encoding "${codings.join(", ")}" does not end in chunked`, head.end);
    }
    const scan = scanChunked(bytes, head.end);
    if (scan.kind === "invalid") return invalid(scan.reason, bytes.length);
    if (scan.kind === "incomplete") return { kind: "incomplete", isExpectingContinue };
    return complete(scan.body, scan.end);
  }
  const lengths = new Set(
    values("content-length").flatMap((v) => v.split(",")).map((v) => v.trim()),
  );
  if (lengths.size > 1) return invalid(`conflicting content-length values`, head.end);
  const [length] = lengths;
  if (length === undefined) return complete(new Uint8Array(0), head.end);
  if (!/^\d{1,15}$/.test(length)) return invalid(`invalid content-length "${length}"`, head.end);
  const end = head.end + Number(length);
  if (bytes.length < end) return { kind: "incomplete", isExpectingContinue };
  return complete(bytes.subarray(head.end, end), end);
}

/** Whether the connection must close after answering `request` with `response`. */
function isLastOnConnection(request: RecordedRequest, response: Uint8Array): boolean {
  const tokens = (headers: ReadonlyArray<readonly [string, string]>) =>
    headers.filter(([name]) => name.toLowerCase() === "connection")
      .flatMap(([, value]) => value.toLowerCase().split(",").map((token) => token.trim()));
  const requested = tokens(request.headers);
  if (requested.includes("close")) return true;
  if (request.version === "HTTP/1.0" && !requested.includes("keep-alive")) return true;
  const head = findHeadEnd(response, 0);
  if (head === undefined) return false;
  const parsed = parseFieldLines(response.subarray(0, head.contentEnd));
  return parsed.ok && tokens(parsed.fields).includes("close");
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    written += await conn.write(bytes.subarray(written));
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
