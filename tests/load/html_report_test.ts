import { loadtestCommand } from "../../load/cli.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { captureContext, startQuarterFailingBackend } from "./load_fixtures.ts";
import type { PageCheck } from "./chromium_page_check.ts";
import { assertValidReport } from "./report_validation.ts";
import { chromiumTest } from "../support/chromium.ts";

/** Where the page's screenshot is kept (dist/ is not committed). */
const ARTIFACTS = new URL("../../dist/test-artifacts/", import.meta.url);

/** Runs a sweep against a real backend and writes the page; returns its path and the JSON. */
async function writeReport(dir: string): Promise<{ html: string; json: string }> {
  await using backend = startQuarterFailingBackend();
  const { ctx } = captureContext();
  const code = await loadtestCommand([
    "--url",
    backend.url.href,
    "--total",
    "40",
    "-c",
    "1",
    "4",
    "16",
    "--html",
    `${dir}/report.html`,
    "--json",
    `${dir}/report.json`,
    "--quiet",
  ], ctx);
  assertEquals(code, 0);
  const json = await Deno.readTextFile(`${dir}/report.json`);
  assertValidReport(json);
  return { html: await Deno.readTextFile(`${dir}/report.html`), json };
}

Deno.test("--html writes one self-contained page with settings, summary, charts and runs", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { html } = await writeReport(dir);
    for (const external of ["<script", " src=", " href=", "url(", "@import"]) {
      assert(!html.includes(external), `no external asset or script (${external})`);
    }
    for (
      const text of ["<h2>Settings</h2>", "closed (concurrency)", "1, 4, 16", "<svg", "c16-r1"]
    ) assertStringIncludes(html, text);
    assertStringIncludes(
      html,
      '<meta name="viewport" content="width=device-width, initial-scale=1">',
    );
    assertStringIncludes(html, "Latency histogram (ms, up to):");
    assertStringIncludes(html, "Status distribution:");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(chromiumTest(
  "--html renders in headless Chromium with non-empty charts",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      await writeReport(dir);
      await Deno.mkdir(ARTIFACTS, { recursive: true });
      const screenshot = new URL("loadtest-report.png", ARTIFACTS).pathname;
      const output = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("chromium_page_check.ts", import.meta.url).pathname,
          `${dir}/report.html`,
          screenshot,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      assertEquals(output.code, 0, stderr);
      const page = JSON.parse(new TextDecoder().decode(output.stdout)) as PageCheck;
      assertEquals(page.title, page.heading);
      assertStringIncludes(page.heading, "Load test: GET http://127.0.0.1:");
      assertEquals(page.summaryRows, 3);
      // req/s, p50, p95, p99 and error %: every line drawn with some length on screen.
      assertEquals(page.lineWidths.length, 5);
      for (const width of page.lineWidths) assert(width > 100, `line widths ${page.lineWidths}`);
      assert(page.svg !== null && page.svg.width > 400 && page.svg.height > 400);
      assertEquals(page.requests.filter((url) => !url.startsWith("file://")), [], "loads nothing");
      assert(Deno.statSync(screenshot).size > 10_000, "the screenshot is kept");
      // A 390 px phone lays the page out at its own width (the viewport meta), with nothing
      // pushing the page wider: wide tables and run blocks scroll inside their boxes.
      assertEquals(page.phone.viewportWidth, 390, JSON.stringify(page.phone));
      assert(page.phone.pageWidth <= 390, JSON.stringify(page.phone));
      assert(page.phone.fontPx >= 14, JSON.stringify(page.phone));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
));
