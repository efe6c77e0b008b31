/**
 * A web page must not drive the admin API. Raw requests, as a browser or a DNS-rebinding page
 * would send them, against the real balancer's admin listener (no token, the default): a
 * foreign `Host` or `Origin`, a cross-site `Sec-Fetch-Site` or a body that is not JSON changes
 * nothing; the same request from the admin address itself works. An admin address beyond
 * loopback needs a token or `--admin-insecure on`.
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { type RunningBalancer, startBalancer } from "../../lib/control/balancer.ts";
import { UsageError } from "../../lib/shared/command.ts";
import { assert, assertEquals, assertRejects, assertStringIncludes } from "../support/assert.ts";
import { rawRequest, type RawResponse } from "../../load/bench/raw_http.ts";
import { startServer, type TestServer } from "../support/servers.ts";
import { RUN_PERMISSIONS, runDeno } from "../support/subprocess.ts";

const TOKEN = "admin-token-0123456789";

async function startWith(backends: readonly TestServer[], extra: readonly string[] = []) {
  const config = await parseBalancerArgs([
    "--port",
    "0",
    "--admin",
    "127.0.0.1:0",
    "--health-interval",
    "1h",
    "--log-level",
    "fatal",
    "--backend",
    backends.map((b) => b.url.href).join(","),
    ...extra,
  ], () => undefined);
  return startBalancer(config);
}

function named(name: string): TestServer {
  return startServer(() => new Response(name));
}

function adminPort(lb: RunningBalancer): number {
  assert(lb.adminUrl !== undefined, "the admin listener is on");
  return Number(lb.adminUrl.port);
}

/** Sends one raw request to the admin port: `head` lines without the request line's CRLF. */
function send(
  lb: RunningBalancer,
  requestLine: string,
  fields: readonly string[],
  body = "",
): Promise<RawResponse> {
  const length = body === "" ? [] : [`Content-Length: ${new TextEncoder().encode(body).length}`];
  const head = [requestLine, ...fields, ...length, "Connection: close"].join("\r\n");
  return rawRequest(adminPort(lb), `${head}\r\n\r\n${body}`);
}

const text = (response: RawResponse): string => new TextDecoder().decode(response.body);

Deno.test("the issue's cross-site POST /backends (foreign Host and Origin, text/plain) is refused and adds nothing", async () => {
  await using a = named("a");
  await using lb = await startWith([a]);
  const response = await send(lb, "POST /backends HTTP/1.1", [
    "Host: evil.example",
    "Origin: http://evil.example",
    "Content-Type: text/plain",
  ], '{"url":"http://127.0.0.1:20999"}');
  assertEquals(response.status, 403);
  assertStringIncludes(text(response), 'Host "evil.example"');
  assertEquals(lb.pool.backends.map((b) => b.name), [`127.0.0.1:${a.port}`]);
});

Deno.test("a DNS-rebinding Host is refused on reads and writes; /health answers any Host", async () => {
  await using a = named("a");
  await using lb = await startWith([a]);
  const name = `127.0.0.1:${a.port}`;
  for (const host of ["evil.example", "evil.example:" + adminPort(lb), "127.0.0.1.evil.example"]) {
    const status = await send(lb, "GET /status HTTP/1.1", [`Host: ${host}`]);
    assertEquals(status.status, 403, `GET /status with Host ${host}`);
    const drain = await send(lb, `POST /backends/${name}/drain HTTP/1.1`, [`Host: ${host}`]);
    assertEquals(drain.status, 403, `POST drain with Host ${host}`);
  }
  assertEquals(lb.pool.backends[0]?.isDraining, false);
  const health = await send(lb, "GET /health HTTP/1.1", ["Host: evil.example"]);
  assertEquals(health.status, 200);
  // The admin address itself, localhost and any IP literal are fine (a port forward changes the
  // port, so the port is not compared).
  for (const host of [`127.0.0.1:${adminPort(lb)}`, "localhost:8000", "[::1]:9091", "10.1.2.3"]) {
    const status = await send(lb, "GET /status HTTP/1.1", [`Host: ${host}`]);
    assertEquals(status.status, 200, `GET /status with Host ${host}`);
  }
});

