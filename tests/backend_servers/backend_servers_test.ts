import type { Clock } from "../../lib/shared/clock.ts";
import type { CommandContext } from "../../lib/shared/command.ts";
import { UsageError } from "../../lib/shared/command.ts";
import {
  BACKENDS_HELP,
  backendsCommand,
  parseBackendsArgs,
} from "../../backend-servers/backends_command.ts";
import { DEMO_BACKENDS, serveBackend } from "../../backend-servers/serve.ts";
import { fileContentType, pathSegments } from "../../backend-servers/static_files.ts";
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "../support/assert.ts";

const DEMO_8080 = DEMO_BACKENDS[0];
if (DEMO_8080 === undefined) throw new Error("DEMO_BACKENDS is empty");

/** A clock whose sleeps report that they started and end only when the test releases them. */
class GatedClock implements Clock {
  readonly sleeps: number[] = [];
  #started = Promise.withResolvers<number>();
  #gate = Promise.withResolvers<void>();

  now(): number {
    return 0;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    this.#started.resolve(ms);
    return new Promise((resolve, reject) => {
      signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
      this.#gate.promise.then(resolve);
    });
  }

  /** Resolves with the delay of the first sleep once it starts. */
  get started(): Promise<number> {
    return this.#started.promise;
  }

  release(): void {
    this.#gate.resolve();
  }
}

/** A seeded pseudo-random generator (mulberry32): the same seed gives the same draws. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Sends one raw HTTP/1.1 request, so paths reach the server exactly as written. */
async function rawRequest(port: number, target: string): Promise<{ status: number; text: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const request = `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`;
    await conn.write(new TextEncoder().encode(request));
    const text = await new Response(conn.readable).text();
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? Number.NaN);
    return { status, text };
  } catch (error) {
    conn.close();
    throw error;
  }
}

/** A temporary tree: `outer/secret.txt` beside the served `outer/root/`. */
async function makeTree(): Promise<{ outer: string; root: string } & AsyncDisposable> {
  const outer = await Deno.makeTempDir({ prefix: "backend_servers_test_" });
  const root = `${outer}/root`;
  await Deno.mkdir(`${root}/sub`, { recursive: true });
  await Deno.writeTextFile(`${outer}/secret.txt`, "TOP SECRET");
  await Deno.writeTextFile(`${root}/index.html`, "<h1>root</h1>");
  await Deno.writeTextFile(`${root}/sub/index.html`, "<h1>sub</h1>");
  await Deno.writeTextFile(`${root}/data.json`, "{}");
  await Deno.symlink(`${outer}/secret.txt`, `${root}/link.txt`);
  return {
    outer,
    root,
    [Symbol.asyncDispose]: () => Deno.remove(outer, { recursive: true }),
  };
}

function captureContext(signal: AbortSignal): {
  ctx: CommandContext;
  stdout: () => string;
  lines: (count: number) => Promise<string[]>;
} {
  let out = "";
  const waiters: { count: number; resolve: (lines: string[]) => void }[] = [];
  const check = () => {
    const lines = out.split("\n").filter((line) => line !== "");
    for (const waiter of waiters.filter((w) => lines.length >= w.count)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(lines);
    }
  };
  const ctx: CommandContext = {
    stdout: (text) => {
      out += text;
      check();
    },
    stderr: () => {},
    isTerminal: false,
    env: () => undefined,
    signal,
    workerUrl: new URL(import.meta.url),
  };
  return {
    ctx,
    stdout: () => out,
    lines: (count) =>
      new Promise((resolve) => {
        waiters.push({ count, resolve });
        check();
      }),
  };
}

Deno.test("pathSegments() decodes safe paths and rejects every way up", () => {
  assertEquals(pathSegments("/"), []);
  assertEquals(pathSegments("//a///b%20c.html"), ["a", "b c.html"]);
  for (
    const bad of [
      "/../x",
      "/%2e%2e/x",
      "/%2E%2E/x",
      "/..%2fx",
      "/..%5cx",
      "/a/%2e",
      "/c%3a/x",
      "/a%00b",
      "/%E0%A4%A",
      "/... /x",
    ]
  ) {
    assertEquals(pathSegments(bad), undefined, bad);
  }
});

