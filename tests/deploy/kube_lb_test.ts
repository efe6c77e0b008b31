import { assert, assertEquals, assertRejects, assertStringIncludes } from "../support/assert.ts";
import { type KubeObject, validateManifests } from "../support/kube_schema.ts";
import { RUN_PERMISSIONS, runDeno } from "../support/subprocess.ts";
import { lbManifests } from "../../lib/deploy/kube_lb.ts";
import { formatManifests } from "../../lib/shared/kube_manifest.ts";
import { UsageError } from "../../lib/shared/command.ts";

const IMAGE = ["--image", "ghcr.io/example/denolb:0.1.0"];
const TOKEN = "0123456789abcdef-token";

async function printed(args: readonly string[]): Promise<KubeObject[]> {
  const { manifests, comment } = await lbManifests(args);
  return validateManifests(formatManifests(manifests, comment));
}

function byKind(objects: readonly KubeObject[], kind: string, name?: string): KubeObject {
  const found = objects.find((object) =>
    object.kind === kind &&
    (name === undefined || (object.metadata as { name: string }).name === name)
  );
  assert(found !== undefined, `no ${kind} ${name ?? ""}`);
  return found;
}

/** Reads nested fields without a cast at every step. */
// deno-lint-ignore no-explicit-any
type Loose = any;

Deno.test("kube lb prints schema-valid manifests that run the balancer as the flags say", async () => {
  const objects = await printed([
    ...IMAGE,
    "--replicas",
    "3",
    "--backend",
    "http://web-0.web:8080,http://web-1.web:8080",
    "--policy",
    "least-in-flight",
    "--drain-timeout",
    "20s",
    "--admin-token",
    TOKEN,
    "--port",
    "8000",
  ]);
  assertEquals(objects.map((object) => object.kind), [
    "Secret",
    "ConfigMap",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
  ]);
  const config = JSON.parse((byKind(objects, "ConfigMap") as Loose).data["lb.json"]);
  assertEquals(config.policy, "least-in-flight");
  assertEquals(config.drainTimeoutMs, 20_000);
  assertEquals(config.port, 8000);
  assertEquals(config.host, "0.0.0.0");
  assertEquals(config.admin, { listen: "0.0.0.0:9091" });
  assertEquals(config.workers, "1", "--workers follows the 500m CPU request, not the node");
  assertEquals(config.backends.map((backend: { url: string }) => backend.url), [
    "http://web-0.web:8080/",
    "http://web-1.web:8080/",
  ]);
  assert(!JSON.stringify(config).includes(TOKEN), "the token stays out of the ConfigMap");
  assertEquals((byKind(objects, "Secret") as Loose).stringData.token, TOKEN);

  const deployment = byKind(objects, "Deployment") as Loose;
  assertEquals(deployment.spec.replicas, 3);
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  assertEquals(container.args, [
    "lb",
    "--config",
    "/etc/denolb/lb.json",
    "--admin-token=$(DENOLB_ADMIN_TOKEN)",
  ]);
  assertEquals(container.env[0].valueFrom.secretKeyRef, { name: "denolb-admin", key: "token" });
  assertEquals(container.readinessProbe.httpGet, { path: "/health", port: "admin" });
  assertEquals(container.ports, [
    { name: "http", containerPort: 8000, protocol: "TCP" },
    { name: "admin", containerPort: 9091, protocol: "TCP" },
  ]);
  assertEquals(container.lifecycle.preStop, { sleep: { seconds: 5 } });
  // preStop, then the drain, then a margin: the kubelet never kills a drain short.
  assertEquals(pod.terminationGracePeriodSeconds, 5 + 20 + 5);
  assertEquals(container.resources.requests, { cpu: "500m", memory: "256Mi" });
  assertEquals(deployment.spec.template.metadata.labels, deployment.spec.selector.matchLabels);
  const service = byKind(objects, "Service") as Loose;
  assertEquals(service.spec.selector, deployment.spec.selector.matchLabels);
  assertEquals(service.spec.ports[0].port, 8000);
  const budget = byKind(objects, "PodDisruptionBudget") as Loose;
  assertEquals(budget.spec.selector.matchLabels, deployment.spec.selector.matchLabels);
});

