import { NO_TRUSTED_PROXIES, parseIp, parseTrustedProxies } from "../../lib/shared/ip.ts";
import { trustedProxyList } from "../../lib/config/kinds.ts";
import { forwardedElement } from "../../lib/data/forwarded.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";

Deno.test("parseIp() reads IPv4, IPv6 (compressed, with a dotted tail, with a zone) and maps ::ffff:", () => {
  assertEquals([...parseIp("192.0.2.1") ?? []], [192, 0, 2, 1]);
  assertEquals(parseIp("::1")?.length, 16);
  assertEquals(parseIp("::1")?.[15], 1);
  assertEquals(parseIp("2001:db8::")?.slice(0, 4), new Uint8Array([0x20, 0x01, 0x0d, 0xb8]));
  assertEquals(parseIp("fe80::1%eth0")?.[0], 0xfe);
  assertEquals([...parseIp("::ffff:10.1.2.3") ?? []], [10, 1, 2, 3]);
  assertEquals([...parseIp("::FFFF:a01:203") ?? []], [10, 1, 2, 3]);
  assertEquals(parseIp("64:ff9b::10.1.2.3")?.length, 16);
  for (
    const bad of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.1.1.1",
      "01.2.3.4",
      "1.2.3.4%eth0",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "12345::",
      "g::1",
      "unknown",
      "::1.2.3",
    ]
  ) {
    assertEquals(parseIp(bad), undefined, bad);
  }
});

Deno.test("parseTrustedProxies() matches IPv4 blocks, bare addresses and mapped peers", () => {
  const trusted = parseTrustedProxies(["10.0.0.0/8", "192.168.1.7", "172.16.0.0/12"]);
  assert(!trusted.isEmpty);
  for (const ip of ["10.0.0.1", "10.255.255.255", "192.168.1.7", "172.31.0.1", "::ffff:10.2.3.4"]) {
    assert(trusted.has(ip), ip);
  }
  for (const ip of ["11.0.0.1", "192.168.1.8", "172.32.0.1", "::1", "unknown", ""]) {
    assert(!trusted.has(ip), ip);
  }
});

Deno.test("parseTrustedProxies() matches IPv6 blocks, also with prefixes off a byte boundary", () => {
  const trusted = parseTrustedProxies(["2001:db8::/33", "::1", "fd00::/7"]);
  assert(trusted.has("2001:db8::1"));
  assert(trusted.has("2001:db8:7fff::1"));
  assert(!trusted.has("2001:db8:8000::1"));
  assert(trusted.has("::1"));
  assert(trusted.has("fdff::1"));
  assert(trusted.has("fc00::1"));
  assert(!trusted.has("fe00::1"));
  assert(!trusted.has("10.0.0.1"), "an IPv6 block never matches an IPv4 peer");
});

Deno.test("parseTrustedProxies() reads IPv4-mapped blocks as IPv4 and masks host bits", () => {
  const mapped = parseTrustedProxies(["::ffff:127.0.0.0/104"]);
  assert(mapped.has("127.1.2.3"));
  assert(mapped.has("::ffff:127.0.0.1"));
  assert(!mapped.has("128.0.0.1"));
  const loose = parseTrustedProxies(["10.1.2.3/8"]);
  assert(loose.has("10.200.0.1"));
  const everyone = parseTrustedProxies(["0.0.0.0/0", "::/0"]);
  assert(everyone.has("203.0.113.9") && everyone.has("2001:db8::1"));
});

Deno.test("parseTrustedProxies() of nothing trusts nobody", () => {
  assertEquals(parseTrustedProxies([]), NO_TRUSTED_PROXIES);
  assert(!NO_TRUSTED_PROXIES.has("127.0.0.1"));
});

Deno.test("parseTrustedProxies() names the entry it cannot read", () => {
  const cases: Array<[string, string]> = [
    [
      "10.0.0.0/33",
      'Cannot parse trusted proxy "10.0.0.0/33": the prefix length must be from 0 to 32',
    ],
    ["::1/129", 'Cannot parse trusted proxy "::1/129": the prefix length must be from 0 to 128'],
    [
      "::ffff:1.2.3.4/64",
      'Cannot parse trusted proxy "::ffff:1.2.3.4/64": the prefix length must be from 96 to 128 for an IPv4-mapped block',
    ],
    ["10.0.0.0/", 'Cannot parse trusted proxy "10.0.0.0/": the prefix length must be from 0 to 32'],
    [
      "example.com",
      'Cannot parse trusted proxy "example.com": must be an IPv4 or IPv6 address or CIDR block, such as 10.0.0.0/8 or 2001:db8::/32',
    ],
    [
      "fe80::1%eth0",
      'Cannot parse trusted proxy "fe80::1%eth0": must be an IPv4 or IPv6 address or CIDR block, such as 10.0.0.0/8 or 2001:db8::/32',
    ],
  ];
  for (const [entry, message] of cases) {
    assertThrows(() => parseTrustedProxies(["127.0.0.1", entry]), SyntaxError, message);
  }
});

Deno.test("trustedProxyList() reads a comma list and names a bad entry", () => {
  const kind = trustedProxyList();
  assertEquals(kind.parse(" 10.0.0.0/8, ::1 "), { ok: true, value: ["10.0.0.0/8", "::1"] });
  assertEquals(kind.parse(""), { ok: true, value: [] });
  assertEquals(kind.parse("10.0.0.0/8,10.0.0.0/33"), {
    ok: false,
    rule: "the prefix length must be from 0 to 32",
    text: "10.0.0.0/33",
  });
  const file = kind.schema.safeParse(["10.0.0.0/8", "nope"]);
  assert(!file.success);
  assert(file.error.issues[0]?.message.startsWith('"nope" must be an IPv4 or IPv6'));
  assertEquals(kind.format(["10.0.0.0/8", "::1"]), "10.0.0.0/8,::1");
});

Deno.test("forwardedElement() brackets and quotes IPv6, quotes a host with a port", () => {
  assertEquals(forwardedElement("192.0.2.7", "http", undefined), "for=192.0.2.7;proto=http");
  assertEquals(
    forwardedElement("2001:db8::1", "https", "shop.example"),
    'for="[2001:db8::1]";proto=https;host=shop.example',
  );
  assertEquals(
    forwardedElement("::ffff:127.0.0.1", "http", "[::1]:8080"),
    'for="[::ffff:127.0.0.1]";proto=http;host="[::1]:8080"',
  );
  assertEquals(forwardedElement("unknown", "http", "a:1"), 'for=unknown;proto=http;host="a:1"');
});