Deno.test("a state-changing admin request from another site (Origin, Sec-Fetch-Site) is refused", async () => {
  await using a = named("a");
  await using lb = await startWith([a]);
  const host = `Host: 127.0.0.1:${adminPort(lb)}`;
  const name = `127.0.0.1:${a.port}`;
  const foreign = [
    ["Origin: http://evil.example"],
    ["Origin: null"],
    [`Origin: http://127.0.0.1:${adminPort(lb) + 1}`],
    ["Sec-Fetch-Site: cross-site"],
    ["Sec-Fetch-Site: same-site"],
  ];
  for (const fields of foreign) {
    for (
      const line of [
        `POST /backends/${name}/drain HTTP/1.1`,
        `DELETE /backends/${name} HTTP/1.1`,
        "POST /reload HTTP/1.1",
      ]
    ) {
      const response = await send(lb, line, [host, ...fields]);
      assertEquals(response.status, 403, `${line} with ${fields.join(", ")}`);
    }
  }
  assertEquals(lb.pool.backends[0]?.isDraining, false);
  // The dashboard's own POST: same origin, no body.
  const own = await send(lb, `POST /backends/${name}/drain HTTP/1.1`, [
    host,
    `Origin: http://127.0.0.1:${adminPort(lb)}`,
    "Sec-Fetch-Site: same-origin",
  ]);
  assertEquals(own.status, 200);
  assertEquals(lb.pool.backends[0]?.isDraining, true);
});

Deno.test("a state-changing admin request's body must be application/json (415 otherwise)", async () => {
  await using a = named("a");
  await using b = named("b");
  await using lb = await startWith([a]);
  const host = `Host: 127.0.0.1:${adminPort(lb)}`;
  const body = JSON.stringify({ url: b.url.href });
  for (
    const type of [
      "text/plain",
      "text/plain;charset=UTF-8",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
    ]
  ) {
    const response = await send(
      lb,
      "POST /backends HTTP/1.1",
      [host, `Content-Type: ${type}`],
      body,
    );
    assertEquals(response.status, 415, type);
    assertStringIncludes(text(response), "application/json");
  }
  const untyped = await send(lb, "POST /backends HTTP/1.1", [host], body);
  assertEquals(untyped.status, 415, "a body without a type");
  assertEquals(lb.pool.backends.length, 1);
  const json = await send(lb, "POST /backends HTTP/1.1", [
    host,
    "Content-Type: application/json; charset=utf-8",
  ], body);
  assertEquals(json.status, 201);
  assertEquals(lb.pool.backends.length, 2);
});

Deno.test("POST /backends refuses a weight above 256 with the settings' rule", async () => {
  await using a = named("a");
  await using b = named("b");
  await using lb = await startWith([a]);
  const response = await send(lb, "POST /backends HTTP/1.1", [
    `Host: 127.0.0.1:${adminPort(lb)}`,
    "Content-Type: application/json",
  ], `{"url": "${b.url.href}", "weight": 1e308}`);
  assertEquals(response.status, 400);
  assertEquals(text(response), "Invalid weight 1e+308: must be at most 256\n");
  assertEquals(lb.pool.backends.length, 1);
});

Deno.test("with --admin-token a bearer vouches for any Host; Origin is still checked", async () => {
  await using a = named("a");
  await using lb = await startWith([a], ["--admin-token", TOKEN]);
  const bearer = `Authorization: Bearer ${TOKEN}`;
  const status = await send(lb, "GET /status HTTP/1.1", ["Host: lb.internal:9091", bearer]);
  assertEquals(status.status, 200);
  const anonymous = await send(lb, "GET /status HTTP/1.1", ["Host: lb.internal:9091"]);
  assertEquals(anonymous.status, 401);
  const crossSite = await send(lb, "POST /reload HTTP/1.1", [
    "Host: lb.internal:9091",
    "Origin: http://evil.example",
    bearer,
  ]);
  assertEquals(crossSite.status, 403);
});

Deno.test("an admin address beyond loopback needs --admin-token or --admin-insecure on", async () => {
  const parse = (args: readonly string[]) => parseBalancerArgs(args, () => undefined);
  for (const address of ["0.0.0.0:9091", "[::]:9091", "10.0.0.5:9091", "lb.internal:9091"]) {
    const error = await assertRejects(() => parse(["--admin", address]), UsageError);
    assertEquals(
      error.message,
      `Invalid --admin "${address}": an admin address other than loopback needs ` +
        "--admin-token (anyone who can reach it could add, drain and remove backends); " +
        "--admin-insecure on runs it without one",
    );
  }
  for (const address of ["127.0.0.1:9091", "127.1.2.3:9091", "[::1]:9091", "localhost:9091"]) {
    assertEquals((await parse(["--admin", address])).admin.listen, address);
  }
  assertEquals(
    (await parse(["--admin", "0.0.0.0:9091", "--admin-token", TOKEN])).admin.token,
    TOKEN,
  );
  const open = await parse(["--admin", "0.0.0.0:9091", "--admin-insecure", "on"]);
  assertEquals(open.admin.insecure, "on");
});

Deno.test("lb --admin 0.0.0.0:0 without a token exits 2 before listening", async () => {
  const result = await runDeno([
    "run",
    ...RUN_PERMISSIONS,
    "main.ts",
    "lb",
    "--port",
    "0",
    "--admin",
    "0.0.0.0:0",
  ]);
  assertEquals(result.code, 2);
  assertStringIncludes(result.stderr, 'Invalid --admin "0.0.0.0:0"');
  assert(!result.stderr.includes("Balancer listening"), result.stderr);
});
