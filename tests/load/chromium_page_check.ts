/**
 * Opens a page in Debian's headless Chromium through `playwright-core` and prints what a test
 * asserts on, as JSON: title, heading, summary rows, the on-screen size of every chart line and
 * of the SVG, and every request the page made; keeps a full-page screenshot.
 *
 * Run as a subprocess (`deno run -A`) by `html_report_test.ts`: playwright-core reads
 * `/proc/sys` when loaded, which the test suite's permissions do not grant (see
 * `tests/support/chromium.ts`, which launches the browser).
 *
 * Usage: deno run -A tests/load/chromium_page_check.ts PAGE.html SCREENSHOT.png
 *
 * @module
 */
import { launchChromium } from "../support/chromium.ts";

/** What the page showed. */
export interface PageCheck {
  readonly title: string;
  readonly heading: string;
  readonly summaryRows: number;
  readonly lineWidths: readonly number[];
  readonly svg: { readonly width: number; readonly height: number } | null;
  readonly requests: readonly string[];
  /** On a 390 px wide phone: the page's own width, and the widest element that scrolls in a box. */
  readonly phone: {
    readonly pageWidth: number;
    readonly viewportWidth: number;
    readonly fontPx: number;
  };
}

/**
 * Loads the page and measures it.
 *
 * @param pagePath Absolute path of the HTML file.
 * @param screenshotPath Where to write the screenshot.
 * @returns The measurements.
 */
export async function checkPage(pagePath: string, screenshotPath: string): Promise<PageCheck> {
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    const requests: string[] = [];
    page.on("request", (request) => requests.push(request.url()));
    await page.goto(`file://${pagePath}`);
    const lines = page.locator("svg polyline");
    const lineWidths: number[] = [];
    for (let i = 0; i < await lines.count(); i++) {
      lineWidths.push((await lines.nth(i).boundingBox())?.width ?? 0);
    }
    const svgBox = await page.locator("svg").boundingBox();
    await page.screenshot({ path: screenshotPath, fullPage: true });
    const phonePage = await browser.newPage({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 3,
      isMobile: true,
      hasTouch: true,
    });
    await phonePage.goto(`file://${pagePath}`);
    // Evaluated in the page (as text: this module is type-checked without the DOM library).
    const phone = await phonePage.evaluate(
      "({ pageWidth: document.documentElement.scrollWidth, viewportWidth: innerWidth," +
        " fontPx: parseFloat(getComputedStyle(document.body).fontSize) })",
    ) as PageCheck["phone"];
    await phonePage.screenshot({ path: screenshotPath.replace(/\.png$/, "-phone.png") });
    return {
      title: await page.title(),
      heading: (await page.locator("h1").textContent()) ?? "",
      summaryRows: await page.locator("table.summary tbody tr").count(),
      lineWidths,
      svg: svgBox === null ? null : { width: svgBox.width, height: svgBox.height },
      requests,
      phone,
    };
  } finally {
    await browser.close();
  }
}

if (import.meta.main) {
  const [pagePath, screenshotPath] = Deno.args;
  if (pagePath === undefined || screenshotPath === undefined) {
    throw new TypeError("Usage: chromium_page_check.ts PAGE.html SCREENSHOT.png");
  }
  const result = await checkPage(pagePath, screenshotPath);
  await Deno.stdout.write(new TextEncoder().encode(JSON.stringify(result) + "\n"));
}
