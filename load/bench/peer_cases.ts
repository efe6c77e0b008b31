/**
 * The hostile and odd requests of issue 6, sent byte for byte to nginx, HAProxy and our
 * balancer, each in front of its own raw backend that records exactly what reached it. Prints
 * a Markdown table: case | nginx | haproxy | ours. A comparison, not a test: it needs `nginx`
 * and `haproxy` on PATH (a missing one is skipped and said so).
 *
 * ```sh
 * deno run -A load/bench/peer_cases.ts                       # ours = the working tree
 * deno run -A load/bench/peer_cases.ts --ours . --ours 1a2a169   # one column per version
 * deno run -A load/bench/peer_cases.ts --peers ours --case-timeout 3s
 * ```
 *
 * Each cell: what the client got (status lines in order; `→ closed` when the peer closed the
 * connection right after; `closed`/`timeout` when no whole response came), then what the
 * backend saw (request line and headers as received, `nothing`, or bytes that never formed a
 * request). For ours, the first log line written during the case is added.
 *
 * Peers, as an operator would stock them: nginx 1 worker, `proxy_http_version 1.1`, upstream
 * keep-alive, Host/X-Real-IP/X-Forwarded-For/X-Forwarded-Proto set as in most guides; HAProxy
 * `mode http`, `option forwardfor`, X-Forwarded-Proto set, timeouts connect 5s, client 50s,
 * server 50s, http-request 5s, http-keep-alive 10s; ours `main.ts lb` at log level warning,
 * probing `/__peer_cases_probe` once an hour (probe requests are left out of the table), from
 * the working tree (`--ours .`, the default) or from any git ref (`--ours REF`, unpacked with
 * `git archive` into a temp folder). Peers run side by side, cases one after another.
 *
 * Flags: `--peers nginx,haproxy,ours`, `--ours REF` (repeatable), `--case-timeout 5s`,
 * `--slowloris-cap 15s`.
 *
 * @module
 */
import { parseDuration } from "../../lib/shared/duration.ts";
import { parseArgs } from "../../lib/shared/std.ts";
import {
  type RawBackend,
  type RawBackendAnswer,
  type RecordedRequest,
  startRawBackend,
} from "./raw_backend.ts";
import { RawConnection, type RawReadOutcome } from "./raw_http.ts";
import {
  freePort,
  haproxyHead,
  nginxPass,
  nginxUpstream,
  startNginx,
  waitForPort,
  writeLine,
} from "./bench_support.ts";
import { errorText } from "../../lib/shared/error_text.ts";

const REPO = new URL("../../", import.meta.url);
const PROBE_PATH = "/__peer_cases_probe";
/** The `--ours` value that means the working tree rather than a commit. */
const WORKING_TREE = ".";
const decoder = new TextDecoder();

/** One case: bytes to send, and how the backend answers. */
interface PeerCase {
  readonly name: string;
  /** Sent at once on a new connection. */
  readonly send: string;
  /** Sent after the first interim (1xx) response, or after 1 s without one. */
  readonly thenSend?: string;
  /** How the backend answers during this case. Default: 200 `ok`. */
  readonly answer?: RawBackendAnswer;
  /** Trickle the head a line a second instead; report when the peer closes. */
  readonly isSlowloris?: boolean;
}

const H = "Host: a.example\r\n";
const SMUGGLED = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n";

