import { canRetry, upstreamUrl } from "../../lib/data/proxy.ts";
import {
  clientResponseHeaders,
  type ForwardedInfo,
  removeHopByHop,
  upstreamRequestHeaders,
} from "../../lib/data/proxy_headers.ts";
import { assertEquals } from "../support/assert.ts";

const INFO = { clientIp: "192.0.2.7", proto: "http" } as const;

/** The upstream headers as a `Headers` object, for lookups. */
function upstream(incoming: Headers, info: ForwardedInfo = INFO): Headers {
  return new Headers(upstreamRequestHeaders(incoming, info));
}

Deno.test("upstreamRequestHeaders() strips RFC 9110 hop-by-hop headers", () => {
  const incoming = new Headers({
    host: "shop.example",
    accept: "text/html",
    connection: "keep-alive",
    "keep-alive": "timeout=5",
    "proxy-connection": "keep-alive",
    "proxy-authenticate": "Basic",
    "proxy-authorization": "Basic Zm9vOmJhcg==",
    te: "trailers",
    trailer: "x-checksum",
    "transfer-encoding": "chunked",
    upgrade: "websocket",
    "content-length": "12",
  });
  const headers = upstream(incoming, INFO);
  for (
    const name of [
      "connection",
      "keep-alive",
      "proxy-connection",
      "proxy-authenticate",
      "proxy-authorization",
      "te",
      "trailer",
      "transfer-encoding",
      "upgrade",
      "content-length",
    ]
  ) {
    assertEquals(headers.has(name), false, `${name} was forwarded`);
  }
  assertEquals(headers.get("accept"), "text/html");
});

Deno.test("upstreamRequestHeaders() strips the headers named in Connection", () => {
  const incoming = new Headers({
    connection: "close, X-Secret ,x-other",
    "x-secret": "1",
    "x-other": "2",
    "x-kept": "3",
  });
  const headers = upstream(incoming, INFO);
  assertEquals(headers.has("x-secret"), false);
  assertEquals(headers.has("x-other"), false);
  assertEquals(headers.get("x-kept"), "3");
});

Deno.test("upstreamRequestHeaders() appends the client IP to a trusted peer's X-Forwarded-For", () => {
  const incoming = new Headers({ "x-forwarded-for": "10.0.0.1, 10.0.0.2" });
  const headers = upstream(incoming, { ...INFO, isPeerTrusted: true });
  assertEquals(headers.get("x-forwarded-for"), "10.0.0.1, 10.0.0.2, 192.0.2.7");
});

Deno.test("upstreamRequestHeaders() replaces an untrusted peer's forwarding headers", () => {
  const incoming = new Headers({
    host: "shop.example",
    "x-forwarded-for": "6.6.6.6",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "spoofed.example",
    forwarded: "for=6.6.6.6;proto=https",
  });
  const headers = upstream(incoming, INFO);
  assertEquals(headers.get("x-forwarded-for"), "192.0.2.7");
  assertEquals(headers.get("x-forwarded-proto"), "http");
  assertEquals(headers.get("x-forwarded-host"), "shop.example");
  assertEquals(headers.get("forwarded"), "for=192.0.2.7;proto=http;host=shop.example");
});

Deno.test("upstreamRequestHeaders() keeps a trusted peer's X-Forwarded-Proto/-Host and appends to Forwarded", () => {
  const incoming = new Headers({
    host: "internal.example",
    "x-forwarded-for": "198.51.100.1",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "shop.example",
    forwarded: "for=198.51.100.1;proto=https;host=shop.example",
  });
  const headers = upstream(incoming, {
    clientIp: "2001:db8::7",
    proto: "http",
    isPeerTrusted: true,
  });
  assertEquals(headers.get("x-forwarded-for"), "198.51.100.1, 2001:db8::7");
  assertEquals(headers.get("x-forwarded-proto"), "https");
  assertEquals(headers.get("x-forwarded-host"), "shop.example");
  assertEquals(
    headers.get("forwarded"),
    'for=198.51.100.1;proto=https;host=shop.example, for="[2001:db8::7]";proto=http;host=internal.example',
  );
});

