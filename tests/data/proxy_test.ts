import { headerValues, rawRequest } from "../../load/bench/raw_http.ts";
import {
  signal,
  startBalancer as startTestBalancer,
  startServer,
  unusedPort,
} from "../support/servers.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { UPSTREAMS } from "../../lib/config/settings.ts";

// The whole suite runs once per upstream client: `fetch` and the HTTP/1.1 client.
/** Deterministic bytes, so a corrupted byte anywhere changes the digest. */
function pattern(length: number, seed: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  let state = seed;
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    bytes[i] = state >>> 24;
  }
  return bytes;
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Fails instead of hanging when a streaming proof deadlocks (the balancer buffered). */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const failure = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out waiting for ${what}`)), 20_000);
  });
  try {
    return await Promise.race([promise, failure]);
  } finally {
    clearTimeout(timer);
  }
}

for (const upstream of UPSTREAMS) {
  const test = (name: string, fn: () => Promise<void>) => Deno.test(`${name} [${upstream}]`, fn);
  const startLb: typeof startTestBalancer = (backends, options = {}) =>
    startTestBalancer(backends, { upstream, ...options });

  const MIB = 1024 * 1024;

  test("forward() keeps the method, path and query", async () => {
    await using backend = startServer((request) => {
      const url = new URL(request.url);
      return new Response(`${request.method} ${url.pathname}${url.search}`);
    });
    await using lb = startLb([backend.url]);
    for (const method of ["GET", "PATCH", "DELETE", "OPTIONS"]) {
      const response = await fetch(new URL("/a/b%20c?x=1&y=two", lb.url), { method });
      assertEquals(await response.text(), `${method} /a/b%20c?x=1&y=two`);
    }
  });

  test("forward() keeps Host and sets X-Forwarded-* at the backend", async () => {
    await using backend = startServer((request) =>
      Response.json(Object.fromEntries(request.headers))
    );
    await using lb = startLb([backend.url]);
    using client = Deno.createHttpClient({ allowHost: true });
    const response = await fetch(new URL("/", lb.url), {
      client,
      headers: { host: "shop.example", "x-forwarded-for": "10.0.0.1" },
    });
    const seen = await response.json();
    assertEquals(seen.host, "shop.example");
    assertEquals(seen["x-forwarded-host"], "shop.example");
    assertEquals(seen["x-forwarded-proto"], "http");
    // The client is no trusted proxy: its X-Forwarded-For is replaced, not appended to.
    assertEquals(seen["x-forwarded-for"], "127.0.0.1");
    assertEquals(seen.forwarded, "for=127.0.0.1;proto=http;host=shop.example");
    assert(typeof seen["x-request-id"] === "string" && seen["x-request-id"] !== "");
  });

  test("forward() strips hop-by-hop headers in both directions", async () => {
    let seen: Headers | undefined;
    await using backend = startServer((request) => {
      seen = request.headers;
      return new Response("ok", {
        headers: {
          connection: "x-internal",
          "x-internal": "secret",
          "keep-alive": "timeout=5",
          "proxy-authenticate": "Basic",
          "x-public": "yes",
        },
      });
    });
    await using lb = startLb([backend.url]);
    const response = await rawRequest(
      lb.port,
      "GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: x-secret, close\r\nX-Secret: 1\r\n" +
        "Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eDp5\r\n" +
        "Upgrade: websocket\r\nX-Kept: 2\r\n\r\n",
    );
    assertEquals(response.status, 200);
    assert(seen !== undefined);
    for (const name of ["x-secret", "keep-alive", "te", "proxy-authorization", "upgrade"]) {
      assertEquals(seen.has(name), false, `backend saw ${name}`);
    }
    assertEquals(seen.get("x-kept"), "2");
    assertEquals(headerValues(response, "x-internal"), []);
    assertEquals(headerValues(response, "keep-alive"), []);
    assertEquals(headerValues(response, "proxy-authenticate"), []);
    assertEquals(headerValues(response, "x-public"), ["yes"]);
    // Only the balancer's own framing remains: the backend's Connection value is gone.
    for (const value of headerValues(response, "connection")) assertEquals(value, "close");
  });

  test("forward() passes a redirect through without following it", async () => {
    let hits = 0;
    await using backend = startServer(() => {
      hits++;
      return new Response(null, { status: 302, headers: { location: "/elsewhere" } });
    });
    await using lb = startLb([backend.url]);
    const response = await fetch(new URL("/start", lb.url), { redirect: "manual" });
    await response.body?.cancel();
    assertEquals(response.status, 302);
    assertEquals(response.headers.get("location"), "/elsewhere");
    assertEquals(hits, 1);
  });

  test("forward() streams a 10 MB upload byte-identical", async () => {
    const payload = pattern(10 * MIB, 1);
    const firstChunkSeen = signal();
    await using backend = startServer(async (request) => {
      const chunks: Uint8Array[] = [];
      let size = 0;
      for await (const chunk of request.body ?? []) {
        if (size === 0) firstChunkSeen.resolve();
        chunks.push(chunk);
        size += chunk.length;
      }
      const received = new Uint8Array(size);
      let offset = 0;
      for (const chunk of chunks) {
        received.set(chunk, offset);
        offset += chunk.length;
      }
      return new Response(received, { headers: { "x-received-sha256": await sha256(received) } });
    });
    await using lb = startLb([backend.url], { requestBufferBytes: MIB });
    // The client holds back all but the first 1 MiB + 64 KiB until the backend has seen data: a
    // balancer that buffered more than its 1 MiB request buffer would never let that happen.
    const head = payload.subarray(0, MIB + 64 * 1024);
    const rest = payload.subarray(MIB + 64 * 1024);
    let sentHead = false;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (!sentHead) {
          sentHead = true;
          controller.enqueue(head);
          return;
        }
        await within(firstChunkSeen.promise, "the backend to see the first chunk");
        for (let offset = 0; offset < rest.length; offset += MIB) {
          controller.enqueue(rest.subarray(offset, offset + MIB));
        }
        controller.close();
      },
    });
    const response = await fetch(new URL("/upload", lb.url), { method: "POST", body });
    const echoed = new Uint8Array(await response.arrayBuffer());
    const expected = await sha256(payload);
    assertEquals(response.status, 200);
    assertEquals(response.headers.get("x-received-sha256"), expected);
    assertEquals(echoed.length, payload.length);
    assertEquals(await sha256(echoed), expected);
  });

  test("forward() streams a 10 MB download byte-identical", async () => {
    const payload = pattern(10 * MIB, 2);
    const clientGotData = signal();
    await using backend = startServer(() => {
      let offset = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (offset === 64 * 1024) {
            // Hold the rest back until the client has bytes: proves nothing buffers the body.
            await within(clientGotData.promise, "the client to see the first chunk");
          }
          const end = offset === 0 ? 64 * 1024 : Math.min(offset + MIB, payload.length);
          controller.enqueue(payload.slice(offset, end));
          offset = end;
          if (offset === payload.length) controller.close();
        },
      });
      return new Response(body, { headers: { "content-length": String(payload.length) } });
    });
    await using lb = startLb([backend.url]);
    const response = await fetch(new URL("/download", lb.url));
    assertEquals(response.headers.get("content-length"), String(payload.length));
    const received = new Uint8Array(payload.length);
    let size = 0;
    for await (const chunk of response.body ?? []) {
      received.set(chunk, size);
      size += chunk.length;
      clientGotData.resolve();
    }
    assertEquals(size, payload.length);
    assertEquals(await sha256(received), await sha256(payload));
  });

  test("forward() passes a gzip response through byte-identical with its Content-Encoding", async () => {
    const text = new TextEncoder().encode("hello compressed world\n".repeat(2000));
    const gzipped = new Uint8Array(
      await new Response(new Blob([text]).stream().pipeThrough(new CompressionStream("gzip")))
        .arrayBuffer(),
    );
    let backendAcceptEncoding: string | null = null;
    await using backend = startServer((request) => {
      backendAcceptEncoding = request.headers.get("accept-encoding");
      return new Response(gzipped, {
        headers: { "content-encoding": "gzip", "content-type": "text/plain" },
      });
    });
    await using lb = startLb([backend.url]);
    for (const acceptEncoding of ["gzip, br", "identity"]) {
      const response = await rawRequest(
        lb.port,
        `GET /page HTTP/1.1\r\nHost: shop.example\r\nAccept-Encoding: ${acceptEncoding}\r\n` +
          "Connection: close\r\n\r\n",
      );
      assertEquals(response.status, 200);
      assertEquals(headerValues(response, "content-encoding"), ["gzip"]);
      assertEquals(headerValues(response, "content-length"), [String(gzipped.length)]);
      assertEquals(response.body, gzipped);
    }
    // The balancer asks for identity, so fetch never decodes what the backend sends.
    assertEquals(backendAcceptEncoding, "identity");
  });

  test("forward() aborts the upstream request when the client disconnects", async () => {
    const backendGotRequest = signal();
    const backendSawAbort = signal();
    await using backend = startServer((request) => {
      backendGotRequest.resolve();
      return new Promise<Response>((resolve) => {
        request.signal.addEventListener("abort", () => {
          backendSawAbort.resolve();
          resolve(new Response("too late"));
        });
      });
    });
    const lb = startLb([backend.url]);
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
      await conn.write(new TextEncoder().encode("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"));
      await backendGotRequest.promise;
      conn.close();
      await backendSawAbort.promise;
    } finally {
      await lb.close();
    }
    const [only] = lb.pool.backends;
    assertEquals(only?.failures, 0);
    assertEquals(only?.inFlight, 0);
  });

  test("forward() stops the upstream download when the client disconnects mid-body", async () => {
    const bodyCancelled = signal();
    await using backend = startServer(() => {
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          controller.enqueue(new Uint8Array(16 * 1024));
        },
        cancel() {
          bodyCancelled.resolve();
        },
      });
      return new Response(body);
    });
    const lb = startLb([backend.url]);
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: lb.port });
      await conn.write(new TextEncoder().encode("GET /endless HTTP/1.1\r\nHost: x\r\n\r\n"));
      await conn.read(new Uint8Array(1024));
      conn.close();
      await bodyCancelled.promise;
    } finally {
      await lb.close();
    }
    assertEquals(lb.pool.backends[0]?.inFlight, 0);
    assertEquals(lb.pool.backends[0]?.failures, 0);
  });

  test("forward() lets a body stream past the header timeout", async () => {
    const releaseBody = signal();
    await using backend = startServer((request) => {
      if (new URL(request.url).pathname === "/never") {
        return new Promise<Response>((resolve) => {
          request.signal.addEventListener("abort", () => resolve(new Response(null)));
        });
      }
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent === 1) await releaseBody.promise;
          controller.enqueue(new TextEncoder().encode(`part${sent}.`));
          if (++sent === 3) controller.close();
        },
      });
      return new Response(body);
    });
    await using lb = startLb([backend.url], { timeoutMs: 50, retries: 0 });
    const slow = await fetch(new URL("/slow-body", lb.url));
    assertEquals(slow.status, 200);
    // A later request's 50 ms header timeout firing proves the first one's timer had its turn.
    const timedOut = await fetch(new URL("/never", lb.url));
    await timedOut.body?.cancel();
    assertEquals(timedOut.status, 504);
    releaseBody.resolve();
    assertEquals(await slow.text(), "part0.part1.part2.");
  });

  test("forward() answers 502 without details when the backend is down", async () => {
    const deadPort = unusedPort();
    await using lb = startLb([`http://127.0.0.1:${deadPort}`]);
    const response = await fetch(new URL("/", lb.url));
    const body = await response.text();
    assertEquals(response.status, 502);
    assertEquals(response.headers.get("content-type"), "text/plain; charset=utf-8");
    for (const leak of ["refused", "os error", "tcp", String(deadPort), "at "]) {
      assert(!body.includes(leak), `body leaks "${leak}": ${body}`);
    }
    assertEquals(lb.pool.backends[0]?.failures, 1);
  });

  test("forward() answers 502 when the backend does not speak HTTP", async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const serving = (async () => {
      for await (const conn of listener) {
        await conn.read(new Uint8Array(4096));
        await conn.write(new TextEncoder().encode("NOT HTTP AT ALL\r\n\r\n"));
        conn.close();
      }
    })();
    try {
      await using lb = startLb([`http://127.0.0.1:${listener.addr.port}`], { retries: 0 });
      const response = await fetch(new URL("/", lb.url));
      assertEquals(response.status, 502);
      assertStringIncludes(await response.text(), "Bad gateway");
    } finally {
      listener.close();
      await serving.catch(() => {});
    }
  });

  test("forward() answers 504 when the backend sends no headers in time", async () => {
    const backendSawAbort = signal();
    await using backend = startServer((request) =>
      new Promise<Response>((resolve) => {
        request.signal.addEventListener("abort", () => {
          backendSawAbort.resolve();
          resolve(new Response("too late"));
        });
      })
    );
    await using lb = startLb([backend.url], { timeoutMs: 100 });
    const response = await fetch(new URL("/slow", lb.url));
    assertEquals(response.status, 504);
    assertStringIncludes(await response.text(), "Gateway timeout");
    await backendSawAbort.promise;
    assertEquals(lb.pool.backends[0]?.failures, 1);
  });

  test("forward() retries a GET on another backend after a connection failure", async () => {
    await using live = startServer(() => new Response("from live"));
    await using lb = startLb([`http://127.0.0.1:${unusedPort()}`, live.url], { retries: 1 });
    // Round-robin starts with the dead backend.
    const response = await fetch(new URL("/", lb.url));
    assertEquals(response.status, 200);
    assertEquals(await response.text(), "from live");
    assertEquals(lb.metrics.retryCount, 1);
    assertEquals(lb.pool.backends[0]?.failures, 1);
    assertEquals(lb.pool.backends[1]?.failures, 0);
  });

  test("forward() retries keep the rotation over the remaining backends", async () => {
    await using first = startServer(() => new Response("first"));
    await using third = startServer(() => new Response("third"));
    await using lb = startLb([first.url, `http://127.0.0.1:${unusedPort()}`, third.url]);
    const counts: Record<string, number> = {};
    for (let i = 0; i < 9; i++) {
      const text = await (await fetch(lb.url)).text();
      counts[text] = (counts[text] ?? 0) + 1;
    }
    // The dead backend's turn falls through to the next one in the rotation, which the policy's
    // cursor then moves past: first, (dead) third, first, (dead) third, ...
    assertEquals(counts, { first: 5, third: 4 });
  });

  test("forward() retries a POST whose backend refused the connection", async () => {
    const bodies: string[] = [];
    await using live = startServer(async (request) => {
      bodies.push(await request.text());
      return new Response("from live");
    });
    await using lb = startLb([`http://127.0.0.1:${unusedPort()}`, live.url], { retries: 2 });
    const response = await fetch(new URL("/", lb.url), { method: "POST", body: "order=1" });
    assertEquals(await response.text(), "from live");
    assertEquals(response.status, 200);
    // The request never left for the dead backend, so sending it elsewhere sends it once.
    assertEquals(bodies, ["order=1"]);
    assertEquals(lb.metrics.retryCount, 1);
  });

  test("forward() does not retry a POST whose backend broke after receiving it", async () => {
    let brokenHits = 0;
    const broken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const serving = (async () => {
      for await (const conn of broken) {
        brokenHits++;
        await conn.read(new Uint8Array(4096));
        conn.close(); // received the request, answered nothing
      }
    })();
    let liveHits = 0;
    await using live = startServer(() => {
      liveHits++;
      return new Response("from live");
    });
    await using lb = startLb([`http://127.0.0.1:${broken.addr.port}`, live.url], {
      retries: 2,
    });
    const response = await fetch(new URL("/", lb.url), { method: "POST", body: "order=1" });
    await response.body?.cancel();
    broken.close();
    await serving.catch(() => {});
    assertEquals(response.status, 502);
    assertEquals(liveHits, 0);
    assertEquals(brokenHits >= 1, true);
    assertEquals(lb.metrics.retryCount, 0);
  });
}