const CASES: readonly PeerCase[] = [
  { name: "Host with a path", send: "GET /secret HTTP/1.1\r\nHost: shop.example/admin\r\n\r\n" },
  {
    name: "Host holding /_lb/status?",
    send: "GET / HTTP/1.1\r\nHost: a.example/_lb/status?\r\n\r\n",
  },
  { name: "no Host on HTTP/1.1", send: "GET / HTTP/1.1\r\n\r\n" },
  { name: "invalid Host chars", send: 'GET / HTTP/1.1\r\nHost: bad<host>"x\r\n\r\n' },
  {
    name: "absolute-form, other authority",
    send: `GET http://other.example/p HTTP/1.1\r\n${H}\r\n`,
  },
  {
    name: "absolute-form https on plain TCP",
    send: `GET https://a.example/p HTTP/1.1\r\n${H}\r\n`,
  },
  { name: "dot segments /a/../b", send: `GET /a/../b HTTP/1.1\r\n${H}\r\n` },
  { name: "encoded dots /a/%2e%2e/b", send: `GET /a/%2e%2e/b HTTP/1.1\r\n${H}\r\n` },
  { name: "escaped slash /a/%2F/b", send: `GET /a/%2F/b HTTP/1.1\r\n${H}\r\n` },
  { name: "backslash /a\\b", send: `GET /a\\b HTTP/1.1\r\n${H}\r\n` },
  { name: "no User-Agent/Accept", send: `GET /plain HTTP/1.1\r\n${H}\r\n` },
  { name: "Connection: host", send: `GET / HTTP/1.1\r\n${H}Connection: host\r\n\r\n` },
  {
    name: "Connection: x-forwarded-for",
    send: `GET / HTTP/1.1\r\n${H}X-Forwarded-For: 6.6.6.6\r\nConnection: x-forwarded-for\r\n\r\n`,
  },
  {
    name: "Expect: 100-continue, 5 B body",
    send: `POST /up HTTP/1.1\r\n${H}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n`,
    thenSend: "hello",
  },
  { name: "CONNECT", send: "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n" },
  { name: "TRACE", send: `TRACE / HTTP/1.1\r\n${H}\r\n` },
  { name: "OPTIONS *", send: `OPTIONS * HTTP/1.1\r\n${H}\r\n` },
  {
    name: "invalid chunk size zz",
    send: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`,
  },
  {
    name: "LF-only chunk lines",
    send: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n`,
  },
  {
    name: "CL + TE (smuggled GET after 0 chunk)",
    send: `POST / HTTP/1.1\r\n${H}Content-Length: ${SMUGGLED.length}\r\n` +
      `Transfer-Encoding: chunked\r\n\r\n${SMUGGLED}`,
  },
  {
    name: "two Content-Length (5, 6)",
    send: `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`,
  },
  {
    name: "backend answers 101 unrequested, then client sends GET /again",
    send: `GET / HTTP/1.1\r\n${H}\r\n`,
    thenSend: `GET /again HTTP/1.1\r\n${H}\r\n`,
    answer: { kind: "switch-protocols" },
  },
  { name: "slowloris (a header line a second)", send: `GET / HTTP/1.1\r\n${H}`, isSlowloris: true },
];

/** A proxy under test, in front of its raw backend. */
interface Peer {
  readonly port: number;
  /** Log lines written so far (ours only). */
  readonly logLines: readonly string[];
  stop(): Promise<void>;
}

interface Settings {
  readonly caseTimeoutMs: number;
  readonly slowlorisCapMs: number;
}

/** Runs one case against a peer and renders its cell. */
async function runCase(
  peer: Peer,
  backend: RawBackend,
  testCase: PeerCase,
  settings: Settings,
): Promise<string> {
  backend.answer = testCase.answer ?? { kind: "respond" };
  const requestsBefore = backend.received.length;
  const bytesBefore = backend.connections.map((c) => c.bytes.length);
  const logBefore = peer.logLines.length;
  const client = await RawConnection.open(peer.port);
  let outcome: string;
  let isSettleNeeded = false;
  try {
    await client.send(testCase.send);
    if (testCase.isSlowloris) {
      outcome = await trickle(client, settings.slowlorisCapMs);
    } else {
      const result = await exchange(client, testCase, settings.caseTimeoutMs);
      outcome = result.text;
      isSettleNeeded = !result.isComplete;
    }
  } catch (error) {
    outcome = `client error: ${errorText(error)}`;
  } finally {
    await client.close();
  }
  // A request the peer still held when the client gave up may reach the backend just after.
  if (isSettleNeeded) await new Promise((resolve) => setTimeout(resolve, 300));
  const seen = describeBackend(backend, requestsBefore, bytesBefore);
  const log = peer.logLines.slice(logBefore).filter((line) => !line.includes(PROBE_PATH));
  const logNote = log.length === 0
    ? []
    : [`log: ${log[0]}${log.length > 1 ? ` (+${log.length - 1})` : ""}`];
  return [outcome, ...seen, ...logNote].map(escapeCell).join("<br>");
}

