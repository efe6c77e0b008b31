/**
 * `kube loadtest --pods N`: an Indexed Job of N pods, each running `loadtest --shard I/N` (its
 * index from the Job) and so making its share of the rate, concurrency or total; each writes its
 * JSON result to its log, and `loadtest merge` reads those logs back into one report. The
 * comment printed above the Job says how.
 *
 * @module
 */
import { type CommandContext, EXIT, UsageError } from "../lib/shared/command.ts";
import {
  appLabels,
  COMMON_KUBE_FLAGS,
  CONTAINER_SECURITY,
  containerResources,
  formatManifests,
  type KubeFlag,
  kubeFlagHelp,
  type Manifest,
  objectMeta,
  readCommonKubeOptions,
  splitKubeFlags,
} from "../lib/shared/kube_manifest.ts";
import { parseLoadArgs } from "./options.ts";

/** The flags of `kube loadtest` besides `loadtest`'s own. */
export const KUBE_LOADTEST_FLAGS: readonly KubeFlag[] = [
  ...COMMON_KUBE_FLAGS,
  { name: "pods", metavar: "N", help: "Load generator pods, each one shard (required)." },
];

/** The most pods one Job runs here: a load test of more is a cluster of its own. */
const MAX_PODS = 1000;

/** The environment variable that carries the pod's index into its arguments. */
const INDEX_ENV = "DENOLB_SHARD_INDEX";

/**
 * Flags that make no sense inside a pod: the shard is the Job's, the result goes to the log,
 * and files on this machine are not in the pod.
 */
const POD_CONFLICTS: Readonly<Record<string, string>> = {
  shard: "each pod's shard comes from its Job index",
  json: "each pod writes its JSON result to its log",
  csv: "each pod writes its JSON result to its log; merge them, then write CSV",
  html: "each pod writes its JSON result to its log; merge them, then write HTML",
  chart: "each pod writes its JSON result to its log; merge them, then write a chart",
  markdown: "each pod writes its JSON result to its log",
  "body-file": "the file is not in the pod; give --body",
  targets: "the file is not in the pod",
  "find-capacity": "each pod would search on its own",
};

/** The help of `kube loadtest`. */
export const KUBE_LOADTEST_HELP: string =
  `Usage: denolb kube loadtest --image IMAGE --pods N [options] [loadtest flags]

Prints an Indexed Job (YAML, for kubectl apply -f -) of N pods that run one load test together:
pod I runs loadtest --shard I/N with the loadtest flags given here, so it makes its share of
every rate, concurrency level and --total (--duration stays), and writes its JSON result to its
log. The comment above the Job shows how to wait for it and merge the logs with loadtest merge.
The pods start when they are scheduled: pull the image beforehand for a simultaneous start.

${kubeFlagHelp(KUBE_LOADTEST_FLAGS)}

Example:
  denolb kube loadtest --image ghcr.io/OWNER/denolb:0.1.0 --pods 4 --url http://denolb:9090/ --rate 4000 --duration 1m
`;

/**
 * Runs `kube loadtest`.
 *
 * @param args The arguments after `kube` (starting with `loadtest`).
 * @param ctx Output.
 * @returns The exit code.
 * @throws {UsageError} For a bad flag or value, naming it.
 */
export function kubeLoadtestCommand(
  args: readonly string[],
  ctx: CommandContext,
): Promise<number> {
  const rest = args[0] === "loadtest" ? args.slice(1) : args;
  if (rest.includes("-h") || rest.includes("--help")) {
    ctx.stdout(KUBE_LOADTEST_HELP);
    return Promise.resolve(EXIT.ok);
  }
  const { manifests, comment } = loadtestJob(rest);
  ctx.stdout(formatManifests(manifests, comment));
  return Promise.resolve(EXIT.ok);
}

/** The Job of `kube loadtest` and the comment printed above it. */
export interface LoadtestJob {
  /** The Job alone. */
  readonly manifests: readonly Manifest[];
  /** How to run it and merge its results. */
  readonly comment: readonly string[];
}

/**
 * Builds the Job of `kube loadtest`.
 *
 * @param args Its own flags and `loadtest`'s.
 * @returns The Job and the comment.
 * @throws {UsageError} For a bad value, a flag a pod cannot use, or a load too small to give
 * every pod a share.
 */
export function loadtestJob(args: readonly string[]): LoadtestJob {
  const { values, rest } = splitKubeFlags(args, KUBE_LOADTEST_FLAGS);
  const options = readCommonKubeOptions(values, "denolb-loadtest");
  const podsText = values.get("pods");
  if (podsText === undefined) {
    throw new UsageError("Missing --pods: give the number of load generator pods");
  }
  const pods = Number(podsText);
  if (!/^\d+$/.test(podsText) || pods < 1 || pods > MAX_PODS) {
    throw new UsageError(
      `Invalid --pods "${podsText}": must be a whole number from 1 to ${MAX_PODS}`,
    );
  }
  for (const arg of rest) {
    const name = /^--([a-z-]+)/.exec(arg)?.[1];
    const why = name === undefined ? undefined : POD_CONFLICTS[name];
    if (name !== undefined && why !== undefined) {
      throw new UsageError(`Cannot use --${name} with kube loadtest: ${why}`);
    }
  }
  // Every shard's plan is checked as its pod will check it, so no pod fails on a usage error.
  const readFile = (path: string): Uint8Array => {
    throw new UsageError(`Cannot read "${path}" for kube loadtest: the file is not in the pod`);
  };
  for (let index = 0; index < pods; index++) {
    const command = parseLoadArgs([...rest, "--shard", `${index}/${pods}`], { readFile });
    if (command.kind !== "run") {
      throw new UsageError("kube loadtest runs a load test: give loadtest's run flags");
    }
  }
  const labels = { ...appLabels(options), "app.kubernetes.io/component": "loadtest" };
  const job: Manifest = {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { ...objectMeta(options), labels },
    spec: {
      completionMode: "Indexed",
      completions: pods,
      parallelism: pods,
      // A shard run again later is not side by side with the others: fail instead.
      backoffLimit: 0,
      // The logs hold the results: keep the pods a day.
      ttlSecondsAfterFinished: 86_400,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          containers: [{
            name: "loadtest",
            image: options.image,
            args: [
              "loadtest",
              ...rest,
              "--shard",
              `$(${INDEX_ENV})/${pods}`,
              "--quiet",
              "--json",
              "-",
            ],
            env: [{
              name: INDEX_ENV,
              valueFrom: {
                fieldRef: {
                  fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']",
                },
              },
            }],
            resources: containerResources(options),
            securityContext: CONTAINER_SECURITY,
            volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
          }],
          volumes: [{ name: "tmp", emptyDir: {} }],
        },
      },
    },
  };
  const ns = options.namespace === undefined ? "" : ` -n ${options.namespace}`;
  const name = options.name;
  const comment = [
    `denolb kube loadtest: ${pods} pod(s) of ${options.image}, pod I runs loadtest --shard I/${pods}`,
    "",
    `Run:   kubectl${ns} apply -f FILE`,
    `       kubectl${ns} wait --for=condition=complete job/${name} --timeout=1h`,
    `Merge: for i in $(seq 0 ${pods - 1}); do kubectl${ns} logs --tail=-1 \\`,
    `         -l batch.kubernetes.io/job-name=${name},batch.kubernetes.io/job-completion-index=$i \\`,
    `         > ${name}-$i.json; done`,
    `       denolb loadtest merge ${name}-*.json`,
    "(merge reads the JSON report out of each pod's log)",
  ];
  return { manifests: [job], comment };
}
