/**
 * Looking at an accepted connection's first bytes without taking them, so the listener can tell
 * a WebSocket handshake from a plain request before Deno's HTTP server reads the connection;
 * and shutting down the socket of a TLS connection whose handshake never finished, which Deno
 * 2.9.6 keeps open after `close()` until the client sends or leaves (its pending handshake read
 * holds the socket: a client that stays silent would hold a descriptor however short the
 * handshake timeout). `shutdown(2)` ends that read, and Deno then lets the socket go.
 *
 * Deno 2.9.6 gives a `Deno.Conn` no descriptor and no peek, so this goes through libc by FFI
 * (Linux only, `--allow-ffi`):
 * - the descriptor: Deno 2.9.6 keeps it on an accepted connection under an internal symbol
 *   (`Deno[Deno.internal].core.internalFdSymbol`), not on a `Deno.TlsConn`. It is trusted only once its addresses
 *   (`getpeername`, `getsockname`) match the connection's `remoteAddr` and `localAddr`, the TCP
 *   four-tuple, which no two open sockets share. Without it (another Deno), candidates are
 *   asked for their addresses: `accept(2)` hands out the lowest free descriptor, so from the
 *   lowest up, skipping the descriptors already known (live client connections, someone else's
 *   sockets and files), the known ones last in case one was reused. That search costs a system
 *   call per foreign descriptor when one was reused (another isolate's connections are foreign
 *   here), so it is the fallback only;
 * - `recv(fd, buf, n, MSG_PEEK | MSG_DONTWAIT)` copies what has arrived and leaves it in place;
 * - a connection with nothing yet waits in one `poll(2)` over every waiting descriptor, run off
 *   the event loop (a nonblocking FFI call) and woken by an `eventfd` when one is added.
 *
 * @module
 */

const MSG_PEEK = 0x2;
const MSG_DONTWAIT = 0x40;
const POLLIN = 0x1;
const EFD_NONBLOCK = 0x800;
const EFD_CLOEXEC = 0x80000;
const F_GETFD = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const SHUT_RDWR = 2;
/** The longest one `poll(2)` waits, so a stuck wake never holds the process for long. */
const POLL_MAX_MS = 1_000;
/** Unknown descriptors in a row that turn out closed before the search stops looking up. */
const MAX_CLOSED_RUN = 256;

const SYMBOLS = {
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32"], result: "i32" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** How a wait for a connection's first bytes ended. */
export type WaitOutcome = "readable" | "cancelled";

/** Descriptor-level access to accepted connections; one per listener. */
export interface SocketPeek {
  /**
   * Finds the descriptor of a connection just accepted and remembers it as in use.
   *
   * @param conn The accepted connection.
   * @returns Its descriptor, or `undefined` when none matched.
   */
  claim(conn: Deno.Conn): number | undefined;
  /**
   * Forgets a descriptor once its connection is closed (or about to be).
   *
   * @param fd A descriptor {@linkcode SocketPeek.claim} returned.
   */
  release(fd: number): void;
  /**
   * Copies what has arrived on the descriptor, without taking it and without waiting.
   *
   * @param fd The connection's descriptor.
   * @param into Where to copy; at most its length is copied.
   * @returns Bytes copied; 0 when the peer closed; -1 when nothing has arrived yet (or error).
   */
  peek(fd: number, into: Uint8Array): number;
  /**
   * Waits until the descriptor has something to read (or was closed by the peer).
   *
   * @param fd The connection's descriptor.
   * @returns `"cancelled"` when {@linkcode SocketPeek.cancelWait} or `close` ended the wait.
   */
  waitReadable(fd: number): Promise<WaitOutcome>;
  /**
   * Ends a wait: call it before the connection is closed.
   *
   * @param fd The descriptor waited on.
   */
  cancelWait(fd: number): void;
  /**
   * Shuts a connection's socket down both ways (`shutdown(2)`, `SHUT_RDWR`): its client sees the
   * close, and a read pending on it ends. Call it before the connection is closed.
   *
   * @param conn The connection.
   * @param fd Its descriptor from {@linkcode SocketPeek.claim}, if it has one: used when it
   *   still is the connection's, else the descriptor is searched for as `claim` does.
   * @returns Whether a socket was shut down.
   */
  shutdown(conn: Deno.Conn, fd: number | undefined): boolean;
  /** Ends every wait and closes the library. Idempotent. */
  close(): void;
}

/** Why {@linkcode openSocketPeek} could not give a {@linkcode SocketPeek}. */
export type SocketPeekUnavailable = { readonly ok: false; readonly reason: string };

/**
 * Opens libc for peeking, when this process can: Linux with `--allow-ffi` granted (asked
 * without prompting).
 *
 * @param os The platform. Default: `Deno.build.os`.
 * @returns The peek, or why not.
 */
export function openSocketPeek(
  os: typeof Deno.build.os = Deno.build.os,
): { readonly ok: true; readonly peek: SocketPeek } | SocketPeekUnavailable {
  if (os !== "linux") return { ok: false, reason: `it needs Linux, not ${os}` };
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return { ok: false, reason: "it needs --allow-ffi" };
  }
  let library: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    library = Deno.dlopen("libc.so.6", SYMBOLS);
  } catch (error) {
    return { ok: false, reason: `cannot open libc: ${String(error)}` };
  }
  const wakeFd = library.symbols.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakeFd < 0) {
    library.close();
    return { ok: false, reason: "eventfd failed" };
  }
  return { ok: true, peek: new LibcSocketPeek(library, wakeFd) };
}

