/**
 * The delayed client watch of `forward()`: a client that leaves before its backend answers is
 * noticed once the delay has passed (reading `request.signal` costs Deno an operation per
 * request, so the handler only does it for requests still waiting), and never before.
 */
import { DEFAULTS } from "../support/settings.ts";
import { Backend } from "../../lib/core/backend.ts";
import { DeadlineQueue } from "../../lib/shared/deadlines.ts";
import { forward } from "../../lib/data/proxy.ts";
import { createHttp1Client } from "../../lib/upstream/http1.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import { signal, startServer } from "../support/servers.ts";

for (const upstream of ["fetch", "http1"] as const) {
  Deno.test(`forward() notices a departed client only once the watch delay passed [${upstream}]`, async () => {
    const backendGotRequest = signal();
    let backendSawAbort = false;
    await using backend = startServer((request) => {
      backendGotRequest.resolve();
      return new Promise<Response>((resolve) => {
        request.signal.addEventListener("abort", () => {
          backendSawAbort = true;
          resolve(new Response("too late"));
        });
      });
    });
    using http1 = createHttp1Client(DEFAULTS.proxy);
    const clock = new FakeClock(1_000);
    const client = new AbortController();
    const outcome = forward(
      new Request("http://lb.test/slow", { signal: client.signal }),
      new Backend(backend.url),
      {
        target: { ok: true, authority: "lb.test", path: "/slow", query: "" },
        body: { kind: "none" },
        timeoutMs: 60_000,
        clientIp: "192.0.2.1",
        clock,
        clientWatch: { delayMs: 100, deadlines: new DeadlineQueue({ clock }) },
        ...(upstream === "http1" ? { fetch: http1.fetch } : {}),
      },
    );
    await backendGotRequest.promise;
    client.abort();
    // Before the delay nobody has read the client's signal: the request is still out.
    await clock.advance(99);
    await settle();
    assert(!backendSawAbort, "aborted before the watch delay");
    await clock.advance(1);
    const result = await outcome;
    assertEquals(result.ok ? "ok" : result.reason, "client-abort");
    // The backend sees its connection go (fetch drops it; http1 closes it).
    for (let i = 0; i < 100 && !backendSawAbort; i++) await settle();
    assert(backendSawAbort, "the backend never saw the abort");
  });
}

Deno.test("forward() passes the http1 upstream's own response on, hop-by-hop fields stripped", async () => {
  await using backend = startServer(() =>
    new Response("whole", { headers: { "keep-alive": "timeout=5", "x-kept": "1" } })
  );
  using http1 = createHttp1Client(DEFAULTS.proxy);
  let fromClient: Response | undefined;
  const outcome = await forward(
    new Request("http://lb.test/"),
    new Backend(backend.url),
    {
      target: { ok: true, authority: "lb.test", path: "/", query: "" },
      body: { kind: "none" },
      timeoutMs: 5_000,
      clientIp: "192.0.2.1",
      fetch: async (input, init) => fromClient = await http1.fetch(input, init),
    },
  );
  assert(outcome.ok);
  // Not copied into a new Response: a body that came whole stays bytes for Deno.serve.
  assert(outcome.response === fromClient, "the response was wrapped again");
  assertEquals(outcome.response.headers.get("keep-alive"), null);
  assertEquals(outcome.response.headers.get("x-kept"), "1");
  assertEquals(await outcome.response.text(), "whole");
});
