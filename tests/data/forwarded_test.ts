/**
 * Forwarding headers end to end: a raw TCP client sends spoofed `X-Forwarded-*` and
 * `Forwarded` through the real data plane to a raw backend that records every header line as
 * it arrived. From an untrusted peer they are replaced; from a trusted one (`--trusted-proxies
 * 127.0.0.1/32`) appended to or kept; the balancer's own survive a `Connection` header naming
 * them. Every case runs once per upstream client.
 */
import type { BalancerConfig } from "../../lib/config/config.ts";
import { UPSTREAMS } from "../../lib/config/settings.ts";
import { assertEquals } from "../support/assert.ts";
import { rawRequest } from "../../load/bench/raw_http.ts";
import { startRawBackend } from "../../load/bench/raw_backend.ts";
import { startBalancer } from "../support/servers.ts";

/** The forwarding header lines the backend received, names in lower case, in order. */
type Lines = Array<[string, string]>;

const FORWARDING = new Set([
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
  "forwarded",
]);

const SPOOFED = "X-Forwarded-For: 6.6.6.6\r\n" +
  "X-Forwarded-Proto: https\r\n" +
  "X-Forwarded-Host: spoofed.example\r\n" +
  "Forwarded: for=6.6.6.6;proto=https;host=spoofed.example\r\n";

const OURS_ONLY: Lines = [
  ["x-forwarded-for", "127.0.0.1"],
  ["x-forwarded-proto", "http"],
  ["x-forwarded-host", "shop.example"],
  ["forwarded", "for=127.0.0.1;proto=http;host=shop.example"],
];

for (const upstream of UPSTREAMS) {
  const test = (name: string, fn: () => Promise<void>) => Deno.test(`${name} [${upstream}]`, fn);

  /** Sends one GET with `headers` and returns the forwarding lines the backend got. */
  const forwardingLines = async (
    headers: string,
    configure: (proxy: BalancerConfig["proxy"]) => Partial<BalancerConfig["proxy"]> = () => ({}),
  ): Promise<Lines> => {
    await using backend = startRawBackend();
    await using lb = startBalancer([`http://127.0.0.1:${backend.port}`], {
      upstream,
      config: (config) => ({ ...config, proxy: { ...config.proxy, ...configure(config.proxy) } }),
    });
    const response = await rawRequest(
      lb.port,
      `GET /a HTTP/1.1\r\nHost: shop.example\r\n${headers}Connection: close\r\n\r\n`,
    );
    assertEquals(response.status, 200);
    await backend.waitFor(1);
    const lines = (backend.received[0]?.headers ?? [])
      .map(([name, value]): [string, string] => [name.toLowerCase(), value])
      .filter(([name]) => FORWARDING.has(name));
    return lines.sort(([a], [b]) => order(a) - order(b));
  };

  test("an untrusted peer's X-Forwarded-For/-Proto/-Host and Forwarded are replaced", async () => {
    assertEquals(await forwardingLines(SPOOFED), OURS_ONLY);
  });

  test("a peer outside --trusted-proxies is not trusted", async () => {
    const trusted = () => ({ trustedProxies: ["10.0.0.0/8", "::1", "127.0.0.2/32"] });
    assertEquals(await forwardingLines(SPOOFED, trusted), OURS_ONLY);
  });

  test("a trusted peer's X-Forwarded-For and Forwarded are appended to, -Proto and -Host kept", async () => {
    const lines = await forwardingLines(
      "X-Forwarded-For: 198.51.100.1, 10.0.0.1\r\n" +
        "X-Forwarded-Proto: https\r\n" +
        "X-Forwarded-Host: www.example\r\n" +
        'Forwarded: for=198.51.100.1;proto=https;host=www.example, for="[2001:db8::1]"\r\n',
      () => ({ trustedProxies: ["127.0.0.1/32"] }),
    );
    assertEquals(lines, [
      ["x-forwarded-for", "198.51.100.1, 10.0.0.1, 127.0.0.1"],
      ["x-forwarded-proto", "https"],
      ["x-forwarded-host", "www.example"],
      [
        "forwarded",
        'for=198.51.100.1;proto=https;host=www.example, for="[2001:db8::1]", ' +
        "for=127.0.0.1;proto=http;host=shop.example",
      ],
    ]);
  });

  test("a trusted peer that sends no forwarding headers gets the balancer's", async () => {
    const lines = await forwardingLines("", () => ({ trustedProxies: ["127.0.0.0/8"] }));
    assertEquals(lines, OURS_ONLY);
  });

  test("Connection naming the forwarding headers never strips the balancer's", async () => {
    const named = "Connection: forwarded, x-forwarded-for, x-forwarded-proto, x-forwarded-host\r\n";
    assertEquals(await forwardingLines(named + SPOOFED), OURS_ONLY);
    const trusted = () => ({ trustedProxies: ["127.0.0.1"] });
    // From a trusted peer the named ones are its hop-by-hop headers: dropped, ours stay.
    assertEquals(await forwardingLines(named + SPOOFED, trusted), OURS_ONLY);
  });

  test("--forwarded off sends no Forwarded, not even a trusted peer's", async () => {
    const off = () => ({ forwarded: "off" as const });
    assertEquals(await forwardingLines(SPOOFED, off), OURS_ONLY.slice(0, 3));
    const trustedOff = () => ({ forwarded: "off" as const, trustedProxies: ["127.0.0.1"] });
    assertEquals(await forwardingLines(SPOOFED, trustedOff), [
      ["x-forwarded-for", "6.6.6.6, 127.0.0.1"],
      ["x-forwarded-proto", "https"],
      ["x-forwarded-host", "spoofed.example"],
    ]);
  });

  test("a Host with a port is quoted in Forwarded", async () => {
    await using backend = startRawBackend();
    await using lb = startBalancer([`http://127.0.0.1:${backend.port}`], { upstream });
    await rawRequest(
      lb.port,
      "GET / HTTP/1.1\r\nHost: shop.example:8443\r\nConnection: close\r\n\r\n",
    );
    await backend.waitFor(1);
    const forwarded = backend.received[0]?.headers.filter(([name]) =>
      name.toLowerCase() === "forwarded"
    );
    assertEquals(forwarded?.map(([, value]) => value), [
      'for=127.0.0.1;proto=http;host="shop.example:8443"',
    ]);
  });
}

function order(name: string): number {
  return ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"].indexOf(name);
}
