import { assertEquals } from "../support/assert.ts";
import { clientAddress, limitKey } from "../../lib/data/router.ts";
import { NO_TRUSTED_PROXIES, parseTrustedProxies } from "../../lib/shared/ip.ts";

const TRUSTED = parseTrustedProxies(["10.0.0.0/8"]);

function withForwardedFor(value: string): Request {
  return new Request("http://a.test/", { headers: { "x-forwarded-for": value } });
}

Deno.test("clientAddress() believes X-Forwarded-For only from a trusted peer", () => {
  const request = withForwardedFor("198.51.100.7, 10.0.0.9");
  assertEquals(clientAddress(request, "203.0.113.1", TRUSTED), "203.0.113.1");
  assertEquals(clientAddress(request, "10.0.0.1", NO_TRUSTED_PROXIES), "10.0.0.1");
  // The rightmost address that is not a trusted proxy: a client cannot pick its own key by
  // sending a forged first entry.
  assertEquals(clientAddress(request, "10.0.0.1", TRUSTED), "198.51.100.7");
  const forged = withForwardedFor("1.2.3.4, 198.51.100.7");
  assertEquals(clientAddress(forged, "10.0.0.1", TRUSTED), "198.51.100.7");
  assertEquals(clientAddress(new Request("http://a.test/"), "10.0.0.1", TRUSTED), "10.0.0.1");
});

Deno.test("limitKey() counts the route, a client or a header's value apart", () => {
  const request = new Request("http://a.test/", { headers: { "x-api-key": "k1" } });
  const rule = (key: "client" | "route" | `header:${string}`) => ({ perSecond: 1, burst: 1, key });
  assertEquals(limitKey("r", rule("route"), request, "192.0.2.1", TRUSTED), "r");
  assertEquals(limitKey("r", rule("client"), request, "192.0.2.1", TRUSTED), "r\u0000192.0.2.1");
  assertEquals(limitKey("r", rule("header:x-api-key"), request, "192.0.2.1", TRUSTED), "r\u0000k1");
  assertEquals(limitKey("r", rule("header:x-other"), request, "192.0.2.1", TRUSTED), "r\u0000");
});
