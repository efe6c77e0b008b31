import {
  canBeHandshake,
  findHeadEnd,
  isWebSocketHandshake,
  parseRequestHead,
  type RequestHeadResult,
} from "../../lib/shared/request_head.ts";
import { assert, assertEquals } from "../support/assert.ts";

const HANDSHAKE = "GET /chat?room=1 HTTP/1.1\r\nHost: lb.example\r\nUpgrade: websocket\r\n" +
  "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
  "Sec-WebSocket-Version: 13\r\n\r\n";

function parse(text: string): RequestHeadResult {
  const bytes = new TextEncoder().encode(text);
  return parseRequestHead(bytes, bytes.length);
}

function handshake(text: string): boolean {
  const parsed = parse(text);
  return parsed.ok && isWebSocketHandshake(parsed.head);
}

Deno.test("parseRequestHead() reads a handshake: target, lower-cased names, trimmed values, length", () => {
  const parsed = parse(HANDSHAKE + "\x81\x85early frame");
  assert(parsed.ok);
  assertEquals(parsed.head.method, "GET");
  assertEquals(parsed.head.target, "/chat?room=1");
  assertEquals(parsed.head.headers[2], ["connection", "keep-alive, Upgrade"]);
  assertEquals(parsed.head.length, HANDSHAKE.length);
  assert(isWebSocketHandshake(parsed.head));
});

Deno.test("parseRequestHead() waits for the blank line, and refuses what two parsers could read differently", () => {
  assertEquals(parse("GET / HTTP/1.1\r\nHost: a\r\n").ok, false);
  const partial = parse("GET / HTTP/1.1\r\nHost: a\r\n");
  assert(!partial.ok && partial.reason === "partial");
  for (
    const bad of [
      "GET / HTTP/1.1\nHost: a\r\n\r\n", // bare LF
      "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", // two spaces
      "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost : a\r\n\r\n", // space before the colon
      "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n",
      "GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
      "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
    ]
  ) {
    const parsed = parse(bad);
    assert(!parsed.ok && parsed.reason === "invalid", JSON.stringify(bad));
  }
});

Deno.test("isWebSocketHandshake() wants GET over HTTP/1.1, one Host and key, Upgrade and Connection, no body", () => {
  assert(handshake(HANDSHAKE));
  assert(!handshake(HANDSHAKE.replace("GET", "POST")));
  assert(!handshake(HANDSHAKE.replace("HTTP/1.1", "HTTP/1.0")));
  assert(!handshake(HANDSHAKE.replace("Upgrade: websocket", "Upgrade: h2c")));
  assert(!handshake(HANDSHAKE.replace("keep-alive, Upgrade", "keep-alive")));
  assert(!handshake(HANDSHAKE.replace("Host: lb.example\r\n", "")));
  assert(!handshake(HANDSHAKE.replace("Host: lb.example\r\n", "Host: a\r\nHost: b\r\n")));
  assert(!handshake(HANDSHAKE.replace("\r\n\r\n", "\r\nTransfer-Encoding: chunked\r\n\r\n")));
  assert(!handshake(HANDSHAKE.replace("\r\n\r\n", "\r\nContent-Length: 5\r\n\r\n")));
  assert(handshake(HANDSHAKE.replace("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n")));
});

Deno.test("canBeHandshake() and findHeadEnd() decide from the first bytes", () => {
  const bytes = (text: string) => new TextEncoder().encode(text);
  assert(canBeHandshake(bytes(""), 0));
  assert(canBeHandshake(bytes("GET /"), 5));
  assert(!canBeHandshake(bytes("GETX"), 4));
  assert(!canBeHandshake(bytes("PRI * HTTP/2.0"), 14));
  assertEquals(findHeadEnd(bytes("GET / HTTP/1.1\r\n\r\n"), 18), 18);
  assertEquals(findHeadEnd(bytes("GET / HTTP/1.1\r\n\r\n"), 17), -1);
});
