/** `lb check-config FILE --explain URL` as a user runs it. */
import { assertEquals, assertStringIncludes } from "../support/assert.ts";
import { RUN_PERMISSIONS, runDeno } from "../support/subprocess.ts";

const FILE = {
  pools: { api: { backends: ["127.0.0.1:9101"] } },
  routes: [{ name: "api", match: { host: "*.api.example.com", methods: ["GET"] }, pool: "api" }],
};

Deno.test("lb check-config --explain prints the table and one request's route", async () => {
  const directory = await Deno.makeTempDir();
  try {
    const path = `${directory}/lb.json`;
    await Deno.writeTextFile(path, JSON.stringify(FILE));
    const run = await runDeno([
      "run",
      ...RUN_PERMISSIONS,
      "main.ts",
      "lb",
      "check-config",
      path,
      "--explain",
      "http://x.api.example.com/static/../a",
    ]);
    assertEquals(run.code, 0, run.stderr);
    assertStringIncludes(
      run.stdout,
      "   1. api  host *.api.example.com, method GET -> pool api",
    );
    assertStringIncludes(run.stdout, "GET x.api.example.com/a:\n");
    assertStringIncludes(
      run.stdout,
      '  route "api" matches (host *.api.example.com, method GET)\n',
    );
    const bad = await runDeno([
      "run",
      ...RUN_PERMISSIONS,
      "main.ts",
      "lb",
      "check-config",
      path,
      "--explain",
      "ftp://x",
    ]);
    assertEquals(bad.code, 2);
    assertStringIncludes(bad.stderr, 'Invalid --explain "ftp://x": must be an http or https URL');
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});
