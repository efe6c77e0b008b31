import { UsageError } from "../../lib/shared/command.ts";
import { loadtestCommand } from "../../load/cli.ts";
import { parseLoadArgs } from "../../load/options.ts";
import { parseTargets, pickOrder } from "../../load/targets.ts";
import { assert, assertEquals, assertThrows } from "../support/assert.ts";
import { captureContext } from "./load_fixtures.ts";
import { assertValidReport } from "./report_validation.ts";

const defaults = {
  headers: [["X-Shared", "1"]] as const,
  keepAlive: true,
  timeoutMs: 1000,
  readFile: (path: string) => {
    if (path !== "body.json") throw new Deno.errors.NotFound(`no ${path}`);
    return new TextEncoder().encode('{"a":1}');
  },
};

Deno.test("parseTargets() reads vegeta's format with comments, bodies and weights", () => {
  const targets = parseTargets(
    [
      "# the mix",
      "GET http://127.0.0.1:1/a?x=1",
      "X-Account-ID: 8675309",
      "",
      "",
      "post http://127.0.0.1:1/b",
      "# weight: 3",
      "Content-Type: application/json",
      "@body.json",
      "",
    ].join("\n"),
    defaults,
  );
  assertEquals(targets.length, 2);
  assertEquals(targets[0]?.spec.url.href, "http://127.0.0.1:1/a?x=1");
  assertEquals(targets[0]?.spec.headers, [["X-Shared", "1"], ["X-Account-ID", "8675309"]]);
  assertEquals(targets[0]?.weight, 1);
  assertEquals(targets[1]?.spec.method, "POST");
  assertEquals(targets[1]?.weight, 3);
  assertEquals(new TextDecoder().decode(targets[1]?.spec.body), '{"a":1}');
  for (
    const [text, message] of [
      ["GET", 'line 1: "GET" is not "METHOD URL"'],
      ["GET nope", 'line 1: "nope" is not a URL'],
      ["GET ftp://x/", 'line 1: "ftp://x/" must be http or https'],
      ["GET http://x/\nbad header", 'line 2: "bad header" is not a "Name: value" header'],
      ["GET http://x/\n# weight: 0", 'line 2: weight "0" must be an integer from 1 to 1000'],
      ["GET http://x/\n@missing", 'line 2: cannot read body "missing"'],
      ["# nothing", "no target"],
    ] as const
  ) {
    assertThrows(() => parseTargets(text, defaults), SyntaxError, message);
  }
});

Deno.test("pickOrder() interleaves weights smoothly", () => {
  assertEquals(pickOrder([1, 1, 1]), [0, 1, 2]);
  assertEquals(pickOrder([3, 1]), [0, 0, 1, 0]);
  assertEquals(pickOrder([5, 1, 1]).filter((i) => i === 0).length, 5);
});

Deno.test("loadtest --targets sends the weighted mix to real servers, over workers too", async () => {
  const seen: string[] = [];
  const bodies: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (r) => {
    const url = new URL(r.url);
    seen.push(`${r.method} ${url.pathname} ${r.headers.get("x-shared")}`);
    if (r.method === "POST") bodies.push(await r.text());
    return new Response("ok");
  });
  await using _server = { [Symbol.asyncDispose]: () => server.shutdown() };
  const base = `http://127.0.0.1:${server.addr.port}`;
  const file = `GET ${base}/a\n\nPOST ${base}/b\n# weight: 3\n@body.txt\n`;
  const readFile = (path: string) =>
    new TextEncoder().encode(path === "mix.txt" ? file : "payload");
  const command = parseLoadArgs(
    ["--targets", "mix.txt", "-H", "X-Shared: yes", "--total", "40", "-c", "4"],
    { readFile },
  );
  assert(command.kind === "run");
  assertEquals(command.plan.targets?.length, 2);
  for (const workers of ["1", "2"]) {
    seen.length = 0;
    const { ctx, stdout } = captureContext();
    const code = await loadtestCommand(
      [
        "--targets",
        "mix.txt",
        "-H",
        "X-Shared: yes",
        "--total",
        "40",
        "-c",
        "4",
        "--workers",
        workers,
        "--json",
        "-",
        "--quiet",
      ],
      ctx,
      { readFile },
    );
    assertEquals(code, 0);
    assertEquals(seen.filter((line) => line === "GET /a yes").length, 10, `workers ${workers}`);
    assertEquals(seen.filter((line) => line === "POST /b yes").length, 30, `workers ${workers}`);
    const report = assertValidReport(stdout()) as { url: string };
    assertEquals(report.url, `${base}/a, ${base}/b`);
  }
  assert(bodies.every((body) => body === "payload"));
  assertThrows(
    () => parseLoadArgs(["--targets", "mix.txt", "--url", base], { readFile }),
    UsageError,
    "Cannot combine --targets and --url",
  );
});
