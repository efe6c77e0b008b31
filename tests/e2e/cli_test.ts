/**
 * The command line as users type it: `deno run main.ts ...` in a subprocess.
 */
import { VERSION } from "../../main.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../support/assert.ts";
import { REPO_ROOT, RUN_PERMISSIONS, runDeno, startLbProcess } from "../support/subprocess.ts";

const MAIN = ["run", ...RUN_PERMISSIONS, "main.ts"];

Deno.test("--help lists every command and exits 0", async () => {
  const result = await runDeno([...MAIN, "--help"]);
  assertEquals(result.code, 0);
  for (const command of ["lb", "loadtest", "backends", "demo"]) {
    assertStringIncludes(result.stdout, `  ${command} `);
  }
});

Deno.test("--version prints the version from deno.json", async () => {
  const result = await runDeno([...MAIN, "--version"]);
  assertEquals(result.code, 0);
  assertEquals(result.stdout, `denolb ${VERSION}\n`);
});

for (const command of ["lb", "loadtest", "backends", "demo"]) {
  Deno.test(`${command} --help prints its usage and exits 0`, async () => {
    const result = await runDeno([...MAIN, command, "--help"]);
    assertEquals(result.code, 0, result.stderr);
    assertStringIncludes(result.stdout, "Usage:");
    assertEquals(result.stderr, "");
  });

  Deno.test(`${command} with a bad flag prints one line naming it and exits 2`, async () => {
    const result = await runDeno([...MAIN, command, "--no-such-flag", "1"]);
    assertEquals(result.code, 2);
    assertStringIncludes(result.stderr, "--no-such-flag");
    assertEquals(result.stderr.trim().split("\n").length, 1, result.stderr);
    assert(!result.stderr.includes("    at "), "no stack trace");
  });
}

Deno.test("lb with a bad value names the flag and the value", async () => {
  const result = await runDeno([...MAIN, "lb", "--port", "http"]);
  assertEquals(result.code, 2);
  assertMatch(result.stderr, /--port.*"http"/);
});

Deno.test("an unknown command exits 2 and names it", async () => {
  const result = await runDeno([...MAIN, "balance"]);
  assertEquals(result.code, 2);
  assertStringIncludes(result.stderr, `Unknown command "balance"`);
});

Deno.test("lb exits 0 on SIGTERM after draining", {
  ignore: Deno.build.os === "windows",
}, async () => {
  await using lb = startLbProcess([
    "--backend",
    "127.0.0.1:9",
    "--health-interval",
    "1s",
    "--admin",
    "127.0.0.1:0",
  ]);
  const [, admin] = await lb.waitForLine(/Balancer listening.*?admin=\S*?(http:\/\/[\d.]+:\d+\/)/);
  assert(admin !== undefined);
  const response = await fetch(new URL("/health", admin));
  await response.body?.cancel();
  assertEquals(response.status, 200);
  lb.child.kill("SIGTERM");
  const status = await lb.child.status;
  assertEquals(status.code, 0, lb.output);
  assertStringIncludes(lb.output, "Balancer stopped");
});

Deno.test("lb check-config validates a file without starting: exit 0, or 2 naming the field", async () => {
  const directory = await Deno.makeTempDir();
  try {
    const good = `${directory}/good.json`;
    const bad = `${directory}/bad.json`;
    await Deno.writeTextFile(good, JSON.stringify({ port: 9000, backends: ["127.0.0.1:8080"] }));
    await Deno.writeTextFile(bad, JSON.stringify({ health: { intervalMs: -5 } }));
    const ok = await runDeno([...MAIN, "lb", "check-config", good]);
    assertEquals(ok.code, 0, ok.stderr);
    assertStringIncludes(ok.stdout, `Config "${good}" is valid: 1 backend(s)`);
    const rejected = await runDeno([...MAIN, "lb", "check-config", bad]);
    assertEquals(rejected.code, 2);
    assertStringIncludes(rejected.stderr, `Invalid config "${bad}": health.intervalMs`);
    assertEquals(rejected.stdout, "");
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("every task in deno.json names an existing entry file", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", REPO_ROOT)));
  for (const [name, task] of Object.entries(config.tasks as Record<string, string>)) {
    for (const file of task.match(/\S+\.ts\b/g) ?? []) {
      const stat = await Deno.stat(new URL(file, REPO_ROOT));
      assert(stat.isFile, `task ${name} names ${file}`);
    }
  }
});
