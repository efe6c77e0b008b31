/**
 * Property-based tests of the shared HTTP/1.1 response parser in the strict mode the `http1`
 * upstream uses: generated responses parse back to what was generated in any split, damaged
 * ones fail only with SyntaxError, the lenient mode agrees on valid input, and the client
 * passes generated responses through unchanged.
 */
import { DEFAULTS } from "../support/settings.ts";
import fc from "fast-check";
import { type ResponseHead, ResponseParser } from "../../lib/shared/http1_parser.ts";
import { createHttp1Client } from "../../lib/upstream/http1.ts";
import { assertEquals } from "../support/assert.ts";
import { startScriptedBackend } from "./scripted_backend.ts";

/** A fixed seed keeps runs reproducible; change it locally to explore further. */
const SEED = 20_261_130;

/** A response to serialize: head fields, body, and how the body is framed. */
interface Model {
  readonly status: number;
  readonly reason: string;
  readonly headers: Array<[string, string]>;
  readonly body: Uint8Array;
  readonly framing: "length" | "chunked" | "eof";
  /** Chunk boundaries (body offsets) for chunked framing. */
  readonly cuts: number[];
  readonly trailers: Array<[string, string]>;
}

const TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const token = fc.string({ unit: fc.constantFrom(...TOKEN_CHARS), minLength: 1, maxLength: 12 });
const fieldName = token.filter((name) =>
  !/^(content-length|transfer-encoding|connection)$/i.test(name)
);
// Visible ASCII, spaces, tabs and obs-text; no leading or trailing whitespace (it is trimmed).
const fieldValue = fc.string({
  unit: fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f).map((c) =>
    String.fromCharCode(c)
  ),
  maxLength: 30,
}).map((value) => value.replace(/^[ \t]+|[ \t]+$/g, ""));
const field = fc.tuple(fieldName, fieldValue).map(([n, v]): [string, string] => [n, v]);

const model: fc.Arbitrary<Model> = fc.record({
  status: fc.integer({ min: 200, max: 599 }).filter((s) => s !== 204 && s !== 304),
  reason: fc.string({ unit: fc.constantFrom(..."ABCabc xyz"), maxLength: 16 }),
  headers: fc.array(field, { maxLength: 8 }),
  body: fc.uint8Array({ maxLength: 3_000 }),
  framing: fc.constantFrom("length" as const, "chunked" as const, "eof" as const),
  cuts: fc.array(fc.nat({ max: 3_000 }), { maxLength: 6 }),
  trailers: fc.array(field, { maxLength: 2 }),
});

