/**
 * A raw HTTP/1.1 exchange over `Deno.connect`, for tests that must see exactly what crosses
 * the wire: header names a fetch client would hide or add, and body bytes no client decoded.
 *
 * @module
 */

/** A response as read off the socket. */
export interface RawResponse {
  /** The status code from the status line. */
  readonly status: number;
  /** Header fields in order, names lower-cased. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** The body bytes exactly as received (not de-chunked, not decoded). */
  readonly body: Uint8Array;
}

/**
 * Sends `request` (a complete HTTP/1.1 request head, and body if any) and reads until the
 * server closes the connection: include `Connection: close`.
 *
 * @param port The server's port on 127.0.0.1.
 * @param request The raw request text, with CRLF line ends.
 * @returns The parsed status line and headers and the raw body.
 */
export async function rawRequest(port: number, request: string): Promise<RawResponse> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(request));
    const bytes = new Uint8Array(await new Response(conn.readable).arrayBuffer());
    return parseResponse(bytes);
  } finally {
    try {
      conn.close();
    } catch {
      // The readable side closes the connection when it ends.
    }
  }
}

function parseResponse(bytes: Uint8Array): RawResponse {
  let headEnd = -1;
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      headEnd = i;
      break;
    }
  }
  if (headEnd < 0) throw new SyntaxError(`Cannot parse response: no end of headers`);
  const lines = new TextDecoder().decode(bytes.subarray(0, headEnd)).split("\r\n");
  const status = Number(lines[0]?.split(" ")[1]);
  const headers = lines.slice(1).map((line): readonly [string, string] => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  });
  return { status, headers, body: bytes.slice(headEnd + 4) };
}

/**
 * The values of one header in a raw response.
 *
 * @param response The response.
 * @param name The header name, lower case.
 * @returns Every value of that header, in order.
 */
export function headerValues(response: RawResponse, name: string): string[] {
  return response.headers.filter(([key]) => key === name).map(([, value]) => value);
}
