/**
 * Server-sent events and other long responses stream through the balancer without buffering:
 * the first event reaches the client while the backend still holds the rest back, through both
 * upstream clients.
 */
import { UPSTREAMS } from "../../lib/config/settings.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { signal, startBalancer, startServer } from "../support/servers.ts";

/** Fails instead of hanging when the balancer buffers (the proof would deadlock). */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const failure = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out waiting for ${what}`)), 10_000);
  });
  try {
    return await Promise.race([promise, failure]);
  } finally {
    clearTimeout(timer);
  }
}

for (const upstream of UPSTREAMS) {
  Deno.test(`SSE: each event reaches the client before the stream ends [${upstream}]`, async () => {
    // The backend sends one event, then waits for the test to say the client has it.
    const releases = [signal(), signal()];
    let isEnded = false;
    await using backend = startServer(() => {
      const encoder = new TextEncoder();
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          for (let i = 0; i < releases.length; i++) {
            controller.enqueue(encoder.encode(`id: ${i}\ndata: event ${i}\n\n`));
            await releases[i]?.promise;
          }
          controller.enqueue(encoder.encode("data: last\n\n"));
          isEnded = true;
          controller.close();
        },
      });
      return new Response(body, {
        headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
      });
    });
    await using lb = startBalancer([backend.url], { upstream });
    const response = await within(
      fetch(new URL("/events", lb.url), { headers: { accept: "text/event-stream" } }),
      "the response headers",
    );
    assertEquals(response.status, 200);
    assertEquals(response.headers.get("content-type"), "text/event-stream");
    assert(response.body !== null);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    for (let i = 0; i < releases.length; i++) {
      // Read until event i is whole; the backend is still holding the rest back.
      while (!text.includes(`data: event ${i}\n\n`)) {
        const chunk = await within(reader.read(), `event ${i}`);
        assert(!chunk.done, `the stream ended before event ${i}`);
        text += chunk.value;
      }
      assert(!isEnded, `event ${i} arrived only after the stream ended`);
      releases[i]?.resolve();
    }
    for (;;) {
      const chunk = await within(reader.read(), "the end of the stream");
      if (chunk.done) break;
      text += chunk.value;
    }
    assertStringIncludes(text, "data: last\n\n");
  });
}
