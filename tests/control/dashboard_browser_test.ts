import { DASHBOARD_HTML, SSE_HEADERS, statusEventStream } from "../../lib/control/dashboard.ts";
import { assertEquals, assertStringIncludes } from "../support/assert.ts";
import { chromiumTest, openRemotePage } from "../support/chromium.ts";

/** Where the screenshots are kept (dist/ is not committed). */
const ARTIFACTS = new URL("../../dist/test-artifacts/", import.meta.url);
/** Events come this often, so each step's wait is short; the page waits, the test never sleeps. */
const EVENT_INTERVAL_MS = 50;

/** A backend as the admin API's status snapshot lists it. */
interface FakeBackend {
  name: string;
  url: string;
  health: "healthy" | "unhealthy";
  isDraining: boolean;
  weight: number;
  inFlight: number;
  requests: number;
  failures: number;
  responses5xx: number;
  p50Ms: number | null;
  p99Ms: number | null;
  ejected?: { untilMs: number; count: number; reason: string } | null;
}

/** A drain or undrain call the page made. */
interface DrainCall {
  readonly path: string;
  readonly name: string;
  readonly action: string;
  readonly authorization: string | null;
}

/** A stand-in admin listener: the page, its events over a snapshot the test edits, drain calls. */
interface DashboardServer extends AsyncDisposable {
  readonly url: URL;
  readonly backends: FakeBackend[];
  readonly drainCalls: DrainCall[];
  readonly eventQueries: string[];
  /** When set, undrain answers 409. */
  isUndrainRefused: boolean;
}

function fakeBackend(port: number, weight: number): FakeBackend {
  return {
    name: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}/`,
    health: "healthy",
    isDraining: false,
    weight,
    inFlight: port % 5,
    requests: 0,
    failures: 0,
    responses5xx: 0,
    p50Ms: 1.5 + (port % 3),
    p99Ms: 12 + (port % 7),
  };
}

function startDashboardServer(): DashboardServer {
  const stopEvents = new AbortController();
  const state: Omit<DashboardServer, "url" | typeof Symbol.asyncDispose> = {
    backends: [fakeBackend(8080, 1), fakeBackend(8081, 2), fakeBackend(8082, 1)],
    drainCalls: [],
    eventQueries: [],
    isUndrainRefused: false,
  };
  // Counters move with every snapshot so the page has rates to show.
  const snapshot = (): unknown => {
    for (const backend of state.backends) {
      backend.requests += 10 * backend.weight;
      if (backend.health === "unhealthy") backend.failures += 2;
      // 8082 answers 500 to one request in ten: 1 of its 10 each snapshot.
      if (backend.name === "127.0.0.1:8082") backend.responses5xx += 1;
    }
    const healthy = state.backends.filter((b) => b.health === "healthy" && !b.isDraining);
    return {
      atMs: Date.now(),
      draining: false,
      healthy: healthy.length,
      backends: state.backends.map((b) => ({ ...b })),
    };
  };
  const handler = (request: Request): Response => {
    const url = new URL(request.url);
    if (request.method === "GET" && url.pathname === "/") {
      return new Response(DASHBOARD_HTML, {
        headers: { "content-type": "text/html; charset=utf-8" },
      });
    }
    if (request.method === "GET" && url.pathname === "/events") {
      state.eventQueries.push(url.search);
      const signal = AbortSignal.any([request.signal, stopEvents.signal]);
      const body = statusEventStream(snapshot, { intervalMs: EVENT_INTERVAL_MS, signal });
      return new Response(body, { headers: SSE_HEADERS });
    }
    const match = /^\/backends\/([^/]+)\/(drain|undrain)$/.exec(url.pathname);
    if (request.method === "POST" && match?.[1] !== undefined && match[2] !== undefined) {
      const name = decodeURIComponent(match[1]);
      const action = match[2];
      state.drainCalls.push({
        path: url.pathname,
        name,
        action,
        authorization: request.headers.get("authorization"),
      });
      const backend = state.backends.find((b) => b.name === name);
      if (backend === undefined) return new Response("no such backend", { status: 404 });
      if (action === "undrain" && state.isUndrainRefused) {
        return new Response("refused by the test", { status: 409 });
      }
      backend.isDraining = action === "drain";
      return new Response(null, { status: 204 });
    }
    return new Response("not found", { status: 404 });
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
  return Object.assign(state, {
    url: new URL(`http://127.0.0.1:${server.addr.port}/`),
    async [Symbol.asyncDispose](): Promise<void> {
      stopEvents.abort();
      await server.shutdown();
    },
  });
}