Deno.test("upstreamRequestHeaders() with Forwarded off sends none, even a trusted peer's", () => {
  const incoming = new Headers({ forwarded: "for=198.51.100.1" });
  for (const isPeerTrusted of [false, true]) {
    const headers = upstream(incoming, { ...INFO, isPeerTrusted, isForwardedSent: false });
    assertEquals(headers.has("forwarded"), false);
    assertEquals(headers.get("x-forwarded-for"), "192.0.2.7");
  }
});

Deno.test("upstreamRequestHeaders() keeps its own Forwarded and X-Forwarded-* when Connection names them", () => {
  const incoming = new Headers({
    host: "shop.example",
    connection: "forwarded, x-forwarded-for, x-forwarded-proto, x-forwarded-host",
    forwarded: "for=10.9.9.9",
    "x-forwarded-for": "10.9.9.9",
  });
  for (const isPeerTrusted of [false, true]) {
    const headers = upstream(incoming, { ...INFO, isPeerTrusted });
    assertEquals(headers.get("forwarded"), "for=192.0.2.7;proto=http;host=shop.example");
    assertEquals(headers.get("x-forwarded-for"), "192.0.2.7");
    assertEquals(headers.get("x-forwarded-proto"), "http");
    assertEquals(headers.get("x-forwarded-host"), "shop.example");
  }
});

Deno.test("upstreamRequestHeaders() sets X-Forwarded-For when the client sent none", () => {
  const headers = upstream(new Headers(), INFO);
  assertEquals(headers.get("x-forwarded-for"), "192.0.2.7");
});

Deno.test("upstreamRequestHeaders() strips Connection-named headers before adding X-Forwarded-For", () => {
  // A client naming X-Forwarded-For in Connection must not make the backend lose our entry.
  const incoming = new Headers({ connection: "x-forwarded-for", "x-forwarded-for": "10.9.9.9" });
  const headers = upstream(incoming, INFO);
  assertEquals(headers.get("x-forwarded-for"), "192.0.2.7");
  assertEquals(headers.has("connection"), false);
});

Deno.test("upstreamRequestHeaders() sets X-Forwarded-Proto and X-Forwarded-Host and keeps Host", () => {
  const incoming = new Headers({
    host: "shop.example:9090",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "spoofed.example",
  });
  const headers = upstream(incoming, { clientIp: "192.0.2.7", proto: "http" });
  assertEquals(headers.get("host"), "shop.example:9090");
  assertEquals(headers.get("x-forwarded-proto"), "http");
  assertEquals(headers.get("x-forwarded-host"), "shop.example:9090");
});

Deno.test("upstreamRequestHeaders() asks for identity encoding so fetch never decodes", () => {
  const incoming = new Headers({ "accept-encoding": "gzip, br" });
  assertEquals(upstream(incoming, INFO).get("accept-encoding"), "identity");
  assertEquals(upstream(new Headers(), INFO).get("accept-encoding"), "identity");
});

Deno.test("upstreamRequestHeaders() sets the request ID and appends Via when given", () => {
  const incoming = new Headers({ "x-request-id": "client-1", via: "1.1 edge" });
  const kept = upstream(incoming, INFO);
  assertEquals(kept.get("x-request-id"), "client-1");
  assertEquals(kept.get("via"), "1.1 edge");
  const set = upstream(incoming, { ...INFO, requestId: "lb-7", via: "1.1 denolb" });
  assertEquals(set.get("x-request-id"), "lb-7");
  assertEquals(set.get("via"), "1.1 edge, 1.1 denolb");
});

Deno.test("upstreamRequestHeaders() keeps repeated and end-to-end headers", () => {
  const incoming = new Headers([
    ["cookie", "a=1"],
    ["authorization", "Bearer t"],
    ["x-multi", "1"],
    ["x-multi", "2"],
  ]);
  const headers = upstream(incoming, INFO);
  assertEquals(headers.get("cookie"), "a=1");
  assertEquals(headers.get("authorization"), "Bearer t");
  assertEquals(headers.get("x-multi"), "1, 2");
});

Deno.test("clientResponseHeaders() strips hop-by-hop and Connection-named headers", () => {
  const upstream = new Headers({
    connection: "x-internal, close",
    "x-internal": "secret",
    "keep-alive": "timeout=5",
    "transfer-encoding": "chunked",
    "proxy-authenticate": "Basic",
    trailer: "x-checksum",
    upgrade: "h2c",
    "content-type": "text/plain",
  });
  const headers = clientResponseHeaders(upstream);
  assertEquals([...headers.keys()], ["content-type"]);
});

