import { assertEquals } from "@std/assert";
import { isValidHost, removeDotSegments, resolveTarget } from "../../lib/data/request_target.ts";

function accepted(url: string, host: string | null) {
  const target = resolveTarget(url, host);
  if (!target.ok) throw new Error(`rejected ${url} (Host ${host}): ${target.reason}`);
  return { authority: target.authority, path: target.path, query: target.query };
}

function rejection(url: string, host: string | null): string {
  const target = resolveTarget(url, host);
  if (target.ok) throw new Error(`accepted ${url} (Host ${host})`);
  return target.reason;
}

Deno.test("resolveTarget() takes the path from the target, never from Host", () => {
  // Deno.serve glues "http://" + Host + target: a Host with a path must not move it.
  assertEquals(
    rejection("http://shop.example/admin/secret", "shop.example/admin"),
    "invalid Host header",
  );
  assertEquals(rejection("http://a/_lb/status?/x", "a/_lb/status?"), "invalid Host header");
  assertEquals(rejection("http://u@a/x", "u@a"), "invalid Host header");
  assertEquals(rejection("http://a b/", "a b"), "invalid Host header");
  assertEquals(rejection("http://a#/x", "a#"), "invalid Host header");
  assertEquals(accepted("http://shop.example/secret", "shop.example"), {
    authority: "shop.example",
    path: "/secret",
    query: "",
  });
});

Deno.test("resolveTarget() refuses a missing or empty Host", () => {
  assertEquals(rejection("http://localhost:9090/x", null), "missing Host header");
  assertEquals(rejection("http://localhost:9090/x", ""), "missing Host header");
});

Deno.test("isValidHost() accepts names, IPv4, bracketed IPv6 and ports up to 65535", () => {
  for (
    const host of [
      "a",
      "shop.example",
      "shop.example:8080",
      "10.0.0.1:80",
      "[::1]",
      "[::1]:443",
      "xn--bcher-kva.example",
    ]
  ) {
    assertEquals(isValidHost(host), true, host);
  }
  for (
    const host of ["", "a:99999", "a:", "a:b", "[::1", "a/b", "a?b", "a b", "u@a", "a\\b", "[::1]x"]
  ) {
    assertEquals(isValidHost(host), false, host);
  }
});

Deno.test("resolveTarget() lets an absolute-form target's authority replace Host (RFC 9112 3.2.2)", () => {
  assertEquals(accepted("http://other.example/p?q", "a.example"), {
    authority: "other.example",
    path: "/p",
    query: "?q",
  });
  assertEquals(accepted("https://other.example:8443", "a.example"), {
    authority: "other.example:8443",
    path: "/",
    query: "",
  });
  assertEquals(
    rejection("ftp://other.example/p", "a.example"),
    "request target must be a path or an http(s) URL",
  );
  assertEquals(
    rejection("http://u@other.example/p", "a.example"),
    "invalid authority in request target",
  );
});

Deno.test("resolveTarget() resolves dot segments, plain or percent-encoded, and decodes unreserved escapes", () => {
  assertEquals(accepted("http://a/a/../b", "a").path, "/b");
  assertEquals(accepted("http://a/a/%2e%2e/b", "a").path, "/b");
  assertEquals(accepted("http://a/a/%2E%2e/%2e/b/.", "a").path, "/b/");
  assertEquals(accepted("http://a/../../etc/passwd", "a").path, "/etc/passwd");
  assertEquals(accepted("http://a/%41%7e%2D", "a").path, "/A~-");
  // Reserved characters stay encoded: decoding them would change the meaning.
  assertEquals(accepted("http://a/a%3Fb%23c%20d", "a").path, "/a%3Fb%23c%20d");
  assertEquals(accepted("http://a//x//y", "a").path, "//x//y");
});

Deno.test("resolveTarget() rejects backslashes, escaped slashes, NUL and malformed escapes", () => {
  assertEquals(rejection("http://a/a\\b", "a"), "backslash in path");
  assertEquals(rejection("http://a/a%2Fb", "a"), "escaped slash or backslash in path");
  assertEquals(rejection("http://a/a%2fb", "a"), "escaped slash or backslash in path");
  assertEquals(rejection("http://a/a%5cb", "a"), "escaped slash or backslash in path");
  assertEquals(rejection("http://a/a%00b", "a"), "escaped NUL in path");
  assertEquals(rejection("http://a/%zz", "a"), "malformed % escape in path");
  assertEquals(rejection("http://a/x?%g1", "a"), "malformed % escape in query");
  assertEquals(rejection("http://a/p#frag", "a"), "fragment in request target");
  assertEquals(rejection("http://a/\u00c3\u00a9", "a"), "invalid byte in path");
});

Deno.test("resolveTarget() encodes what fetch's URL parser would, so the sent URL is the logged one", () => {
  const target = accepted('http://a/{x}"<y>`?q="<v>\'&r={}', "a");
  assertEquals(target.path, "/%7Bx%7D%22%3Cy%3E%60");
  assertEquals(target.query, "?q=%22%3Cv%3E%27&r={}");
  const sent = new URL("http://backend:8080" + target.path + target.query);
  assertEquals(sent.pathname + sent.search, target.path + target.query);
});

Deno.test("removeDotSegments() follows RFC 3986 section 5.2.4", () => {
  const cases: Array<[string, string]> = [
    ["/", "/"],
    ["/a/b/c/./../../g", "/a/g"],
    ["/mid/content=5/../6", "/mid/6"],
    ["/a/..", "/"],
    ["/a/.", "/a/"],
    ["/..", "/"],
    ["/a/.../b", "/a/.../b"],
    ["/a/..b/c", "/a/..b/c"],
  ];
  for (const [input, expected] of cases) assertEquals(removeDotSegments(input), expected, input);
});
