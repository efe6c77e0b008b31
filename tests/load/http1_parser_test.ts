import { MAX_HEAD_BYTES, ResponseParser } from "../../lib/shared/http1_parser.ts";
import { assertEquals, assertThrows } from "../support/assert.ts";

const encoder = new TextEncoder();

interface Parsed {
  readonly isComplete: boolean;
  readonly status: number;
  readonly bodyBytes: number;
  readonly canReuseConnection: boolean;
  /** Bytes left over after the response completed. */
  readonly leftoverBytes: number;
}

/**
 * Feeds `text` in pieces of `pieceBytes`, keeping unconsumed bytes in front of the next piece
 * as the transport does, then signals EOF when `isEof`.
 */
function parse(
  text: string,
  options: { pieceBytes?: number; isHeadRequest?: boolean; isEof?: boolean } = {},
): Parsed {
  const bytes = encoder.encode(text);
  const pieceBytes = options.pieceBytes ?? bytes.length;
  const parser = new ResponseParser();
  parser.reset(options.isHeadRequest ?? false);
  const buffer = new Uint8Array(bytes.length);
  let start = 0;
  let end = 0;
  let offset = 0;
  while (offset < bytes.length && !parser.isComplete) {
    const piece = bytes.subarray(offset, offset + pieceBytes);
    buffer.copyWithin(0, start, end);
    end -= start;
    start = 0;
    buffer.set(piece, end);
    end += piece.length;
    offset += piece.length;
    start += parser.feed(buffer, start, end);
  }
  if (options.isEof === true && !parser.isComplete) parser.end();
  return {
    isComplete: parser.isComplete,
    status: parser.status,
    bodyBytes: parser.bodyBytes,
    canReuseConnection: parser.canReuseConnection,
    leftoverBytes: end - start + bytes.length - offset,
  };
}

/** Parses `text` whole and in every piece size, and checks each gives `expected`. */
function assertParsesInAnyPieces(
  text: string,
  expected: Parsed,
  options: { isHeadRequest?: boolean; isEof?: boolean } = {},
): void {
  for (let pieceBytes = 1; pieceBytes <= text.length; pieceBytes++) {
    assertEquals(parse(text, { ...options, pieceBytes }), expected, `pieces of ${pieceBytes}`);
  }
}

function complete(status: number, bodyBytes: number, canReuseConnection = true): Parsed {
  return { isComplete: true, status, bodyBytes, canReuseConnection, leftoverBytes: 0 };
}

Deno.test("feed() reads a Content-Length body in any split", () => {
  assertParsesInAnyPieces(
    "HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 11\r\n\r\nhello world",
    complete(200, 11),
  );
});

