/**
 * `kube lb`: the manifests that run the balancer on Kubernetes, from the same flags (or
 * `--config` file) `lb` takes. A ConfigMap holds the settings as an `lb --config` file; a
 * Deployment runs the pods with probes on the admin API's `/health` (503 while draining), a
 * `preStop` pause so the Service stops sending before SIGTERM starts the drain, and a grace
 * period that covers `--drain-timeout`; a Service in front; a PodDisruptionBudget; a Secret for
 * `--admin-token`; and with `--backend-dns NAME:PORT` a headless Service whose DNS name lists the
 * backends' pods.
 *
 * Every setting is validated as `lb` validates it, and the ConfigMap is read back the way the
 * pod will read it, so what was printed is what runs.
 *
 * @module
 */
import { DEFAULT_BALANCER_CONFIG, parseBalancerArgs, parseConfigFile } from "../config/config.ts";
import type { BalancerConfig } from "../config/settings.ts";
import { settingEntries } from "../config/settings.ts";
import { setAt, valueAt } from "../config/layers.ts";
import { type CommandContext, EXIT, UsageError } from "../shared/command.ts";
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
  wholeCpus,
} from "../shared/kube_manifest.ts";

/** Where the pod finds the ConfigMap's config file. */
export const CONFIG_DIR = "/etc/denolb";
/** The config file's key in the ConfigMap. */
export const CONFIG_KEY = "lb.json";
/** The admin port when `--admin` does not give one. */
const DEFAULT_ADMIN_PORT = 9091;
/**
 * Seconds the pod keeps serving after Kubernetes marks it terminating and before SIGTERM: the
 * time endpoints and kube-proxy (or an ingress) take to stop sending it new connections.
 */
export const PRE_STOP_SECONDS = 5;
/** The environment variable the admin token reaches the container through. */
const TOKEN_ENV = "DENOLB_ADMIN_TOKEN";

/** The flags of `kube lb` besides `lb`'s own. */
export const KUBE_LB_FLAGS: readonly KubeFlag[] = [
  ...COMMON_KUBE_FLAGS,
  { name: "replicas", metavar: "N", help: "Balancer pods. Default: 2." },
  {
    name: "service-type",
    metavar: "TYPE",
    help: "The Service's type: ClusterIP, NodePort or LoadBalancer. Default: ClusterIP.",
  },
  {
    name: "backend-dns",
    metavar: "NAME:PORT",
    help: "Backends found by DNS (each A/AAAA address one backend): passed to lb, and a " +
      "headless Service named after NAME's first label is printed for them.",
  },
  {
    name: "backend-selector",
    metavar: "K=V,...",
    help: "The labels of the backends' pods, for that headless Service. Default: " +
      "app=NAME's first label.",
  },
  {
    name: "admin-token-secret",
    metavar: "NAME",
    help: "An existing Secret whose key token holds the admin token (instead of " +
      "--admin-token, which prints a Secret with it).",
  },
];

/** The help of `kube`. */
export const KUBE_HELP: string =
  `Usage: denolb kube lb --image IMAGE [options] [lb flags | --config FILE]
       denolb kube loadtest --image IMAGE --pods N [options] [loadtest flags]

Prints Kubernetes manifests as YAML on stdout, for kubectl apply -f -.

kube lb: the balancer as a Deployment, with a Service, a ConfigMap holding its settings (the lb
flags and --config file given here), probes on the admin API's /health, a preStop pause and a
grace period that covers --drain-timeout, and a PodDisruptionBudget. The pods listen on 0.0.0.0
at --port and the admin port (default ${DEFAULT_ADMIN_PORT}); the admin API then needs
--admin-token, --admin-token-secret or --admin-insecure on. --workers defaults to the CPU request.

${kubeFlagHelp(KUBE_LB_FLAGS)}

kube loadtest: an Indexed Job whose pods each run loadtest --shard I/N, each making its share of
the rate, concurrency or total; the output's comment says how to merge their results with
loadtest merge (see denolb kube loadtest --help).

Examples:
  denolb kube lb --image ghcr.io/OWNER/denolb:0.1.0 --backend http://web:8080 --admin-token "$TOKEN"
  denolb kube lb --image ghcr.io/OWNER/denolb:0.1.0 --backend-dns web:8080 --admin-insecure on
  denolb kube loadtest --image ghcr.io/OWNER/denolb:0.1.0 --pods 4 --url http://denolb:9090/ --rate 4000 --duration 1m
`;