/** Reads responses; sends `thenSend` after an interim one (or a 1 s pause). */
async function exchange(
  client: RawConnection,
  testCase: PeerCase,
  timeoutMs: number,
): Promise<{ readonly text: string; readonly isComplete: boolean }> {
  const parts: string[] = [];
  let pending = testCase.thenSend;
  for (;;) {
    const outcome: RawReadOutcome = await client.readResponse({
      timeoutMs: pending === undefined ? timeoutMs : Math.min(timeoutMs, 1_000),
    });
    if (outcome.kind !== "response") {
      if (pending !== undefined && outcome.kind === "timeout") {
        parts.push("(nothing in 1s)");
        await client.send(pending);
        pending = undefined;
        continue;
      }
      parts.push(
        outcome.bytes.length === 0
          ? outcome.kind
          : `${outcome.kind} after ${
            JSON.stringify(decoder.decode(outcome.bytes.subarray(0, 60)))
          }`,
      );
      return { text: parts.join(" → "), isComplete: false };
    }
    const { response } = outcome;
    let label = response.statusLine.replace(/^HTTP\/1\.1 /, "");
    if (response.status === 101) {
      const upgrade = response.headers.find(([name]) => name === "upgrade")?.[1];
      label += upgrade === undefined ? " (no Upgrade header)" : ` (upgrade: ${upgrade})`;
    }
    const body = decoder.decode(response.body);
    if (response.status >= 200 && response.status < 300 && body !== "ok") {
      // Not the raw backend's answer: the peer made this response itself.
      label += ` (body not from backend: ${JSON.stringify(body.slice(0, 40))})`;
    }
    parts.push(label);
    if (response.status >= 100 && response.status < 200) {
      if (pending !== undefined) {
        await client.send(pending);
        pending = undefined;
      }
      continue;
    }
    const after = await client.readUntilClosed(300);
    if (after.isClosed) parts.push("closed");
    return { text: parts.join(" → "), isComplete: true };
  }
}

/** Sends a header line a second until the peer closes or `capMs` passes. */
async function trickle(client: RawConnection, capMs: number): Promise<string> {
  const started = performance.now();
  for (let line = 0; performance.now() - started < capMs; line++) {
    const end = await client.readUntilClosed(
      Math.min(1_000, capMs - (performance.now() - started)),
    );
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const status = decoder.decode(end.bytes).split("\r\n")[0]?.replace(/^HTTP\/1\.1 /, "");
    if (end.isClosed) {
      return `closed after ${seconds}s${status ? ` (${status})` : " (no response)"}`;
    }
    if (end.bytes.length > 0) return `${status} after ${seconds}s, still open`;
    try {
      await client.send(`X-Slow-${line}: 1\r\n`);
    } catch {
      return `closed after ${seconds}s (write failed)`;
    }
  }
  return `>${capMs / 1000}s (still open)`;
}

/** What reached the backend since the case began: requests, then stray bytes. */
function describeBackend(
  backend: RawBackend,
  requestsBefore: number,
  bytesBefore: readonly number[],
): string[] {
  const requests = backend.received.slice(requestsBefore).filter((r) => r.target !== PROBE_PATH);
  const lines: string[] = requests.map(describeRequest);
  backend.connections.forEach((connection, index) => {
    const fresh = connection.bytes.subarray(bytesBefore[index] ?? 0);
    const parsed = backend.received.slice(requestsBefore)
      .filter((r) => r.connection === index)
      .reduce((sum, r) => sum + r.raw.length, 0);
    const stray = fresh.subarray(parsed);
    if (stray.length > 0) {
      lines.push(
        `backend: ${stray.length} B not forming a request: ${
          JSON.stringify(decoder.decode(stray.subarray(0, 80)))
        }`,
      );
    }
  });
  return lines.length === 0 ? ["backend: nothing"] : lines;
}

