/**
 * `fetch` against the `http1` upstream on a local `Deno.serve` backend, one request at a time
 * (latency per request; the throughput under concurrency is the balancer benchmark's job):
 * `deno bench -A tests/upstream/http1_client_bench.ts`.
 *
 * @module
 */
import { DEFAULTS } from "../support/settings.ts";
import { ResponseParser } from "../../lib/shared/http1_parser.ts";
import { createHttp1Client } from "../../lib/upstream/http1.ts";

const SMALL_BODY = "a".repeat(612); // nginx's default index page
const LARGE_BODY = new Uint8Array(1 << 20);
const UPLOAD = new Uint8Array(16_384);

const backend = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
  const path = new URL(request.url).pathname;
  if (path === "/large") return new Response(LARGE_BODY);
  if (request.method === "POST") {
    return request.arrayBuffer().then((body) => new Response(String(body.byteLength)));
  }
  return new Response(SMALL_BODY, {
    headers: { "content-type": "text/html", "etag": '"6385a0a8-264"', "server": "bench" },
  });
});
backend.unref();
const base = `http://127.0.0.1:${backend.addr.port}`;
// The balancer's fetch client (lib/data/proxy.ts createUpstreamClient) against the http1 upstream.
const fetchClient = Deno.createHttpClient({ allowHost: true, poolMaxIdlePerHost: 64 });
const http1 = createHttp1Client(DEFAULTS.proxy);
const headers: Array<[string, string]> = [["host", "bench.test"], ["x-forwarded-for", "10.0.0.1"]];

async function drain(response: Response): Promise<void> {
  await response.arrayBuffer();
}

Deno.bench("fetch: GET 612 B", { group: "get", baseline: true }, async () => {
  await drain(await fetch(`${base}/`, { headers, client: fetchClient }));
});
Deno.bench("http1: GET 612 B", { group: "get" }, async () => {
  await drain(await http1.fetch(`${base}/`, { headers }));
});

Deno.bench("fetch: POST 16 KiB", { group: "post", baseline: true }, async () => {
  await drain(
    await fetch(`${base}/`, { method: "POST", headers, body: UPLOAD, client: fetchClient }),
  );
});
Deno.bench("http1: POST 16 KiB", { group: "post" }, async () => {
  await drain(await http1.fetch(`${base}/`, { method: "POST", headers, body: UPLOAD }));
});

Deno.bench("fetch: GET 1 MiB", { group: "large", baseline: true }, async () => {
  await drain(await fetch(`${base}/large`, { headers, client: fetchClient }));
});
Deno.bench("http1: GET 1 MiB", { group: "large" }, async () => {
  await drain(await http1.fetch(`${base}/large`, { headers }));
});

const nginxResponse = new TextEncoder().encode(
  "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 14:32:55 GMT\r\n" +
    "Content-Type: text/html\r\nContent-Length: 612\r\n" +
    "Last-Modified: Thu, 26 Nov 2026 14:30:00 GMT\r\nConnection: keep-alive\r\n" +
    'ETag: "6385a0a8-264"\r\nAccept-Ranges: bytes\r\n\r\n' + SMALL_BODY,
);
const lenient = new ResponseParser();
const strict = new ResponseParser({ isStrict: true, onHead: () => {}, onBody: () => {} });

Deno.bench("parser: lenient, counting (load tester)", { group: "parser", baseline: true }, () => {
  lenient.reset(false);
  lenient.feed(nginxResponse, 0, nginxResponse.length);
});
Deno.bench("parser: strict, head decoded (http1 upstream)", { group: "parser" }, () => {
  strict.reset(false);
  strict.feed(nginxResponse, 0, nginxResponse.length);
});
