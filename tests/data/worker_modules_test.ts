/**
 * What a data-plane worker loads: its code graph, as `deno info` resolves it, holds neither the
 * control plane nor the configuration's schemas (zod) nor Deno's Node layer (`node:` modules)
 * nor LogTape (which loads that layer through `node:util`) nor the media types database, each of
 * which costs every isolate megabytes of heap and tens of milliseconds of start-up.
 */
import { assert } from "../support/assert.ts";

interface ModuleGraph {
  readonly roots: readonly string[];
  readonly modules: ReadonlyArray<{
    readonly specifier: string;
    readonly dependencies?: ReadonlyArray<{
      readonly code?: { readonly specifier: string };
      readonly isDynamic?: boolean;
    }>;
  }>;
}

/** The modules `entry` loads when it runs: static imports, type-only ones left out. */
async function loadedModules(entry: string): Promise<Set<string>> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL(entry, import.meta.url).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(output.success, new TextDecoder().decode(output.stderr));
  const graph = JSON.parse(new TextDecoder().decode(output.stdout)) as ModuleGraph;
  const bySpecifier = new Map(graph.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const stack = [...graph.roots];
  for (let specifier = stack.pop(); specifier !== undefined; specifier = stack.pop()) {
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    for (const dependency of bySpecifier.get(specifier)?.dependencies ?? []) {
      if (dependency.code !== undefined && dependency.isDynamic !== true) {
        stack.push(dependency.code.specifier);
      }
    }
  }
  return seen;
}

Deno.test("a data-plane worker loads no control plane, no config schemas, no LogTape and no node: module", async () => {
  const loaded = [...await loadedModules("../../lib/data/worker.ts")];
  // One exception: `node:async_hooks` gives the AsyncLocalStorage that puts a request's ID on
  // every log record of it; it adds no resident memory of its own (measured in a fresh isolate).
  const unwanted = loaded.filter((s) =>
    (s.startsWith("node:") && s !== "node:async_hooks") || s.includes("/lib/control/") ||
    s.includes("/lib/config/") || s.includes("zod") || s.includes("logtape") ||
    s.includes("media_types") || s.endsWith("/lib/process/log.ts")
  );
  assert(unwanted.length === 0, `a worker loads ${unwanted.join(", ")}`);
  assert(loaded.some((s) => s.endsWith("/lib/data/data_plane.ts")), "the graph was not read");
});