function describeRequest(request: RecordedRequest): string {
  const head = `backend: ${request.method} ${request.target} ${request.version}`;
  const headers = request.headers.map(([name, value]) => `${name}: ${value}`).join("; ");
  const body = request.bodyBytes > 0 ? ` [body ${request.bodyBytes} B]` : "";
  const error = request.framingError === undefined ? "" : ` [framing: ${request.framingError}]`;
  return `${head} {${headers}}${body}${error}`;
}

function escapeCell(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll("|", "\\|").replaceAll("\n", " ");
}

/** The first line a command prints for `-v`, or `undefined` when it is not installed. */
async function versionOf(command: string): Promise<string | undefined> {
  try {
    const output = await new Deno.Command(command, { args: ["-v"] }).output();
    const text = decoder.decode(output.stdout) + decoder.decode(output.stderr);
    return text.split("\n")[0]?.trim();
  } catch {
    return undefined;
  }
}

/** The working tree's commit, marked when files differ from it. */
async function treeVersion(): Promise<string> {
  const head = await commitOf("HEAD");
  const status = await git("status", "--porcelain", "--", "lib", "main.ts");
  return status === "" ? head : `${head} + uncommitted changes in lib/ or main.ts`;
}

async function git(...args: string[]): Promise<string> {
  const output = await new Deno.Command("git", {
    args: ["-C", REPO.pathname, ...args],
    stdout: "piped",
  }).output();
  return decoder.decode(output.stdout).trim();
}

/** A git ref's short commit hash (the ref itself when git does not know it). */
async function commitOf(ref: string): Promise<string> {
  return await git("rev-parse", "--short", "--verify", `${ref}^{commit}`) || ref;
}

async function startNginxPeer(directory: string, backendPort: number): Promise<Peer> {
  const port = freePort();
  await Deno.chmod(directory, 0o755); // nginx's worker runs as another user
  const nginx = await startNginx(
    directory,
    `${nginxUpstream("raw", [backendPort], 8)}
  server {
    listen 127.0.0.1:${port};
    location / {
      ${nginxPass("http://raw")}
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }`,
    [port],
  );
  return { port, logLines: [], stop: () => nginx.stop() };
}

