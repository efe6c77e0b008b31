/**
 * The architecture's import rules, checked over the source tree: the load tester never imports
 * the balancer (only `lib/shared/`), the balancer never imports the load tester, and no module
 * imports itself through others.
 */
import { assert, assertEquals } from "./support/assert.ts";

const ROOT = new URL("../", import.meta.url);
const IMPORT = /^\s*(?:(?:import|export)\b[^"';]*?from\s*|import\s*)["']([^"']+)["']/gm;

async function* sourceFiles(dir: URL): AsyncGenerator<URL> {
  if (!dir.pathname.endsWith("/")) {
    yield dir;
    return;
  }
  for await (const entry of Deno.readDir(dir)) {
    const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
    if (entry.isDirectory) yield* sourceFiles(url);
    else if (entry.name.endsWith(".ts")) yield url;
  }
}

/**
 * Every relative import of the `.ts` files under `folder` (or of the one file `folder` names),
 * resolved to repo-relative paths. Type-only imports count: they tie modules together too.
 */
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

/**
 * One import cycle in the graph, as the chain of files that closes it (`[a, b, a]`), or
 * `undefined` when there is none. Depth-first search; a file on the current path seen again
 * closes a cycle.
 */
function findCycle(edges: ReadonlyArray<{ file: string; target: string }>): string[] | undefined {
  const graph = new Map<string, string[]>();
  for (const { file, target } of edges) graph.set(file, [...(graph.get(file) ?? []), target]);
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (file: string): string[] | undefined => {
    const onPath = path.indexOf(file);
    if (onPath !== -1) return [...path.slice(onPath), file];
    if (done.has(file)) return undefined;
    path.push(file);
    for (const target of graph.get(file) ?? []) {
      const cycle = visit(target);
      if (cycle !== undefined) return cycle;
    }
    path.pop();
    done.add(file);
    return undefined;
  };
  for (const file of [...graph.keys()].sort()) {
    const cycle = visit(file);
    if (cycle !== undefined) return cycle;
  }
  return undefined;
}

Deno.test("findCycle() finds a cycle and only a cycle", () => {
  const edge = (file: string, target: string) => ({ file, target });
  assertEquals(findCycle([edge("a", "b"), edge("b", "c"), edge("a", "c")]), undefined);
  assertEquals(findCycle([edge("a", "b"), edge("b", "c"), edge("c", "b")]), ["b", "c", "b"]);
  assertEquals(findCycle([edge("a", "a")]), ["a", "a"]);
});

Deno.test("no import cycles among lib/, load/, backend-servers/ and main.ts", async () => {
  const edges = [];
  for (const folder of ["lib/", "load/", "backend-servers/", "main.ts"]) {
    edges.push(...await importsUnder(folder));
  }
  assert(edges.some(({ target }) => target === "lib/config.ts"), "the parser sees imports");
  assertEquals(findCycle(edges), undefined);
});
