/**
 * The `cookie` affinity policy on its own (sticky picks, fallbacks, forged cookies, the
 * Set-Cookie it asks for), then end to end through the real data plane with real backends
 * and through `lb --workers 2`, whose isolates must honour each other's cookies.
 */
import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { DEFAULT_BALANCER_CONFIG, parseBalancerArgs } from "../../lib/config/config.ts";
import { withCookieSecret } from "../../lib/control/cookie_secret.ts";
import { planReload } from "../../lib/control/reload.ts";
import { backendId, createCookieAffinity, signCookieValue } from "../../lib/policies/cookie.ts";
import type { Policy } from "../../lib/policies/registry.ts";
import { startBalancer as startLb } from "../../lib/control/balancer.ts";
import { UPSTREAMS } from "../../lib/config/settings.ts";
import { assert, assertEquals, assertMatch } from "../support/assert.ts";
import { startBalancer, startServer, type TestServer } from "../support/servers.ts";

const SECRET = "a test secret of some length";
const COOKIE_FORMAT =
  /^denolb_affinity=([0-9a-f]{16}\.[A-Za-z0-9_-]{22}); Path=\/; HttpOnly; SameSite=Lax$/;

function makeBackends(count: number): Backend[] {
  return Array.from(
    { length: count },
    (_, i) => new Backend(parseBackendUrl(`10.0.0.${i + 1}:80`)),
  );
}

function requestWith(cookie?: string): Request {
  const headers: HeadersInit = cookie === undefined ? {} : { cookie };
  return new Request("http://shop.example/cart", { headers });
}

/** The cookie value the policy asks `backend`'s response to set, or `undefined` for none. */
function setCookieValue(policy: Policy, backend: Backend, request: Request): string | undefined {
  const fields = policy.responseHeaders?.(backend, request);
  if (fields === undefined) return undefined;
  assertEquals(fields.length, 1);
  const [name, value] = fields[0] ?? ["", ""];
  assertEquals(name, "set-cookie");
  const match = COOKIE_FORMAT.exec(value);
  assert(match !== null, `Set-Cookie "${value}"`);
  return match[1];
}

/** Picks once without a cookie and returns the backend and the cookie its response sets. */
function firstVisit(policy: Policy, backends: readonly Backend[]): [Backend, string] {
  const request = requestWith();
  const backend = policy.pick(backends, request);
  assert(backend !== undefined);
  const value = setCookieValue(policy, backend, request);
  assert(value !== undefined);
  return [backend, value];
}

Deno.test("cookie: a client with its cookie sticks to its backend over 1000 requests", () => {
  const backends = makeBackends(4);
  const policy = createCookieAffinity({
    ...DEFAULT_BALANCER_CONFIG.affinityCookie,
    secret: SECRET,
  });
  policy.pick(backends, requestWith()); // move the round-robin cursor off the first backend
  const [home, value] = firstVisit(policy, backends);
  assertEquals(backends.indexOf(home), 1);
  const cookie = `theme=dark; denolb_affinity=${value}; other=1`;
  for (let i = 0; i < 1000; i++) {
    const request = requestWith(cookie);
    const picked = policy.pick(backends, request);
    assertEquals(picked, home, `request ${i}`);
    // The client already holds the right cookie: nothing is set again.
    assertEquals(policy.responseHeaders?.(home, request), undefined);
  }
  // Requests without the cookie still spread round-robin meanwhile.
  const others = Array.from({ length: 4 }, () => policy.pick(backends, requestWith()));
  assertEquals(new Set(others).size, 4);
});

Deno.test("cookie: the value is the backend id and a signature of it, set with the usual attributes", () => {
  const backends = makeBackends(2);
  const policy = createCookieAffinity({
    ...DEFAULT_BALANCER_CONFIG.affinityCookie,
    secret: SECRET,
  });
  const [home, value] = firstVisit(policy, backends);
  assertEquals(value, signCookieValue(backendId(home.url.href), SECRET));
  assertEquals(backendId(home.url.href), backendId("http://10.0.0.1/"));
  const named = createCookieAffinity({
    ...DEFAULT_BALANCER_CONFIG.affinityCookie,
    name: "lb",
    secret: SECRET,
    maxAgeMs: 3_600_500,
  });
  const request = requestWith();
  const picked = named.pick(backends, request);
  assert(picked !== undefined);
  assertEquals(named.responseHeaders?.(picked, request), [[
    "set-cookie",
    `lb=${value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600`,
  ]]);
});

