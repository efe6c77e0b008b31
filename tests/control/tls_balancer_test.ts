import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import { startBalancer } from "../../lib/control/balancer.ts";
import { loadCertificateFiles } from "../../lib/control/certificates.ts";
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { startServer } from "../support/servers.ts";
import { curl, makeTestCa, presentedCn, run } from "../support/tls.ts";

/** A backend that answers with the forwarding headers it received. */
function startEchoBackend() {
  return startServer((request) =>
    Response.json({
      host: request.headers.get("host"),
      proto: request.headers.get("x-forwarded-proto"),
      forwarded: request.headers.get("forwarded"),
    })
  );
}

async function startTlsBalancer(args: string[], loadArgs?: () => string[]) {
  const parse = (a: string[]) =>
    parseBalancerArgs([
      "--port",
      "0",
      "--admin",
      "off",
      "--log-level",
      "fatal",
      "--access-log",
      "off",
      "--forwarded",
      "on",
      ...a,
    ], () => undefined);
  const config = await parse(args);
  return await startBalancer(config, {
    clock: new FakeClock(),
    ...(loadArgs === undefined ? {} : { loadConfig: () => parse(loadArgs()) }),
    acmeChallenge: (token) => token === "tok123" ? "tok123.thumbprint" : undefined,
  });
}

Deno.test("HTTPS balancer: h2 and http/1.1 reach the backend with X-Forwarded-Proto and Forwarded https, and HSTS", async () => {
  await using ca = await makeTestCa();
  const leaf = await ca.issue(["shop.test"]);
  await using backend = startEchoBackend();
  await using balancer = await startTlsBalancer([
    "--backend",
    backend.url.href,
    "--tls-cert",
    leaf.certFile,
    "--tls-key",
    leaf.keyFile,
    "--hsts",
    "31536000",
  ]);
  assertEquals(balancer.url.protocol, "https:");
  const port = Number(balancer.url.port);
  const url = `https://shop.test:${port}/a`;
  const resolve = `shop.test:${port}:127.0.0.1`;
  for (const http of ["2", "1.1"] as const) {
    const answer = await curl(url, { http, cacert: ca.certFile, resolve });
    assertEquals(answer.version, http);
    assertEquals(answer.status, 200);
    assertEquals(answer.headers.get("strict-transport-security"), "max-age=31536000");
    const seen = JSON.parse(answer.body);
    assertEquals(seen.host, `shop.test:${port}`, `HTTP/${http}`);
    assertEquals(seen.proto, "https", `HTTP/${http}`);
    assertEquals(seen.forwarded, `for=127.0.0.1;proto=https;host="shop.test:${port}"`);
  }
});

Deno.test("--redirect-http answers 308 to https, and ACME challenges through the hook", async () => {
  await using ca = await makeTestCa();
  const leaf = await ca.issue(["shop.test"]);
  await using backend = startEchoBackend();
  await using balancer = await startTlsBalancer([
    "--backend",
    backend.url.href,
    "--tls-cert",
    leaf.certFile,
    "--tls-key",
    leaf.keyFile,
    "--redirect-http",
    "127.0.0.1:0",
  ]);
  const redirectUrl = balancer.redirectUrl;
  assert(redirectUrl !== undefined);
  const port = balancer.url.port;
  const moved = await curl(new URL("/p/q?x=1", redirectUrl).href, { headers: ["Host: shop.test"] });
  assertEquals(moved.status, 308);
  assertEquals(moved.headers.get("location"), `https://shop.test:${port}/p/q?x=1`);
  const challenge = await fetch(new URL("/.well-known/acme-challenge/tok123", redirectUrl));
  assertEquals([challenge.status, await challenge.text()], [200, "tok123.thumbprint"]);
  const unknown = await fetch(new URL("/.well-known/acme-challenge/nope", redirectUrl));
  await unknown.body?.cancel();
  assertEquals(unknown.status, 404);
  // No HSTS over plain HTTP (RFC 6797 section 7.2).
  assertEquals(moved.headers.get("strict-transport-security"), undefined);
});

