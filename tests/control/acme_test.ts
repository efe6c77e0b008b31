/**
 * Automatic HTTPS end to end against Debian's `pebble` (a local ACME CA) on 127.0.0.1, its HTTP-01
 * validation pointed at the balancer's `--redirect-http` port and its DNS at a `dnsmasq` that maps
 * the test domains to 127.0.0.1: a first certificate, the proxy port serving TLS with it (the
 * backend sees https and the real client), the state directory's modes, a renewal forced by the
 * fake clock swapping the served certificate while an open connection carries on, a failing CA
 * (pebble stopped: the previous certificate stays), a restart that serves the saved certificate
 * at once, two managers sharing a state directory, and two data-plane isolates serving it.
 *
 * @module
 */
import type { LogRecord } from "@logtape/logtape";
import { parseBalancerArgs } from "../../lib/config/config.ts";
import {
  type AcmeConfig,
  AcmeManager,
  type CertificatePair,
  CHECK_INTERVAL_MS,
  LOCK_RETRY_MS,
  LONGEST_RETRY_MS,
} from "../../lib/control/acme.ts";
import { orderCertificate } from "../../lib/control/acme_order.ts";
import { FIRST_CERTIFICATE_TIMEOUT_MS } from "../../lib/control/automatic_https.ts";
import { runBalancer, startBalancer } from "../../lib/control/balancer.ts";
import { createRedirectHandler } from "../../lib/data/redirect.ts";
import { assert, assertEquals, assertNotEquals, assertStringIncludes } from "../support/assert.ts";
import { captureLogs } from "../support/capture_logs.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { hasPebble, startPebble } from "../support/pebble.ts";
import { startServer, unusedPort } from "../support/servers.ts";
import { curl, openRawTlsClient } from "../support/tls.ts";
import { waitUntil } from "../support/wait.ts";

const MAIN = new URL("../../main.ts", import.meta.url);
const DOMAINS = ["a.test", "www.a.test"];
const ORDER_WAIT = { timeoutMs: 30_000, intervalMs: 20 };
const ignore = !hasPebble();

/**
 * A scratch directory, pebble for DOMAINS validating on a reserved `--redirect-http` port, and a
 * backend answering with the forwarding headers it got.
 */