Deno.test("feed() matches header names in any case", () => {
  assertEquals(parse("HTTP/1.1 404 Not Found\r\nCONTENT-LENGTH: 3\r\n\r\nabc"), complete(404, 3));
  assertEquals(parse("HTTP/1.1 200 OK\r\ncontent-length:3\r\n\r\nabc"), complete(200, 3));
  assertEquals(
    parse("HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    complete(200, 3),
  );
});

Deno.test("feed() reads chunked bodies with extensions and trailers in any split", () => {
  assertParsesInAnyPieces(
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "5;name=value;other\r\nhello\r\n" +
      '1A ; ext="quoted"\r\n' + "x".repeat(26) + "\r\n" +
      "0;last\r\nExpires: never\r\nX-Checksum: 1\r\n\r\n",
    complete(200, 31),
  );
});

Deno.test("feed() accepts bare LF line endings", () => {
  assertParsesInAnyPieces(
    "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n",
    complete(200, 3),
  );
  assertEquals(parse("HTTP/1.1 200 OK\nContent-Length: 2\n\nhi"), complete(200, 2));
});

Deno.test("feed() reads an HTTP/1.0 body without Content-Length until EOF", () => {
  const text = "HTTP/1.0 200 OK\r\nServer: old\r\n\r\nall of this is body";
  assertEquals(parse(text), {
    isComplete: false,
    status: 200,
    bodyBytes: 19,
    canReuseConnection: false,
    leftoverBytes: 0,
  });
  assertParsesInAnyPieces(text, complete(200, 19, false), { isEof: true });
});

Deno.test("feed() reads an HTTP/1.1 body without framing until EOF", () => {
  assertEquals(parse("HTTP/1.1 200 OK\r\n\r\nbody", { isEof: true }), complete(200, 4, false));
});

Deno.test("feed() reuses connections per version and Connection header", () => {
  const cases: ReadonlyArray<readonly [string, boolean]> = [
    ["HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true],
    ["HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false],
    ["HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n", false],
    ["HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n", true],
    ["HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false],
    ["HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", true],
  ];
  for (const [text, canReuse] of cases) {
    assertEquals(parse(text).canReuseConnection, canReuse, text);
  }
});

Deno.test("feed() expects no body for HEAD, 204 and 304", () => {
  const head = "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n";
  assertEquals(parse(head, { isHeadRequest: true }), complete(200, 0));
  assertEquals(parse("HTTP/1.1 204 No Content\r\n\r\n"), complete(204, 0));
  assertEquals(parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"), complete(304, 0));
});

Deno.test("feed() skips interim 1xx responses", () => {
  assertParsesInAnyPieces(
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
      "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    complete(201, 2),
  );
});

Deno.test("feed() lets chunked win over Content-Length and then closes", () => {
  assertEquals(
    parse(
      "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
    ),
    complete(200, 1, false),
  );
});

Deno.test("feed() frames by the final transfer coding only", () => {
  assertEquals(
    parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"),
    complete(200, 1),
  );
  assertEquals(
    parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nabcd", { isEof: true }),
    complete(200, 4, false),
  );
});

Deno.test("feed() accepts repeated identical Content-Length values", () => {
  assertEquals(
    parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"),
    complete(200, 2),
  );
  assertEquals(parse("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok"), complete(200, 2));
});

Deno.test("feed() stops at the end of the response and leaves extra bytes", () => {
  assertEquals(parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"), {
    ...complete(200, 2),
    leftoverBytes: 5,
  });
});

Deno.test("feed() skips obsolete folded header lines", () => {
  assertEquals(
    parse("HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\nContent-Length: 1\r\n\r\nz"),
    complete(200, 1),
  );
});

Deno.test("feed() accepts a status line without a reason phrase", () => {
  assertEquals(parse("HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n"), complete(503, 0));
});

Deno.test("feed() consumes nothing until the head is whole", () => {
  const parser = new ResponseParser();
  parser.reset(false);
  const bytes = encoder.encode("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n");
  assertEquals(parser.feed(bytes, 0, bytes.length), 0);
  assertEquals([parser.isComplete, parser.status], [false, 0]);
});

Deno.test("end() reports a response cut short", () => {
  const parser = new ResponseParser();
  parser.reset(false);
  const bytes = encoder.encode("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  assertEquals(parser.feed(bytes, 0, bytes.length), bytes.length);
  assertEquals(parser.end(), false);
  assertEquals([parser.isComplete, parser.bodyBytes], [false, 3]);
});

Deno.test("reset() prepares the parser for the next response", () => {
  const parser = new ResponseParser();
  for (const status of [200, 500]) {
    parser.reset(false);
    const bytes = encoder.encode(`HTTP/1.1 ${status} X\r\nContent-Length: 1\r\n\r\na`);
    assertEquals(parser.feed(bytes, 0, bytes.length), bytes.length);
    assertEquals([parser.status, parser.bodyBytes, parser.isComplete], [status, 1, true]);
  }
});

Deno.test("feed() rejects malformed responses with SyntaxError", () => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ["HTTP/2 200 OK\r\n\r\n", "Cannot parse status line"],
    ["HTTP/1.1 20 OK\r\n\r\n", "Cannot parse status line"],
    ["HTTP/1.1 200OK\r\n\r\n", "Cannot parse status line"],
    ["SSH-2.0-OpenSSH\r\n\r\n", "Cannot parse status line"],
    ["HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", "Content-Length must be a decimal"],
    ["HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length must be a decimal"],
    ["HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", "Content-Length must be a decimal"],
    ["HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "Content-Length values differ"],
    [
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "Content-Length values differ",
    ],
    ["HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", "header line has no colon"],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size is not hex"],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 x\r\n", "junk after the chunk"],
    [
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n",
      "chunk data must end with CRLF",
    ],
    [
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000\r\n",
      "exceeds 12 hex digits",
    ],
  ];
  for (const [text, message] of cases) {
    assertThrows(() => parse(text), SyntaxError, message, text);
  }
});

Deno.test("feed() rejects a head larger than MAX_HEAD_BYTES", () => {
  const text = "HTTP/1.1 200 OK\r\n" + `X-Big: ${"a".repeat(MAX_HEAD_BYTES)}\r\n\r\n`;
  assertThrows(() => parse(text), SyntaxError, `exceeds ${MAX_HEAD_BYTES} bytes`);
  assertThrows(() => parse(text, { pieceBytes: 4096 }), SyntaxError, "exceeds");
});

Deno.test("feed() rejects an endless chunk-size line", () => {
  const text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + "e".repeat(10_000);
  assertThrows(() => parse(text), SyntaxError, "line exceeds");
});
