import { Backend, parseBackendUrl } from "../../lib/core/backend.ts";
import { Metrics } from "../../lib/core/metrics.ts";
import { assertEquals, assertStringIncludes } from "../support/assert.ts";

function backends(): Backend[] {
  return [
    new Backend(parseBackendUrl("127.0.0.1:8080")),
    new Backend(parseBackendUrl("127.0.0.1:8081"), { initialHealth: "unhealthy" }),
  ];
}

Deno.test("Metrics.render() counts requests by backend and code", () => {
  const [a, b] = backends();
  const metrics = new Metrics([a, b].filter((x) => x !== undefined));
  metrics.recordRequest(a, 200, 3);
  metrics.recordRequest(a, 200, 4);
  metrics.recordRequest(a, 502, 1);
  metrics.recordRequest(undefined, 503, 0.1);
  const text = metrics.render();
  assertStringIncludes(text, 'denolb_requests_total{backend="127.0.0.1:8080",code="200"} 2\n');
  assertStringIncludes(text, 'denolb_requests_total{backend="127.0.0.1:8080",code="502"} 1\n');
  assertStringIncludes(text, 'denolb_requests_total{backend="none",code="503"} 1\n');
  assertEquals(text.includes('backend="127.0.0.1:8081",code='), false);
});

Deno.test("Metrics.render() writes cumulative histogram buckets", () => {
  const [a] = backends();
  if (a === undefined) throw new Error("no backend");
  const metrics = new Metrics([a]);
  metrics.recordRequest(a, 200, 0.5); // <= 1 ms
  metrics.recordRequest(a, 200, 7); // <= 10 ms
  metrics.recordRequest(a, 200, 20_000); // beyond 10 s
  const text = metrics.render();
  const label = 'backend="127.0.0.1:8080"';
  assertStringIncludes(text, `denolb_request_duration_seconds_bucket{${label},le="0.001"} 1\n`);
  assertStringIncludes(text, `denolb_request_duration_seconds_bucket{${label},le="0.005"} 1\n`);
  assertStringIncludes(text, `denolb_request_duration_seconds_bucket{${label},le="0.01"} 2\n`);
  assertStringIncludes(text, `denolb_request_duration_seconds_bucket{${label},le="10"} 2\n`);
  assertStringIncludes(text, `denolb_request_duration_seconds_bucket{${label},le="+Inf"} 3\n`);
  assertStringIncludes(text, `denolb_request_duration_seconds_count{${label}} 3\n`);
  assertStringIncludes(text, `denolb_request_duration_seconds_sum{${label}} 20.0075\n`);
});

Deno.test("Metrics.render() exposes gauges, retries, no-backend and health flips", () => {
  const [a, b] = backends();
  if (a === undefined || b === undefined) throw new Error("no backend");
  const metrics = new Metrics([a, b]);
  a.begin();
  metrics.recordRetry();
  metrics.recordNoBackend();
  metrics.recordNoBackend();
  metrics.recordHealthFlip(b, "unhealthy");
  const text = metrics.render();
  assertStringIncludes(text, 'denolb_backend_up{backend="127.0.0.1:8080"} 1\n');
  assertStringIncludes(text, 'denolb_backend_up{backend="127.0.0.1:8081"} 0\n');
  assertStringIncludes(text, 'denolb_backend_in_flight{backend="127.0.0.1:8080"} 1\n');
  assertStringIncludes(text, "denolb_retries_total 1\n");
  assertStringIncludes(text, "denolb_no_backend_total 2\n");
  assertStringIncludes(
    text,
    'denolb_health_flips_total{backend="127.0.0.1:8081",to="unhealthy"} 1\n',
  );
  assertStringIncludes(
    text,
    'denolb_health_flips_total{backend="127.0.0.1:8081",to="healthy"} 0\n',
  );
});

Deno.test("Metrics.render() declares every metric's type once", () => {
  const metrics = new Metrics(backends());
  const text = metrics.render();
  for (
    const [name, type] of [
      ["denolb_requests_total", "counter"],
      ["denolb_request_duration_seconds", "histogram"],
      ["denolb_backend_up", "gauge"],
      ["denolb_backend_in_flight", "gauge"],
      ["denolb_no_backend_total", "counter"],
      ["denolb_retries_total", "counter"],
      ["denolb_health_flips_total", "counter"],
    ]
  ) {
    assertEquals(text.split(`# TYPE ${name} ${type}\n`).length, 2, `${name} ${type}`);
  }
  assertEquals(text.endsWith("\n"), true);
});
