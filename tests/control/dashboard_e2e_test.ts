/**
 * The live dashboard end to end, in a real headless Chromium: the real balancer and admin
 * listener over three demo backends. A backend taken down with its own knob turns unhealthy on
 * the page within a probe interval; Drain on another stops its traffic. The screenshot is kept
 * in dist/test-artifacts/.
 */
import { parseBalancerArgs } from "../../lib/config/config.ts";
import { startBalancer } from "../../lib/control/balancer.ts";
import { DEMO_BACKENDS, serveBackend } from "../../backend-servers/serve.ts";
import { assert, assertEquals } from "../support/assert.ts";
import { chromiumTest, openRemotePage } from "../support/chromium.ts";

const ARTIFACTS = new URL("../../dist/test-artifacts/", import.meta.url);
const TOKEN = "dashboard-token-0123456789";

Deno.test(
  chromiumTest(
    "dashboard shows a backend taken down within a probe interval and drains another",
    async () => {
      await Deno.mkdir(ARTIFACTS, { recursive: true });
      await using stack = new AsyncDisposableStack();
      const backends = [];
      for (const demo of DEMO_BACKENDS) {
        backends.push(stack.use(await serveBackend({ root: demo.root, port: 0, name: demo.name })));
      }
      const config = await parseBalancerArgs([
        "--port",
        "0",
        "--admin",
        "127.0.0.1:0",
        "--admin-token",
        TOKEN,
        "--health-interval",
        "500ms",
        "--fall",
        "1",
        "--log-level",
        "error",
        "--access-log",
        "off",
        "--backend",
        backends.map((b) => b.url).join(","),
      ], () => undefined);
      await using lb = await startBalancer(config);
      assert(lb.adminUrl !== undefined);
      for (let i = 0; i < 9; i++) await (await fetch(lb.url)).body?.cancel();
      await using page = openRemotePage({ timeoutMs: 15_000 });
      await page.goto(new URL(`#token=${TOKEN}`, lb.adminUrl).href);
      const [, second, third] = backends.map((b) => new URL(b.url).host);
      const row = (name: string | undefined) => `#backends tr[data-backend="${name}"]`;
      await page.waitFor(`${row(third)}[data-state="healthy"]`);
      assertEquals(await page.count("#backends tr[data-backend]"), 3);

      // The demo backend's own knob, as an operator would turn it.
      backends[1]?.setHealthy(false);
      await page.waitFor(`${row(second)}[data-state="unhealthy"]`);
      assertEquals(lb.pool.backends[1]?.isHealthy, false);

      await page.click(`${row(third)} button`);
      await page.waitFor(`${row(third)}[data-state="draining"]`);
      assertEquals(lb.pool.backends[2]?.isDraining, true);
      // One backend down, one draining: the first serves everything.
      for (let i = 0; i < 4; i++) {
        const response = await fetch(lb.url);
        await response.body?.cancel();
        assertEquals(response.headers.get("x-backend"), DEMO_BACKENDS[0]?.name);
      }
      assertEquals(await page.errors(), []);
      await page.screenshot(new URL("dashboard-live.png", ARTIFACTS).pathname);
    },
  ),
);
