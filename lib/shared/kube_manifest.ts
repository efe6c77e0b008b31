/**
 * What `kube lb` and `kube loadtest` share: their own flags (name, namespace, image, resources)
 * split off from the flags of the command they run, the labels and pod hardening every manifest
 * carries, and printing the manifests as one YAML stream.
 *
 * @module
 */
import { stringify } from "yaml";
import { UsageError } from "./command.ts";

/** A Kubernetes object as plain data. */
export type Manifest = Readonly<Record<string, unknown>>;

/** One flag of a `kube` command itself (not of the command it runs). */
export interface KubeFlag {
  /** Its name without `--`. */
  readonly name: string;
  /** What its value is called in the help. */
  readonly metavar: string;
  /** What it does, with its default. */
  readonly help: string;
}

/** The flags every `kube` command takes. */
export const COMMON_KUBE_FLAGS: readonly KubeFlag[] = [
  {
    name: "image",
    metavar: "IMAGE",
    help: "The denolb container image (required), such as ghcr.io/OWNER/denolb:0.1.0, the " +
      "release's image.",
  },
  {
    name: "name",
    metavar: "NAME",
    help: "Name of the objects and their app label. Default: denolb (kube lb), " +
      "denolb-loadtest (kube loadtest).",
  },
  {
    name: "namespace",
    metavar: "NS",
    help: "Namespace written into every object. Default: none (kubectl's -n decides).",
  },
  { name: "cpu", metavar: "QUANTITY", help: "CPU request of each pod. Default: 500m." },
  {
    name: "memory",
    metavar: "QUANTITY",
    help: "Memory request and limit of each pod. Default: 256Mi.",
  },
];

/**
 * Splits a `kube` command's arguments into its own flags and the flags of the command it runs.
 * `--flag value` and `--flag=value` both work; a flag of its own given twice keeps the last.
 *
 * @param args The arguments.
 * @param own The flags of the `kube` command.
 * @returns Its own flags' values and the remaining arguments, in order.
 * @throws {UsageError} When one of its own flags has no value.
 *
 * @example
 * ```ts
 * import { splitKubeFlags } from "./kube_manifest.ts";
 * const { values, rest } = splitKubeFlags(["--image=i", "--port", "80"], [
 *   { name: "image", metavar: "IMAGE", help: "" },
 * ]);
 * if (values.get("image") !== "i" || rest.join(" ") !== "--port 80") throw new Error();
 * ```
 */
export function splitKubeFlags(
  args: readonly string[],
  own: readonly KubeFlag[],
): { values: Map<string, string>; rest: string[] } {
  const names = new Set(own.map((flag) => flag.name));
  const values = new Map<string, string>();
  const rest: string[] = [];
  for (let index = 0; index < args.length; index++) {
    const arg = args[index] ?? "";
    const match = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/s.exec(arg);
    const name = match?.[1];
    if (name === undefined || !names.has(name)) {
      rest.push(arg);
      continue;
    }
    const value = match?.[2] ?? args[++index];
    if (
      value === undefined || value === "" || (match?.[2] === undefined && value.startsWith("--"))
    ) {
      throw new UsageError(`Flag --${name} needs a value`);
    }
    values.set(name, value);
  }
  return { values, rest };
}

/** Object names: RFC 1123 labels, as Kubernetes requires for Services. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** A Kubernetes resource quantity: `500m`, `1`, `256Mi`, `1.5Gi`. */
const QUANTITY = /^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/;

/** The settings every `kube` command reads from {@linkcode COMMON_KUBE_FLAGS}. */
export interface CommonKubeOptions {
  /** The container image. */
  readonly image: string;
  /** Object name and app label. */
  readonly name: string;
  /** Namespace, when given. */
  readonly namespace?: string;
  /** CPU request. */
  readonly cpu: string;
  /** Memory request and limit. */
  readonly memory: string;
}

/**
 * Reads and checks the common flags.
 *
 * @param values The values {@linkcode splitKubeFlags} found.
 * @param defaultName The name when `--name` is not given.
 * @returns The options.
 * @throws {UsageError} For a missing image, a name or namespace Kubernetes would refuse, or a
 * quantity it cannot read.
 */