for (
  const [what, makeUnavailable] of [
    ["unhealthy", (backend: Backend) => backend.setHealth("unhealthy")],
    ["draining", (backend: Backend) => backend.setDraining(true)],
  ] as const
) {
  Deno.test(`cookie: a cookie naming a ${what} backend falls back, with a fresh cookie, and sticks again`, () => {
    const backends = makeBackends(3);
    const policy = createCookieAffinity({
      ...DEFAULT_BALANCER_CONFIG.affinityCookie,
      secret: SECRET,
    });
    const [home, value] = firstVisit(policy, backends);
    makeUnavailable(home);
    const request = requestWith(`denolb_affinity=${value}`);
    const fallback = policy.pick(backends, request);
    assert(fallback !== undefined && fallback !== home);
    const fresh = setCookieValue(policy, fallback, request);
    assert(fresh !== undefined && fresh !== value);
    for (let i = 0; i < 50; i++) {
      assertEquals(policy.pick(backends, requestWith(`denolb_affinity=${fresh}`)), fallback);
    }
    // The old cookie leads home again once home is back.
    if (what === "unhealthy") home.setHealth("healthy");
    else home.setDraining(false);
    assertEquals(policy.pick(backends, requestWith(`denolb_affinity=${value}`)), home);
  });
}

Deno.test("cookie: a cookie naming a removed backend falls back with a fresh cookie", () => {
  const backends = makeBackends(3);
  const policy = createCookieAffinity({
    ...DEFAULT_BALANCER_CONFIG.affinityCookie,
    secret: SECRET,
  });
  policy.pick(backends, requestWith());
  const [home, value] = firstVisit(policy, backends);
  const remaining = backends.filter((backend) => backend !== home);
  const request = requestWith(`denolb_affinity=${value}`);
  const picked = policy.pick(remaining, request);
  assert(picked !== undefined && remaining.includes(picked));
  const fresh = setCookieValue(policy, picked, request);
  assert(fresh !== undefined && fresh !== value);
});

Deno.test("cookie: a retry excluding the cookie's backend goes elsewhere and sets a fresh cookie", () => {
  const backends = makeBackends(3);
  const policy = createCookieAffinity({
    ...DEFAULT_BALANCER_CONFIG.affinityCookie,
    secret: SECRET,
  });
  const [home, value] = firstVisit(policy, backends);
  const request = requestWith(`denolb_affinity=${value}`);
  const retry = policy.pick(backends, request, new Set([home]));
  assert(retry !== undefined && retry !== home);
  assert(setCookieValue(policy, retry, request) !== undefined);
});

Deno.test("cookie: a forged or foreign cookie is ignored like none", () => {
  const backends = makeBackends(3);
  const policy = createCookieAffinity({
    ...DEFAULT_BALANCER_CONFIG.affinityCookie,
    secret: SECRET,
  });
  const [home, value] = firstVisit(policy, backends);
  const [id = "", signature = ""] = value.split(".");
  const forged = [
    `${id}.${signature.slice(0, -1)}${signature.endsWith("A") ? "B" : "A"}`,
    `${id}.`,
    id,
    `${backendId(backends[2]?.url.href ?? "")}.${signature}`,
    signCookieValue(id, "another secret, another balancer"),
    "",
    `${value}x`,
  ];
  for (const cookie of forged) {
    // A fresh policy each time, so the round-robin fallback starts at the first backend.
    const fresh = createCookieAffinity({
      ...DEFAULT_BALANCER_CONFIG.affinityCookie,
      secret: SECRET,
    });
    const request = requestWith(`denolb_affinity=${cookie}`);
    const picked = fresh.pick(backends, request);
    assertEquals(picked, backends[0], `cookie "${cookie}"`);
    assert(picked !== undefined);
    assert(setCookieValue(fresh, picked, request) !== undefined, `cookie "${cookie}" replaced`);
  }
  assertEquals(policy.pick(backends, requestWith(`denolb_affinity=${value}`)), home);
});

Deno.test("cookie: policies with the same secret (one per isolate) honour each other's cookies", () => {
  const backends = makeBackends(3);
  const first = createCookieAffinity({ ...DEFAULT_BALANCER_CONFIG.affinityCookie, secret: SECRET });
  first.pick(backends, requestWith());
  const [home, value] = firstVisit(first, backends);
  const second = createCookieAffinity({
    ...DEFAULT_BALANCER_CONFIG.affinityCookie,
    secret: SECRET,
  });
  assertEquals(second.pick(backends, requestWith(`denolb_affinity=${value}`)), home);
  const stranger = createCookieAffinity(DEFAULT_BALANCER_CONFIG.affinityCookie);
  assertEquals(stranger.pick(backends, requestWith(`denolb_affinity=${value}`)), backends[0]);
});

Deno.test("cookie: of several cookies with its name, the valid one counts", () => {
  const backends = makeBackends(3);
  const policy = createCookieAffinity({
    ...DEFAULT_BALANCER_CONFIG.affinityCookie,
    secret: SECRET,
  });
  policy.pick(backends, requestWith());
  policy.pick(backends, requestWith());
  const [home, value] = firstVisit(policy, backends);
  const request = requestWith(`denolb_affinity=stale.x; denolb_affinity=${value}`);
  assertEquals(policy.pick(backends, request), home);
  assertEquals(policy.responseHeaders?.(home, request), undefined);
});