Deno.test("HTTPS balancer: a reload serves a renewed certificate file to new connections", async () => {
  await using ca = await makeTestCa();
  const first = await ca.issue(["shop.test"], { file: "site" });
  await using backend = startEchoBackend();
  const args = [
    "--backend",
    backend.url.href,
    "--tls-cert",
    first.certFile,
    "--tls-key",
    first.keyFile,
  ];
  await using balancer = await startTlsBalancer(args, () => args);
  const port = Number(balancer.url.port);
  assertEquals(await presentedCn(port, "shop.test"), "shop.test");
  // Renewed in place: same file names, new certificate and key.
  await ca.issue(["renewed.test", "shop.test"], { file: "site" });
  const outcome = await balancer.reload();
  assertEquals(outcome, { ok: true, changes: ["certificates"], needsRestart: [] });
  assertEquals(await presentedCn(port, "shop.test"), "renewed.test");
  // Nothing changed: nothing rebound.
  assertEquals(await balancer.reload(), { ok: true, changes: [], needsRestart: [] });
});

Deno.test("HTTPS balancer: a reload with a key that is not the certificate's changes nothing", async () => {
  await using ca = await makeTestCa();
  const good = await ca.issue(["shop.test"]);
  const other = await ca.issue(["other.test"]);
  await using backend = startEchoBackend();
  let args = [
    "--backend",
    backend.url.href,
    "--tls-cert",
    good.certFile,
    "--tls-key",
    good.keyFile,
  ];
  await using balancer = await startTlsBalancer(args, () => args);
  args = ["--backend", backend.url.href, "--tls-cert", good.certFile, "--tls-key", other.keyFile];
  const outcome = await balancer.reload();
  assertEquals(outcome.ok, false);
  assertStringIncludes(JSON.stringify(outcome), "is not the key of");
  assertEquals(await presentedCn(Number(balancer.url.port), "shop.test"), "shop.test");
});

Deno.test("loadCertificateFiles() names what is wrong with a file", async () => {
  await using ca = await makeTestCa();
  const leaf = await ca.issue(["a.test", "*.b.test"]);
  const [loaded] = await loadCertificateFiles([leaf.certFile], [leaf.keyFile]);
  assertEquals(loaded?.names, ["a.test", "*.b.test"]);
  await assertRejects(
    () => loadCertificateFiles([leaf.keyFile], [leaf.keyFile]),
    Error,
    `Invalid --tls-cert "${leaf.keyFile}": no PEM certificate in it`,
  );
  await assertRejects(
    () => loadCertificateFiles([leaf.certFile], [leaf.certFile]),
    Error,
    `Invalid --tls-key "${leaf.certFile}": not a PEM private key`,
  );
  await assertRejects(
    () => loadCertificateFiles([`${ca.dir}/missing.pem`], [leaf.keyFile]),
    Error,
    `Cannot read --tls-cert "${ca.dir}/missing.pem"`,
  );
});

Deno.test("HTTPS balancer: HTTP/2 advertises its stream and header-list limits, and a header list over them is 431 that reaches no backend", async () => {
  await using ca = await makeTestCa();
  const leaf = await ca.issue(["shop.test"]);
  let reached = 0;
  await using backend = startServer((request) => {
    // Health probes aside.
    if (request.headers.has("x-small") || request.headers.has("x-big")) reached++;
    return new Response("ok");
  });
  await using balancer = await startTlsBalancer([
    "--backend",
    backend.url.href,
    "--tls-cert",
    leaf.certFile,
    "--tls-key",
    leaf.keyFile,
  ]);
  const url = `https://127.0.0.1:${balancer.url.port}/`;
  // nghttp (nghttp2-client) prints the frames it receives, the server's SETTINGS first.
  const small = await run("nghttp", ["-nv", "-H", `x-small: ${"a".repeat(8_000)}`, url]);
  assertEquals(small.code, 0, small.stderr);
  assertStringIncludes(small.stdout, "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):200");
  assertStringIncludes(small.stdout, "SETTINGS_MAX_HEADER_LIST_SIZE(0x06):16384");
  assertStringIncludes(small.stdout, ":status: 200");
  assertEquals(reached, 1);
  const big = await run("nghttp", ["-nv", "-H", `x-big: ${"a".repeat(40_000)}`, url]);
  assertStringIncludes(big.stdout, ":status: 431");
  assertEquals(reached, 1, "the oversized request reached the backend");
});