Deno.test("fileContentType() falls back to text/plain for files without an extension", () => {
  assertEquals(fileContentType("health"), "text/plain; charset=UTF-8");
  assertEquals(fileContentType("/srv/x/index.html"), "text/html; charset=UTF-8");
  assertEquals(fileContentType("app.js"), "text/javascript; charset=UTF-8");
  assertEquals(fileContentType("blob.unknownext"), "application/octet-stream");
});

Deno.test("serveBackend() serves each demo index.html naming its port", async () => {
  for (const demo of DEMO_BACKENDS) {
    await using backend = await serveBackend({ root: demo.root, port: 0 });
    const response = await fetch(`${backend.url}/`);
    const body = await response.text();
    assertEquals(response.status, 200);
    assertEquals(response.headers.get("content-type"), "text/html; charset=UTF-8");
    assertEquals(response.headers.get("x-backend"), String(backend.port));
    assertEquals(response.headers.get("content-length"), String(new Blob([body]).size));
    assertStringIncludes(body, `port ${demo.port}`);
    assertStringIncludes(body, `${demo.name}/`);
    const same = await fetch(`${backend.url}/index.html`);
    assertEquals(await same.text(), body);
  }
});

Deno.test("serveBackend() answers /health from the health file as text/plain", async () => {
  await using backend = await serveBackend({ root: DEMO_8080.root, port: 0, name: "a" });
  const response = await fetch(`${backend.url}/health`);
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("content-type"), "text/plain; charset=UTF-8");
  assertEquals(response.headers.get("x-backend"), "a");
  assertEquals(await response.text(), "OK\n");
});

Deno.test("serveBackend() answers /health with OK when there is no health file", async () => {
  await using tree = await makeTree();
  await using backend = await serveBackend({ root: tree.root, port: 0 });
  const response = await fetch(`${backend.url}/health`);
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("content-type"), "text/plain; charset=UTF-8");
  assertEquals(await response.text(), "OK\n");
});

Deno.test("serveBackend() answers 404 for a missing file and 301 for a directory", async () => {
  await using tree = await makeTree();
  await using backend = await serveBackend({ root: tree.root, port: 0 });
  const missing = await fetch(`${backend.url}/nope.html`);
  assertEquals(missing.status, 404);
  await missing.body?.cancel();
  const slashed = await fetch(`${backend.url}/data.json/`);
  assertEquals(slashed.status, 404);
  await slashed.body?.cancel();

  const redirect = await fetch(`${backend.url}/sub?x=1`, { redirect: "manual" });
  assertEquals(redirect.status, 301);
  assertEquals(redirect.headers.get("location"), "/sub/?x=1");
  await redirect.body?.cancel();
  const sub = await fetch(`${backend.url}/sub/`);
  assertEquals(await sub.text(), "<h1>sub</h1>");
  const json = await fetch(`${backend.url}/data.json`);
  assertEquals(json.headers.get("content-type"), "application/json; charset=UTF-8");
  await json.body?.cancel();
});

Deno.test("serveBackend() answers 405 with Allow for methods other than GET and HEAD", async () => {
  await using backend = await serveBackend({ root: DEMO_8080.root, port: 0 });
  const post = await fetch(`${backend.url}/`, { method: "POST", body: "x".repeat(10_000) });
  assertEquals(post.status, 405);
  assertEquals(post.headers.get("allow"), "GET, HEAD");
  await post.body?.cancel();
  const remove = await fetch(`${backend.url}/health`, { method: "DELETE" });
  assertEquals(remove.status, 405);
  assertEquals(remove.headers.get("allow"), "GET, HEAD");
  await remove.body?.cancel();
  const admin = await fetch(`${backend.url}/_backend/health?state=down`);
  assertEquals(admin.status, 405);
  assertEquals(admin.headers.get("allow"), "POST");
  await admin.body?.cancel();
  assertEquals(backend.isHealthy, true);
});