function latin1(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** The head fields the parser should report: the model's plus the framing header. */
function expectedHeaders(m: Model): Array<[string, string]> {
  if (m.framing === "length") return [...m.headers, ["Content-Length", String(m.body.length)]];
  if (m.framing === "chunked") return [...m.headers, ["Transfer-Encoding", "chunked"]];
  return m.headers;
}

function serialize(m: Model): Uint8Array {
  const lines = [`HTTP/1.1 ${m.status} ${m.reason}`];
  for (const [name, value] of expectedHeaders(m)) lines.push(`${name}: ${value}`);
  const head = latin1(lines.join("\r\n") + "\r\n\r\n");
  if (m.framing !== "chunked") return concat([head, m.body]);
  const cuts = [...new Set(m.cuts.filter((c) => c > 0 && c < m.body.length))].sort((a, b) => a - b);
  const parts: Uint8Array[] = [head];
  let from = 0;
  for (const to of [...cuts, m.body.length]) {
    if (to === from) continue;
    const ext = to % 3 === 0 ? ";n=v" : "";
    parts.push(latin1(`${(to - from).toString(16)}${ext}\r\n`), m.body.subarray(from, to));
    parts.push(latin1("\r\n"));
    from = to;
  }
  const trailers = m.trailers.map(([name, value]) => `${name}: ${value}\r\n`).join("");
  parts.push(latin1(`0\r\n${trailers}\r\n`));
  return concat(parts);
}

interface Parsed {
  readonly head: ResponseHead | undefined;
  readonly body: Uint8Array;
  readonly isComplete: boolean;
  readonly canReuse: boolean;
  readonly leftover: number;
}

/** Feeds `bytes` in pieces cut at `cuts`, as the upstream's connection does, then EOF. */
function parse(bytes: Uint8Array, cuts: readonly number[], isStrict = true): Parsed {
  let head: ResponseHead | undefined;
  const body: Uint8Array[] = [];
  const parser = new ResponseParser({
    isStrict,
    onHead: (h) => {
      head = h;
    },
    onBody: (b) => body.push(b.slice()),
  });
  parser.reset(false);
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const buffer = new Uint8Array(bytes.length);
  let start = 0;
  let end = 0;
  let offset = 0;
  for (const to of [...points, bytes.length]) {
    if (to <= offset || parser.isComplete) continue;
    buffer.copyWithin(0, start, end);
    end -= start;
    start = 0;
    buffer.set(bytes.subarray(offset, to), end);
    end += to - offset;
    offset = to;
    start += parser.feed(buffer, start, end);
  }
  if (!parser.isComplete) parser.end();
  return {
    head,
    body: concat(body),
    isComplete: parser.isComplete,
    canReuse: parser.canReuseConnection,
    leftover: end - start + bytes.length - offset,
  };
}

Deno.test("parser (strict) reads back any generated response in any split", () => {
  fc.assert(
    fc.property(model, fc.array(fc.nat(), { maxLength: 8 }), (m, cuts) => {
      const parsed = parse(serialize(m), cuts);
      assertEquals(parsed.head, {
        status: m.status,
        reason: m.reason,
        headers: expectedHeaders(m),
      });
      assertEquals(parsed.body, m.body);
      assertEquals([parsed.isComplete, parsed.leftover], [true, 0]);
      assertEquals(parsed.canReuse, m.framing !== "eof");
    }),
    { seed: SEED, numRuns: 300 },
  );
});

Deno.test("parser (lenient) agrees with strict on valid responses", () => {
  fc.assert(
    fc.property(model, fc.array(fc.nat(), { maxLength: 4 }), (m, cuts) => {
      const bytes = serialize(m);
      const strict = parse(bytes, cuts);
      const lenient = parse(bytes, cuts, false);
      assertEquals(lenient, strict);
    }),
    { seed: SEED, numRuns: 200 },
  );
});

Deno.test("parser (strict) fails damaged responses only with SyntaxError", () => {
  const damage = fc.oneof(
    fc.record({ kind: fc.constant("replace" as const), at: fc.nat(), byte: fc.nat(255) }),
    fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), byte: fc.nat(255) }),
    fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), byte: fc.constant(0) }),
  );
  fc.assert(
    fc.property(
      model,
      fc.array(damage, { minLength: 1, maxLength: 3 }),
      fc.array(fc.nat(), { maxLength: 4 }),
      (m, damages, cuts) => {
        const bytes = [...serialize(m)];
        for (const { kind, at, byte } of damages) {
          const index = at % (bytes.length + 1);
          if (kind === "replace" && index < bytes.length) bytes[index] = byte;
          else if (kind === "insert") bytes.splice(index, 0, byte);
          else if (kind === "delete") bytes.splice(index, 1);
        }
        try {
          const parsed = parse(Uint8Array.from(bytes), cuts);
          if (parsed.head !== undefined) assertEquals(typeof parsed.head.status, "number");
        } catch (error) {
          if (!(error instanceof SyntaxError)) throw error;
        }
      },
    ),
    { seed: SEED, numRuns: 500 },
  );
});

Deno.test("parser (strict) fails arbitrary bytes after a status line only with SyntaxError", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(), { maxLength: 4 }), (
      tail,
      cuts,
    ) => {
      try {
        parse(concat([latin1("HTTP/1.1 200 OK\r\n"), tail]), cuts);
      } catch (error) {
        if (!(error instanceof SyntaxError)) throw error;
      }
    }),
    { seed: SEED, numRuns: 500 },
  );
});

Deno.test("the http1 client passes generated responses through unchanged", async () => {
  const queue: Uint8Array[] = [];
  await using backend = startScriptedBackend(async (conn) => {
    for (;;) {
      const head = await conn.readHead();
      const next = queue.shift();
      if (head === "" || next === undefined) return;
      await conn.write(next);
      // A body delimited by the end of the connection ends with it.
      if (head.includes("x-eof: 1")) return;
    }
  });
  using client = createHttp1Client(DEFAULTS.proxy);
  await fc.assert(
    fc.asyncProperty(model.filter((m) => m.status !== 205), async (m) => {
      queue.push(serialize(m));
      const headers: Array<[string, string]> = m.framing === "eof" ? [["x-eof", "1"]] : [];
      const response = await client.fetch(backend.url, { headers });
      assertEquals([response.status, response.statusText], [m.status, m.reason]);
      assertEquals(new Uint8Array(await response.arrayBuffer()), m.body);
      const expected = new Headers(m.headers);
      for (const [name] of m.headers) {
        assertEquals(response.headers.get(name), expected.get(name), name);
      }
    }),
    { seed: SEED, numRuns: 60 },
  );
});
