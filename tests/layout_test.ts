/**
 * The architecture's import rules, checked over the source tree: the load tester never imports
 * the balancer (only `lib/shared/`), and the balancer never imports the load tester.
 */
import { assertEquals } from "./support/assert.ts";

const ROOT = new URL("../", import.meta.url);
const IMPORT = /^\s*(?:import|export)\b[^"']*?from\s*["']([^"']+)["']/gm;

async function* sourceFiles(dir: URL): AsyncGenerator<URL> {
  for await (const entry of Deno.readDir(dir)) {
    const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
    if (entry.isDirectory) yield* sourceFiles(url);
    else if (entry.name.endsWith(".ts")) yield url;
  }
}

/** Every relative import of the `.ts` files under `folder`, resolved to repo-relative paths. */
async function importsUnder(folder: string): Promise<Array<{ file: string; target: string }>> {
  const found: Array<{ file: string; target: string }> = [];
  for await (const file of sourceFiles(new URL(folder, ROOT))) {
    const text = await Deno.readTextFile(file);
    for (const match of text.matchAll(IMPORT)) {
      const specifier = match[1] ?? "";
      if (!specifier.startsWith(".")) continue;
      found.push({
        file: file.href.slice(ROOT.href.length),
        target: new URL(specifier, file).href.slice(ROOT.href.length),
      });
    }
  }
  return found;
}

Deno.test("load/ imports nothing from lib/ but lib/shared/", async () => {
  const bad = (await importsUnder("load/"))
    .filter(({ target }) => target.startsWith("lib/") && !target.startsWith("lib/shared/"));
  assertEquals(bad, []);
});

Deno.test("lib/ never imports load/ or backend-servers/", async () => {
  const bad = (await importsUnder("lib/"))
    .filter(({ target }) => target.startsWith("load/") || target.startsWith("backend-servers/"));
  assertEquals(bad, []);
});

Deno.test("lib/shared/ imports nothing outside itself", async () => {
  const bad = (await importsUnder("lib/shared/"))
    .filter(({ target }) => !target.startsWith("lib/shared/"));
  assertEquals(bad, []);
});
