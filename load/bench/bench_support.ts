/**
 * Shared pieces of the benchmarks in this folder: starting nginx with a private config, running
 * wrk, reading its figures, and the median of slices. Benchmarks only; tests never import it.
 *
 * @module
 */

const encoder = new TextEncoder();

/** What one tool achieved in one timed run. */
export interface Measurement {
  /** Which tool (and setting) ran. */
  readonly tool: string;
  /** Completed requests per second. */
  readonly requestsPerSecond: number;
  /** Failed requests: non-2xx/3xx statuses and socket errors. */
  readonly errors: number;
}

/**
 * Prints one line on stdout.
 *
 * @param text The line, without its newline.
 */
export function writeLine(text: string): void {
  const bytes = encoder.encode(`${text}\n`);
  for (let offset = 0; offset < bytes.length;) {
    offset += Deno.stdout.writeSync(bytes.subarray(offset));
  }
}

/**
 * Runs a command to completion and returns its stdout.
 *
 * @param command The executable.
 * @param args Its arguments.
 * @returns What it printed on stdout.
 * @throws {Error} When it exits non-zero, with its output.
 */
export async function runTool(command: string, args: readonly string[]): Promise<string> {
  const output = await new Deno.Command(command, { args: [...args], stdout: "piped" }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) throw new Error(`${command} ${args.join(" ")} failed:\n${text}`);
  return text;
}

/**
 * Extracts `Requests/sec: N` (the format of both wrk and hey).
 *
 * @param tool The tool's name, for the error.
 * @param text Its output.
 * @returns The rate.
 * @throws {Error} When the output has no rate.
 */
export function requestsPerSecond(tool: string, text: string): number {
  const match = /Requests\/sec:\s+([\d.]+)/.exec(text);
  if (match?.[1] === undefined) throw new Error(`Cannot find Requests/sec in ${tool} output`);
  return Number(match[1]);
}

/**
 * Non-2xx/3xx responses and socket errors reported by wrk.
 *
 * @param text wrk's output.
 * @returns The number of failed requests.
 */
export function wrkErrors(text: string): number {
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? "0";
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const socketTotal = socket === null
    ? 0
    : socket.slice(1).reduce((sum, value) => sum + Number(value), 0);
  return Number(non2xx) + socketTotal;
}

/**
 * Runs `wrk -tT -cC -dDs URL`.
 *
 * @param url The target.
 * @param connections Open connections.
 * @param durationMs How long, rounded to whole seconds.
 * @param threads wrk threads.
 * @returns Its rate and errors.
 */
export async function measureWrk(
  url: string,
  connections: number,
  durationMs: number,
  threads: number,
): Promise<Measurement> {
  const text = await runTool("wrk", [
    `-t${threads}`,
    `-c${connections}`,
    `-d${Math.max(1, Math.round(durationMs / 1000))}s`,
    url,
  ]);
  return {
    tool: `wrk -t${threads}`,
    requestsPerSecond: requestsPerSecond("wrk", text),
    errors: wrkErrors(text),
  };
}

/**
 * A free TCP port on 127.0.0.1 (bound, read, released).
 *
 * @returns The port.
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}

/**
 * Distinct free TCP ports on 127.0.0.1: all are held until every one is known, so the system
 * cannot hand the same port out twice (it may, to {@linkcode freePort} calls in a row, when
 * other programs open and close many sockets meanwhile).
 *
 * @param count How many.
 * @returns The ports.
 */
