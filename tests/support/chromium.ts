/**
 * Debian's headless Chromium for browser tests, driven by `playwright-core`.
 *
 * playwright-core reads `/proc/sys` when loaded, which the test suite's permissions do not
 * grant, so it only ever runs in a subprocess started with `deno run -A`: either a one-shot
 * script (`tests/load/chromium_page_check.ts`) or the step-by-step driver behind
 * {@linkcode openRemotePage} (`chromium_driver.ts`). This module loads playwright-core only
 * inside {@linkcode launchChromium}, so tests can import the rest of it.
 *
 * @module
 */
import type { Browser } from "playwright-core";

/** Debian's Chromium (`apt-get install -y chromium`). */
export const CHROMIUM = "/usr/bin/chromium";

/** Flags for a quiet, sandbox-free headless run that phones home to nobody. */
export const CHROMIUM_FLAGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** @returns Whether {@linkcode CHROMIUM} is installed. */
export function hasChromium(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}

/**
 * A test that needs Chromium: ignored, with the reason in its name, when it is missing.
 *
 * @param name What the test checks.
 * @param fn The test.
 * @returns The test definition for `Deno.test`.
 */
export function chromiumTest(name: string, fn: () => Promise<void>): Deno.TestDefinition {
  const isInstalled = hasChromium();
  return {
    name: isInstalled
      ? name
      : `${name} (ignored: ${CHROMIUM} is missing; apt-get install -y chromium)`,
    ignore: !isInstalled,
    fn,
  };
}

/**
 * Launches {@linkcode CHROMIUM} headless with {@linkcode CHROMIUM_FLAGS}. Only call it from a
 * `deno run -A` subprocess (see the module note).
 *
 * @returns The browser; the caller closes it.
 */
export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import("playwright-core");
  return await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_FLAGS],
  });
}

/** One step sent to the driver subprocess. */
export type DriverCommand =
  | { readonly op: "goto"; readonly url: string }
  | { readonly op: "waitFor"; readonly selector: string }
  | { readonly op: "count"; readonly selector: string }
  | { readonly op: "text"; readonly selector: string }
  | { readonly op: "attribute"; readonly selector: string; readonly name: string }
  | { readonly op: "click"; readonly selector: string }
  | { readonly op: "viewport"; readonly width: number; readonly height: number }
  | { readonly op: "screenshot"; readonly path: string }
  | { readonly op: "errors" };

/** The driver's answer to one command. */
export type DriverReply =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly error: string };

/** A page in a Chromium run by a subprocess, driven one step at a time. */
export interface RemotePage extends AsyncDisposable {
  /** Navigates and waits for the load event. */
  goto(url: string): Promise<void>;
  /** Waits until an element matches `selector` (Playwright selector syntax). */
  waitFor(selector: string): Promise<void>;
  /** How many elements match now. */
  count(selector: string): Promise<number>;
  /** The first match's text content. */
  text(selector: string): Promise<string>;
  /** The first match's attribute, or `null`. */
  attribute(selector: string, name: string): Promise<string | null>;
  /** Clicks the first match. */
  click(selector: string): Promise<void>;
  /** Resizes the viewport. */
  viewport(width: number, height: number): Promise<void>;
  /** Writes a full-page PNG. */
  screenshot(path: string): Promise<void>;
  /** Uncaught page errors and console errors so far. */
  errors(): Promise<string[]>;
}

/** Options of {@linkcode openRemotePage}. */
export interface RemotePageOptions {
  /** Viewport width. Default: 1100. */
  readonly width?: number;
  /** Viewport height. Default: 800. */
  readonly height?: number;
  /** How long one step may wait, in milliseconds. Default: 10000. */
  readonly timeoutMs?: number;
}

/**
 * Starts `chromium_driver.ts` in a `deno run -A` subprocess, with one page open. Steps go over
 * its stdin and answers come back on its stdout, one JSON line each; a failed step rejects with
 * the driver's message. Disposing closes the browser and waits for the subprocess.
 *
 * @param options Viewport and step timeout.
 * @returns The page.
 */
export function openRemotePage(options: RemotePageOptions = {}): RemotePage {
  const { width = 1100, height = 800, timeoutMs = 10_000 } = options;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("chromium_driver.ts", import.meta.url).pathname,
      String(width),
      String(height),
      String(timeoutMs),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const writer = child.stdin.getWriter();
  const lines = readLines(child.stdout);
  const encoder = new TextEncoder();

  const send = async (command: DriverCommand): Promise<unknown> => {
    await writer.write(encoder.encode(JSON.stringify(command) + "\n"));
    const line = await lines.next();
    if (line.done) {
      throw new Error(`Chromium driver exited during ${command.op}: ${await stderr}`);
    }
    const reply = JSON.parse(line.value) as DriverReply;
    if (!reply.ok) throw new Error(`Chromium driver ${command.op} failed: ${reply.error}`);
    return reply.value;
  };

  return {
    goto: async (url) => void await send({ op: "goto", url }),
    waitFor: async (selector) => void await send({ op: "waitFor", selector }),
    count: async (selector) => Number(await send({ op: "count", selector })),
    text: async (selector) => String(await send({ op: "text", selector })),
    attribute: async (selector, name) => {
      const value = await send({ op: "attribute", selector, name });
      return typeof value === "string" ? value : null;
    },
    click: async (selector) => void await send({ op: "click", selector }),
    viewport: async (w, h) => void await send({ op: "viewport", width: w, height: h }),
    screenshot: async (path) => void await send({ op: "screenshot", path }),
    errors: async () => (await send({ op: "errors" })) as string[],
    async [Symbol.asyncDispose](): Promise<void> {
      // Closing stdin ends the driver's loop; it closes the browser and exits.
      await writer.close().catch(() => {});
      const killer = setTimeout(() => child.kill(), timeoutMs);
      const status = await child.status;
      clearTimeout(killer);
      await lines.return(undefined);
      const log = await stderr;
      if (!status.success) throw new Error(`Chromium driver exited ${status.code}: ${log}`);
    },
  };
}

/** Splits a byte stream into lines. */
async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    buffered += text;
    let end = buffered.indexOf("\n");
    while (end >= 0) {
      yield buffered.slice(0, end);
      buffered = buffered.slice(end + 1);
      end = buffered.indexOf("\n");
    }
  }
}