/** The selector of a backend's row. */
function row(name: string): string {
  return `#backends tr[data-backend="${name}"]`;
}

Deno.test(chromiumTest(
  "dashboard in headless Chromium: live rows, flip highlighted, drain with the token",
  async () => {
    await Deno.mkdir(ARTIFACTS, { recursive: true });
    await using server = startDashboardServer();
    await using page = openRemotePage();

    await page.goto(new URL("#token=t1", server.url).href);
    await page.waitFor(`${row("127.0.0.1:8082")}[data-state="healthy"]`);
    assertEquals(await page.count("#backends tr[data-backend]"), 3);
    for (const name of ["127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:8082"]) {
      assertEquals(await page.attribute(row(name), "data-state"), "healthy");
      assertEquals(await page.text(`${row(name)} button`), "Drain");
    }
    assertEquals(server.eventQueries[0], "?token=t1", "the event stream carries the token");
    // A second snapshot gives a rate: 10 requests per snapshot for weight 1.
    await page.waitFor(`${row("127.0.0.1:8080")} td.rate:text-matches("^[0-9]+\\\\.[0-9]$")`);
    assertEquals(await page.text(`${row("127.0.0.1:8080")} td.responses5xx`), "0.0%");
    assertEquals(await page.text(`${row("127.0.0.1:8080")} td.failures`), "0.0%");
    // A backend's own 5xx answers are errors too, named apart from the balancer's failures.
    assertEquals(await page.text(`${row("127.0.0.1:8082")} td.responses5xx`), "10.0%");
    assertEquals(await page.text(`${row("127.0.0.1:8082")} td.failures`), "0.0%");

    server.backends[1] = { ...fakeBackend(8081, 2), health: "unhealthy" };
    await page.waitFor(`${row("127.0.0.1:8081")}[data-state="unhealthy"].flipped`);
    assertStringIncludes(await page.text("#changes li"), "127.0.0.1:8081: healthy → unhealthy");
    await page.waitFor(`${row("127.0.0.1:8081")} td.failures:text-matches("%$")`);
    assertEquals(await page.attribute(row("127.0.0.1:8080"), "class"), null, "others unmarked");

    // Passive health's ejection shows beside active health, with its reason on the badge.
    const untilMs = Date.now() + 30_000;
    server.backends[0] = {
      ...fakeBackend(8080, 1),
      ejected: { untilMs, count: 2, reason: "connect" },
    };
    await page.waitFor(`${row("127.0.0.1:8080")}[data-state="ejected"]`);
    assertStringIncludes(await page.text("#changes li"), "127.0.0.1:8080: healthy → ejected");
    assertStringIncludes(
      await page.attribute(`${row("127.0.0.1:8080")} .badge`, "title") ?? "",
      "ejected after connect failures until",
    );
    server.backends[0] = fakeBackend(8080, 1);
    await page.waitFor(`${row("127.0.0.1:8080")}[data-state="healthy"]`);

    await page.click(`${row("127.0.0.1:8082")} button`);
    await page.waitFor(`${row("127.0.0.1:8082")}[data-state="draining"]`);
    assertEquals(server.drainCalls, [{
      path: "/backends/127.0.0.1%3A8082/drain",
      name: "127.0.0.1:8082",
      action: "drain",
      authorization: "Bearer t1",
    }]);
    await page.waitFor(`${row("127.0.0.1:8082")} button:text-is("Undrain")`);
    assertEquals(await page.errors(), [], "no script or console error");
    await page.screenshot(new URL("dashboard.png", ARTIFACTS).pathname);

    server.isUndrainRefused = true;
    await page.click(`${row("127.0.0.1:8082")} button`);
    await page.waitFor('#error:text-matches("undrain 127.0.0.1:8082 failed: 409")');
    assertStringIncludes(await page.text("#error"), "refused by the test");
    assertEquals(await page.attribute(row("127.0.0.1:8082"), "data-state"), "draining");

    await page.viewport(390, 844);
    await page.screenshot(new URL("dashboard-phone.png", ARTIFACTS).pathname);
    assertEquals(server.drainCalls.length, 2);
  },
));