export function freePorts(count: number): number[] {
  const listeners = Array.from(
    { length: count },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((listener) => listener.addr.port);
  for (const listener of listeners) listener.close();
  return ports;
}

/**
 * Waits until something accepts connections on the port.
 *
 * @param port The port on 127.0.0.1.
 * @param what Named in the error.
 * @throws {Error} When nothing listens within about 5 s.
 */
export async function waitForPort(port: number, what: string): Promise<void> {
  // A short pause between attempts: the table times start-ups to the first answer.
  for (let attempt = 0;; attempt++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch (error) {
      if (attempt >= 500) {
        throw new Error(`${what} did not listen on port ${port}`, { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

/** A running nginx. */
export interface RunningNginx {
  /** The master's process id (its worker is a child). */
  readonly pid: number;
  /** Stops it and waits for its exit. */
  stop(): Promise<void>;
}

/**
 * Starts nginx in the foreground with a private config: one worker, no access log, the given
 * `server`/`upstream` blocks inside `http { }`, temp files under `directory`.
 *
 * @param directory A private folder for the config, pid and temp files.
 * @param httpBlocks The `server { }` (and `upstream { }`) blocks.
 * @param ports Ports to wait for before returning.
 * @returns The running nginx.
 */
export async function startNginx(
  directory: string,
  httpBlocks: string,
  ports: readonly number[],
): Promise<RunningNginx> {
  const name = `nginx_${ports[0] ?? 0}`;
  const prefix = `${directory}/${name}`;
  await Deno.mkdir(`${prefix}/tmp`, { recursive: true });
  const config = `worker_processes 1;
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path ${prefix}/tmp;
  proxy_temp_path ${prefix}/tmp;
  fastcgi_temp_path ${prefix}/tmp;
  uwsgi_temp_path ${prefix}/tmp;
  scgi_temp_path ${prefix}/tmp;
${httpBlocks}
}
`;
  await Deno.writeTextFile(`${prefix}/nginx.conf`, config);
  const child = new Deno.Command("nginx", {
    args: ["-c", `${prefix}/nginx.conf`, "-p", prefix, "-e", `${prefix}/error.log`],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  try {
    for (const port of ports) await waitForPort(port, "nginx");
  } catch (error) {
    child.kill("SIGTERM");
    await child.status;
    throw error;
  }
  return {
    pid: child.pid,
    async stop(): Promise<void> {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

/**
 * Writes a static file nginx's worker (another user) can read, under `directory/www/`.
 *
 * @param directory The benchmark's private folder.
 * @param fileBytes The file's size.
 * @returns The `www` folder.
 */
export async function writeStaticSite(directory: string, fileBytes: number): Promise<string> {
  const www = `${directory}/www`;
  await Deno.mkdir(www, { recursive: true });
  await Deno.writeFile(`${www}/index.html`, new Uint8Array(fileBytes).fill(0x61));
  // makeTempDir is private to us; nginx's worker runs as another user and must read the file.
  await Deno.chmod(directory, 0o755);
  await Deno.chmod(www, 0o755);
  await Deno.chmod(`${www}/index.html`, 0o644);
  return www;
}

/**
 * The median of some numbers (0 for none).
 *
 * @param values The numbers.
 * @returns Their median.
 *
 * @example
 * ```ts
 * import { median } from "./bench_support.ts";
 * if (median([3, 1, 2]) !== 2) throw new Error("bad median");
 * ```
 */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? sorted[middle] ?? 0
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

/**
 * The peers' common configuration, written once: what every benchmark gives nginx and HAProxy in
 * front of the backends.
 */

/**
 * An nginx `upstream` block over backends on 127.0.0.1, round-robin, with idle keep-alive
 * connections.
 *
 * @param name The upstream's name.
 * @param ports The backends' ports.
 * @param keepalive Idle connections nginx keeps to them.
 * @returns The block, indented for the `http` context.
 */
export function nginxUpstream(name: string, ports: readonly number[], keepalive = 64): string {
  return `  upstream ${name} { ${ports.map((p) => `server 127.0.0.1:${p};`).join(" ")} ` +
    `keepalive ${keepalive}; }`;
}

/**
 * The directives of an nginx `location` that proxies to `target` over kept-alive HTTP/1.1, the
 * client's Host kept, `X-Forwarded-For` appended.
 *
 * @param target What `proxy_pass` names: `http://pool`, `http://b/`.
 * @returns The directives, on one line.
 */
export function nginxPass(target: string): string {
  return `proxy_pass ${target}; proxy_http_version 1.1; proxy_set_header Connection ""; ` +
    `proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;`;
}

/**
 * HAProxy's `global` and `defaults` sections: HTTP mode, `option forwardfor`, the usual
 * timeouts.
 *
 * @param extra.global Lines added to `global`.
 * @param extra.defaults Lines added to `defaults`.
 * @returns The sections, each line ending in a newline.
 */
export function haproxyHead(
  extra: { readonly global?: readonly string[]; readonly defaults?: readonly string[] } = {},
): string {
  const lines = [
    "global",
    "  maxconn 4096",
    ...(extra.global ?? []).map((line) => `  ${line}`),
    "defaults",
    "  mode http",
    "  option forwardfor",
    "  timeout connect 5s",
    "  timeout client 50s",
    "  timeout server 50s",
    ...(extra.defaults ?? []).map((line) => `  ${line}`),
    "  timeout http-keep-alive 10s",
  ];
  return lines.map((line) => `${line}\n`).join("");
}