/** Descriptor marks: unknown (0), a live client connection's, or someone else's. */
const MARK_OURS = 1;
const MARK_FOREIGN = 2;

class LibcSocketPeek implements SocketPeek {
  readonly #library: Deno.DynamicLibrary<typeof SYMBOLS>;
  readonly #libc: Libc;
  readonly #wakeFd: number;
  /** One mark per descriptor number, grown as needed. */
  #marks = new Uint8Array(1024);
  readonly #address = new Uint8Array(128);
  readonly #addressLength = new Uint32Array(1);
  readonly #waiters = new Map<number, (outcome: WaitOutcome) => void>();
  #polling: Promise<void> | undefined;
  #isClosed = false;
  readonly #one = new BigUint64Array([1n]);
  readonly #drain = new BigUint64Array(1);

  constructor(library: Deno.DynamicLibrary<typeof SYMBOLS>, wakeFd: number) {
    this.#library = library;
    this.#libc = library.symbols;
    this.#wakeFd = wakeFd;
  }

  claim(conn: Deno.Conn): number | undefined {
    if (this.#isClosed) return undefined;
    const peer = expectedAddress(conn.remoteAddr);
    const local = expectedAddress(conn.localAddr);
    if (peer === undefined || local === undefined) return undefined;
    const internal = internalFdOf(conn);
    if (internal !== undefined && this.#matches(internal, peer, local) === "match") {
      return this.#mark(internal, MARK_OURS);
    }
    // accept(2) gave the lowest descriptor free at the time, so every unknown descriptor below
    // it was open then: the first closed one is (almost always) past it.
    let fd = 3;
    for (;; fd++) {
      if (fd < this.#marks.length && this.#marks[fd] !== 0) continue;
      const found = this.#matches(fd, peer, local);
      if (found === "match") return this.#mark(fd, MARK_OURS);
      if (found === "closed") break;
      this.#mark(fd, MARK_FOREIGN);
    }
    // A known descriptor closed and handed out again: someone else's first (backend
    // connections come and go), then a client connection's whose release was missed.
    for (const mark of [MARK_FOREIGN, MARK_OURS]) {
      for (let known = 3; known < Math.min(fd, this.#marks.length); known++) {
        if (this.#marks[known] !== mark) continue;
        if (this.#matches(known, peer, local) === "match") return this.#mark(known, MARK_OURS);
      }
    }
    // A descriptor below it closed after the accept: look a little further.
    for (let closedRun = 0; closedRun < MAX_CLOSED_RUN; fd++) {
      if (fd < this.#marks.length && this.#marks[fd] !== 0) continue;
      const found = this.#matches(fd, peer, local);
      if (found === "match") return this.#mark(fd, MARK_OURS);
      if (found === "closed") {
        closedRun++;
        continue;
      }
      closedRun = 0;
      this.#mark(fd, MARK_FOREIGN);
    }
    return undefined;
  }

  release(fd: number): void {
    if (fd < this.#marks.length) this.#marks[fd] = 0;
  }

  peek(fd: number, into: Uint8Array): number {
    if (this.#isClosed) return -1;
    return Number(this.#libc.recv(fd, into, BigInt(into.length), MSG_PEEK | MSG_DONTWAIT));
  }

  waitReadable(fd: number): Promise<WaitOutcome> {
    if (this.#isClosed) return Promise.resolve("cancelled");
    const { promise, resolve } = Promise.withResolvers<WaitOutcome>();
    this.#waiters.get(fd)?.("cancelled");
    this.#waiters.set(fd, resolve);
    if (this.#polling === undefined) {
      this.#polling = this.#pollLoop();
    } else {
      this.#wake();
    }
    return promise;
  }

  cancelWait(fd: number): void {
    const resolve = this.#waiters.get(fd);
    if (resolve === undefined) return;
    this.#waiters.delete(fd);
    resolve("cancelled");
  }

  shutdown(conn: Deno.Conn, fd: number | undefined): boolean {
    if (this.#isClosed) return false;
    const peer = expectedAddress(conn.remoteAddr);
    const local = expectedAddress(conn.localAddr);
    if (peer === undefined || local === undefined) return false;
    // Checked again right before the call: a descriptor closed meanwhile may be someone else's.
    let target = fd !== undefined && this.#matches(fd, peer, local) === "match" ? fd : undefined;
    if (target === undefined) {
      target = this.claim(conn);
      if (target === undefined) return false;
      this.release(target);
    }
    return this.#libc.shutdown(target, SHUT_RDWR) === 0;
  }

  close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    for (const resolve of this.#waiters.values()) resolve("cancelled");
    this.#waiters.clear();
    const finish = () => {
      this.#libc.close(this.#wakeFd);
      this.#library.close();
    };
    if (this.#polling === undefined) {
      finish();
    } else {
      this.#wake();
      void this.#polling.then(finish);
    }
  }

  #wake(): void {
    this.#libc.write(this.#wakeFd, this.#one, 8n);
  }

  /**
   * Polls every waiting descriptor until none waits; one poll(2) in flight at a time. It forgets
   * itself (`#polling`) in the same step as it sees no waiter: a `.finally()` would do so a
   * microtask later, and a wait added in between would find a loop that had already ended.
   */
  async #pollLoop(): Promise<void> {
    try {
      while (this.#waiters.size > 0 && !this.#isClosed) {
        const fds = [...this.#waiters.keys()];
        // struct pollfd { int fd; short events; short revents; }, the wake descriptor first.
        const table = new Uint8Array((fds.length + 1) * 8);
        const view = new DataView(table.buffer);
        view.setInt32(0, this.#wakeFd, true);
        view.setInt16(4, POLLIN, true);
        for (let i = 0; i < fds.length; i++) {
          view.setInt32((i + 1) * 8, fds[i] as number, true);
          view.setInt16((i + 1) * 8 + 4, POLLIN, true);
        }
        const ready = await this.#libc.poll(table, BigInt(fds.length + 1), POLL_MAX_MS);
        if (this.#isClosed) return;
        if (ready <= 0) continue;
        if (view.getInt16(6, true) !== 0) this.#libc.read(this.#wakeFd, this.#drain, 8n);
        for (let i = 0; i < fds.length; i++) {
          if (view.getInt16((i + 1) * 8 + 6, true) === 0) continue;
          const fd = fds[i] as number;
          const resolve = this.#waiters.get(fd);
          if (resolve === undefined) continue;
          this.#waiters.delete(fd);
          resolve("readable");
        }
      }
    } finally {
      this.#polling = undefined;
    }
  }

  #mark(fd: number, mark: number): number {
    if (fd >= this.#marks.length) {
      const grown = new Uint8Array(Math.max(fd + 1, this.#marks.length * 2));
      grown.set(this.#marks);
      this.#marks = grown;
    }
    this.#marks[fd] = mark;
    return fd;
  }

  /** Whether `fd` is the socket with this four-tuple, another open descriptor, or closed. */
  #matches(fd: number, peer: Uint8Array, local: Uint8Array): "match" | "other" | "closed" {
    const address = this.#address;
    const length = this.#addressLength;
    length[0] = address.length;
    if (this.#libc.getpeername(fd, address, length) !== 0) {
      // EBADF (closed) and ENOTSOCK/ENOTCONN (a file, a listener) look alike here: only a
      // closed descriptor has no flags either.
      return this.#libc.fcntl(fd, F_GETFD) < 0 ? "closed" : "other";
    }
    if (!sameAddress(address, peer)) return "other";
    length[0] = address.length;
    if (this.#libc.getsockname(fd, address, length) !== 0) return "other";
    return sameAddress(address, local) ? "match" : "other";
  }
}

/** The symbol under which Deno keeps a connection's descriptor, if this Deno has one. */
const FD_SYMBOL: symbol | undefined = (() => {
  const deno = Deno as unknown as Record<symbol, { core?: { internalFdSymbol?: unknown } }>;
  const key = (Deno as unknown as { internal?: symbol }).internal;
  const found = key === undefined ? undefined : deno[key]?.core?.internalFdSymbol;
  return typeof found === "symbol" ? found : undefined;
})();

/** The descriptor Deno recorded for `conn`, unverified. */
function internalFdOf(conn: Deno.Conn): number | undefined {
  if (FD_SYMBOL === undefined) return undefined;
  const fd = (conn as unknown as Record<symbol, unknown>)[FD_SYMBOL];
  return typeof fd === "number" && Number.isInteger(fd) && fd >= 0 ? fd : undefined;
}

/** The family, port and address bytes of a `sockaddr_in`/`sockaddr_in6` for `addr`. */
function expectedAddress(addr: Deno.Addr): Uint8Array | undefined {
  if (addr.transport !== "tcp") return undefined;
  const v4 = parseIpv4(addr.hostname);
  if (v4 !== undefined) {
    const out = new Uint8Array(8);
    out[0] = AF_INET;
    out[2] = addr.port >> 8;
    out[3] = addr.port & 0xff;
    out.set(v4, 4);
    return out;
  }
  const v6 = parseIpv6(addr.hostname);
  if (v6 === undefined) return undefined;
  const out = new Uint8Array(24);
  out[0] = AF_INET6;
  out[2] = addr.port >> 8;
  out[3] = addr.port & 0xff;
  out.set(v6, 8);
  return out;
}

/** Compares a kernel `sockaddr` with {@linkcode expectedAddress}'s (flow info skipped). */
function sameAddress(actual: Uint8Array, expected: Uint8Array): boolean {
  // Family (host order, little-endian on Linux's platforms) and port.
  for (let i = 0; i < 4; i++) if (actual[i] !== expected[i]) return false;
  const from = expected[0] === AF_INET ? 4 : 8;
  for (let i = from; i < expected.length; i++) if (actual[i] !== expected[i]) return false;
  return true;
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i] as string;
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return undefined;
    out[i] = Number(part);
  }
  return out;
}

function parseIpv6(text: string): Uint8Array | undefined {
  const zone = text.indexOf("%");
  const bare = zone < 0 ? text : text.slice(0, zone);
  const halves = bare.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string): number[] | undefined => {
    if (half === "") return [];
    const out: number[] = [];
    const items = half.split(":");
    for (let i = 0; i < items.length; i++) {
      const item = items[i] as string;
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = parseIpv4(item);
        if (v4 === undefined) return undefined;
        out.push(((v4[0] as number) << 8) | (v4[1] as number));
        out.push(((v4[2] as number) << 8) | (v4[3] as number));
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(item)) return undefined;
        out.push(parseInt(item, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0] as string);
  const tail = halves.length === 2 ? groups(halves[1] as string) : [];
  if (head === undefined || tail === undefined) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 0) return undefined;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[i * 2] = (all[i] as number) >> 8;
    out[i * 2 + 1] = (all[i] as number) & 0xff;
  }
  return out;
}