Deno.test("clientResponseHeaders() keeps Content-Encoding, Content-Length and every Set-Cookie", () => {
  const upstream = new Headers([
    ["content-encoding", "gzip"],
    ["content-length", "119"],
    ["set-cookie", "a=1"],
    ["set-cookie", "b=2"],
    ["location", "/next"],
  ]);
  const headers = clientResponseHeaders(upstream);
  assertEquals(headers.get("content-encoding"), "gzip");
  assertEquals(headers.get("content-length"), "119");
  assertEquals(headers.getSetCookie(), ["a=1", "b=2"]);
  assertEquals(headers.get("location"), "/next");
});

Deno.test("upstreamRequestHeaders() sends each balancer-set header once", () => {
  const incoming = new Headers({
    host: "shop.example",
    "x-forwarded-for": "10.0.0.1",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "spoofed.example",
    "accept-encoding": "gzip",
    "x-request-id": "client-1",
    forwarded: "for=10.0.0.1",
  });
  for (const isPeerTrusted of [false, true]) {
    const list = upstreamRequestHeaders(incoming, { ...INFO, requestId: "lb-1", isPeerTrusted });
    const names = list.map(([name]) => name);
    assertEquals(names.length, new Set(names).size, `repeated: ${names.join(", ")}`);
  }
});

Deno.test("clientResponseHeaders() returns the backend's headers when none is hop-by-hop", () => {
  const upstream = new Headers({ "content-type": "text/plain", "content-length": "2" });
  assertEquals(clientResponseHeaders(upstream) === upstream, true);
});

Deno.test("upstreamUrl() joins the backend's base URL and the normalized target", () => {
  const base = new URL("http://10.0.0.2:8080/");
  assertEquals(
    upstreamUrl(base, { path: "/a/b", query: "?c=1&d" }),
    "http://10.0.0.2:8080/a/b?c=1&d",
  );
  assertEquals(upstreamUrl(base, { path: "/", query: "" }), "http://10.0.0.2:8080/");
  assertEquals(
    upstreamUrl(base, { path: "//evil.example/x", query: "" }),
    "http://10.0.0.2:8080//evil.example/x",
  );
  // fetch parses what it is given; a double slash stays a path, never an authority.
  assertEquals(
    new URL(upstreamUrl(base, { path: "//evil.example/x", query: "" })).host,
    "10.0.0.2:8080",
  );
  const prefixed = new URL("http://10.0.0.2:8080/app/");
  assertEquals(upstreamUrl(prefixed, { path: "/x", query: "?y" }), "http://10.0.0.2:8080/app/x?y");
});

Deno.test("canRetry() retries any method after a connect failure, idempotent ones after a break", () => {
  const none = { kind: "none" } as const;
  const buffered = { kind: "buffered", bytes: new Uint8Array(2) } as const;
  const streamed = {
    kind: "streamed",
    stream: new ReadableStream<Uint8Array>(),
    state: { failure: undefined, isComplete: false, onComplete: undefined },
  } as const;
  for (const method of ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]) {
    assertEquals(canRetry(method, buffered, "connect"), true, method);
    assertEquals(canRetry(method, streamed, "connect"), false, `${method} streamed`);
  }
  for (const method of ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]) {
    assertEquals(canRetry(method, none, "protocol"), true, method);
  }
  assertEquals(canRetry("POST", buffered, "protocol"), false);
  assertEquals(canRetry("PATCH", none, "protocol"), false);
  assertEquals(canRetry("GET", none, "response-timeout"), false);
  // A connect timeout, like a refused connection: the request never left.
  assertEquals(canRetry("POST", buffered, "connect-timeout"), true);
  assertEquals(canRetry("POST", streamed, "connect-timeout"), false);
  assertEquals(canRetry("GET", none, "client-abort"), false);
});

Deno.test("removeHopByHop() strips in place and ignores a Connection name that is not a token", () => {
  const headers = new Headers({
    connection: "x-internal, bad name, close",
    "x-internal": "secret",
    "keep-alive": "timeout=5",
    "content-type": "text/plain",
    "content-length": "2",
  });
  removeHopByHop(headers);
  assertEquals([...headers.keys()], ["content-length", "content-type"]);
});