Deno.test("serveBackend() answers HEAD with headers and no body", async () => {
  await using backend = await serveBackend({ root: DEMO_8080.root, port: 0 });
  const size = (await Deno.stat(new URL("index.html", DEMO_8080.root))).size;
  const response = await fetch(`${backend.url}/`, { method: "HEAD" });
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("content-type"), "text/html; charset=UTF-8");
  assertEquals(response.headers.get("content-length"), String(size));
  assertEquals((await response.arrayBuffer()).byteLength, 0);
  const raw = await rawHead(backend.port, "/health");
  assert(raw.endsWith("\r\n\r\n"), `HEAD sent a body: ${JSON.stringify(raw)}`);
});

async function rawHead(port: number, target: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(
    new TextEncoder().encode(`HEAD ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
  );
  return await new Response(conn.readable).text();
}

Deno.test("serveBackend() never serves a file outside its root", async () => {
  await using tree = await makeTree();
  await using backend = await serveBackend({ root: tree.root, port: 0 });
  const targets = [
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/..%2fsecret.txt",
    "/..%5csecret.txt",
    "/%2e%2e%2fsecret.txt",
    "/sub/..%2f..%2fsecret.txt",
    "/sub/../../secret.txt",
    "/link.txt",
    "//../secret.txt",
  ];
  for (const target of targets) {
    const { status, text } = await rawRequest(backend.port, target);
    assert(status === 400 || status === 404, `${target} answered ${status}`);
    assert(!text.includes("TOP SECRET"), `${target} leaked the secret`);
  }
  // The demo folders sit next to serve.ts: it must not be reachable either.
  await using demo = await serveBackend({ root: DEMO_8080.root, port: 0 });
  for (const target of ["/../deno.json", "/%2e%2e/deno.json", "/..%2fdeno.json", "/../serve.ts"]) {
    const { status } = await rawRequest(demo.port, target);
    assert(status === 400 || status === 404, `${target} answered ${status}`);
    const viaFetch = await fetch(`${demo.url}${target}`);
    assert(viaFetch.status === 400 || viaFetch.status === 404, `${target} answered ${status}`);
    await viaFetch.body?.cancel();
  }
});

Deno.test("serveBackend() delays pages by delayMs through the injected clock", async () => {
  const clock = new GatedClock();
  await using backend = await serveBackend({
    root: DEMO_8080.root,
    port: 0,
    delayMs: 250,
    clock,
  });
  let isSettled = false;
  const pending = fetch(`${backend.url}/`).then((response) => {
    isSettled = true;
    return response;
  });
  assertEquals(await clock.started, 250);

  // /health is never delayed, so it answers while the page is still asleep.
  const health = await fetch(`${backend.url}/health`);
  assertEquals(health.status, 200);
  await health.body?.cancel();
  assertEquals(isSettled, false);
  assertEquals(clock.sleeps, [250]);

  clock.release();
  const response = await pending;
  assertEquals(response.status, 200);
  await response.body?.cancel();

  backend.setDelay(0);
  const fast = await fetch(`${backend.url}/`);
  await fast.body?.cancel();
  assertEquals(clock.sleeps, [250]);
});

Deno.test("close() wakes delayed requests instead of waiting out their delay", async () => {
  const clock = new GatedClock();
  const backend = await serveBackend({ root: DEMO_8080.root, port: 0, delayMs: 60_000, clock });
  const pending = fetch(`${backend.url}/`);
  await clock.started;
  const closed = backend.close();
  const response = await pending;
  assertEquals(response.status, 503);
  assertEquals(await response.text(), "Backend is shutting down\n");
  await closed;
});

Deno.test("serveBackend() fails exactly the seeded share of requests with 500", async () => {
  const seed = 42;
  const rate = 0.3;
  const total = 60;
  const replay = seededRandom(seed);
  let expected = 0;
  for (let i = 0; i < total; i++) if (replay() < rate) expected++;
  assert(expected > 0 && expected < total);

  await using backend = await serveBackend({
    root: DEMO_8080.root,
    port: 0,
    failureRate: rate,
    random: seededRandom(seed),
  });
  let failures = 0;
  for (let i = 0; i < total; i++) {
    const response = await fetch(`${backend.url}/`);
    await response.body?.cancel();
    if (response.status === 500) failures++;
    else assertEquals(response.status, 200);
  }
  assertEquals(failures, expected);

  // Health probes are never failed on purpose.
  const health = await fetch(`${backend.url}/health`);
  assertEquals(health.status, 200);
  await health.body?.cancel();
});

Deno.test("setHealthy() and the admin path flip /health between 200 and 503", async () => {
  await using backend = await serveBackend({ root: DEMO_8080.root, port: 0, isHealthy: false });
  const status = async (path: string, method = "GET"): Promise<number> => {
    const response = await fetch(`${backend.url}${path}`, { method });
    await response.body?.cancel();
    return response.status;
  };
  assertEquals(await status("/health"), 503);
  assertEquals(await status("/"), 200);
  backend.setHealthy(true);
  assertEquals(await status("/health"), 200);
  assertEquals(await status("/_backend/health?state=down", "POST"), 200);
  assertEquals(backend.isHealthy, false);
  assertEquals(await status("/health"), 503);
  assertEquals(await status("/_backend/health?state=up", "POST"), 200);
  assertEquals(await status("/health"), 200);
  assertEquals(await status("/_backend/health?state=sideways", "POST"), 400);
  assertEquals(backend.isHealthy, true);
});

Deno.test("the admin paths set the delay and failure rate and report the knobs", async () => {
  await using backend = await serveBackend({ root: DEMO_8080.root, port: 0, name: "b1" });
  const post = async (path: string): Promise<Response> => {
    return await fetch(`${backend.url}${path}`, { method: "POST" });
  };
  const delay = await post("/_backend/delay?ms=1.5s");
  assertEquals(delay.status, 200);
  assertEquals((await delay.json()).delayMs, 1500);
  const rate = await post("/_backend/failure-rate?rate=0.25");
  assertEquals(await rate.json(), {
    name: "b1",
    port: backend.port,
    isHealthy: true,
    delayMs: 1500,
    failureRate: 0.25,
  });
  const badRate = await post("/_backend/failure-rate?rate=2");
  assertEquals(badRate.status, 400);
  assertEquals(await badRate.text(), "Invalid failure rate 2: must be from 0 to 1\n");
  const badDelay = await post("/_backend/delay?ms=soon");
  assertEquals(badDelay.status, 400);
  await badDelay.body?.cancel();
  const unknown = await post("/_backend/nothing");
  assertEquals(unknown.status, 404);
  await unknown.body?.cancel();
  const state = await fetch(`${backend.url}/_backend`);
  assertEquals((await state.json()).failureRate, 0.25);
});

Deno.test("/echo streams the request body back and describes GET requests", async () => {
  await using backend = await serveBackend({ root: DEMO_8080.root, port: 0 });
  const payload = new Uint8Array(2 * 1024 * 1024);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + 7) & 0xff;
  const response = await fetch(`${backend.url}/echo`, {
    method: "POST",
    body: payload,
    headers: { "content-type": "application/x-test" },
  });
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("content-type"), "application/x-test");
  assertEquals(new Uint8Array(await response.arrayBuffer()), payload);

  const described = await fetch(`${backend.url}/echo?q=1`, { headers: { "x-probe": "yes" } });
  const json = await described.json();
  assertEquals(json.method, "GET");
  assertEquals(json.path, "/echo?q=1");
  assertEquals(json.headers["x-probe"], "yes");
});

Deno.test("serveBackend() rejects bad options before listening", async () => {
  await assertRejects(() => serveBackend({ root: DEMO_8080.root, port: -1 }), RangeError);
  await assertRejects(
    () => serveBackend({ root: DEMO_8080.root, port: 0, failureRate: 1.5 }),
    RangeError,
    "Invalid failure rate 1.5: must be from 0 to 1",
  );
  await assertRejects(
    () => serveBackend({ root: DEMO_8080.root, port: 0, delayMs: -5 }),
    RangeError,
    "Invalid delay -5",
  );
  await assertRejects(
    () => serveBackend({ root: "/no/such/dir/for/backend", port: 0 }),
    Error,
    'Cannot serve files from "/no/such/dir/for/backend"',
  );
  await assertRejects(
    () => serveBackend({ root: new URL("health", DEMO_8080.root), port: 0 }),
    TypeError,
    "it is not a directory",
  );
  await using taken = await serveBackend({ root: DEMO_8080.root, port: 0 });
  await assertRejects(
    () => serveBackend({ root: DEMO_8080.root, port: taken.port }),
    Error,
    `Cannot listen on 127.0.0.1:${taken.port}`,
  );
});

Deno.test("serveBackend() closes on its signal and close() is idempotent", async () => {
  const controller = new AbortController();
  let announced = "";
  const backend = await serveBackend({
    root: DEMO_8080.root,
    port: 0,
    signal: controller.signal,
    onListen: ({ url }) => announced = url,
  });
  assertEquals(announced, backend.url);
  assertEquals(backend.url, `http://127.0.0.1:${backend.port}`);
  controller.abort();
  await backend.close();
  await backend.close();
});

Deno.test("parseBackendsArgs() rejects each bad flag with a one-line message", () => {
  const cases: [string[], string][] = [
    [["--base-port", "80x"], 'Invalid --base-port "80x": must be an integer from 0 to 65533'],
    [["--base-port", "65534"], 'Invalid --base-port "65534"'],
    [["--delay", "soon"], 'Invalid --delay "soon": use a duration such as 250ms or 1s'],
    [["--failure-rate", "1.5"], 'Invalid --failure-rate "1.5": must be a number from 0 to 1'],
    [["--failure-rate="], 'Invalid --failure-rate ""'],
    [["--delay=-1s"], 'Invalid --delay "-1s"'],
    [["--unhealthy", "server9"], 'Invalid --unhealthy "server9": must be one of server8080'],
    [["--host="], 'Invalid --host "": must not be empty'],
    [["--frobnicate"], 'Unknown flag "--frobnicate" for backends'],
    [["extra"], 'Unexpected argument "extra" for backends'],
  ];
  for (const [args, message] of cases) {
    const error = assertThrows(() => parseBackendsArgs(args), UsageError, message);
    assert(!error.message.includes("\n"), error.message);
  }
  assertEquals(parseBackendsArgs([]), {
    hostname: "127.0.0.1",
    basePort: 8080,
    delayMs: 0,
    failureRate: 0,
    unhealthy: new Set<string>(),
  });
  const options = parseBackendsArgs([
    "--failure-rate=20%",
    "--delay",
    "250ms",
    "--unhealthy",
    "8081",
    "--unhealthy",
    "server8082",
  ]);
  assert(options !== "help");
  assertEquals(options.failureRate, 0.2);
  assertEquals(options.delayMs, 250);
  assertEquals([...options.unhealthy], ["server8081", "server8082"]);
  assertEquals(parseBackendsArgs(["-h"]), "help");
});

Deno.test("backendsCommand() starts three backends and stops when the signal aborts", async () => {
  const controller = new AbortController();
  const capture = captureContext(controller.signal);
  const exit = backendsCommand(["--base-port", "0", "--unhealthy", "server8082"], capture.ctx);
  try {
    const lines = await capture.lines(3);
    assertEquals(lines.length, 3);
    const seen = new Set<string>();
    for (const [index, line] of lines.entries()) {
      const demo = DEMO_BACKENDS[index];
      assertInstanceOf(demo, Object);
      const match = /^(server\d+) listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
      assert(match !== null, line);
      assertEquals(match[1], demo.name);
      const url = match[2] ?? "";
      const page = await fetch(`${url}/`);
      assertStringIncludes(await page.text(), `port ${demo.port}`);
      seen.add(page.headers.get("x-backend") ?? "");
      const health = await fetch(`${url}/health`);
      await health.body?.cancel();
      assertEquals(health.status, demo.name === "server8082" ? 503 : 200);
    }
    assertEquals(seen.size, 3);
    assertStringIncludes(lines[2] ?? "", "(unhealthy)");
  } finally {
    controller.abort();
  }
  assertEquals(await exit, 0);
});

Deno.test("backendsCommand() prints help and rejects a bad flag before listening", async () => {
  const controller = new AbortController();
  const capture = captureContext(controller.signal);
  assertEquals(await backendsCommand(["--help"], capture.ctx), 0);
  assertEquals(capture.stdout(), BACKENDS_HELP);
  await assertRejects(
    () => backendsCommand(["--delay", "soon"], capture.ctx),
    UsageError,
    'Invalid --delay "soon"',
  );
});
