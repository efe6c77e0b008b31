import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { createPolicy } from "../../lib/policies/registry.ts";
import { createHash } from "../../lib/policies/hash.ts";
import { parseHashKey } from "../../lib/shared/hash_key.ts";
import { DEFAULT_BALANCER_CONFIG } from "../../lib/config/config.ts";
import { assert, assertEquals, assertStrictEquals, assertThrows } from "../support/assert.ts";

function makeBackends(count: number): Backend[] {
  return Array.from(
    { length: count },
    (_, i) => new Backend(parseBackendUrl(`10.0.0.${i + 1}:80`)),
  );
}

function requestFor(i: number): Request {
  return new Request(`http://127.0.0.1:9090/item/${i}`);
}

Deno.test("hash: removing one of 5 backends moves only its keys, about 1/5 of them", () => {
  const backends = makeBackends(5);
  const keys = 10_000;
  const original = createHash({ kind: "path" });
  const before = Array.from({ length: keys }, (_, i) => original.pick(backends, requestFor(i)));
  const removed = backends[2];
  const remaining = backends.filter((backend) => backend !== removed);
  const policy = createHash({ kind: "path" });
  let moved = 0;
  for (let i = 0; i < keys; i++) {
    const after = policy.pick(remaining, requestFor(i));
    if (after === before[i]) continue;
    moved++;
    assertStrictEquals(before[i], removed, `key ${i} moved though its backend stayed`);
  }
  const share = moved / keys;
  assert(share > 0.15 && share < 0.25, `moved ${moved} of ${keys} keys (${share})`);
  assert(moved === before.filter((backend) => backend === removed).length);
});

Deno.test("hash: a backend marked unhealthy hands its keys on and takes them back", () => {
  const backends = makeBackends(4);
  const policy = createHash({ kind: "path" });
  const first = Array.from({ length: 200 }, (_, i) => policy.pick(backends, requestFor(i)));
  backends[0]?.setHealth("unhealthy");
  const during = Array.from({ length: 200 }, (_, i) => policy.pick(backends, requestFor(i)));
  assert(
    during.every((backend, i) =>
      backend !== backends[0] && (first[i] === backends[0] || backend === first[i])
    ),
  );
  backends[0]?.setHealth("healthy");
  assertEquals(Array.from({ length: 200 }, (_, i) => policy.pick(backends, requestFor(i))), first);
});

Deno.test("hash: header, cookie and client-ip keys send equal keys to the same backend", () => {
  const backends = makeBackends(8);
  const cases: Array<[string, (i: number) => [Request, { clientIp: string }]]> = [
    [
      "header:X-User",
      (
        i,
      ) => [new Request("http://h/", { headers: { "x-user": `u${i}` } }), { clientIp: "1.1.1.1" }],
    ],
    [
      "cookie:sid",
      (
        i,
      ) => [new Request("http://h/", { headers: { cookie: `a=1; sid=s${i}` } }), {
        clientIp: "1.1.1.1",
      }],
    ],
    ["client-ip", (i) => [new Request(`http://h/${i}`), { clientIp: `192.0.2.${i}` }]],
  ];
  for (const [text, make] of cases) {
    const key = parseHashKey(text);
    assert(key !== undefined);
    const policy = createHash(key);
    const seen = new Set<Backend | undefined>();
    for (let i = 0; i < 50; i++) {
      const [request, context] = make(i);
      const picked = policy.pick(backends, request, undefined, context);
      const [again, againContext] = make(i);
      assertStrictEquals(policy.pick(backends, again, undefined, againContext), picked, text);
      seen.add(picked);
    }
    assert(seen.size >= 4, `${text}: 50 keys reached only ${seen.size} of 8 backends`);
  }
});

Deno.test("hash: requests without the key go round-robin", () => {
  const backends = makeBackends(3);
  const policy = createHash({ kind: "header", name: "x-user" });
  const picks = Array.from({ length: 6 }, () => {
    const picked = policy.pick(backends, new Request("http://h/"));
    return picked === undefined ? -1 : backends.indexOf(picked);
  });
  assertEquals(picks, [0, 1, 2, 0, 1, 2]);
});

Deno.test("parseHashKey() accepts the four forms and rejects others", () => {
  assertEquals(parseHashKey("path"), { kind: "path" });
  assertEquals(parseHashKey("client-ip"), { kind: "client-ip" });
  assertEquals(parseHashKey("cookie:sid"), { kind: "cookie", name: "sid" });
  for (const bad of ["", "ip", "header:", "cookie:a b", "query:x", "header"]) {
    assertEquals(parseHashKey(bad), undefined, bad);
  }
});

Deno.test("createPolicy() rejects a bad hash key with a RangeError naming it", () => {
  assertThrows(
    () => createPolicy("hash", { ...DEFAULT_BALANCER_CONFIG, hashKey: "query:x" }),
    RangeError,
    'Invalid --hash-key "query:x": must be client-ip, path, header:NAME or cookie:NAME',
  );
});

Deno.test("hash: the ring is the same whatever order the backends arrive in", () => {
  const backends = makeBackends(6);
  const shuffled = [backends[3], backends[0], backends[5], backends[1], backends[4], backends[2]]
    .filter((backend) => backend !== undefined);
  const first = createHash({ kind: "path" });
  const second = createHash({ kind: "path" });
  for (let i = 0; i < 1000; i++) {
    assertStrictEquals(second.pick(shuffled, requestFor(i)), first.pick(backends, requestFor(i)));
  }
});
