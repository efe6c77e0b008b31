import { assert, assertEquals, assertStringIncludes, assertThrows } from "../support/assert.ts";
import { validateManifests } from "../support/kube_schema.ts";
import { RUN_PERMISSIONS, runDeno } from "../support/subprocess.ts";
import { loadtestJob } from "../../load/kube_job.ts";
import { formatManifests } from "../../lib/shared/kube_manifest.ts";
import { UsageError } from "../../lib/shared/command.ts";

const IMAGE = ["--image", "ghcr.io/example/denolb:0.1.0"];

// deno-lint-ignore no-explicit-any
type Loose = any;

Deno.test("kube loadtest prints a schema-valid Indexed Job whose pods each run one shard", () => {
  const { manifests, comment } = loadtestJob([
    ...IMAGE,
    "--pods",
    "4",
    "--url",
    "http://denolb:9090/",
    "--rate",
    "4000",
    "--duration",
    "1m",
  ]);
  const [job] = validateManifests(formatManifests(manifests, comment)) as Loose[];
  assertEquals(job.kind, "Job");
  assertEquals(job.spec.completionMode, "Indexed");
  assertEquals([job.spec.completions, job.spec.parallelism], [4, 4]);
  const container = job.spec.template.spec.containers[0];
  assertEquals(container.args, [
    "loadtest",
    "--url",
    "http://denolb:9090/",
    "--rate",
    "4000",
    "--duration",
    "1m",
    "--shard",
    "$(DENOLB_SHARD_INDEX)/4",
    "--quiet",
    "--json",
    "-",
  ]);
  assertEquals(container.env[0].name, "DENOLB_SHARD_INDEX");
  assertStringIncludes(
    container.env[0].valueFrom.fieldRef.fieldPath,
    "batch.kubernetes.io/job-completion-index",
  );
  assertEquals(job.spec.template.spec.restartPolicy, "Never");
  assert(comment.some((line) => line.includes("loadtest merge")), "the merge step is shown");
});

Deno.test("kube loadtest refuses what a pod cannot do, and loads too small to share", () => {
  const cases: Array<[string[], string]> = [
    [[...IMAGE, "--rate", "10"], "Missing --pods"],
    [[...IMAGE, "--pods", "0"], 'Invalid --pods "0"'],
    [[...IMAGE, "--pods", "2", "--json", "out.json"], "Cannot use --json with kube loadtest"],
    [[...IMAGE, "--pods", "2", "--shard", "0/2"], "Cannot use --shard with kube loadtest"],
    [[...IMAGE, "--pods", "2", "--body-file", "b"], "Cannot use --body-file"],
    [[...IMAGE, "--pods", "4", "-c", "3"], "concurrency 3 is less than 4 shards"],
    [[...IMAGE, "--pods", "2", "--rate", "x"], 'Invalid --rate "x"'],
  ];
  for (const [args, message] of cases) assertThrows(() => loadtestJob(args), UsageError, message);
});

Deno.test("the schema check rejects a manifest Kubernetes would refuse", () => {
  const { manifests } = loadtestJob([...IMAGE, "--pods", "2"]);
  const text = formatManifests(manifests).replace("completions: 2", "completions: two");
  assertThrows(() => validateManifests(text), Error, "completions must be integer");
});

Deno.test("main.ts kube loadtest prints the Job; --help describes it", async () => {
  const run = (args: string[]) => runDeno(["run", ...RUN_PERMISSIONS, "main.ts", "kube", ...args]);
  const ok = await run(["loadtest", ...IMAGE, "--pods", "2", "-c", "10", "--total", "100"]);
  assertEquals(ok.code, 0, ok.stderr);
  assertEquals(validateManifests(ok.stdout).length, 1);
  const help = await run(["loadtest", "--help"]);
  assertEquals(help.code, 0);
  assertStringIncludes(help.stdout, "loadtest --shard I/N");
});