async function startHaproxyPeer(directory: string, backendPort: number): Promise<Peer> {
  const port = freePort();
  const config = `${directory}/haproxy.cfg`;
  await Deno.writeTextFile(
    config,
    `${haproxyHead({ defaults: ["timeout http-request 5s"] })}frontend fe
  bind 127.0.0.1:${port}
  http-request set-header X-Forwarded-Proto http
  default_backend be
backend be
  server raw 127.0.0.1:${backendPort}
`,
  );
  const child = new Deno.Command("haproxy", {
    args: ["-db", "-f", config],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  return await stopOnFailure(child, port, "haproxy");
}

async function startOurs(directory: string, backendPort: number, ref: string): Promise<Peer> {
  let main = new URL("main.ts", REPO).pathname;
  if (ref !== WORKING_TREE) {
    const tree = `${directory}/tree`;
    await Deno.mkdir(tree);
    const archive = await new Deno.Command("git", {
      args: ["-C", REPO.pathname, "archive", "--format=tar", ref],
      stdout: "piped",
    }).output();
    if (!archive.success) throw new Error(`Cannot archive git ref "${ref}"`);
    const tar = new Deno.Command("tar", { args: ["-x", "-C", tree], stdin: "piped" }).spawn();
    const writer = tar.stdin.getWriter();
    await writer.write(archive.stdout);
    await writer.close();
    if (!(await tar.status).success) throw new Error(`Cannot unpack git ref "${ref}"`);
    main = `${tree}/main.ts`;
  }
  const port = freePort();
  // Versions with an admin listener of their own get it turned off (older ones lack the flag).
  const settings = await Deno.readTextFile(new URL("../lib/settings.ts", `file://${main}`))
    .catch(() => "");
  const adminOff = settings.includes('flag: "admin"') ? ["--admin", "off"] : [];
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      main,
      "lb",
      "--port",
      String(port),
      ...adminOff,
      "--backend",
      `127.0.0.1:${backendPort}`,
      "--log-level",
      "warning",
      "--health-path",
      PROBE_PATH,
      "--health-interval",
      "1h",
      "--drain-timeout",
      "1s",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const logLines: string[] = [];
  const reading = (async () => {
    const lines = child.stderr.pipeThrough(new TextDecoderStream());
    let rest = "";
    for await (const text of lines) {
      const all = (rest + text).split("\n");
      rest = all.pop() ?? "";
      logLines.push(...all.map((line) => line.replace(/^\S+ \S+ \S+ /, "")));
    }
  })();
  let peer: Peer;
  try {
    peer = await stopOnFailure(child, port, "ours");
  } catch (error) {
    await reading;
    const last = logLines.filter((line) => line.trim() !== "").at(-1) ?? "no output";
    throw new Error(`balancer did not start: ${last}`, { cause: error });
  }
  return {
    port,
    logLines,
    async stop(): Promise<void> {
      await peer.stop();
      await reading;
    },
  };
}

/** Waits for a child to listen; kills it if it does not. */
async function stopOnFailure(child: Deno.ChildProcess, port: number, what: string): Promise<Peer> {
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    await child.status;
  };
  try {
    await waitForPort(port, what);
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, logLines: [], stop };
}

/** Starts a backend and one peer, runs every case, stops both. */
async function runPeer(
  start: (directory: string, backendPort: number) => Promise<Peer>,
  settings: Settings,
): Promise<string[]> {
  const directory = await Deno.makeTempDir({ prefix: "denolb_peer_cases_" });
  await using backend = startRawBackend();
  try {
    const peer = await start(directory, backend.port);
    try {
      const cells: string[] = [];
      for (const testCase of CASES) cells.push(await runCase(peer, backend, testCase, settings));
      return cells;
    } finally {
      await peer.stop();
    }
  } catch (error) {
    return CASES.map(() => `did not run: ${error instanceof Error ? error.message : error}`);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
}

async function main(args: readonly string[]): Promise<void> {
  const flags = parseArgs(args, {
    string: ["case-timeout", "slowloris-cap", "peers"],
    collect: ["ours"],
    unknown: (arg: string) => {
      throw new TypeError(`Invalid flag "${arg}": see the module docs of peer_cases.ts`);
    },
  });
  const settings: Settings = {
    caseTimeoutMs: parseDuration(String(flags["case-timeout"] ?? "5s")),
    slowlorisCapMs: parseDuration(String(flags["slowloris-cap"] ?? "15s")),
  };
  const wanted = String(flags.peers ?? "nginx,haproxy,ours").split(",");
  const refs = (flags.ours as string[] | undefined) ?? [WORKING_TREE];
  const columns: { name: string; start: (dir: string, port: number) => Promise<Peer> }[] = [];
  const notes: string[] = [];
  for (const [name, start] of [["nginx", startNginxPeer], ["haproxy", startHaproxyPeer]] as const) {
    if (!wanted.includes(name)) continue;
    const version = await versionOf(name);
    if (version === undefined) {
      notes.push(`${name} skipped: not installed (apt-get install -y ${name})`);
      continue;
    }
    columns.push({ name, start });
    notes.push(version);
  }
  if (wanted.includes("ours")) {
    for (const ref of refs) {
      const name = ref === WORKING_TREE ? "ours" : `ours @${await commitOf(ref)}`;
      columns.push({ name, start: (dir, port) => startOurs(dir, port, ref) });
      if (ref === WORKING_TREE) notes.push(`ours: working tree at ${await treeVersion()}`);
    }
  }
  writeLine(
    `peer_cases: deno ${Deno.version.deno}, case timeout ${settings.caseTimeoutMs / 1000}s, ` +
      `slowloris cap ${settings.slowlorisCapMs / 1000}s, ${new Date().toISOString()}`,
  );
  for (const note of notes) writeLine(note);
  const results = await Promise.all(columns.map((column) => runPeer(column.start, settings)));
  writeLine("");
  writeLine(`| case | ${columns.map((c) => c.name).join(" | ")} |`);
  writeLine(`|---|${columns.map(() => "---").join("|")}|`);
  CASES.forEach((testCase, index) => {
    const cells = results.map((cells) => cells[index] ?? "");
    writeLine(`| ${escapeCell(testCase.name)} | ${cells.join(" | ")} |`);
  });
}

if (import.meta.main) await main(Deno.args);
