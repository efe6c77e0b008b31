/**
 * The GitHub workflows, checked without GitHub: they parse, every command they run exists (a
 * `deno task`, a script of the repository), every runner label is one GitHub offers today, and
 * the release's own shell steps (the tag check, the packing) do what they say when run here.
 */
import { parse } from "yaml";
import { assert, assertEquals, assertStringIncludes } from "./support/assert.ts";
import { REPO_ROOT } from "./support/subprocess.ts";

/**
 * GitHub-hosted runner labels that exist (December 2026). `macos-13` was retired on 2025-12-04;
 * `macos-15-intel` is the Intel image that replaced it.
 */
const CURRENT_RUNNERS = new Set([
  "ubuntu-latest",
  "ubuntu-24.04",
  "ubuntu-22.04",
  "ubuntu-24.04-arm",
  "ubuntu-22.04-arm",
  "macos-latest",
  "macos-14",
  "macos-15",
  "macos-26",
  "macos-15-intel",
  "windows-latest",
  "windows-2022",
  "windows-2025",
  "windows-11-arm",
]);

interface Step {
  readonly id?: string;
  readonly name?: string;
  readonly run?: string;
  readonly uses?: string;
  readonly with?: Record<string, unknown>;
}
interface Job {
  readonly "runs-on": string;
  readonly strategy?: { matrix?: { include?: Array<Record<string, string>> } };
  readonly steps: Step[];
}
interface Workflow {
  readonly on: Record<string, unknown>;
  readonly jobs: Record<string, Job>;
}

const WORKFLOWS = new URL(".github/workflows/", REPO_ROOT);

async function workflows(): Promise<Array<[string, Workflow]>> {
  const found: Array<[string, Workflow]> = [];
  for await (const entry of Deno.readDir(WORKFLOWS)) {
    if (!/\.ya?ml$/.test(entry.name)) continue;
    found.push([entry.name, parse(await Deno.readTextFile(new URL(entry.name, WORKFLOWS)))]);
  }
  return found.sort(([a], [b]) => a.localeCompare(b));
}

async function workflow(name: string): Promise<Workflow> {
  const found = (await workflows()).find(([file]) => file === name);
  assert(found !== undefined, `no ${name}`);
  return found[1];
}

const TASKS: Readonly<Record<string, string>> = JSON.parse(
  await Deno.readTextFile(new URL("deno.json", REPO_ROOT)),
).tasks;

Deno.test("the workflows parse; CI runs .ci/run on push and pull request", async () => {
  assertEquals((await workflows()).map(([name]) => name), ["ci.yml", "release.yml"]);
  const ci = await workflow("ci.yml");
  assert("push" in ci.on && "pull_request" in ci.on, "CI on push and pull request");
  const runs = Object.values(ci.jobs).flatMap((job) => job.steps.map((step) => step.run ?? ""));
  assert(runs.includes("bash .ci/run"), "CI runs .ci/run");
  const release = await workflow("release.yml");
  assertEquals(release.on, { push: { tags: ["v*"] } });
});

