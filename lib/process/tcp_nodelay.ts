/**
 * TCP_NODELAY for TLS connections. Deno 2.9.6 accepts TLS connections without it and has no way
 * to set it (`Deno.TlsConn` has no `setNoDelay`), so Nagle's algorithm holds back the body of
 * an HTTP/1.1 response (hyper writes it after the head) until the client's delayed ACK: 40 ms
 * per response, about 400 requests/s per 20 connections whatever the machine. Linux copies
 * TCP_NODELAY from a listening socket to the sockets it accepts, so setting it once on the
 * listener covers every connection. The listener's descriptor is not exposed either: it is
 * found by its bound port among the process's listening sockets (`getsockname`,
 * `SO_ACCEPTCONN`) and set with `setsockopt`, through libc by FFI (`--allow-ffi`; without it,
 * the outcome says so and nothing is prompted).
 *
 * @module
 */

/** What {@linkcode setListenerNoDelay} did. */
export type NoDelayOutcome =
  | { readonly ok: true; readonly count: number }
  | { readonly ok: false; readonly reason: string };

const SOL_SOCKET = 1;
const SO_ACCEPTCONN = 30;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const AF_INET = 2;
const AF_INET6 = 10;
/** Descriptors looked at; a listener is bound early, so it sits well below this. */
const MAX_FD = 65_536;

const SYMBOLS = {
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
} as const;

/**
 * Sets TCP_NODELAY on this process's listening TCP sockets bound to `port` (Linux only).
 *
 * @param port The listeners' port.
 * @returns How many listeners were set, or why none could be.
 */
export function setListenerNoDelay(port: number): NoDelayOutcome {
  if (Deno.build.os !== "linux") return { ok: false, reason: "only done on Linux" };
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return { ok: false, reason: "needs --allow-ffi" };
  }
  let library: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    library = Deno.dlopen("libc.so.6", SYMBOLS);
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message : String(error) };
  }
  try {
    const { getsockname, getsockopt, setsockopt } = library.symbols;
    const address = new Uint8Array(128);
    const length = new Uint32Array(1);
    const value = new Int32Array(1);
    const valueLength = new Uint32Array(1);
    const one = new Int32Array([1]);
    let count = 0;
    for (let fd = 3; fd < MAX_FD; fd++) {
      length[0] = address.length;
      if (getsockname(fd, address, new Uint8Array(length.buffer)) !== 0) continue;
      const family = (address[0] ?? 0) | ((address[1] ?? 0) << 8);
      if (family !== AF_INET && family !== AF_INET6) continue;
      if ((((address[2] ?? 0) << 8) | (address[3] ?? 0)) !== port) continue;
      valueLength[0] = 4;
      value[0] = 0;
      const isRead = getsockopt(
        fd,
        SOL_SOCKET,
        SO_ACCEPTCONN,
        new Uint8Array(value.buffer),
        new Uint8Array(valueLength.buffer),
      ) === 0;
      if (!isRead || value[0] !== 1) continue;
      if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, new Uint8Array(one.buffer), 4) === 0) count++;
    }
    return count > 0 ? { ok: true, count } : { ok: false, reason: "no listening socket found" };
  } finally {
    library.close();
  }
}
