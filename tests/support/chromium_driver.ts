/**
 * The subprocess behind `openRemotePage` (`chromium.ts`): opens one page in headless Chromium,
 * then runs one {@linkcode DriverCommand} per stdin line and answers each with one
 * {@linkcode DriverReply} line on stdout. Ends, closing the browser, when stdin closes.
 *
 * Usage: deno run -A tests/support/chromium_driver.ts WIDTH HEIGHT TIMEOUT_MS
 *
 * @module
 */
import type { Page } from "playwright-core";
import { type DriverCommand, type DriverReply, launchChromium } from "./chromium.ts";
import { errorText } from "../../lib/shared/error_text.ts";

/** Runs one step. */
async function run(page: Page, command: DriverCommand, errors: string[]): Promise<unknown> {
  switch (command.op) {
    case "goto":
      await page.goto(command.url);
      return null;
    case "waitFor":
      await page.waitForSelector(command.selector, { state: "attached" });
      return null;
    case "count":
      return await page.locator(command.selector).count();
    case "text":
      return await page.locator(command.selector).first().textContent();
    case "attribute":
      return await page.locator(command.selector).first().getAttribute(command.name);
    case "click":
      await page.locator(command.selector).first().click();
      return null;
    case "viewport":
      await page.setViewportSize({ width: command.width, height: command.height });
      return null;
    case "screenshot":
      await page.screenshot({ path: command.path, fullPage: true });
      return null;
    case "errors":
      return [...errors];
  }
}

if (import.meta.main) {
  const [width, height, timeoutMs] = Deno.args.map(Number);
  if (width === undefined || height === undefined || timeoutMs === undefined) {
    throw new TypeError("Usage: chromium_driver.ts WIDTH HEIGHT TIMEOUT_MS");
  }
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width, height } });
    page.setDefaultTimeout(timeoutMs);
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(`page error: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") errors.push(`console error: ${message.text()}`);
    });
    const encoder = new TextEncoder();
    const stdout = Deno.stdout.writable.getWriter();
    let buffered = "";
    for await (const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
      buffered += text;
      let end = buffered.indexOf("\n");
      while (end >= 0) {
        const command = JSON.parse(buffered.slice(0, end)) as DriverCommand;
        buffered = buffered.slice(end + 1);
        end = buffered.indexOf("\n");
        let reply: DriverReply;
        try {
          reply = { ok: true, value: await run(page, command, errors) };
        } catch (error) {
          reply = { ok: false, error: errorText(error) };
        }
        await stdout.write(encoder.encode(JSON.stringify(reply) + "\n"));
      }
    }
  } finally {
    await browser.close();
  }
}