export function readCommonKubeOptions(
  values: ReadonlyMap<string, string>,
  defaultName: string,
): CommonKubeOptions {
  const image = values.get("image");
  if (image === undefined) {
    throw new UsageError(
      "Missing --image: give the denolb container image, such as ghcr.io/OWNER/denolb:0.1.0",
    );
  }
  if (/\s/.test(image)) throw new UsageError(`Invalid --image "${image}": must have no spaces`);
  const name = values.get("name") ?? defaultName;
  // Room for the suffixes of derived objects ("-admin", "-config").
  if (!DNS_LABEL.test(name) || name.length > 50) {
    throw new UsageError(
      `Invalid --name "${name}": must be lowercase letters, digits and '-', at most 50, ` +
        "starting and ending with a letter or digit",
    );
  }
  const namespace = values.get("namespace");
  if (namespace !== undefined && !DNS_LABEL.test(namespace)) {
    throw new UsageError(
      `Invalid --namespace "${namespace}": must be lowercase letters, digits and '-', at most 63`,
    );
  }
  const quantity = (flag: string, fallback: string): string => {
    const text = values.get(flag) ?? fallback;
    if (!QUANTITY.test(text)) {
      throw new UsageError(`Invalid --${flag} "${text}": must be a quantity such as 500m or 1Gi`);
    }
    return text;
  };
  return {
    image,
    name,
    ...(namespace === undefined ? {} : { namespace }),
    cpu: quantity("cpu", "500m"),
    memory: quantity("memory", "256Mi"),
  };
}

/**
 * The whole CPUs a CPU quantity asks for, at least 1: what `--workers` should be in a pod that
 * requests it (`auto` would count the node's cores).
 *
 * @param cpu A quantity such as `500m` or `2`.
 * @returns The CPUs, rounded up.
 *
 * @example
 * ```ts
 * import { wholeCpus } from "./kube_manifest.ts";
 * if (wholeCpus("500m") !== 1 || wholeCpus("2500m") !== 3 || wholeCpus("2") !== 2) throw new Error();
 * ```
 */
export function wholeCpus(cpu: string): number {
  const cores = cpu.endsWith("m") ? Number(cpu.slice(0, -1)) / 1000 : Number(cpu);
  return Math.max(1, Math.ceil(Number.isFinite(cores) ? cores : 1));
}

/**
 * The metadata of one object: name, namespace and the labels that tie a deployment together.
 *
 * @param options The common options.
 * @param name The object's name. Default: the app's name.
 * @returns `metadata`.
 */
export function objectMeta(options: CommonKubeOptions, name: string = options.name): Manifest {
  return {
    name,
    ...(options.namespace === undefined ? {} : { namespace: options.namespace }),
    labels: appLabels(options),
  };
}

/**
 * The labels that select the app's pods.
 *
 * @param options The common options.
 * @returns `app.kubernetes.io/name` and `app.kubernetes.io/instance`.
 */
export function appLabels(options: CommonKubeOptions): Record<string, string> {
  return { "app.kubernetes.io/name": "denolb", "app.kubernetes.io/instance": options.name };
}

/**
 * The container's hardening: not root, no privilege escalation, no capabilities, a read-only
 * root file system (the binary writes nothing but `/tmp`).
 */
export const CONTAINER_SECURITY: Manifest = {
  runAsNonRoot: true,
  runAsUser: 65532,
  runAsGroup: 65532,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
};

/**
 * The container's resources: the CPU request (no CPU limit, whose throttling adds latency), the
 * memory request as its limit too.
 *
 * @param options The common options.
 * @returns `resources`.
 */
export function containerResources(options: CommonKubeOptions): Manifest {
  return {
    requests: { cpu: options.cpu, memory: options.memory },
    limits: { memory: options.memory },
  };
}

/**
 * Prints manifests as one YAML stream (`---` between documents), after a comment header.
 *
 * @param manifests The objects, in apply order.
 * @param comment Lines printed first as `# ` comments. Default: none.
 * @returns The YAML text.
 */
export function formatManifests(
  manifests: readonly Manifest[],
  comment: readonly string[] = [],
): string {
  const header = comment.map((line) => line === "" ? "#\n" : `# ${line}\n`).join("");
  return header +
    manifests.map((manifest) =>
      "---\n" + stringify(manifest, { lineWidth: 0, aliasDuplicateObjects: false })
    ).join("");
}

/**
 * The help of a `kube` command's own flags.
 *
 * @param flags The flags.
 * @returns One line per flag.
 */
export function kubeFlagHelp(flags: readonly KubeFlag[]): string {
  return flags.map((flag) => {
    const synopsis = `--${flag.name} ${flag.metavar}`;
    return `  ${synopsis.padEnd(26)} ${flag.help}`;
  }).join("\n");
}
