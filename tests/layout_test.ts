/**
 * The floor plan: one folder per layer, and the import rules between them, checked over the
 * source tree (see the README's layout section):
 *
 * - `lib/lb_command.ts` is the only file in `lib/`'s root;
 * - `shared/` imports nothing of ours; `core/` only `shared/`; `config/` only `shared/` and
 *   `core/`; `policies/` only `core/` and `shared/`; `deploy/` (manifests that run the
 *   balancer elsewhere, never run by it) only `config/` and `shared/`;
 * - `data/` never imports `control/`; `control/` reaches `data/` only through `data_plane.ts`
 *   and the worker protocol;
 * - the load tester imports nothing of the balancer but `lib/shared/`, the balancer nothing of
 *   the load tester or the demo backends, and nothing outside `tests/` imports `tests/`;
 * - no module imports itself through others.
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

Deno.test("lib/lb_command.ts is the only file in lib/'s root; every other file is in a layer", async () => {
  const LAYERS = [
    "config",
    "control",
    "core",
    "data",
    "deploy",
    "policies",
    "process",
    "shared",
    "upstream",
  ];
  const found: string[] = [];
  for await (const entry of Deno.readDir(new URL("lib/", ROOT))) {
    if (entry.isDirectory) assert(LAYERS.includes(entry.name), `lib/${entry.name}/ is no layer`);
    else found.push(entry.name);
  }
  assertEquals(found, ["lb_command.ts"]);
});

/** Each layer and the folders of `lib/` it may import besides its own. */
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  "lib/shared/": [],
  "lib/core/": ["lib/shared/"],
  "lib/config/": ["lib/shared/", "lib/core/"],
  "lib/policies/": ["lib/core/", "lib/shared/"],
  "lib/deploy/": ["lib/config/", "lib/shared/"],
};

for (const [layer, allowed] of Object.entries(MAY_IMPORT)) {
  Deno.test(`${layer} imports only ${allowed.length === 0 ? "itself" : allowed.join(", ")}`, async () => {
    const bad = (await importsUnder(layer)).filter(({ target }) =>
      !target.startsWith(layer) && !allowed.some((folder) => target.startsWith(folder))
    );
    assertEquals(bad, []);
  });
}

Deno.test("lib/data/ never imports lib/control/", async () => {
  const bad = (await importsUnder("lib/data/"))
    .filter(({ target }) => target.startsWith("lib/control/"));
  assertEquals(bad, []);
});

Deno.test("lib/control/ reaches lib/data/ only through the data plane and the worker protocol", async () => {
  const DOORS = ["lib/data/data_plane.ts", "lib/data/worker_protocol.ts"];
  const bad = (await importsUnder("lib/control/"))
    .filter(({ target }) => target.startsWith("lib/data/") && !DOORS.includes(target));
  assertEquals(bad, []);
});

Deno.test("nothing outside tests/ imports tests/", async () => {
  const edges = [];
  for (const folder of ["lib/", "load/", "backend-servers/", "main.ts"]) {
    edges.push(...await importsUnder(folder));
  }
  assertEquals(edges.filter(({ target }) => target.startsWith("tests/")), []);
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
  assert(edges.some(({ target }) => target === "lib/config/config.ts"), "the parser sees imports");
  assertEquals(findCycle(edges), undefined);
});

/**
 * A number after `??` outside `lib/config/`: a second default. A setting's default lives only
 * in `settings.ts`, and a component receives its settings as declared there (required).
 *
 * Not counted: a lookup's fallback (`list[i] ?? 0`, `map.get(key) ?? 0`, `UNITS[unit] ?? 1`,
 * `list?.indexOf(x) ?? -1`) and an optional chain's zero (`seen?.count ?? 0`): what an absent
 * entry counts as. `noUncheckedIndexedAccess` makes every index and `get` possibly undefined;
 * those are arithmetic, not defaults.
 */
const NUMBER_DEFAULT = /\?\?\s*(-?(?:0x[0-9a-f]+|[0-9][0-9_]*(?:\.[0-9]+)?))(?![\w.])/gi;

/**
 * The `?? <number>` left in `lib/`, each a true constant that no setting declares. A key is
 * `file: operand ?? number`.
 */
const NUMBER_DEFAULTS_ALLOWED: ReadonlyMap<string, string> = new Map([
  [
    "lib/core/backend.ts: options.returnCount ?? 0",
    "a backend made without a history has come back zero times (slow start's count)",
  ],
  [
    "lib/core/metrics.ts: state.webSocketsOpen ?? 0",
    "a worker's report omits the WebSocket counts until it has any: zero",
  ],
  [
    "lib/core/metrics.ts: state.webSocketUpgrades ?? 0",
    "a worker's report omits the WebSocket counts until it has any: zero",
  ],
  [
    "lib/data/access_log.ts: r.bytes ?? 0",
    "nginx's combined format writes 0 bytes when no body length is known",
  ],
  [
    "lib/data/websocket.ts: opened.status ?? 502",
    "an upgrade the backend refused without a status is a bad gateway (an HTTP status)",
  ],
]);

/** Each `?? <number>` in `text` that is not a lookup's zero, as `operand ?? number`. */
function numberDefaults(text: string): string[] {
  const found: string[] = [];
  for (const match of text.matchAll(NUMBER_DEFAULT)) {
    const left = text.slice(0, match.index).trimEnd();
    const operand = /[\w$#.?]+$/.exec(left)?.[0] ?? "";
    const number = match[1] ?? "";
    if (left.endsWith("]") || left.endsWith(")")) continue;
    if (number === "0" && operand.includes("?.")) continue;
    found.push(`${operand} ?? ${number}`);
  }
  return found;
}

Deno.test("numberDefaults() finds a second default and passes a lookup's zero", () => {
  assertEquals(numberDefaults("const a = options.percent ?? 20;"), ["options.percent ?? 20"]);
  assertEquals(numberDefaults("x(deps.limitBytes ?? 1024 * 1024)"), ["deps.limitBytes ?? 1024"]);
  assertEquals(numberDefaults("o.timeoutMs ?? 30_000, o.maxBytes ?? 0"), [
    "o.timeoutMs ?? 30_000",
    "o.maxBytes ?? 0",
  ]);
  assertEquals(numberDefaults("buf[i] ?? 0x30; map.get(k) ?? 0; seen?.count ?? 0; a ?? b"), []);
  assertEquals(numberDefaults("seen?.count ?? 1"), ["seen?.count ?? 1"]);
});

Deno.test("lib/ outside lib/config/ has no `?? <number>` default but the allowed constants", async () => {
  const found: string[] = [];
  for await (const file of sourceFiles(new URL("lib/", ROOT))) {
    const path = file.href.slice(ROOT.href.length);
    if (path.startsWith("lib/config/")) continue;
    for (const use of numberDefaults(await Deno.readTextFile(file))) found.push(`${path}: ${use}`);
  }
  assertEquals(found.filter((key) => !NUMBER_DEFAULTS_ALLOWED.has(key)), []);
  // An allowed entry that is gone is dropped from the list too.
  assertEquals([...NUMBER_DEFAULTS_ALLOWED.keys()].filter((key) => !found.includes(key)), []);
});