Deno.test("kube lb takes a --config file as lb does, flags over it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/lb.json`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        backends: ["http://api:80"],
        proxy: { retries: 3 },
        health: { path: "/ready" },
      }),
    );
    const objects = await printed([
      ...IMAGE,
      "--config",
      file,
      "--retries",
      "1",
      "--admin-insecure",
      "on",
    ]);
    const config = JSON.parse((byKind(objects, "ConfigMap") as Loose).data["lb.json"]);
    assertEquals(config.proxy.retries, 1);
    assertEquals(config.health, { path: "/ready" });
    assertEquals(config.admin, { listen: "0.0.0.0:9091", insecure: "on" });
    assertEquals(objects.some((object) => object.kind === "Secret"), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kube lb --backend-dns adds a headless Service for the backends", async () => {
  const objects = await printed([
    ...IMAGE,
    "--backend-dns",
    "web.shop.svc.cluster.local:8080",
    "--backend-selector",
    "app=web,tier=api",
    "--admin-token-secret",
    "lb-admin",
  ]);
  const headless = byKind(objects, "Service", "web") as Loose;
  assertEquals(headless.spec.clusterIP, "None");
  assertEquals(headless.spec.selector, { app: "web", tier: "api" });
  assertEquals(headless.spec.ports[0].port, 8080);
  const container = (byKind(objects, "Deployment") as Loose).spec.template.spec.containers[0];
  const config = (byKind(objects, "ConfigMap") as Loose).data;
  assertStringIncludes(JSON.stringify(config), "web.shop.svc.cluster.local:8080");
  assertEquals(container.env[0].valueFrom.secretKeyRef.name, "lb-admin");
  assertEquals(objects.some((object) => object.kind === "Secret"), false, "an existing Secret");
});

Deno.test("kube lb refuses what a pod cannot run, naming the flag", async () => {
  const cases: Array<[string[], string]> = [
    [["--backend", "a:1", "--admin-insecure", "on"], "Missing --image"],
    [[...IMAGE, "--admin-insecure", "on"], "Missing backends for kube lb"],
    [[...IMAGE, "--backend", "a:1"], "Missing admin token for kube lb"],
    [[...IMAGE, "--backend", "a:1", "--admin", "off"], "Invalid --admin off for kube lb"],
    [[...IMAGE, "--backend", "a:1", "--port", "0", "--admin-insecure", "on"], "Invalid --port 0"],
    [[...IMAGE, "--backend", "a:1", "--replicas", "0"], 'Invalid --replicas "0"'],
    [[...IMAGE, "--backend", "a:1", "--name", "Bad_Name"], 'Invalid --name "Bad_Name"'],
    [[...IMAGE, "--backend", "a:1", "--cpu", "lots"], 'Invalid --cpu "lots"'],
    [[...IMAGE, "--backend-dns", "web"], 'Invalid --backend-dns "web"'],
    [[...IMAGE, "--backend", "a:1", "--retries", "x"], 'Invalid --retries "x"'],
    [[...IMAGE, "--image"], "Flag --image needs a value"],
  ];
  for (const [args, message] of cases) {
    await assertRejects(() => lbManifests(args), UsageError, message);
  }
});

Deno.test("the printed ConfigMap passes lb check-config with the container's flags", async () => {
  const objects = await printed([...IMAGE, "--backend", "http://web:8080", "--admin-token", TOKEN]);
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/lb.json`;
    await Deno.writeTextFile(file, (byKind(objects, "ConfigMap") as Loose).data["lb.json"]);
    const result = await runDeno([
      "run",
      ...RUN_PERMISSIONS,
      "main.ts",
      "lb",
      "check-config",
      file,
      `--admin-token=${TOKEN}`,
    ]);
    assertEquals(result.code, 0, result.stderr);
    assertStringIncludes(result.stdout, "listening on 0.0.0.0:9090, admin 0.0.0.0:9091");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts kube lb prints YAML on stdout; a bad flag exits 2 with one line", async () => {
  const ok = await runDeno([
    "run",
    ...RUN_PERMISSIONS,
    "main.ts",
    "kube",
    "lb",
    ...IMAGE,
    "--backend",
    "http://web:8080",
    "--admin-insecure",
    "on",
  ]);
  assertEquals(ok.code, 0, ok.stderr);
  assertEquals(validateManifests(ok.stdout).length, 4);
  const bad = await runDeno([
    "run",
    ...RUN_PERMISSIONS,
    "main.ts",
    "kube",
    "lb",
    "--backend",
    "a:1",
  ]);
  assertEquals(bad.code, 2);
  assertEquals(bad.stderr.trim().split("\n").length, 1, bad.stderr);
  assertStringIncludes(bad.stderr, "Missing --image");
  const help = await runDeno(["run", ...RUN_PERMISSIONS, "main.ts", "kube", "--help"]);
  assertEquals(help.code, 0);
  assertStringIncludes(help.stdout, "denolb kube loadtest --image IMAGE --pods N");
});