/** What `kube lb` needs besides its arguments. */
export interface KubeLbDeps {
  /** Reads the `--config` file. Default: `Deno.readTextFile`. */
  readonly readTextFile?: (path: string) => Promise<string>;
}

/**
 * Runs `kube` (the `lb` part, and the help).
 *
 * @param args The arguments after `kube`.
 * @param ctx Output.
 * @param deps File reading.
 * @returns The exit code.
 * @throws {UsageError} For a bad flag or value, naming it.
 */
export async function kubeCommand(
  args: readonly string[],
  ctx: CommandContext,
  deps: KubeLbDeps = {},
): Promise<number> {
  const [what, ...rest] = args;
  if (what === undefined || what === "-h" || what === "--help" || what === "help") {
    ctx.stdout(KUBE_HELP);
    return what === undefined ? EXIT.usage : EXIT.ok;
  }
  if (what !== "lb") {
    throw new UsageError(`Unknown kube command "${what}": expected lb or loadtest`);
  }
  if (rest.includes("-h") || rest.includes("--help")) {
    ctx.stdout(KUBE_HELP);
    return EXIT.ok;
  }
  const { manifests, comment } = await lbManifests(rest, deps);
  ctx.stdout(formatManifests(manifests, comment));
  return EXIT.ok;
}

/** The manifests of `kube lb` and the comment printed above them. */
export interface LbManifests {
  /** In apply order: Secret, ConfigMap, Services, Deployment, PodDisruptionBudget. */
  readonly manifests: readonly Manifest[];
  /** Lines saying what was decided. */
  readonly comment: readonly string[];
}

/**
 * Builds the manifests of `kube lb`.
 *
 * @param args The arguments after `kube lb`: its own flags and `lb`'s.
 * @param deps File reading.
 * @returns The manifests.
 * @throws {UsageError} For a bad flag or value, settings a pod cannot run with (no backend it
 * can reach, the admin API off, port 0), or an admin API left open without a token.
 */