async function setUp() {
  const dir = await Deno.makeTempDir({ prefix: "denolb-acme-" });
  const port = unusedPort();
  const redirectPort = unusedPort();
  const pebble = await startPebble({ httpPort: redirectPort, domains: DOMAINS, dir });
  const rootPem = await pebble.rootPem();
  const rootFile = `${dir}/root.pem`;
  await Deno.writeTextFile(rootFile, rootPem);
  const backend = startServer((request) =>
    Response.json({
      proto: request.headers.get("x-forwarded-proto"),
      for: request.headers.get("x-forwarded-for"),
    })
  );
  return {
    dir,
    port,
    redirectPort,
    pebble,
    rootPem,
    rootFile,
    backend,
    args: (extra: readonly string[] = []) => [
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--redirect-http",
      `127.0.0.1:${redirectPort}`,
      "--backend",
      backend.url.href,
      // The tests move the fake clock by hours for renewals: health probes on that clock (their
      // timeouts fire in the same jump) would mark the backend down and turn answers into 503.
      "--health-interval",
      "24h",
      "--admin",
      "off",
      "--access-log",
      "off",
      "--acme-domain",
      DOMAINS.join(","),
      "--acme-directory",
      pebble.directoryUrl,
      "--acme-ca-cert",
      pebble.tlsCaFile,
      "--acme-email",
      "ops@a.test",
      "--state-dir",
      `${dir}/state`,
      ...extra,
    ],
    async [Symbol.asyncDispose]() {
      await backend.close();
      await pebble[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** The serial number of a PEM certificate (its leaf). */
async function serialOf(pem: string): Promise<string> {
  const child = new Deno.Command("openssl", {
    args: ["x509", "-noout", "-serial"],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(pem));
  await writer.close();
  return new TextDecoder().decode((await child.output()).stdout).trim();
}

/** The serial number of the certificate served on `port` to SNI `a.test`. */
async function servedSerial(port: number): Promise<string> {
  const output = await new Deno.Command("openssl", {
    args: ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "a.test"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  return await serialOf(new TextDecoder().decode(output.stdout));
}

function modeOf(path: string): number {
  return (Deno.statSync(path).mode ?? 0) & 0o777;
}

function errorText(record: LogRecord): string {
  return String(record.properties.error);
}

/** What the test backend saw: the forwarding headers of the request. */
interface Forwarded {
  readonly proto: string | null;
  readonly for: string | null;
}

Deno.test({
  name:
    "ACME: the proxy port serves TLS with the certificate, renewed under an open connection, kept when the CA fails, served at once after a restart",
  ignore,
  async fn() {
    await using logs = await captureLogs({ level: "info" });
    await using env = await setUp();
    const clock = new FakeClock();
    const startMs = Date.now();
    // Wall time is the fake clock plus a skew the test moves forward: years pass for the
    // certificates while the loop sleeps its hour, and the balancer's other timers (health
    // checks on the same fake clock) are not walked through those years one probe at a time.
    let skewMs = 0;
    const now = () => startMs + skewMs + clock.now();
    const lists: (readonly CertificatePair[])[] = [];
    // The fake clock jumps hours ahead for the renewal: the idle keep-alive connection kept open
    // across it must not time out meanwhile.
    const config = await parseBalancerArgs(
      env.args(["--workers", "1", "--keepalive-timeout", "24h"]),
      () => undefined,
    );
    // Nothing saved yet: the start waits for the first order, answered on --redirect-http.
    const lb = await startBalancer(config, {
      clock,
      now,
      onCertificates: (list) => lists.push(list),
    });
    try {
      const acme = lb.acme;
      assert(acme !== undefined);
      assertEquals(lists.length, 1, "the start waited for the first certificate");
      const first = lists[0]?.[0];
      assert(first !== undefined);
      assertEquals([...(first.names ?? [])].sort(), [...DOMAINS].sort());
      assertEquals(lb.metrics.eventCount("acme-order-succeeded"), 1);
      assertEquals(logs.find("Certificate obtained").length, 1);
      assertEquals(lb.url.href, `https://127.0.0.1:${env.port}/`);
      assertEquals(await servedSerial(env.port), await serialOf(first.certPem));

      // The proxy port itself: the backend sees https, and the client's own address (curl
      // connects from 127.0.0.2, so a relay through loopback would show as 127.0.0.1).
      for (const name of DOMAINS) {
        const response = await curl(`https://${name}:${env.port}/`, {
          cacert: env.rootFile,
          resolve: `${name}:${env.port}:127.0.0.1`,
          sourceAddress: "127.0.0.2",
        });
        assertEquals(response.status, 200);
        assertEquals(JSON.parse(response.body), { proto: "https", for: "127.0.0.2" });
      }
      // The plain-HTTP listener redirects everything but the challenge to https.
      const redirectUrl = lb.redirectUrl;
      assert(redirectUrl !== undefined);
      const redirected = await curl(`http://a.test:${redirectUrl.port}/x?y=1`, {
        resolve: `a.test:${redirectUrl.port}:127.0.0.1`,
      });
      assertEquals(redirected.status, 308);
      assertEquals(redirected.headers.get("location"), `https://a.test:${env.port}/x?y=1`);

      // Private: the directories 0700, the keys and certificates 0600.
      const state = `${env.dir}/state`;
      for (const dir of [state, `${state}/acme`, `${state}/acme/certificates/a.test`]) {
        assertEquals(modeOf(dir).toString(8), "700", dir);
      }
      const accounts = [...Deno.readDirSync(`${state}/acme/accounts`)].map((e) => e.name);
      assertEquals(accounts.length, 1);
      for (
        const file of [
          `${state}/acme/accounts/${accounts[0]}`,
          `${state}/acme/certificates/a.test/cert.pem`,
          `${state}/acme/certificates/a.test/key.pem`,
        ]
      ) {
        assertEquals(modeOf(file).toString(8), "600", file);
      }

      // A keep-alive connection opened with the first certificate, by a raw TLS client.
      using open = await openRawTlsClient(env.port, "a.test", [env.rootPem]);
      const before = await open.get("/before");
      assertEquals(before.status, 200);
      assertEquals((JSON.parse(before.body) as Forwarded).proto, "https");

      // Renewal: the fake clock reaches a third of the lifetime before the end.
      const renewAt = acme.status.renewAtMs;
      assert(renewAt !== undefined);
      skewMs += renewAt - now() + 1;
      await clock.advance(CHECK_INTERVAL_MS);
      await waitUntil("the renewed certificate", () => lists.length === 2, ORDER_WAIT);
      const second = lists[1]?.[0];
      assert(second !== undefined);
      assert(second.certPem !== first.certPem, "renewal brought a new certificate");
      assertEquals(logs.find("Certificate renewed").length, 1);
      assertEquals(
        await Deno.readTextFile(`${state}/acme/certificates/a.test/cert.pem`),
        second.certPem,
      );
      // New connections get the new certificate; the open one carries on.
      const firstSerial = await serialOf(first.certPem);
      const secondSerial = await serialOf(second.certPem);
      assertNotEquals(firstSerial, secondSerial);
      await waitUntil(
        "the new certificate served",
        async () => await servedSerial(env.port) === secondSerial,
        ORDER_WAIT,
      );
      assertEquals(logs.find("TLS certificates replaced").length, 1);
      const after = await open.get("/after");
      assertEquals(after.status, 200);
      assertEquals((JSON.parse(after.body) as Forwarded).proto, "https");
      using fresh = await openRawTlsClient(env.port, "www.a.test", [env.rootPem]);
      assertEquals((await fresh.get("/")).status, 200);

      // A failing CA: renewal fails, the previous certificate stays in service.
      await env.pebble.stop();
      const nextRenewAt = acme.status.renewAtMs;
      assert(nextRenewAt !== undefined);
      skewMs += nextRenewAt - now() + 1;
      await clock.advance(CHECK_INTERVAL_MS);
      // The fake hour passes in steps (the health checks share the clock), so the loop may
      // fail and retry more than once meanwhile: every failure is counted, logged, and leaves
      // the previous certificate in service.
      await waitUntil(
        "a failed renewal",
        () => lb.metrics.eventCount("acme-order-failed") >= 1,
        ORDER_WAIT,
      );
      const failures = logs.find(
        "Certificate renewal failed; the previous certificate is served",
        "error",
      );
      assert(failures.length >= 1);
      assertEquals(failures.length, lb.metrics.eventCount("acme-order-failed"));
      assertStringIncludes(
        errorText(failures[0] as LogRecord),
        `Cannot reach the ACME CA at ${env.pebble.directoryUrl}: `,
      );
      assertStringIncludes(errorText(failures[0] as LogRecord), "Connection refused");
      assertEquals(lists.length, 2, "no certificate list replaced the previous one");
      assertEquals(acme.certificates[0]?.certPem, second.certPem);
      assertEquals(acme.status.failures, failures.length);
      assertEquals(await servedSerial(env.port), secondSerial);
      // Retried a minute (or more, after several failures) later, failing again.
      const failed = lb.metrics.eventCount("acme-order-failed");
      await clock.advance(LONGEST_RETRY_MS);
      await waitUntil(
        "another failed renewal",
        () => lb.metrics.eventCount("acme-order-failed") > failed,
        ORDER_WAIT,
      );
      assertEquals(lists.length, 2);
      const metricsText = lb.metrics.render();
      assertStringIncludes(metricsText, 'denolb_acme_orders_total{outcome="succeeded"} 2');
      assertStringIncludes(metricsText, 'denolb_acme_orders_total{outcome="failed"} ');
    } finally {
      await lb.drain();
    }

    // A restart with the CA still down: the saved certificate is served at once, nothing ordered.
    logs.clear();
    const restartClock = new FakeClock();
    const restarted: (readonly CertificatePair[])[] = [];
    const again = await startBalancer(config, {
      clock: restartClock,
      now: () => startMs + restartClock.now(),
      onCertificates: (list) => restarted.push(list),
    });
    try {
      assertEquals(restarted.length, 1, "the saved certificate was served during the start");
      const saved = await Deno.readTextFile(`${env.dir}/state/acme/certificates/a.test/cert.pem`);
      assertEquals(restarted[0]?.[0]?.certPem, saved);
      assertEquals(await servedSerial(env.port), await serialOf(saved));
      await waitUntil("the first check", () => restartClock.pendingSleeps > 0);
      assertEquals(logs.find("Certificate loaded from the state directory").length, 1);
      assertEquals(logs.find("Waiting for the first certificate before serving HTTPS").length, 0);
      assertEquals(logs.find("Renewing certificate").length, 0);
      assertEquals(again.acme?.status.failures, 0);
    } finally {
      await again.drain();
    }
  },
});

Deno.test({
  name: "ACME: two managers sharing a state directory order one certificate between them",
  ignore,
  async fn() {
    await using _logs = await captureLogs({ level: "warning" });
    await using env = await setUp();
    const config = await parseBalancerArgs(env.args(), () => undefined);
    const acmeConfig: AcmeConfig = config;
    let orders = 0;
    const managers: AcmeManager[] = [];
    // The proxy port's challenge answers, from whichever manager is proving a token.
    await using _responder = serveChallengesOn(env.redirectPort, (token) => {
      for (const manager of managers) {
        const answer = manager.challengeResponse(token);
        if (answer !== undefined) return answer;
      }
      return undefined;
    });
    const clocks = [new FakeClock(), new FakeClock()];
    const lists: (readonly CertificatePair[])[][] = [[], []];
    for (const [index, clock] of clocks.entries()) {
      managers.push(
        await AcmeManager.open(acmeConfig, {
          clock,
          onCertificates: (list) => lists[index]?.push(list),
          onChallenges: () => {},
          order: (options) => {
            orders++;
            return orderCertificate(options);
          },
        }),
      );
    }
    try {
      for (const manager of managers) manager.start();
      await waitUntil(
        "one manager's certificate",
        () => (lists[0]?.length ?? 0) + (lists[1]?.length ?? 0) >= 1,
        ORDER_WAIT,
      );
      // The other one waited for the lock (or found the certificate saved): a few seconds on.
      for (const clock of clocks) await clock.advance(5_000);
      await waitUntil(
        "both managers' certificates",
        () => lists[0]?.length === 1 && lists[1]?.length === 1,
        ORDER_WAIT,
      );
      assertEquals(orders, 1);
      assertEquals(lists[0]?.[0]?.[0]?.certPem, lists[1]?.[0]?.[0]?.certPem);
    } finally {
      for (const manager of managers) await manager.stop();
    }
  },
});

Deno.test({
  name: "ACME: while another process holds the order lock nothing is ordered; once it dies, one is",
  ignore,
  async fn() {
    await using logs = await captureLogs({ level: "debug" });
    await using env = await setUp();
    const config = await parseBalancerArgs(env.args(), () => undefined);
    let orders = 0;
    const lists: (readonly CertificatePair[])[] = [];
    const clock = new FakeClock();
    const manager = await AcmeManager.open(config, {
      clock,
      onCertificates: (list) => lists.push(list),
      onChallenges: () => {},
      order: (options) => {
        orders++;
        return orderCertificate(options);
      },
    });
    await using _responder = serveChallengesOn(
      env.redirectPort,
      (token) => manager.challengeResponse(token),
    );
    // Another process takes the lock and never lets go (until it is killed).
    const holder = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `const file = Deno.openSync(${JSON.stringify(`${env.dir}/state/acme/order.lock`)}, ` +
        `{ write: true, create: true }); file.lockSync(true); console.log("locked"); setInterval(() => {}, 1000);`,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    try {
      const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
      assertEquals((await reader.read()).value?.trim(), "locked");
      reader.releaseLock();
      manager.start();
      const waiting = "Another process is ordering the certificate; waiting for it";
      await waitUntil("the manager to find the lock taken", () => logs.find(waiting).length === 1);
      await clock.advance(LOCK_RETRY_MS);
      await waitUntil("a second look", () => logs.find(waiting).length === 2);
      // Said at info once, then at debug.
      assertEquals(logs.find(waiting).map((record) => record.level), ["info", "debug"]);
      assertEquals(orders, 0);
      assertEquals(lists.length, 0);
      // A crash releases the lock (the kernel drops a dead process's flock).
      holder.kill("SIGKILL");
      await holder.status;
      await clock.advance(LOCK_RETRY_MS);
      await waitUntil("the certificate", () => lists.length === 1, ORDER_WAIT);
      assertEquals(orders, 1);
    } finally {
      try {
        holder.kill("SIGKILL");
      } catch {
        // Already ended.
      }
      await holder.status;
      await holder.stdout.cancel().catch(() => {});
      await manager.stop();
    }
  },
});

Deno.test({
  name: "ACME: with two data-plane isolates, both serve the certificate on the proxy port",
  ignore,
  async fn() {
    await using _logs = await captureLogs({ level: "warning" });
    await using env = await setUp();
    const lists: (readonly CertificatePair[])[] = [];
    const config = await parseBalancerArgs(
      env.args(["--workers", "2", "--admin", "127.0.0.1:0"]),
      () => undefined,
    );
    await using lb = await startBalancer(config, {
      clock: new FakeClock(),
      workerEntry: MAIN,
      onCertificates: (list) => lists.push(list),
    });
    assertEquals(lb.isolateCount, 2);
    assertEquals(lists.length, 1);
    const adminUrl = lb.adminUrl;
    assert(adminUrl !== undefined);
    // Connections held open together, so the kernel spreads them over both isolates' sockets
    // (all 16 on one of two: 1 in 32,768); each completed a handshake and a request.
    const clients = await Promise.all(
      Array.from({ length: 16 }, () => openRawTlsClient(env.port, "a.test", [env.rootPem])),
    );
    try {
      for (const client of clients) {
        const response = await client.get("/");
        assertEquals(response.status, 200);
        assertEquals((JSON.parse(response.body) as Forwarded).proto, "https");
      }
      let isolates: { id: string; connections: number }[] = [];
      await waitUntil("both isolates' connection counts", async () => {
        const status = await (await fetch(new URL("/status", adminUrl))).json();
        isolates = status.isolates;
        return isolates.reduce((sum, i) => sum + i.connections, 0) >= clients.length;
      }, { intervalMs: 50 });
      assertEquals(isolates.length, 2);
      assert(isolates.every((i) => i.connections > 0), JSON.stringify(isolates));
    } finally {
      for (const client of clients) client[Symbol.dispose]();
    }
  },
});

/** A plain HTTP server on `port` that answers HTTP-01 challenges as `--redirect-http` does. */
function serveChallengesOn(
  port: number,
  lookup: (token: string) => string | undefined,
): AsyncDisposable {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port, onListen: () => {} },
    createRedirectHandler({ httpsPort: 443, acmeChallenge: lookup }),
  );
  return { [Symbol.asyncDispose]: () => server.shutdown() };
}

/** A configuration whose CA refuses connections (nothing listens on its port). */
async function unreachableCaConfig(dir: string, redirectPort: number) {
  return await parseBalancerArgs([
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--redirect-http",
    `127.0.0.1:${redirectPort}`,
    "--backend",
    "http://127.0.0.1:9",
    "--admin",
    "off",
    "--access-log",
    "off",
    "--workers",
    "1",
    "--acme-domain",
    "a.test",
    "--acme-directory",
    `https://127.0.0.1:${unusedPort()}/dir`,
    "--state-dir",
    `${dir}/state`,
  ], () => undefined);
}

Deno.test("ACME: a first start without a certificate fails after its bounded wait, naming the CA's error", async () => {
  await using logs = await captureLogs({ level: "info" });
  const dir = await Deno.makeTempDir({ prefix: "denolb-acme-wait-" });
  try {
    const redirectPort = unusedPort();
    const config = await unreachableCaConfig(dir, redirectPort);
    const clock = new FakeClock();
    const starting = startBalancer(config, { clock });
    const outcome = starting.then(() => "started", (error: Error) => error.message);
    // The order failed and waits for its retry; the start waits for the certificate.
    await waitUntil(
      "the first failed order",
      () =>
        logs.find("Certificate order failed; there is no certificate to serve yet", "error")
          .length === 1,
    );
    // Meanwhile the challenge listener answers: an unknown token is a 404, not a redirect.
    const challenge = await fetch(`http://127.0.0.1:${redirectPort}/.well-known/acme-challenge/x`);
    await challenge.body?.cancel();
    assertEquals(challenge.status, 404);
    await clock.advance(FIRST_CERTIFICATE_TIMEOUT_MS);
    const message = await outcome;
    assertStringIncludes(message, "No ACME certificate for a.test from https://127.0.0.1:");
    assertStringIncludes(message, "within 5m: Cannot reach the ACME CA at ");
    assertStringIncludes(
      message,
      `(the CA validates over HTTP-01 on --redirect-http 127.0.0.1:${redirectPort}, which it ` +
        "must reach on port 80)",
    );
    // Nothing is left listening.
    Deno.listen({ hostname: "127.0.0.1", port: redirectPort }).close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ACME: a stop while the start waits for its first certificate is an orderly stop", async () => {
  await using logs = await captureLogs({ level: "info" });
  const dir = await Deno.makeTempDir({ prefix: "denolb-acme-stop-" });
  try {
    const redirectPort = unusedPort();
    const config = await unreachableCaConfig(dir, redirectPort);
    const stop = new AbortController();
    const running = runBalancer(config, stop.signal, { clock: new FakeClock() });
    await waitUntil(
      "the wait for the first certificate",
      () => logs.find("Waiting for the first certificate before serving HTTPS").length === 1,
    );
    stop.abort();
    assertEquals(await running, true);
    Deno.listen({ hostname: "127.0.0.1", port: redirectPort }).close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