Deno.test("cookie: the process's key fills a configuration without one, and a reload that changes the cookie rebuilds the handler", () => {
  const running = withCookieSecret(DEFAULT_BALANCER_CONFIG, "process-key-0123456789");
  assertEquals(running.affinityCookie.secret, "process-key-0123456789");
  const configured = { ...running, affinityCookie: { ...running.affinityCookie, secret: SECRET } };
  assertEquals(withCookieSecret(configured, "process-key-0123456789"), configured);
  // The same process key on every reload: nothing changed.
  const reloaded = withCookieSecret(DEFAULT_BALANCER_CONFIG, "process-key-0123456789");
  assertEquals(planReload(running, reloaded).isHandlerChanged, false);
  const renamed = { ...running, affinityCookie: { ...running.affinityCookie, name: "sid" } };
  assertEquals(planReload(running, renamed).isHandlerChanged, true);
  const trusting = { ...running, proxy: { ...running.proxy, trustedProxies: ["10.0.0.0/8"] } };
  assertEquals(planReload(running, trusting).isHandlerChanged, true);
});

// ---------------------------------------------------------------------------------------------
// End to end.

/** A backend answering with its name. */
function namedBackend(name: string): TestServer {
  return startServer(() => new Response(name));
}

/** The cookie value a response sets, or `undefined`. */
function setCookieOf(response: Response): string | undefined {
  const [field] = response.headers.getSetCookie();
  if (field === undefined) return undefined;
  const match = COOKIE_FORMAT.exec(field);
  assert(match !== null, `Set-Cookie "${field}"`);
  return match[1];
}

for (const upstream of UPSTREAMS) {
  Deno.test(`cookie: through the balancer a client sticks, then moves with a fresh cookie when its backend fails [${upstream}]`, async () => {
    await using a = namedBackend("a");
    await using b = namedBackend("b");
    await using c = namedBackend("c");
    await using lb = startBalancer([a.url, b.url, c.url], {
      upstream,
      config: (config) => ({
        ...config,
        policy: "cookie",
        affinityCookie: { ...config.affinityCookie, secret: SECRET },
      }),
    });
    await (await fetch(lb.url)).text(); // the next client starts on b
    const first = await fetch(lb.url);
    assertEquals(await first.text(), "b");
    const value = setCookieOf(first);
    assert(value !== undefined, "the first response sets the cookie");
    for (let i = 0; i < 30; i++) {
      const response = await fetch(lb.url, { headers: { cookie: `denolb_affinity=${value}` } });
      assertEquals(await response.text(), "b");
      assertEquals(response.headers.getSetCookie(), [], "no cookie set again");
    }
    lb.pool.backends[1]?.setHealth("unhealthy");
    const moved = await fetch(lb.url, { headers: { cookie: `denolb_affinity=${value}` } });
    const movedTo = await moved.text();
    assert(movedTo !== "b");
    const fresh = setCookieOf(moved);
    assert(fresh !== undefined && fresh !== value, "a fresh cookie for the new backend");
    for (let i = 0; i < 10; i++) {
      const response = await fetch(lb.url, { headers: { cookie: `denolb_affinity=${fresh}` } });
      assertEquals(await response.text(), movedTo);
    }
    const forged = await fetch(lb.url, {
      headers: { cookie: `denolb_affinity=${value.slice(0, -2)}xx` },
    });
    await forged.text();
    assert(setCookieOf(forged) !== undefined, "a forged cookie is replaced");
  });
}

Deno.test("cookie: with --workers 2 and no --cookie-secret, both isolates honour the same cookie", async () => {
  const seen: Array<{ readonly backend: string; readonly isolate: string }> = [];
  const backend = (name: string) =>
    startServer((request) => {
      if (new URL(request.url).pathname !== "/health") {
        const requestId = request.headers.get("x-request-id") ?? "";
        seen.push({ backend: name, isolate: requestId.split("-")[0] ?? "" });
      }
      return new Response(name);
    });
  await using a = backend("a");
  await using b = backend("b");
  await using c = backend("c");
  const config = await parseBalancerArgs([
    "--port",
    "0",
    "--admin",
    "off",
    "--workers",
    "2",
    "--policy",
    "cookie",
    "--log-level",
    "error",
    "--access-log",
    "off",
    "--backend",
    `${a.url.href},${b.url.href},${c.url.href}`,
  ], () => undefined);
  const lb = await startLb(config, { workerEntry: new URL("../../main.ts", import.meta.url) });
  try {
    assertEquals(lb.isolateCount, 2);
    const first = await fetch(lb.url, { headers: { connection: "close" } });
    const home = await first.text();
    const value = setCookieOf(first);
    assert(value !== undefined);
    seen.length = 0;
    // Separate connections, so the kernel spreads them over both isolates' listeners.
    for (let i = 0; i < 40; i++) {
      const response = await fetch(lb.url, {
        headers: { connection: "close", cookie: `denolb_affinity=${value}` },
      });
      assertEquals(await response.text(), home, `request ${i}`);
      assertEquals(response.headers.getSetCookie(), []);
    }
    const isolates = new Set(seen.map((s) => s.isolate));
    assertEquals(isolates.size, 2, "both isolates served the cookie's requests");
    assertEquals(new Set(seen.map((s) => s.backend)), new Set([home]));
    assertMatch(value, /^[0-9a-f]{16}\./);
  } finally {
    await lb.drain();
  }
});
