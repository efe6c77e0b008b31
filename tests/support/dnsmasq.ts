/**
 * Debian's `dnsmasq` as a real DNS server for discovery tests: on 127.0.0.1, a free port, no
 * upstream, answering from a hosts file (A/AAAA, re-read on SIGHUP) and from `srv-host=` lines
 * (read at start only: dnsmasq re-reads hosts files on SIGHUP, not its configuration, so
 * changing SRV records means {@linkcode Dnsmasq.restart}).
 *
 * @module
 */
import { unusedPort } from "./servers.ts";
import { waitUntil } from "./wait.ts";

/** One SRV record: `_svc._tcp.name` -> target:port, with priority and weight. */
export interface SrvRecord {
  readonly name: string;
  readonly target: string;
  readonly port: number;
  readonly priority?: number;
  readonly weight?: number;
}

/** The records dnsmasq serves. */
export interface DnsRecords {
  /** Host name -> addresses. */
  readonly hosts?: Readonly<Record<string, readonly string[]>>;
  /** SRV records. */
  readonly srv?: readonly SrvRecord[];
}

/** A running dnsmasq. */
export interface Dnsmasq extends AsyncDisposable {
  /** Where it listens: `127.0.0.1:PORT`, as `--dns-server` takes it. */
  readonly address: string;
  /** Rewrites the hosts file and sends SIGHUP; resolves once a lookup sees the new file. */
  setHosts(hosts: Readonly<Record<string, readonly string[]>>): Promise<void>;
  /** Stops it (lookups then time out), keeping its port and files. */
  stop(): Promise<void>;
  /** Starts it again on the same port, with new records. */
  restart(records: DnsRecords): Promise<void>;
}

/** Whether dnsmasq is installed (`apt-get install -y dnsmasq-base`). */
export function hasDnsmasq(): boolean {
  try {
    return Deno.statSync("/usr/sbin/dnsmasq").isFile;
  } catch {
    return false;
  }
}

/**
 * Starts dnsmasq with `records` and a TTL of `ttlSeconds` on every answer.
 *
 * @param records The initial records.
 * @param ttlSeconds `local-ttl`.
 * @returns The running server; dispose of it to stop it and remove its files.
 */
export async function startDnsmasq(records: DnsRecords, ttlSeconds: number): Promise<Dnsmasq> {
  const dir = await Deno.makeTempDir({ prefix: "denolb-dnsmasq-" });
  // dnsmasq drops to "nobody" when started as root: its files must be readable by everyone.
  await Deno.chmod(dir, 0o755);
  const hostsPath = `${dir}/hosts`;
  const confPath = `${dir}/dnsmasq.conf`;
  const port = unusedPort();
  let child: Deno.ChildProcess | undefined;
  let generation = 0;

  const writeHosts = async (hosts: Readonly<Record<string, readonly string[]>>) => {
    generation++;
    // A marker name per version lets a lookup tell that dnsmasq has read this file.
    const lines = [`127.0.0.1 v${generation}.marker.test`];
    for (const [name, addresses] of Object.entries(hosts)) {
      for (const address of addresses) lines.push(`${address} ${name}`);
    }
    await Deno.writeTextFile(hostsPath, lines.join("\n") + "\n", { mode: 0o644 });
  };
  const writeConf = async (srv: readonly SrvRecord[]) => {
    const lines = srv.map((r) =>
      `srv-host=${r.name},${r.target},${r.port},${r.priority ?? 0},${r.weight ?? 0}`
    );
    await Deno.writeTextFile(confPath, lines.join("\n") + "\n", { mode: 0o644 });
  };
  const sees = async (name: string): Promise<boolean> => {
    try {
      const found = await Deno.resolveDns(name, "A", {
        nameServer: { ipAddr: "127.0.0.1", port },
      });
      return found.length > 0;
    } catch {
      return false;
    }
  };
  const launch = async () => {
    child = new Deno.Command("/usr/sbin/dnsmasq", {
      args: [
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        `--port=${port}`,
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        `--addn-hosts=${hostsPath}`,
        `--conf-file=${confPath}`,
        `--local-ttl=${ttlSeconds}`,
        "--cache-size=0",
        "--pid-file=",
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    await waitUntil("dnsmasq answering", () => sees(`v${generation}.marker.test`), {
      timeoutMs: 5_000,
      intervalMs: 20,
    });
  };
  const stop = async () => {
    const running = child;
    child = undefined;
    if (running === undefined) return;
    try {
      running.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await running.status;
  };

  await writeHosts(records.hosts ?? {});
  await writeConf(records.srv ?? []);
  await launch();
  return {
    address: `127.0.0.1:${port}`,
    async setHosts(hosts) {
      await writeHosts(hosts);
      child?.kill("SIGHUP");
      await waitUntil(
        "dnsmasq reading the new hosts file",
        () => sees(`v${generation}.marker.test`),
        {
          timeoutMs: 5_000,
          intervalMs: 10,
        },
      );
    },
    stop,
    async restart(next) {
      await stop();
      await writeHosts(next.hosts ?? {});
      await writeConf(next.srv ?? []);
      await launch();
    },
    async [Symbol.asyncDispose]() {
      await stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}