export async function lbManifests(
  args: readonly string[],
  deps: KubeLbDeps = {},
): Promise<LbManifests> {
  const { values, rest } = splitKubeFlags(args, KUBE_LB_FLAGS);
  const options = readCommonKubeOptions(values, "denolb");
  const replicas = readReplicas(values.get("replicas"));
  const serviceType = values.get("service-type") ?? "ClusterIP";
  if (!["ClusterIP", "NodePort", "LoadBalancer"].includes(serviceType)) {
    throw new UsageError(
      `Invalid --service-type "${serviceType}": must be ClusterIP, NodePort or LoadBalancer`,
    );
  }
  const backendDns = readBackendDns(values.get("backend-dns"));
  const selector = readSelector(values.get("backend-selector"), backendDns);
  const tokenSecret = values.get("admin-token-secret");
  // The pod's settings come from the flags and file alone, never from this shell's LOGLEVEL.
  const readTextFile = deps.readTextFile ?? ((path: string) => Deno.readTextFile(path));
  // The backends' DNS name goes into the pod's configuration like any other setting.
  const given = await parseBalancerArgs(
    [...rest, ...(backendDns === undefined ? [] : ["--backend-dns", backendDns.text])],
    () => undefined,
    { readTextFile },
  );

  if (given.port === 0) {
    throw new UsageError("Invalid --port 0 for kube lb: the Service needs a fixed port");
  }
  const admin = given.admin.listen;
  if (admin === "off") {
    throw new UsageError(
      "Invalid --admin off for kube lb: the probes ask the admin API's /health",
    );
  }
  const adminPort = Number(admin.slice(admin.lastIndexOf(":") + 1));
  if (adminPort === 0) {
    throw new UsageError(`Invalid --admin "${admin}" for kube lb: the probes need a fixed port`);
  }
  if (adminPort === given.port) {
    throw new UsageError(`Invalid --admin "${admin}": the same port as --port ${given.port}`);
  }
  const sameBackends = JSON.stringify(given.backends) ===
    JSON.stringify(DEFAULT_BALANCER_CONFIG.backends);
  if (sameBackends && backendDns === undefined) {
    throw new UsageError(
      "Missing backends for kube lb: the default ones are on the pod's own 127.0.0.1; " +
        "give --backend URL or --backend-dns NAME:PORT",
    );
  }
  const token = given.admin.token;
  if (token !== undefined && tokenSecret !== undefined) {
    throw new UsageError("Cannot combine --admin-token and --admin-token-secret: give one");
  }
  const hasToken = token !== undefined || tokenSecret !== undefined;
  if (!hasToken && given.admin.insecure !== "on") {
    throw new UsageError(
      "Missing admin token for kube lb: the admin API listens on the pod's address for the " +
        "probes, so give --admin-token TOKEN, --admin-token-secret NAME or --admin-insecure on",
    );
  }

  // What the pod runs with: the given settings, listening on the pod's addresses.
  const podSettings: Record<string, unknown> = {
    host: "0.0.0.0",
    admin: { listen: `0.0.0.0:${adminPort}` },
    ...(given.workers === "auto" ? { workers: String(wholeCpus(options.cpu)) } : {}),
  };
  const file = configFile(given, podSettings);
  const text = JSON.stringify(file, null, 2) + "\n";
  const secretName = tokenSecret ?? `${options.name}-admin`;
  const lbArgs = [
    "lb",
    "--config",
    `${CONFIG_DIR}/${CONFIG_KEY}`,
    ...(hasToken ? [`--admin-token=$(${TOKEN_ENV})`] : []),
  ];
  await checkReadBack(text, lbArgs, given, podSettings);

  const labels = appLabels(options);
  const configName = `${options.name}-config`;
  const drainSeconds = Math.ceil(given.drainTimeoutMs / 1000);
  const manifests: Manifest[] = [];
  if (token !== undefined) {
    manifests.push({
      apiVersion: "v1",
      kind: "Secret",
      metadata: objectMeta(options, secretName),
      type: "Opaque",
      stringData: { token },
    });
  }
  manifests.push({
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: objectMeta(options, configName),
    data: { [CONFIG_KEY]: text },
  });
  if (backendDns !== undefined) {
    manifests.push({
      apiVersion: "v1",
      kind: "Service",
      metadata: {
        ...objectMeta(options, backendDns.service),
        labels: { ...labels, "app.kubernetes.io/component": "backends" },
      },
      spec: {
        // Headless: the name resolves to every ready pod's address, one backend each.
        clusterIP: "None",
        selector,
        ports: [{ name: "http", port: backendDns.port, targetPort: backendDns.port }],
      },
    });
  }
  manifests.push({
    apiVersion: "v1",
    kind: "Service",
    metadata: objectMeta(options),
    spec: {
      type: serviceType,
      selector: labels,
      ports: [{ name: "http", port: given.port, targetPort: "http", protocol: "TCP" }],
    },
  });
  manifests.push({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: objectMeta(options),
    spec: {
      replicas,
      selector: { matchLabels: labels },
      // A new pod is ready before an old one stops: capacity never drops during a rollout.
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: {
          labels,
          // A changed ConfigMap changes the template, so the pods roll.
          annotations: { "denolb.dev/config-sha256": await sha256(text) },
        },
        spec: {
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: PRE_STOP_SECONDS + drainSeconds + 5,
          topologySpreadConstraints: [{
            maxSkew: 1,
            topologyKey: "kubernetes.io/hostname",
            whenUnsatisfiable: "ScheduleAnyway",
            labelSelector: { matchLabels: labels },
          }],
          containers: [{
            name: "denolb",
            image: options.image,
            args: lbArgs,
            ...(hasToken
              ? {
                env: [{
                  name: TOKEN_ENV,
                  valueFrom: { secretKeyRef: { name: secretName, key: "token" } },
                }],
              }
              : {}),
            ports: [
              { name: "http", containerPort: given.port, protocol: "TCP" },
              { name: "admin", containerPort: adminPort, protocol: "TCP" },
            ],
            // /health answers 503 while draining, so a draining pod leaves the endpoints.
            readinessProbe: {
              httpGet: { path: "/health", port: "admin" },
              periodSeconds: 5,
              failureThreshold: 2,
            },
            // Not /health: a drain must not look like a dead process.
            livenessProbe: { tcpSocket: { port: "admin" }, periodSeconds: 10, failureThreshold: 3 },
            lifecycle: { preStop: { sleep: { seconds: PRE_STOP_SECONDS } } },
            resources: containerResources(options),
            securityContext: CONTAINER_SECURITY,
            volumeMounts: [
              { name: "config", mountPath: CONFIG_DIR, readOnly: true },
              { name: "tmp", mountPath: "/tmp" },
            ],
          }],
          volumes: [
            { name: "config", configMap: { name: configName } },
            { name: "tmp", emptyDir: {} },
          ],
        },
      },
    },
  });
  manifests.push({
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: objectMeta(options),
    spec: { maxUnavailable: 1, selector: { matchLabels: labels } },
  });
  const comment = [
    `denolb kube lb: ${replicas} balancer pod(s) of ${options.image}`,
    `apply with: kubectl apply -f FILE (preStop sleep needs Kubernetes 1.30 or later)`,
    ...(tokenSecret === undefined ? [] : [`uses the existing Secret "${tokenSecret}" (key token)`]),
    ...(token === undefined ? [] : [
      `the Secret "${secretName}" below holds the admin token: keep this output private`,
    ]),
  ];
  return { manifests, comment };
}

