/**
 * The shipped artifacts: the `deno bundle` output (works offline) and the `deno compile` binary
 * (needs the `denort` runtime, which Deno downloads at build time; where it cannot be had, the
 * test says so plainly instead of passing silently).
 */
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { REPO_ROOT, runDeno, startProcess } from "../support/subprocess.ts";

const DIST = new URL("dist/", REPO_ROOT);

/** Runs `demo` from an artifact on free ports, requests a page through it, then stops it. */
async function smokeDemo(command: string, args: readonly string[]): Promise<void> {
  await using demo = startProcess(command, [...args, "demo", "--port", "0", "--base-port", "0"]);
  const [, url] = await demo.waitForLine(/Balancer:\s+(http:\/\/[\d.]+:\d+\/)/);
  assert(url !== undefined);
  const seen = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const response = await fetch(url);
    const body = await response.text();
    assertEquals(response.status, 200, body);
    assertStringIncludes(body, "<html");
    seen.add(response.headers.get("x-backend") ?? "");
  }
  assertEquals(seen.size, 3, "three requests reach three backends");
  demo.child.kill("SIGTERM");
  assertEquals((await demo.child.status).code, 0, demo.output);
}

Deno.test("deno task bundle builds one JS file that runs --help and the demo offline", async () => {
  const built = await runDeno(["task", "bundle"]);
  assertEquals(built.code, 0, built.stderr);
  const bundle = new URL("denolb.js", DIST);
  assert((await Deno.stat(bundle)).isFile);

  const help = await runDeno(["run", "--no-config", "--allow-read", bundle.pathname, "--help"]);
  assertEquals(help.code, 0, help.stderr);
  assertStringIncludes(help.stdout, "loadtest");

  await smokeDemo(Deno.execPath(), [
    "run",
    "--no-config",
    "--unstable-no-legacy-abort",
    "--unstable-net",
    "--allow-net",
    "--allow-env",
    `--allow-read=${DIST.pathname}`,
    bundle.pathname,
  ]);
});

Deno.test("deno task compile builds a binary that runs every command, or says why it could not", async (t) => {
  // Compiled inside the test, not while the module loads: a filtered or fast run never pays it.
  const compiled = await runDeno(["task", "compile"]);
  const isRuntimeMissing = compiled.code !== 0 &&
    /dns error|download|failed to fetch|denort|error sending request/i.test(compiled.stderr);
  // The innermost cause says why: "error sending request for url (...denort...zip): ... dns error".
  const reason =
    compiled.stderr.split("\n").find((line) =>
      /denort|dns error/i.test(line) && !/^Download/.test(line)
    )
      ?.replace(/^\s*\d+:\s*/, "").trim() ?? compiled.stderr.trim().split("\n")[0] ?? "";
  // An ignored step is listed as such in the test report (and kept by the quiet runner).
  await t.step({
    name: isRuntimeMissing
      ? `NOT RUN: deno compile could not obtain its runtime (denort) here (${reason}); set ` +
        `DENORT_BIN to a denort ${Deno.version.deno} binary, or run where Deno's download ` +
        "server is reachable"
      : "every command's --help, then the demo",
    ignore: isRuntimeMissing,
    async fn() {
      assertEquals(compiled.code, 0, compiled.stderr);
      const binary = new URL(Deno.build.os === "windows" ? "denolb.exe" : "denolb", DIST).pathname;
      for (const command of ["lb", "loadtest", "backends", "demo"]) {
        const help = await new Deno.Command(binary, { args: [command, "--help"] }).output();
        assertEquals(help.code, 0, `${command} --help`);
      }
      await smokeDemo(binary, []);
    },
  });
});