Deno.test("every command a workflow runs exists: deno only through tasks, scripts in the repo", async () => {
  for (const [name, flow] of await workflows()) {
    for (const [jobName, job] of Object.entries(flow.jobs)) {
      for (const step of job.steps) {
        const where = `${name} ${jobName} ${step.name ?? step.run ?? step.uses}`;
        const script = step.run ?? "";
        for (const match of script.matchAll(/\bdeno\s+(\S+)(?:\s+--quiet)?(?:\s+(\S+))?/g)) {
          assertEquals(match[1], "task", `${where}: deno runs through a task, not "${match[0]}"`);
          const task = (match[2] ?? "").replace(/[)"']+$/, "");
          assert(task in TASKS, `${where}: no task "${task}" in deno.json`);
        }
        for (const match of script.matchAll(/\bbash\s+(\S+)/g)) {
          await Deno.stat(new URL(match[1] ?? "", REPO_ROOT));
        }
        const file = step.with?.file;
        if (typeof file === "string") await Deno.stat(new URL(file, REPO_ROOT));
      }
    }
  }
});

Deno.test("every runner label is one GitHub offers today; the release covers five platforms", async () => {
  for (const [name, flow] of await workflows()) {
    for (const [jobName, job] of Object.entries(flow.jobs)) {
      const labels = job["runs-on"] === "${{ matrix.os }}"
        ? (job.strategy?.matrix?.include ?? []).map((entry) => entry.os ?? "")
        : [job["runs-on"]];
      for (const label of labels) {
        assert(CURRENT_RUNNERS.has(label), `${name} ${jobName}: runner "${label}" is not current`);
      }
    }
  }
  const include = (await workflow("release.yml")).jobs.compile?.strategy?.matrix?.include ?? [];
  assertEquals(include.map((entry) => entry.target).sort(), [
    "linux-arm64",
    "linux-x64",
    "macos-arm64",
    "macos-x64",
    "windows-x64",
  ]);
});

function releaseStep(flow: Workflow, job: string, name: string): string {
  const step = flow.jobs[job]?.steps.find((s) => s.name === name);
  assert(step?.run !== undefined, `no step "${name}" in ${job}`);
  return step.run;
}

async function bash(
  script: string,
  env: Record<string, string>,
  cwd: URL | string = REPO_ROOT,
): Promise<{ code: number; stderr: string }> {
  const denoDir = Deno.execPath().replace(/\/[^/]*$/, "");
  const output = await new Deno.Command("bash", {
    args: ["-eo", "pipefail", "-c", script],
    cwd,
    env: { ...env, PATH: `${denoDir}:${Deno.env.get("PATH") ?? ""}`, NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

Deno.test("the release's tag check passes deno.json's version and refuses another", async () => {
  const script = releaseStep(
    await workflow("release.yml"),
    "test",
    "The tag is deno.json's version",
  );
  const version = JSON.parse(await Deno.readTextFile(new URL("deno.json", REPO_ROOT))).version;
  const output = await Deno.makeTempFile();
  try {
    const ok = await bash(script, { GITHUB_REF_NAME: `v${version}`, GITHUB_OUTPUT: output });
    assertEquals(ok.code, 0, ok.stderr);
    assertEquals(await Deno.readTextFile(output), `version=${version}\n`);
    const bad = await bash(script, { GITHUB_REF_NAME: "v99.0.0", GITHUB_OUTPUT: output });
    assertEquals(bad.code, 1);
    assertStringIncludes(bad.stderr, "Tag v99.0.0 does not match deno.json");
  } finally {
    await Deno.remove(output);
  }
});

Deno.test("the release packs the binary with the demo backends' files, LICENSE, README and the docs it links", async () => {
  const script = releaseStep(await workflow("release.yml"), "compile", "Pack");
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/dist`);
    await Deno.writeTextFile(`${dir}/dist/denolb`, "binary");
    await Deno.mkdir(`${dir}/lib/config`, { recursive: true });
    for (const file of ["LICENSE", "README.md", "lib/config/GUIDE.md", "lib/config/REFERENCE.md"]) {
      await Deno.copyFile(new URL(file, REPO_ROOT), `${dir}/${file}`);
    }
    const copied = await bash(`cp -R backend-servers "${dir}/"`, {});
    assertEquals(copied.code, 0, copied.stderr);
    const packed = await bash(script, { PACKAGE: "denolb-0.1.0-linux-x64", EXE: "" }, dir);
    assertEquals(packed.code, 0, packed.stderr);
    const list = await new Deno.Command("tar", {
      args: ["-tzf", `${dir}/out/denolb-0.1.0-linux-x64.tar.gz`],
      stdout: "piped",
    }).output();
    const files = new TextDecoder().decode(list.stdout).split("\n").filter((f) => !f.endsWith("/"));
    for (
      const expected of [
        "denolb",
        "LICENSE",
        "README.md",
        "lib/config/GUIDE.md",
        "lib/config/REFERENCE.md",
        "backend-servers/server8080/index.html",
        "backend-servers/server8081/health",
        "backend-servers/server8082/index.html",
      ]
    ) {
      assert(files.includes(`denolb-0.1.0-linux-x64/${expected}`), `${expected} in ${files}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