/**
 * The config file: every setting whose value differs from its default, then the pod's own
 * settings over them; the admin token stays out (it reaches the pod from a Secret).
 */
function configFile(config: BalancerConfig, pod: Record<string, unknown>): Record<string, unknown> {
  const file: Record<string, unknown> = {};
  for (const { path } of settingEntries()) {
    if (path.join(".") === "admin.token") continue;
    const value = valueAt(config, path);
    // No backends listed beside DNS names: the file says nothing, as the flags did.
    if (path.join(".") === "backends" && Array.isArray(value) && value.length === 0) continue;
    if (JSON.stringify(value) !== JSON.stringify(valueAt(DEFAULT_BALANCER_CONFIG, path))) {
      setAt(file, path, JSON.parse(JSON.stringify(value)));
    }
  }
  for (const { path } of settingEntries()) {
    const value = valueAt(pod, path);
    if (value !== undefined) setAt(file, path, value);
  }
  return file;
}

/**
 * Reads the printed config back as the pod will (`lb --config FILE` and the container's flags)
 * and checks that it gives every setting as asked.
 *
 * @throws {Error} Naming a setting the file cannot carry (a bug, not a user mistake).
 */
async function checkReadBack(
  text: string,
  lbArgs: readonly string[],
  given: BalancerConfig,
  pod: Record<string, unknown>,
): Promise<void> {
  parseConfigFile(text, CONFIG_KEY);
  const dummyToken = "t".repeat(32);
  const flags = lbArgs.slice(1).map((arg) => arg.replace(`$(${TOKEN_ENV})`, dummyToken));
  const read = await parseBalancerArgs(flags, () => undefined, {
    readTextFile: () => Promise.resolve(text),
  });
  for (const { path } of settingEntries()) {
    const key = path.join(".");
    const wanted = key === "admin.token"
      ? (given.admin.token === undefined ? valueAt(read, path) : dummyToken)
      : valueAt(pod, path) ?? valueAt(given, path);
    const got = valueAt(read, path);
    if (key === "admin.token" && got !== undefined && got !== dummyToken) {
      throw new Error(`The printed config does not carry ${key}`);
    }
    if (key !== "admin.token" && JSON.stringify(got) !== JSON.stringify(wanted)) {
      throw new Error(`The printed config does not carry ${key}: ${JSON.stringify(got)}`);
    }
  }
}

function readReplicas(text: string | undefined): number {
  if (text === undefined) return 2;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1 || value > 1000) {
    throw new UsageError(`Invalid --replicas "${text}": must be a whole number from 1 to 1000`);
  }
  return value;
}

/** `--backend-dns NAME:PORT` and the headless Service it implies. */
interface BackendDns {
  readonly text: string;
  readonly service: string;
  readonly port: number;
}

function readBackendDns(text: string | undefined): BackendDns | undefined {
  if (text === undefined) return undefined;
  const match = /^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9.-]+)?:(\d{1,5})$/.exec(text);
  const port = Number(match?.[4]);
  if (match === null || !(port >= 1 && port <= 65_535)) {
    throw new UsageError(
      `Invalid --backend-dns "${text}": must be NAME:PORT, such as web:8080 or ` +
        "web.shop.svc.cluster.local:8080, with a port from 1 to 65535",
    );
  }
  return { text, service: match[1] ?? "", port };
}

function readSelector(
  text: string | undefined,
  dns: BackendDns | undefined,
): Record<string, string> {
  if (text === undefined) return dns === undefined ? {} : { app: dns.service };
  if (dns === undefined) {
    throw new UsageError("Invalid --backend-selector without --backend-dns: it selects its pods");
  }
  const selector: Record<string, string> = {};
  for (const pair of text.split(",")) {
    const match = /^([A-Za-z0-9./_-]+)=([A-Za-z0-9._-]*)$/.exec(pair.trim());
    if (match === null) {
      throw new UsageError(
        `Invalid --backend-selector "${text}": must be KEY=VALUE pairs, such as app=web,tier=api`,
      );
    }
    selector[match[1] ?? ""] = match[2] ?? "";
  }
  return selector;
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}
