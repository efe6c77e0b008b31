/**
 * Parser cost per response: `deno bench load/bench/http1_parser_bench.ts`.
 *
 * @module
 */
import { ResponseParser } from "../../lib/shared/http1_parser.ts";

const encoder = new TextEncoder();
const nginxResponse = encoder.encode(
  "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 14:32:55 GMT\r\n" +
    "Content-Type: text/html\r\nContent-Length: 612\r\n" +
    "Last-Modified: Thu, 26 Nov 2026 14:30:00 GMT\r\nConnection: keep-alive\r\n" +
    'ETag: "6385a0a8-264"\r\nAccept-Ranges: bytes\r\n\r\n' + "a".repeat(612),
);
const chunkedResponse = encoder.encode(
  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n" +
    "100;ext=1\r\n" + "b".repeat(256) + "\r\n".repeat(1) +
    "100\r\n" + "c".repeat(256) + "\r\n0\r\nX-Trailer: 1\r\n\r\n",
);
const parser = new ResponseParser();

function parseWhole(bytes: Uint8Array): void {
  parser.reset(false);
  parser.feed(bytes, 0, bytes.length);
  if (!parser.isComplete) throw new Error("Cannot parse the bench response: it is incomplete");
}

Deno.bench("ResponseParser: nginx 612-byte Content-Length response", { baseline: true }, () => {
  parseWhole(nginxResponse);
});

Deno.bench("ResponseParser: chunked response with extension and trailer", () => {
  parseWhole(chunkedResponse);
});

Deno.bench("TextDecoder: decoding the same nginx response (for scale)", () => {
  new TextDecoder().decode(nginxResponse);
});
