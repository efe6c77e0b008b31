/**
 * OpenTelemetry through Deno's built-in exporter: the balancer runs as a user runs it, with
 * `OTEL_DENO=true` and an OTLP/HTTP (JSON) receiver of the test's own as the endpoint, and the
 * test checks the spans it receives, the `traceparent` the backend receives, and the request ID
 * in the log records of a request.
 */
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { startServer } from "../support/servers.ts";
import { startLbProcess } from "../support/subprocess.ts";

interface Attribute {
  readonly key: string;
  readonly value: { stringValue?: string; intValue?: string | number; doubleValue?: number };
}
interface ExportedSpan {
  readonly name: string;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly attributes: readonly Attribute[];
}

/** An OTLP/HTTP receiver for JSON trace exports. */
function startReceiver() {
  const spans: ExportedSpan[] = [];
  const server = startServer(async (request) => {
    const text = await request.text();
    if (new URL(request.url).pathname === "/v1/traces") {
      const body = JSON.parse(text) as {
        resourceSpans: Array<{ scopeSpans: Array<{ spans: ExportedSpan[] }> }>;
      };
      for (const resource of body.resourceSpans) {
        for (const scope of resource.scopeSpans) spans.push(...scope.spans);
      }
    }
    return Response.json({});
  });
  return { server, spans };
}

function attribute(span: ExportedSpan, key: string): string | number | undefined {
  const value = span.attributes.find((a) => a.key === key)?.value;
  if (value === undefined) return undefined;
  return value.stringValue ??
    (value.intValue === undefined ? value.doubleValue : Number(value.intValue));
}

/**
 * A backend that passes health probes (`GET /healthz`) and drops every other request's
 * connection without an answer, so a request to it fails and is retried.
 */
function startDroppingBackend(): { readonly host: string } & AsyncDisposable {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for await (const conn of listener) {
      (async () => {
        const buffer = new Uint8Array(4096);
        const read = await conn.read(buffer).catch(() => null);
        const head = new TextDecoder().decode(buffer.subarray(0, read ?? 0));
        if (head.startsWith("GET /healthz ")) {
          const answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
          await conn.write(new TextEncoder().encode(answer)).catch(() => {});
        }
        conn.close();
      })();
    }
  })().catch(() => {});
  return {
    host: `127.0.0.1:${listener.addr.port}`,
    async [Symbol.asyncDispose]() {
      listener.close();
      await serving;
    },
  };
}

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";

Deno.test("OTEL_DENO=true: a span per request and per attempt, traceparent to the backend", async () => {
  const receiver = startReceiver();
  await using _receiver = receiver.server;
  const seen: Array<string | null> = [];
  await using backend = startServer((request) => {
    if (new URL(request.url).pathname !== "/healthz") {
      seen.push(request.headers.get("traceparent"));
    }
    return new Response("ok");
  });
  await using dropping = startDroppingBackend();
  const lb = startLbProcess([
    "--backend",
    `${dropping.host},${backend.url.host}`,
    "--retries",
    "1",
    "--health-path",
    "/healthz",
    "--health-interval",
    "60s",
    "--admin",
    "off",
    "--drain-timeout",
    "1s",
    // The test client's X-Request-Id is adopted only from a trusted proxy.
    "--trusted-proxies",
    "127.0.0.1",
  ], {
    OTEL_DENO: "true",
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.server.url.href.replace(/\/$/, ""),
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_SERVICE_NAME: "denolb",
  });
  await using _lb = lb;
  const [, url] = await lb.waitForLine(/Balancer listening.*?(http:\/\/[\d.]+:\d+\/)/);
  // Round-robin starts at the dropping backend: the first request fails over to the good one.
  const response = await fetch(url ?? "", {
    headers: {
      traceparent: `00-${TRACE_ID}-b7ad6b7169203331-01`,
      "x-request-id": "req-otel-1",
    },
  });
  assertEquals(await response.text(), "ok");
  // SIGTERM: the exporter sends what it holds before the process ends.
  lb.child.kill("SIGTERM");
  assertEquals((await lb.child.status).success, true, lb.output);

  const ours = receiver.spans.filter((span) => span.name.startsWith("denolb "));
  const request = ours.find((span) => span.name === "denolb request");
  assert(request !== undefined, `no request span in ${JSON.stringify(receiver.spans)}`);
  assertEquals(request.traceId, TRACE_ID, "the client's trace continues");
  assertEquals(attribute(request, "http.response.status_code"), 200);
  assertEquals(attribute(request, "denolb.request_id"), "req-otel-1");
  const attempts = ours.filter((span) => span.name === "denolb attempt")
    .sort((a, b) =>
      Number(attribute(a, "denolb.attempt")) - Number(attribute(b, "denolb.attempt"))
    );
  assertEquals(attempts.length, 2, JSON.stringify(ours));
  const [first, second] = attempts;
  assert(first !== undefined && second !== undefined);
  for (const attempt of attempts) {
    assertEquals(attempt.traceId, TRACE_ID);
    assertEquals(attempt.parentSpanId, request.spanId);
  }
  assertEquals(attribute(first, "denolb.attempt"), 1);
  assertEquals(attribute(first, "denolb.backend"), dropping.host);
  const failure = attribute(first, "error.type");
  assert(typeof failure === "string" && failure !== "", "the first attempt's failure");
  assertEquals(attribute(first, "denolb.retry_reason"), undefined);
  assertEquals(attribute(second, "denolb.attempt"), 2);
  assertEquals(attribute(second, "denolb.backend"), backend.url.host);
  assertEquals(attribute(second, "http.response.status_code"), 200);
  assertEquals(attribute(second, "denolb.retry_reason"), failure);
  // The backend got the trace, with a parent inside the second attempt, not the client's span.
  assertEquals(seen.length, 1);
  const [, traceId, parentId] = (seen[0] ?? "").split("-");
  assertEquals(traceId, TRACE_ID);
  const parent = receiver.spans.find((span) => span.spanId === parentId);
  assert(parent !== undefined, `the backend's parent ${parentId} was exported`);
  assert(
    parent.spanId === second.spanId || parent.parentSpanId === second.spanId,
    "the backend's parent is the attempt or its fetch span",
  );
});

Deno.test("every log record of a request carries its request ID", async () => {
  // Two dropping backends and no retry budget: the retry gate refuses the retry and logs it,
  // a record whose module knows nothing of the request.
  await using first = startDroppingBackend();
  await using second = startDroppingBackend();
  await using lb = startLbProcess([
    "--backend",
    `${first.host},${second.host}`,
    "--retries",
    "1",
    "--retry-budget",
    "0",
    "--retry-budget-min",
    "0",
    "--health-path",
    "/healthz",
    "--health-interval",
    "60s",
    "--admin",
    "off",
    "--log-format",
    "json",
    "--trusted-proxies",
    "127.0.0.1",
  ]);
  const [, url] = await lb.waitForLine(/Balancer listening.*?(http:\/\/[\d.]+:\d+\/)/);
  const response = await fetch(url ?? "", { headers: { "x-request-id": "req-log-1" } });
  assertEquals(response.status, 502);
  await response.body?.cancel();
  const [line] = await lb.waitForLine(/.*Retry budget exhausted.*/);
  const record = JSON.parse(line) as
    & { properties?: Record<string, unknown> }
    & Record<
      string,
      unknown
    >;
  assertStringIncludes(JSON.stringify(record), '"requestId":"req-log-1"');
});
