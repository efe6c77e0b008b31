import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { assertEquals, assertThrows } from "../support/assert.ts";

Deno.test("parseBackendUrl() accepts URLs and bare host:port", () => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ["http://127.0.0.1:8080", "http://127.0.0.1:8080/"],
    ["127.0.0.1:8081", "http://127.0.0.1:8081/"],
    ["  localhost:8082  ", "http://localhost:8082/"],
    ["https://api.example.com", "https://api.example.com/"],
    ["HTTP://Example.COM:80/", "http://example.com/"],
    ["http://a:1/app", "http://a:1/app/"],
    ["http://a:1/app/", "http://a:1/app/"],
    ["[::1]:8080", "http://[::1]:8080/"],
  ];
  for (const [text, href] of cases) assertEquals(parseBackendUrl(text).href, href, text);
});

Deno.test("parseBackendUrl() rejects a wrong protocol with a TypeError naming it", () => {
  assertThrows(
    () => parseBackendUrl("htp://a:1"),
    TypeError,
    'Cannot parse backend "htp://a:1": protocol must be http or https',
  );
  assertThrows(
    () => parseBackendUrl("ftp://a"),
    TypeError,
    'Cannot parse backend "ftp://a": protocol must be http or https',
  );
});

Deno.test("parseBackendUrl() rejects a query, a fragment or credentials", () => {
  assertThrows(
    () => parseBackendUrl("http://a:1/?x=1"),
    TypeError,
    'Cannot parse backend "http://a:1/?x=1": a backend has no query or fragment',
  );
  assertThrows(
    () => parseBackendUrl("http://a:1/#top"),
    TypeError,
    'Cannot parse backend "http://a:1/#top": a backend has no query or fragment',
  );
  assertThrows(
    () => parseBackendUrl("http://user:secret@a:1"),
    TypeError,
    'Cannot parse backend "http://user:secret@a:1": credentials in the URL are not supported',
  );
});

Deno.test("parseBackendUrl() rejects text that is not a URL with a SyntaxError", () => {
  for (const text of ["", "http://[::1", "a:99999", "http://"]) {
    assertThrows(
      () => parseBackendUrl(text),
      SyntaxError,
      `Cannot parse backend "${text}": not a URL`,
    );
  }
});

Deno.test("Backend names itself host:port plus any path prefix", () => {
  assertEquals(new Backend(parseBackendUrl("127.0.0.1:8080")).name, "127.0.0.1:8080");
  assertEquals(new Backend(parseBackendUrl("http://a:1/app")).name, "a:1/app");
  assertEquals(new Backend(parseBackendUrl("https://b.example")).name, "b.example");
});

Deno.test("Backend starts healthy with weight 1 unless told otherwise", () => {
  const plain = new Backend(parseBackendUrl("a:1"));
  assertEquals([plain.weight, plain.health, plain.isHealthy], [1, "healthy", true]);
  const custom = new Backend(parseBackendUrl("a:1"), { weight: 3, initialHealth: "unhealthy" });
  assertEquals([custom.weight, custom.health, custom.isHealthy], [3, "unhealthy", false]);
});

Deno.test("Backend.setHealth() reports whether the state changed", () => {
  const backend = new Backend(parseBackendUrl("a:1"));
  assertEquals(backend.setHealth("healthy"), false);
  assertEquals(backend.setHealth("unhealthy"), true);
  assertEquals(backend.isHealthy, false);
  assertEquals(backend.setHealth("unhealthy"), false);
  assertEquals(backend.setHealth("healthy"), true);
  assertEquals(backend.isHealthy, true);
});

Deno.test("Backend counts in-flight, total and failed requests", () => {
  const backend = new Backend(parseBackendUrl("a:1"));
  backend.begin();
  backend.begin();
  backend.begin();
  assertEquals([backend.inFlight, backend.requests, backend.failures], [3, 3, 0]);
  backend.end(false);
  backend.end(true);
  assertEquals([backend.inFlight, backend.requests, backend.failures], [1, 3, 1]);
  backend.end(false);
  assertEquals([backend.inFlight, backend.requests, backend.failures], [0, 3, 1]);
});
